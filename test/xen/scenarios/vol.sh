#!/bin/sh
# Scenario "vol": CRI mounts of containers in a xen pod as copy-in volumes (cri/xen_vol.c in the
# daemon, cri/agent/agent_vol.c in the guest). Kubelet-like host paths in dom0 (an /etc/hosts-like
# file, a configMap in kubelet's atomic-writer layout with a symlink pointing out of it, an
# emptyDir) are copied into the guest and bind-mounted; the read-only mount refuses writes; two
# containers share the emptyDir; a configMap update in dom0 reaches the container; a mount over the
# size cap, a non-private propagation and a device are refused with INVALID_ARGUMENT; a writable
# file mount (kubelet's termination-log) is written back to its host file by the first EXITED, and
# a symlink planted in the guest in place of its copy is refused, not followed.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY vol
# expect: VGPU-XEN VOL-CTR-RUNNING a
# expect: VGPU-XEN VOL-CONTENT-OK
# expect: VGPU-XEN VOL-READONLY-OK
# expect: VGPU-XEN VOL-SYMLINK-NOT-FOLLOWED
# expect: VGPU-XEN VOL-EMPTYDIR-SHARED
# expect: VGPU-XEN VOL-CONFIGMAP-UPDATE-SEEN
# expect: VGPU-XEN VOL-TERMINATION-MESSAGE-OK
# expect: VGPU-XEN VOL-TERMINATION-SYMLINK-REFUSED
# expect: VGPU-XEN VOL-TOO-BIG-REFUSED
# expect: VGPU-XEN VOL-PROPAGATION-REFUSED
# expect: VGPU-XEN VOL-DEVICE-REFUSED
# expect: VGPU-XEN NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
setup_xen_containers
img=$(cat /vgpu/image-ref)

# ---- kubelet-like host paths ----
k=/var/lib/kubelet-test
mkdir -p $k/cm/..2026_a $k/empty $k/big /root
echo "10.9.9.9 vol-test-host" > $k/hosts
echo "DOM0-SECRET" > /root/dom0-secret
echo "value-one" > $k/cm/..2026_a/key
ln -s ..2026_a $k/cm/..data
ln -s ..data/key $k/cm/key
ln -s /root/dom0-secret $k/cm/leak
chmod 0777 $k/empty
dd if=/dev/zero of=$k/big/blob bs=1024 count=9216 2>/dev/null

start_daemon
mark DAEMON-UP "pid=$daemon_pid image=$img"
out=$(cri-client run-pod vol xen) || fail "RunPodSandbox: $out"
id=$(echo "$out" | sed -n 's/^CRI pod //p')
[ -n "$id" ] || fail "no pod id in: $out"
mark POD-READY vol "id=$id"
dom=vgpu-$(echo "$id" | cut -c1-12)-vol

# ---- container a: the three mounts ----
t1=$(up)
out=$(CRI_MOUNTS="$k/hosts:/etc/hosts:ro $k/cm:/etc/config:ro $k/empty:/data" cri-client create "$id" a "$img" sleep 3600) ||
	fail "CreateContainer a: $out"
cid=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid" || fail "start a"
mark VOL-CTR-RUNNING a "id=$cid create_to_running_s=$(dt "$t1" "$(up)")"
grep "container $cid: in domain" $dlog

ex() { # ex CID CMD: ExecSync output, one line
	cri-client exec "$1" 60 sh -c "$2"
}
out=$(ex "$cid" 'cat /etc/hosts /etc/config/key; ls -a /etc/config | tr "\n" " "') || fail "exec a: $out"
echo "$out"
echo "$out" | grep -q 'stdout=10.9.9.9 vol-test-host\\nvalue-one\\n' || fail "mount content: $out"
echo "$out" | grep -q '\.\.data' || fail "atomic-writer layout not kept: $out"
mark VOL-CONTENT-OK

out=$(ex "$cid" 'echo x > /etc/config/new; echo rc=$?; echo y > /etc/hosts; echo rc=$?')
echo "$out"
echo "$out" | grep -q 'stdout=rc=1\\nrc=1\\n' || fail "read-only mounts took a write: $out"
echo "$out" | grep -qi 'read-only' || fail "no read-only error: $out"
mark VOL-READONLY-OK

out=$(ex "$cid" 'readlink /etc/config/leak; cat /etc/config/leak; echo rc=$?')
echo "$out"
echo "$out" | grep -q 'stdout=/root/dom0-secret\\n' || fail "symlink not copied as a symlink: $out"
echo "$out" | grep -q 'DOM0-SECRET' && fail "the symlink's target leaked: $out"
mark VOL-SYMLINK-NOT-FOLLOWED

