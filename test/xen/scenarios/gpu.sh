#!/bin/sh
# Scenario "gpu": GPU pods on the xen handler over granted rings (idm/'s Xen transport). The daemon
# in dom0 runs the broker on the soft TEST DEVICE; a GPU pod is a domU whose containers get the
# guest's libvgpu.so as libcuda.so.1 and /dev/xen/{evtchn,gntalloc,xenbus}. test/gpu's vector_add
# (image test/gpu:xen, seeded at build time) runs over pages the guest grants to dom0 and an
# event channel; its output reaches the CRI log and its usage the pod's status. Hostile guests:
# malformed xenstore offers (rejected, removed), garbage on the ring (that channel closed, its GPU
# state freed), a client that never reads its replies (parked; nobody else waits); a second pod's
# program still works, 18 channels at once get 16 (the per-pod cap), the daemon survives, and
# after a daemon crash a waiting client ends at once (the broker's unmap notify), the pods' GPUs are registered
# again by domid and serve a new program. Stop/Remove leave no grant mapping in the daemon,
# no xenstore path, no domain and no broker pod.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY gpu-a
# expect: VGPU-XEN GPU-PROGRAM-OK
# expect: VGPU-XEN GPU-USAGE-VISIBLE
# expect: VGPU-XEN CHANNEL-FREED-ON-EXIT
# expect: VGPU-XEN GPU-BIG-MODULE-OK
# expect: VGPU-XEN XS-JUNK-REJECTED
# expect: VGPU-XEN GARBAGE-CHANNEL-CLOSED
# expect: VGPU-XEN HANG-CHANNEL-PARKED
# expect: VGPU-XEN SECOND-POD-GPU-OK
# expect: VGPU-XEN CHANNEL-CAP-HELD
# expect: VGPU-XEN CRASH-CLIENT-ENDED
# expect: VGPU-XEN RESTART-GPU-OK
# expect: VGPU-XEN DAEMON-SURVIVED
# expect: VGPU-XEN PODS-STOPPED-GPU-FREED
# expect: VGPU-XEN NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
for m in loop xen-blkback; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
ip link set lo up
# pod_processes on, as with the cuda backend's default: the pod's broker in a process of its own
write_config "  backend: soft
  pod_processes: on" "" 256 ""
img=$(cat /vgpu/image-ref-gpu)
start_daemon
grep -q "SOFT TEST DEVICE" $dlog || fail "broker not on the soft test device"
mark DAEMON-UP "pid=$daemon_pid image=$img"
# the shim spins less on a 2-core TCG host; the PTX is in the image
export CRI_ENV="VGPU_KERNELS_PTX=/opt/gpu/kernels.ptx VGPU_SPIN_NS=20000"

metric() { # POD NAME: the pod's GPU metric NAME from PodSandboxStatus's "gpu" info
	cri-client status "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" | head -n 1
}
wait_exited() { # CID TIMEOUT_S -> prints cstatus
	n=0
	while ! cri-client cstatus "$1" | grep -q "EXITED"; do
		n=$((n + 1))
		[ $n -gt $(($2 * 2)) ] && fail "container $1 did not exit: $(cri-client cstatus "$1")"
		sleep 0.5
	done
	cri-client cstatus "$1" | grep "CRI cstatus"
}
run_ctr() { # POD NAME CMD... -> sets cid
	out=$(cri-client create "$@") || fail "CreateContainer $2: $out"
	cid=$(echo "$out" | sed -n 's/^CRI container //p')
	[ -n "$cid" ] || fail "no container id in: $out"
	cri-client start "$cid" >/dev/null || fail "StartContainer $2"
}
new_pod() { # NAME -> sets pod, domid
	out=$(CRI_GPU_MEMORY=256Mi cri-client run-pod "$1" xen) || fail "RunPodSandbox $1: $out"
	pod=$(echo "$out" | sed -n 's/^CRI pod //p')
	[ -n "$pod" ] || fail "no pod id in: $out"
	domid=$(xl domid "vgpu-$(echo "$pod" | cut -c1-12)-$1") || fail "no domid for $1"
}

