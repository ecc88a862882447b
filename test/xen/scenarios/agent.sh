#!/bin/sh
# Scenario "agent": a PV domU whose PID 1 is vgpu-agent (cri/agent/, static). The daemon's side
# (agent-check) talks the agent protocol over a vchan: HELLO, PING, EXEC with output and exit code,
# garbage rejected + reconnect, POWEROFF; the domain is then seen shut down and destroyed.
# expect: VGPU-XEN DOMU-CREATED pod-agent
# expect: AGENT-HELLO version=
# expect: AGENT-PING-OK
# expect: AGENT-EXEC-OK
# expect: AGENT-GARBAGE-REJECTED
# expect: AGENT-RECONNECT-OK
# expect: VGPU-XEN AGENT-POWEROFF-SEEN pod-agent
# expect: VGPU-XEN NOTHING-LEFT
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "VGPU-XEN $* t=$(up)"; }
fail() {
	echo "VGPU-XEN-FAIL $*"
	xl list
	for f in /var/log/xen/console/guest-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
	exit 1
}
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
t0=$(up)
xen-domctl create pod-agent --kernel /boot/guest-vmlinux.gz --initrd /boot/guest.cpio.gz --memory 128 \
	--cmdline "console=hvc0 rdinit=/sbin/vgpu-agent quiet" || fail "create pod-agent"
mark DOMU-CREATED pod-agent "create_s=$(dt "$t0" "$(up)")"
domid=$(xen-domctl find pod-agent | sed -n 's/.*domid=\([0-9]*\).*/\1/p')
[ -n "$domid" ] || fail "no domid"
agent-check "$domid" 120 || fail "agent protocol"
mark AGENT-DONE "after_create_s=$(dt "$t0" "$(up)")"
xen-domctl wait-state pod-agent shutdown 60 || fail "agent did not power off"
mark AGENT-POWEROFF-SEEN pod-agent
grep vgpu-agent /var/log/xen/console/guest-pod-agent.log
xen-domctl destroy pod-agent || fail "destroy"
xen-domctl list | grep -q 'XENCTL domains=1$' || fail "domains left"
xenstore-ls /local/domain | grep -q "^$domid " && fail "xenstore /local/domain/$domid left"
mark NOTHING-LEFT
exit 0