# ---- container b shares the emptyDir (and the configMap) ----
out=$(ex "$cid" 'echo from-a > /data/f; echo rc=$?')
echo "$out" | grep -q 'stdout=rc=0' || fail "write to emptyDir: $out"
out=$(CRI_MOUNTS="$k/empty:/shared $k/cm:/etc/config:ro" cri-client create "$id" b "$img" sleep 3600) ||
	fail "CreateContainer b: $out"
cid2=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid2" || fail "start b"
out=$(ex "$cid2" 'cat /shared/f; echo from-b > /shared/g')
echo "$out"
echo "$out" | grep -q 'stdout=from-a\\n' || fail "b does not see a's write: $out"
out=$(ex "$cid" 'cat /data/g')
echo "$out" | grep -q 'stdout=from-b\\n' || fail "a does not see b's write: $out"
[ -e $k/empty/f ] && fail "emptyDir write reached dom0 (no write-back expected)"
mark VOL-EMPTYDIR-SHARED

# ---- configMap update as kubelet does it: a new timestamped dir, ..data swapped ----
mkdir $k/cm/..2026_b
echo "value-two" > $k/cm/..2026_b/key
ln -sfn ..2026_b $k/cm/..data
rm -rf $k/cm/..2026_a
t_upd=$(up)
n=0
while :; do
	out=$(ex "$cid" 'cat /etc/config/key')
	echo "$out" | grep -q 'stdout=value-two\\n' && break
	n=$((n + 1))
	[ $n -gt 30 ] && fail "configMap update not seen: $out"
	sleep 1
done
after=$(dt "$t_upd" "$(up)")
out=$(ex "$cid2" 'cat /etc/config/key; ls -a /etc/config | tr "\n" " "')
echo "$out"
echo "$out" | grep -q 'stdout=value-two\\n' || fail "b did not get the update: $out"
echo "$out" | grep -q '2026_a' && fail "the old timestamped dir is still there: $out"
grep "changed, copied again" $dlog | head -n 2
mark VOL-CONFIGMAP-UPDATE-SEEN "after_s=$after"

# ---- write-back of writable file mounts: kubelet's termination message ----
# kubelet makes an empty host file per container and mounts it writable at terminationMessagePath;
# once ContainerStatus says EXITED it reads the HOST file. The daemon writes the guest's copy back
# before it records the exit, so the first EXITED already finds the whole message.
wait_exited() { # wait_exited CID: polls ContainerStatus as kubelet does; prints the status line
	n=0
	while :; do
		st=$(cri-client cstatus "$1") || fail "ContainerStatus $1: $st"
		case "$st" in *" EXITED "*) echo "$st"; return 0 ;; esac
		n=$((n + 1))
		[ $n -gt 300 ] && fail "$1 did not exit: $st"
		sleep 0.2
	done
}
mkdir -p $k/pods/tl $k/pods/sl
: > $k/pods/tl/termination-log
t_tl=$(up)
out=$(CRI_MOUNTS="$k/pods/tl/termination-log:/dev/termination-log" cri-client create "$id" tl "$img" \
	sh -c 'printf "bye from xen" > /dev/termination-log; exit 3') || fail "CreateContainer tl: $out"
cid3=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid3" || fail "start tl"
t_started=$(up)
st=$(wait_exited "$cid3")
got=$(cat $k/pods/tl/termination-log)
t_seen=$(up)
echo "$st"
echo "host file at the first EXITED: '$got'"
echo "$st" | grep -q "EXITED exit=3 " || fail "tl: $st"
[ "$got" = "bye from xen" ] || fail "termination message not written back: '$got'"
grep "container $cid3: mount /dev/termination-log: written back" $dlog || fail "no write-back in the daemon log"
ls -la $k/pods/tl
[ "$(ls -A $k/pods/tl)" = "termination-log" ] || fail "a temp file was left beside the host file"
mark VOL-TERMINATION-MESSAGE-OK "create_to_exited_s=$(dt "$t_tl" "$t_seen") start_to_exited_s=$(dt "$t_started" "$t_seen")"