# ---- a GPU pod on the xen handler ----
t0=$(up)
new_pod gpu-a
pod_a=$pod
dom_a=$domid
mark POD-READY gpu-a "id=$pod_a domid=$dom_a run_pod_s=$(dt "$t0" "$(up)")"
grep "sandbox $pod_a: GPU on soft" $dlog || fail "GPU pod not registered with the broker"

# ---- vector_add over granted rings ----
t1=$(up)
run_ctr "$pod_a" vadd "$img" /opt/gpu/vector_add
t2=$(up)
st=$(wait_exited "$cid" 300)
t3=$(up)
log=/var/log/pods/xen-test/vadd/0.log
cat $log
echo "$st" | grep -q "EXITED exit=0" || fail "vector_add: $st"
grep -q "stdout F vector_add: OK$" $log || fail "no 'vector_add: OK' in $log"
grep -q "SOFT TEST DEVICE" $log || fail "the shim did not report the soft test device"
mark GPU-PROGRAM-OK "create_s=$(dt "$t1" "$t2") start_to_exit_s=$(dt "$t2" "$t3")"
vadd_cid=$cid

cri-client status "$pod_a" | grep "CRI gpu"
launches=$(metric "$pod_a" vgpu_gpu_kernel_launches_total)
htod=$(metric "$pod_a" vgpu_gpu_htod_bytes_total)
dtoh=$(metric "$pod_a" vgpu_gpu_dtoh_bytes_total)
total=$(metric "$pod_a" vgpu_gpu_memory_limit_bytes)
[ "${launches:-0}" -ge 1 ] && [ "${htod:-0}" -ge 25165824 ] && [ "${dtoh:-0}" -ge 12582912 ] ||
	fail "GPU usage not visible: launches=$launches htod=$htod dtoh=$dtoh"
[ "$total" = 268435456 ] || fail "quota not applied: $total"
mark GPU-USAGE-VISIBLE "launches=$launches htod_bytes=$htod dtoh_bytes=$dtoh quota=$total"

# the process exited: the guest kernel's unmap notify told the broker, which freed its state
n=0
while [ "$(metric "$pod_a" vgpu_gpu_channels)" != 0 ] || [ "$(metric "$pod_a" vgpu_gpu_memory_used_bytes)" != 0 ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "channel/memory not freed after exit: $(cri-client status "$pod_a" | grep 'CRI gpu')"
	sleep 0.5
done
mark CHANNEL-FREED-ON-EXIT "api_calls=$(metric "$pod_a" vgpu_gpu_api_calls_total)"

# ---- a module image bigger than one message (256 KiB): staged in chunks over the granted ring ----
saved_env=$CRI_ENV
export CRI_ENV="VGPU_KERNELS_PTX=/opt/gpu/kernels-big.ptx VGPU_SPIN_NS=20000 VGPU_SHIM_STATS=1"
t1=$(up)
run_ctr "$pod_a" vbig "$img" /opt/gpu/vector_add
export CRI_ENV=$saved_env
st=$(wait_exited "$cid" 300)
log=/var/log/pods/xen-test/vbig/0.log
grep "vector_add\|libvgpu stats: module" $log
echo "$st" | grep -q "EXITED exit=0" || { cat $log; fail "vector_add with a big image: $st"; }
grep -q "stdout F vector_add: OK$" $log || fail "no 'vector_add: OK' in $log"
grep -q "staged in chunks 1, largest" $log || { cat $log; fail "the big image was not staged"; }
mark GPU-BIG-MODULE-OK "$(grep -o 'largest [0-9]* bytes' $log) run_s=$(dt "$t1" "$(up)")"

# ---- hostile guest 1: malformed offers in xenstore ----
t_junk=$(up)
run_ctr "$pod_a" xsjunk "$img" /opt/gpu/xen-idm-attack xsjunk
st=$(wait_exited "$cid" 120)
cat /var/log/pods/xen-test/xsjunk/0.log
echo "$st" | grep -q "EXITED exit=0" || fail "xsjunk: $st"
n=0
while xenstore-list "/local/domain/$dom_a/data/vgpu" 2>/dev/null | grep -q .; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "offers left in xenstore: $(xenstore-list "/local/domain/$dom_a/data/vgpu")"
	sleep 0.5
done
grep -c "malformed record" $dlog
grep -m 3 "junk-grants\|dropped\|bad name" $dlog
grep -q "junk-grants: map" $dlog || fail "the offer with foreign grants was not refused at mapping"
mark XS-JUNK-REJECTED "$(grep -o '[0-9]* malformed offers written' /var/log/pods/xen-test/xsjunk/0.log), data/vgpu empty after $(dt "$t_junk" "$(up)") s"

# ---- hostile guest 2: garbage on its ring ----
before_err=$(grep -c "protocol error, closing it" $dlog)
run_ctr "$pod_a" garbage "$img" /opt/gpu/xen-idm-attack garbage
st=$(wait_exited "$cid" 120)
cat /var/log/pods/xen-test/garbage/0.log
echo "$st" | grep -q "EXITED exit=0" || fail "garbage: $st"
grep -q "stdout F XEN-ATTACK garbage: channel closed by the broker" /var/log/pods/xen-test/garbage/0.log ||
	fail "garbage channel not closed"
[ "$(grep -c "protocol error, closing it" $dlog)" -gt "$before_err" ] || fail "no protocol error in the daemon log"
[ "$(metric "$pod_a" vgpu_gpu_channels)" = 0 ] || fail "garbage channel still open"
mark GARBAGE-CHANNEL-CLOSED "$(grep -o 'closed by the broker after [0-9.]* ms' /var/log/pods/xen-test/garbage/0.log)"

# ---- hostile guest 3: never reads its replies ----
run_ctr "$pod_a" hang "$img" /opt/gpu/xen-idm-attack hang
hang_cid=$cid
n=0
while ! grep -q "requests queued" /var/log/pods/xen-test/hang/0.log 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 240 ] && fail "hang client did not start: $(cat /var/log/pods/xen-test/hang/0.log)"
	sleep 0.5
