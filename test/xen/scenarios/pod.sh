#!/bin/sh
# Scenario "pod": the daemon (vgpu-cri) in dom0 with the `xen` runtime handler, driven over CRI by
# cri-client (gRPC core): RunPodSandbox makes a domU whose PID 1 is vgpu-agent and waits for its
# HELLO; status/list report it; a daemon restart reattaches it by name and destroys a pod-named
# domain that no pod owns; a guest whose agent never answers fails RunPodSandbox with
# DEADLINE_EXCEEDED, one that writes garbage fails it at once (INTERNAL), neither leaves a domain; stop destroys the domain, remove leaves nothing (CRI list,
# libxl list, xl list, xenstore, state dir).
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY web
# expect: VGPU-XEN POD-STATUS-READY
# expect: VGPU-XEN POD-CONSOLE-LOG
# expect: VGPU-XEN DAEMON-RESTARTED
# expect: VGPU-XEN POD-REATTACHED
# expect: VGPU-XEN ORPHAN-DESTROYED
# expect: VGPU-XEN NO-AGENT-REFUSED
# expect: VGPU-XEN GARBAGE-AGENT-REFUSED
# expect: VGPU-XEN GONE-DOMAIN-NOTREADY
# expect: VGPU-XEN POD-STOPPED
# expect: VGPU-XEN POD-REMOVED
# expect: VGPU-XEN NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
ip link set lo up
write_config "  backend: none" "" 128 "$(xen_handler xen-noagent vgpu.scenario=hello 128 15
xen_handler xen-garbage vgpu.scenario=garbage 128 120)"
start_daemon
mark DAEMON-UP "pid=$daemon_pid"
cri-client version

# ---- a pod as a domU: memory from its linux resources (64 MiB + 64 MiB guest overhead) ----
t0=$(up)
out=$(cri-client run-pod web xen 67108864) || fail "RunPodSandbox: $out"
id=$(echo "$out" | sed -n 's/^CRI pod //p')
[ -n "$id" ] || fail "no pod id in: $out"
mark POD-READY web "id=$id run_pod_s=$(dt "$t0" "$(up)")"
grep -E "sandbox $(echo "$id" | cut -c1-12).*(created in|ready)" $dlog
dom=vgpu-$(echo "$id" | cut -c1-12)-web
st=$(cri-client status "$id") || fail "status: $st"
echo "$st"
echo "$st" | grep -q "CRI status $id READY handler=xen" || fail "pod not READY"
echo "$st" | grep -q "\"domain\":\"$dom\"" || fail "status does not name domain $dom"
mark POD-STATUS-READY
xl list | grep "^$dom " || fail "xl list has no $dom"
mem=$(xl list | awk -v d="$dom" '$1 == d {print $3}')
[ "$mem" -ge 120 ] && [ "$mem" -le 136 ] || fail "domain memory ${mem} MiB, want 128 (64 MiB limit + 64 MiB overhead)"
cri-client list | grep -q "CRI item $id READY xen-test/web handler=xen" || fail "list"
grep -q "vgpu-agent: .*starting" /var/lib/vgpu-cri/sandboxes/$id/console.log || fail "pod console log"
mark POD-CONSOLE-LOG

# ---- restart: the pod is reattached by name; a pod-named domain nobody owns is destroyed ----
xen-domctl create vgpu-0123456789ab-orphan --kernel /boot/guest-vmlinux.gz --initrd /boot/guest.cpio.gz \
	--memory 96 --cmdline "console=hvc0 quiet" >/dev/null || fail "create orphan"
stop_daemon
xl list | grep -q "^$dom " || fail "the pod's domain did not outlive the daemon"
start_daemon
mark DAEMON-RESTARTED
grep "reattached to domain $dom" $dlog || fail "no reattach line"
cri-client status "$id" | grep -q "CRI status $id READY" || fail "pod not READY after restart"
mark POD-REATTACHED
grep "vgpu-0123456789ab-orphan" $dlog
xen-domctl find vgpu-0123456789ab-orphan && fail "orphan domain still there"
mark ORPHAN-DESTROYED

# ---- a guest whose agent never answers: RunPodSandbox fails in time, the domain is gone ----
t1=$(up)
out=$(cri-client run-pod quiet xen-noagent)
rc=$?
echo "$out"
[ $rc = 14 ] || fail "RunPodSandbox without an agent: rc=$rc, want 14 (DEADLINE_EXCEEDED)"
echo "$out" | grep -q "no HELLO within" || fail "no HELLO message"
xl list | grep -q "vgpu-.*-quiet" && fail "domain of the failed pod left"
cri-client list | grep -q "quiet" && fail "failed pod listed"
mark NO-AGENT-REFUSED "after_s=$(dt "$t1" "$(up)")"

# ---- a guest that writes garbage where HELLO belongs: refused at once (not after the 120 s
# timeout), its domain gone, the daemon unharmed ----
t1=$(up)
out=$(cri-client run-pod junk xen-garbage)
rc=$?
echo "$out"
[ $rc = 23 ] || fail "RunPodSandbox with a garbage agent: rc=$rc, want 23 (INTERNAL)"
echo "$out" | grep -q "garbage instead of HELLO" || fail "no garbage message"
xl list | grep -q "vgpu-.*-junk" && fail "domain of the garbage pod left"
kill -0 $daemon_pid || fail "daemon died"
cri-client status "$id" | grep -q "CRI status $id READY" || fail "pod web disturbed"
mark GARBAGE-AGENT-REFUSED "after_s=$(dt "$t1" "$(up)")"

# ---- a pod whose domain goes away behind the daemon's back: NOTREADY in list and status; stop
# and remove still succeed ----
out=$(cri-client run-pod web2 xen) || fail "RunPodSandbox web2: $out"
id2=$(echo "$out" | sed -n 's/^CRI pod //p')
dom2=vgpu-$(echo "$id2" | cut -c1-12)-web2
xen-domctl destroy "$dom2" || fail "destroy $dom2 behind the daemon's back"
cri-client list | grep -q "CRI item $id2 NOTREADY" || { cri-client list; fail "web2 not NOTREADY in list"; }
cri-client status "$id2" | grep -q "CRI status $id2 NOTREADY" || fail "web2 not NOTREADY in status"
cri-client stop "$id2" && cri-client remove "$id2" || fail "stop/remove of web2"
mark GONE-DOMAIN-NOTREADY

# ---- stop and remove ----
t2=$(up)
cri-client stop "$id" || fail "stop"
cri-client status "$id" | grep -q "CRI status $id NOTREADY" || fail "not NOTREADY after stop"
xl list | grep -q "^$dom " && fail "domain $dom still there after stop"
mark POD-STOPPED "stop_s=$(dt "$t2" "$(up)")"
cri-client remove "$id" || fail "remove"
cri-client list | grep -q "CRI list n=0" || fail "pods left in CRI list"
mark POD-REMOVED
xen-domctl list | grep -q 'XENCTL domains=1$' || { xen-domctl list; fail "domains left (libxl)"; }
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "domains left (xl list)"
xenstore-list /local/domain | grep -qv '^0$' && fail "xenstore /local/domain has more than dom0"
[ -z "$(ls /var/lib/vgpu-cri/sandboxes)" ] || fail "state left: $(ls /var/lib/vgpu-cri/sandboxes)"
mark NOTHING-LEFT
stop_daemon
grep -E " (warn|error) " $dlog | head -n 20
exit 0
