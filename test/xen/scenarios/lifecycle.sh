#!/bin/sh
# Scenario "lifecycle": a PV domU made by our libxl code (xen-domctl links cri/xen_*.c), its console
# seen, vchan both ways (grant sharing + event channels), destroy leaving nothing, and a guest that
# powers itself off seen as shut down and then destroyed. run.sh requires every `expect:` marker.
# expect: VGPU-XEN DAEMON-RUNS
# expect: VGPU-XEN DOMU-CREATED pod-a
# expect: VGPU-XEN DOMU-CONSOLE pod-a
# expect: VGPU-XEN VCHAN-GUEST-TO-DOM0-OK
# expect: VGPU-XEN VCHAN-DOM0-TO-GUEST-OK
# expect: VGPU-XEN DOMU-DESTROYED pod-a
# expect: VGPU-XEN NOTHING-LEFT
# expect: VGPU-XEN DOMU-SHUTDOWN-SEEN pod-b
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "VGPU-XEN $* t=$(up)"; }
fail() {
	echo "VGPU-XEN-FAIL $*"
	xl list
	for f in /var/log/xen/console/guest-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
	exit 1
}
# elapsed seconds between two uptimes
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
# wait_console <logfile> <pattern> <seconds>
wait_console() {
	n=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		n=$((n + 1))
		[ $n -gt $(($3 * 10)) ] && return 1
		sleep 0.1
	done
}
KERNEL=/boot/guest-vmlinux.gz
INITRD=/boot/guest.cpio.gz

vgpu-cri --version || fail "vgpu-cri does not run in dom0"
mark DAEMON-RUNS

xen-domctl list || fail "libxl list"
xen-domctl find pod-a; [ $? = 3 ] || fail "pod-a exists before create"

# ---- pod-a: create, console, vchan both ways, destroy ----
t0=$(up)
xen-domctl create pod-a --kernel $KERNEL --initrd $INITRD --memory 256 --vcpus 1 \
	--cmdline "console=hvc0 rdinit=/init quiet vgpu.scenario=vchan" \
	--console-log /var/log/vgpu/pod-a.console || fail "create pod-a"
t1=$(up)
mark DOMU-CREATED pod-a "create_s=$(dt "$t0" "$t1")"
out=$(xen-domctl find pod-a) || fail "find pod-a after create"
echo "$out"
domid=$(echo "$out" | sed -n 's/.*domid=\([0-9]*\).*/\1/p')
[ -n "$domid" ] || fail "no domid for pod-a"
[ -L /var/log/vgpu/pod-a.console ] || fail "no console log link"
ls -l /var/log/vgpu/pod-a.console
wait_console /var/log/vgpu/pod-a.console GUEST-HELLO 90 || fail "no GUEST-HELLO on pod-a's console"
t2=$(up)
mark DOMU-CONSOLE pod-a "first_guest_line_after_create_s=$(dt "$t0" "$t2")"
grep GUEST-HELLO /var/log/vgpu/pod-a.console

# guest grants + serves, dom0 maps
vchan-check client "$domid" /local/domain/$domid/data/vchan-g2d 16777216 60 || fail "vchan guest->dom0"
mark VCHAN-GUEST-TO-DOM0-OK
# dom0 grants + serves, the guest maps
vchan-check server "$domid" /local/domain/0/data/vchan-d2g 16777216 || fail "vchan dom0->guest"
# measurement, not a pass condition: guest->dom0 again with spin-then-wait on both sides
if vchan-check client "$domid" /local/domain/$domid/data/vchan-spin 16777216 60 spin; then
	mark VCHAN-SPIN-MEASURED
else
	echo "VGPU-XEN VCHAN-SPIN-MEASUREMENT-FAILED (not a test failure)"
fi
wait_console /var/log/vgpu/pod-a.console GUEST-DONE 60 || fail "guest did not finish"
grep -E 'VCHAN|GUEST-' /var/log/vgpu/pod-a.console | sed 's/^/pod-a console: /'
grep -q GUEST-VCHAN-G2D-OK /var/log/vgpu/pod-a.console || fail "guest side of guest->dom0 vchan"
grep -q GUEST-VCHAN-D2G-OK /var/log/vgpu/pod-a.console || fail "guest side of dom0->guest vchan"
mark VCHAN-DOM0-TO-GUEST-OK
echo "backends while pod-a runs:"; xenstore-ls -f /local/domain/0/backend 2>/dev/null | grep -E "/$domid/" | head -5

t3=$(up)
xen-domctl destroy pod-a || fail "destroy pod-a"
mark DOMU-DESTROYED pod-a "destroy_s=$(dt "$t3" "$(up)")"

# nothing left: libxl (our code) and xl agree, no xenstore paths of the domain, no backends
xen-domctl find pod-a; [ $? = 3 ] || fail "pod-a still listed by libxl"
xen-domctl list | tee /tmp/list.txt
grep -q 'XENCTL domains=1$' /tmp/list.txt || fail "domains left after destroy"
xl list
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "xl list shows more than Domain-0"
xenstore-ls /local/domain | grep -q "^$domid " && fail "xenstore /local/domain/$domid left"
xenstore-ls -f /local/domain/0/backend 2>/dev/null | grep -q "/$domid/" && fail "backend paths of $domid left"
xenstore-ls -f /libxl 2>/dev/null | grep -q "^/libxl/$domid" && fail "/libxl/$domid left"
mark NOTHING-LEFT

# ---- pod-b: the guest powers itself off; we see the shutdown, then destroy ----
t0=$(up)
xen-domctl create pod-b --kernel $KERNEL --initrd $INITRD --memory 128 --vcpus 1 \
	--cmdline "console=hvc0 rdinit=/init quiet vgpu.scenario=poweroff" || fail "create pod-b"
xen-domctl wait-state pod-b shutdown 90 || fail "pod-b never shut down"
mark DOMU-SHUTDOWN-SEEN pod-b "after_create_s=$(dt "$t0" "$(up)")"
xen-domctl destroy pod-b || fail "destroy pod-b"
xen-domctl wait-state pod-b gone 10 || fail "pod-b still there"
grep GUEST /var/log/xen/console/guest-pod-b.log
exit 0
