#!/bin/sh
# Scenario "ctr": containers inside a xen pod. The daemon (xen handler) makes the pod's domU; a
# busybox container (image pulled on the host from a local registry into the dom0 image store at
# build time) is created through the agent: an erofs image of its rootfs (one per image, shared by
# its containers) on a read-only loop device hot-added as a disk, runc in the guest, an overlay with a tmpfs upper layer. Its output
# reaches the CRI log file in dom0; ExecSync returns output and exit code; a daemon restart keeps
# the container, and after a daemon crash the container is reached again once the agent has
# offered a fresh channel; a container's own exit code is reported; a container whose domain is destroyed
# behind the daemon's back is reported exited and can be removed; stop and remove leave no domain
# (not even a dying one), loop device, xenstore backend path or state.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY web
# expect: VGPU-XEN CTR-CREATED hello
# expect: VGPU-XEN CTR-RUNNING hello
# expect: VGPU-XEN CTR-LOG-OK
# expect: VGPU-XEN EXEC-OK
# expect: VGPU-XEN ROOTFS-LAYERS-OK
# expect: VGPU-XEN RESTART-KEPT-CONTAINER
# expect: VGPU-XEN CRASH-RESTART-REACHED
# expect: VGPU-XEN CTR-STOPPED
# expect: VGPU-XEN CTR-EXIT-CODE-OK
# expect: VGPU-XEN IMAGE-DISK-SHARED
# expect: VGPU-XEN CTR-REMOVED
# expect: VGPU-XEN GONE-DOMAIN-CTR-EXITED
# expect: VGPU-XEN NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
setup_xen_containers
img=$(cat /vgpu/image-ref)
start_daemon
mark DAEMON-UP "pid=$daemon_pid image=$img"

# ---- the pod ----
t0=$(up)
out=$(cri-client run-pod web xen) || fail "RunPodSandbox: $out"
id=$(echo "$out" | sed -n 's/^CRI pod //p')
[ -n "$id" ] || fail "no pod id in: $out"
t_pod=$(up)
mark POD-READY web "id=$id run_pod_s=$(dt "$t0" "$t_pod")"
dom=vgpu-$(echo "$id" | cut -c1-12)-web
domid=$(xl domid "$dom") || fail "no domid for $dom"

# ---- a busybox container printing to its log ----
t1=$(up)
out=$(cri-client create "$id" hello "$img" sh -c \
	'echo hello from a xen container; echo to stderr >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done') ||
	fail "CreateContainer: $out"
cid=$(echo "$out" | sed -n 's/^CRI container //p')
[ -n "$cid" ] || fail "no container id in: $out"
t2=$(up)
mark CTR-CREATED hello "id=$cid create_s=$(dt "$t1" "$t2")"
grep "container $cid: in domain" $dlog
out=$(cri-client start "$cid") || fail "StartContainer: $out"
t3=$(up)
cri-client cstatus "$cid" | grep -q "CRI cstatus $cid RUNNING" || fail "not RUNNING: $(cri-client cstatus "$cid")"
mark CTR-RUNNING hello "start_s=$(dt "$t2" "$t3") pod_to_running_s=$(dt "$t0" "$t3") create_to_running_s=$(dt "$t1" "$t3")"
log=/var/log/pods/xen-test/hello/0.log
n=0
while ! grep -q " stdout F tick 2$" $log 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 600 ] && { cat $log; fail "no log records in $log"; }
	sleep 0.1
done
head -n 4 $log
grep -q "Z stdout F hello from a xen container$" $log || fail "no hello record"
grep -q "Z stderr F to stderr$" $log || fail "no stderr record"
mark CTR-LOG-OK "first_records_after_start_s=$(dt "$t3" "$(up)")"

# ---- ExecSync: output and exit code ----
t4=$(up)
out=$(cri-client exec "$cid" 30 sh -c 'echo out; echo err >&2; exit 3') || fail "ExecSync: $out"
echo "$out"
[ "$out" = 'CRI exec exit=3 stdout=out\n stderr=err\n' ] || fail "ExecSync result: $out"
mark EXEC-OK "exec_s=$(dt "$t4" "$(up)")"
# the image is a read-only erofs disk; the container writes into its tmpfs upper layer
out=$(cri-client exec "$cid" 30 sh -c 'echo layer > /bin/new-file && cat /bin/new-file && grep -c " / overlay " /proc/mounts') ||
	fail "exec write: $out"
echo "$out"
[ "$out" = 'CRI exec exit=0 stdout=layer\n1\n stderr=' ] || fail "writable layer: $out"
xenstore-read "/local/domain/0/backend/vbd/$domid/51728/mode" | grep -qx r || fail "image disk not read-only"
losetup -a
mark ROOTFS-LAYERS-OK

# ---- daemon restart: the container and its log go on ----
stop_daemon
start_daemon
cri-client cstatus "$cid" | grep -q "CRI cstatus $cid RUNNING" || fail "not RUNNING after restart"
out=$(cri-client exec "$cid" 30 echo again) || fail "exec after restart: $out"
[ "$out" = 'CRI exec exit=0 stdout=again\n stderr=' ] || fail "exec after restart: $out"
before=$(grep -c " stdout F tick " $log)
sleep 3
after=$(grep -c " stdout F tick " $log)
[ "$after" -gt "$before" ] || fail "log stopped after restart ($before -> $after)"
[ "$(grep -c "hello from a xen container" $log)" = 1 ] || fail "log records duplicated after restart"
mark RESTART-KEPT-CONTAINER "ticks=$after"