# A container cannot replace its termination-log (a bind mount: rm gets EBUSY); one that broke out
# into the guest could replace the guest's copy with a symlink to a guest secret. That is done here
# from the guest's root (the agent's EXEC, with the daemon stopped so the channel is free): the
# agent must refuse the symlink, the host file keeps its content.
echo "host-original" > $k/pods/sl/termination-log
out=$(CRI_MOUNTS="$k/pods/sl/termination-log:/dev/termination-log" cri-client create "$id" sl "$img" \
	sh -c 'rm -f /dev/termination-log; echo rm=$?; ln -sf /etc/passwd /dev/termination-log; echo ln=$?;
	       echo innocent > /dev/termination-log; while [ ! -e /tmp/go ]; do sleep 0.2; done; exit 0') ||
	fail "CreateContainer sl: $out"
cid4=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid4" || fail "start sl"
n=0
while :; do
	out=$(ex "$cid4" 'cat /dev/termination-log')
	echo "$out" | grep -q 'stdout=innocent\\n' && break
	n=$((n + 1))
	[ $n -gt 30 ] && fail "sl did not write its termination-log: $out"
	sleep 1
done
stop_daemon
domid=$(xl domid "$dom")
out=$(agent-check "$domid" 60 sh 'echo GUEST-SECRET > /run/guest-secret
	for d in /run/vgpu-agent/vol/*; do
		[ "$(cat $d/file 2>/dev/null)" = innocent ] && ln -sfn /run/guest-secret $d/file && echo planted $d
	done; ls -l /run/vgpu-agent/vol/*/file')
echo "$out"
echo "$out" | grep -q "planted /run/vgpu-agent/vol/" || fail "could not plant the symlink in the guest: $out"
start_daemon
ex "$cid4" 'touch /tmp/go' >/dev/null
st=$(wait_exited "$cid4")
got=$(cat $k/pods/sl/termination-log)
echo "$st"
echo "host file after exit: '$got'"
echo "--- the container's log"
cat "$(echo "$st" | sed -n 's/.* log=//p')"
grep -q GUEST-SECRET $k/pods/sl/termination-log && fail "the guest secret reached the host file"
[ "$got" = "host-original" ] || fail "host file changed: '$got'"
grep "container $cid4: mount /dev/termination-log: not written back" $dlog || fail "no refusal in the daemon log"
grep "vgpu-agent:.*its file is a symlink: refused" "/var/log/xen/console/guest-$dom.log" ||
	fail "no refusal in the agent's log"
mark VOL-TERMINATION-SYMLINK-REFUSED
cri-client cremove "$cid3" && cri-client cremove "$cid4" || fail "remove tl, sl"

# ---- refusals ----
out=$(CRI_MOUNTS="$k/big:/big:ro" cri-client create "$id" big "$img" true 2>&1) && fail "too big accepted: $out"
echo "$out"
echo "$out" | grep -q 'code=3 .*mount /big: host path .*more than 8 MiB' || fail "too big: $out"
mark VOL-TOO-BIG-REFUSED
out=$(CRI_MOUNTS="$k/empty:/p:bidirectional" cri-client create "$id" prop "$img" true 2>&1) && fail "propagation accepted"
echo "$out"
echo "$out" | grep -q 'code=3 .*propagation Bidirectional' || fail "propagation: $out"
mark VOL-PROPAGATION-REFUSED
out=$(CRI_MOUNTS="/dev/null:/dev/x" cri-client create "$id" dev "$img" true 2>&1) && fail "device accepted"
echo "$out"
echo "$out" | grep -q 'code=3 .*not a regular file' || fail "device: $out"
mark VOL-DEVICE-REFUSED

# ---- removal: b goes, a keeps the shared volume ----
cri-client cstop "$cid2" 0 && cri-client cremove "$cid2" || fail "remove b"
out=$(ex "$cid" 'cat /data/g')
echo "$out" | grep -q 'stdout=from-b\\n' || fail "emptyDir gone with b: $out"
cri-client stop "$id" && cri-client remove "$id" || fail "stop/remove pod"
cri-client list | grep -q "CRI list n=0" || fail "pods left"
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "domains left (xl list)"
[ -z "$(losetup -a)" ] || fail "loop devices left after the pod"
[ -z "$(ls /var/lib/vgpu-cri/sandboxes)" ] || fail "sandbox state left"
[ -z "$(ls /var/lib/vgpu-cri/containers)" ] || fail "container state left"
mark NOTHING-LEFT
echo "--- the agent in the guest (console log of $dom)"
grep "vgpu-agent:" "/var/log/xen/console/guest-$dom.log"
stop_daemon
grep -E " (warn|error) " $dlog | head -n 20
exit 0
