#!/bin/sh
# Scenario "vol": CRI mounts of containers in a xen pod as copy-in volumes (cri/xen_vol.c in the
# daemon, cri/agent/agent_vol.c in the guest). Kubelet-like host paths in dom0 (an /etc/hosts-like
# file, a configMap in kubelet's atomic-writer layout with a symlink pointing out of it, an
# emptyDir) are copied into the guest and bind-mounted; the read-only mount refuses writes; two
# containers share the emptyDir; a configMap update in dom0 reaches the container; a mount over the
# size cap, a non-private propagation and a device are refused with INVALID_ARGUMENT.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY vol
# expect: VGPU-XEN VOL-CTR-RUNNING a
# expect: VGPU-XEN VOL-CONTENT-OK
# expect: VGPU-XEN VOL-READONLY-OK
# expect: VGPU-XEN VOL-SYMLINK-NOT-FOLLOWED
# expect: VGPU-XEN VOL-EMPTYDIR-SHARED
# expect: VGPU-XEN VOL-CONFIGMAP-UPDATE-SEEN
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