# ---- daemon crash (SIGKILL: its channel is never closed): the agent gives up on the silent
# channel after 60 s and offers a fresh one; the restarted daemon reaches the container again ----
kill -KILL $daemon_pid
wait $daemon_pid
t_crash=$(up)
start_daemon
n=0
while ! out=$(cri-client -t 30 exec "$cid" 30 echo back) || [ "$out" != 'CRI exec exit=0 stdout=back\n stderr=' ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "container not reachable after a daemon crash: $out"
	sleep 2
done
cri-client cstatus "$cid" | grep -q "CRI cstatus $cid RUNNING" || fail "not RUNNING after the crash"
mark CRASH-RESTART-REACHED "after_s=$(dt "$t_crash" "$(up)")"

# ---- stop: sh as PID 1 ignores SIGTERM, so SIGKILL after the timeout: 137 ----
t5=$(up)
cri-client cstop "$cid" 2 || fail "StopContainer"
st=$(cri-client cstatus "$cid")
echo "$st"
echo "$st" | grep -q "CRI cstatus $cid EXITED exit=137" || fail "after stop: $st"
mark CTR-STOPPED "stop_s=$(dt "$t5" "$(up)")"

# ---- a container that exits by itself with its own code (second disk, xvdc) ----
out=$(cri-client create "$id" once "$img" sh -c 'echo bye; exit 7') || fail "create once: $out"
cid2=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid2" || fail "start once"
n=0
while ! cri-client cstatus "$cid2" | grep -q "EXITED exit=7 reason=Error"; do
	n=$((n + 1))
	[ $n -gt 120 ] && fail "once did not exit 7: $(cri-client cstatus "$cid2")"
	sleep 0.5
done
grep -q "Z stdout F bye$" /var/log/pods/xen-test/once/0.log || fail "once: no log record"
mark CTR-EXIT-CODE-OK

# ---- both containers run from one erofs disk of the image (built once, in the image store) ----
grep "container $cid: in domain [0-9]*: image built" $dlog || fail "hello: image not built"
grep "container $cid2: in domain [0-9]*: image shared" $dlog || fail "once: image not shared"
n=$(ls /var/lib/vgpu-cri/images/erofs | wc -l)
[ "$n" = 1 ] || fail "$n erofs files in the image store: $(ls /var/lib/vgpu-cri/images/erofs)"
mark IMAGE-DISK-SHARED "$(ls -s /var/lib/vgpu-cri/images/erofs)"

# ---- remove: the disks leave the domain, the loop devices clear themselves ----
t6=$(up)
cri-client cremove "$cid" && cri-client cremove "$cid2" || fail "RemoveContainer"
cri-client clist | grep -q "CRI clist n=0" || fail "containers left: $(cri-client clist)"
xenstore-ls "/local/domain/0/backend/vbd/$domid" 2>/dev/null | grep -q . && fail "vbd backends left"
[ -z "$(losetup -a)" ] || fail "loop devices left: $(losetup -a)"
[ -z "$(ls /var/lib/vgpu-cri/containers)" ] || fail "container state left"
mark CTR-REMOVED "remove_s=$(dt "$t6" "$(up)")"

# ---- a pod's domain destroyed behind the daemon's back with a container running in it ----
out=$(cri-client run-pod web2 xen) || fail "RunPodSandbox web2: $out"
id2=$(echo "$out" | sed -n 's/^CRI pod //p')
out=$(cri-client create "$id2" sleeper "$img" sleep 3600) || fail "create sleeper: $out"
cid3=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid3" || fail "start sleeper"
xen-domctl destroy "vgpu-$(echo "$id2" | cut -c1-12)-web2" || fail "destroy web2 behind the daemon's back"
n=0
while ! cri-client cstatus "$cid3" | grep -q "EXITED exit=255 reason=Unknown"; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "sleeper not EXITED 255: $(cri-client cstatus "$cid3")"
	sleep 0.5
done
cri-client status "$id2" | grep -q "CRI status $id2 NOTREADY" || fail "web2 not NOTREADY"
cri-client cremove "$cid3" && cri-client stop "$id2" && cri-client remove "$id2" || fail "remove sleeper/web2"
mark GONE-DOMAIN-CTR-EXITED

cri-client stop "$id" && cri-client remove "$id" || fail "stop/remove pod"
cri-client list | grep -q "CRI list n=0" || fail "pods left"
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "domains left (xl list)"
# a destroyed domain whose pages dom0 still maps stays "dying": libxl lists it, xl does not
xen-domctl list | grep -q 'XENCTL domains=1$' || { xen-domctl list; fail "domains left (libxl)"; }
xenstore-list /local/domain | grep -qv '^0$' && fail "xenstore /local/domain has more than dom0"
xenstore-ls /local/domain/0/backend 2>/dev/null | grep -q "vbd" && fail "backend paths left"
[ -z "$(losetup -a)" ] || fail "loop devices left after the pod"
[ -z "$(ls /var/lib/vgpu-cri/sandboxes)" ] || fail "sandbox state left"
mark NOTHING-LEFT
echo "--- the agent in the guest (console log of $dom)"
grep "vgpu-agent:" "/var/log/xen/console/guest-$dom.log"
stop_daemon
grep -E " (warn|error) " $dlog | head -n 20
exit 0