done
sleep 2
[ "$(metric "$pod_a" vgpu_gpu_channels)" = 1 ] || fail "hang channel not open"
mark HANG-CHANNEL-PARKED "$(grep -o 'XEN-ATTACK hang: [0-9]* requests' /var/log/pods/xen-test/hang/0.log)"

# ---- a second GPU pod works while pod A's channel is parked ----
t4=$(up)
new_pod gpu-b
pod_b=$pod
dom_b=$domid
run_ctr "$pod_b" vadd2 "$img" /opt/gpu/vector_add
st=$(wait_exited "$cid" 300)
echo "$st" | grep -q "EXITED exit=0" || { cat /var/log/pods/xen-test/vadd2/0.log; fail "pod B vector_add: $st"; }
grep -q "stdout F vector_add: OK$" /var/log/pods/xen-test/vadd2/0.log || fail "pod B: no vector_add: OK"
[ "$(metric "$pod_b" vgpu_gpu_kernel_launches_total)" -ge 1 ] || fail "pod B usage"
mark SECOND-POD-GPU-OK "domid=$dom_b pod_to_done_s=$(dt "$t4" "$(up)")"

# ---- the per-pod channel cap (16; each channel maps 258 pages in dom0) ----
run_ctr "$pod_b" many "$img" /opt/gpu/xen-idm-attack many 18
st=$(wait_exited "$cid" 240)
grep "XEN-ATTACK many: opened" /var/log/pods/xen-test/many/0.log || fail "many: $st"
grep -q "stdout F XEN-ATTACK many: opened=16 refused=2$" /var/log/pods/xen-test/many/0.log || fail "channel cap not held"
n=0
while [ "$(metric "$pod_b" vgpu_gpu_channels)" != 0 ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "pod B channels not freed after many"
	sleep 0.5
done
mark CHANNEL-CAP-HELD "$(grep -m1 'channel refused' $dlog | sed 's/.*broker: //')"

# ---- daemon crash: the daemon and its pod processes SIGKILLed at once (a host OOM kill, say), so
# no broker marks its channels CLOSED or removes its epoch. The daemon stays down 8 s: the brokers'
# mappings went with their processes, and the gntdev unmap notify cleared ctl.broker_alive and rang
# the guest, so the client waiting in pod A ends while no daemon runs (without the notify it would
# wait for the restarted daemon's new epoch). Then the pods' GPUs are registered again by domid
# and pod B serves a new program. (Killing only the daemon is no test of this: its pod processes
# see it go and close their channels.) ----
kill -STOP $daemon_pid
kids=$(for p in /proc/[0-9]*; do
	[ "$(sed 's/.*) //' "$p/stat" 2>/dev/null | cut -d' ' -f2)" = "$daemon_pid" ] && echo "${p#/proc/}"
done)
[ -n "$kids" ] || fail "no pod processes under the daemon"
kill -KILL $kids $daemon_pid
wait $daemon_pid
t_kill=$(date +%s)
sleep 8
t_restart=$(date +%s)
start_daemon
grep -q "sandbox $pod_b: GPU pod recovered" $dlog || fail "pod B's GPU not recovered after a restart"
st=$(wait_exited "$hang_cid" 120)
line=$(grep "XEN-ATTACK hang: the broker ended" /var/log/pods/xen-test/hang/0.log) || fail "hang client did not see the crash: $st"
echo "$line"
at=$(echo "$line" | sed -n 's/.*(at \([0-9]*\)\.[0-9]*)$/\1/p')
[ -n "$at" ] && [ "$at" -le $((t_restart - 3)) ] ||
	fail "the client ended at ${at:-?}, the daemon was killed at $t_kill and restarted at $t_restart"
mark CRASH-CLIENT-ENDED "ended_s_after_kill=$((at - t_kill)) daemon_down_s=$((t_restart - t_kill))"
run_ctr "$pod_b" vadd3 "$img" /opt/gpu/vector_add
st=$(wait_exited "$cid" 300)
echo "$st" | grep -q "EXITED exit=0" && grep -q "stdout F vector_add: OK$" /var/log/pods/xen-test/vadd3/0.log ||
	{ cat /var/log/pods/xen-test/vadd3/0.log; fail "vector_add after a daemon restart: $st"; }
mark RESTART-GPU-OK

kill -0 $daemon_pid || fail "daemon died"
cri-client version >/dev/null || fail "daemon does not answer"
mark DAEMON-SURVIVED "warnings=$(grep -c " warn " $dlog)"

# ---- stop/remove: channels closed, grants unmapped, domains gone ----
t5=$(up)
cri-client stop "$pod_a" >/dev/null && cri-client stop "$pod_b" >/dev/null || fail "StopPodSandbox"
grep -q "sandbox $pod_a: GPU channels closed and GPU memory freed" $dlog || fail "pod A GPU state not freed"
grep -c "gntdev" /proc/$daemon_pid/maps && fail "the daemon still maps granted pages"
mark PODS-STOPPED-GPU-FREED "stop_s=$(dt "$t5" "$(up)")"
cri-client cremove "$hang_cid" >/dev/null || fail "remove hang"
for c in $(cri-client clist | sed -n 's/^CRI citem \([0-9a-f]*\) .*/\1/p'); do cri-client cremove "$c" >/dev/null || fail "cremove $c"; done
cri-client remove "$pod_a" >/dev/null && cri-client remove "$pod_b" >/dev/null || fail "RemovePodSandbox"
cri-client list | grep -q "CRI list n=0" || fail "pods left"
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "domains left (xl list)"
xen-domctl list | grep -q 'XENCTL domains=1$' || { xen-domctl list; fail "domains left (libxl: dying, pages still mapped?)"; }
xenstore-list /local/domain | grep -qv '^0$' && fail "xenstore /local/domain has more than dom0"
[ -z "$(ls /var/lib/vgpu-cri/sandboxes)" ] || fail "sandbox state left"
grep "pod $(echo "$pod_a" | cut -c1-32): removed" $dlog || fail "broker pod A not removed"
grep -q "pod $(echo "$pod_b" | cut -c1-32): removed" $dlog || fail "broker pod B not removed"
mark NOTHING-LEFT
stop_daemon
echo "--- daemon: pods, GPU and transport lines (the flood of refused offers cut)"
grep -E "GPU|broker: (pod|domain)|domain .* created in" $dlog | grep -v "offer flood-" | head -n 60
exit 0
