#!/bin/sh
# Scenario "devices": a PV domU made by our libxl code with a read-only disk (blkback on a loop
# device holding an image) and a vif on a bridge: the guest reads the image, cannot write it, and
# pings dom0 through netback; destroy removes the vif, the backends and the xenstore paths.
# expect: VGPU-XEN DOMU-CREATED pod-dev
# expect: VGPU-XEN DISK-READ-OK
# expect: VGPU-XEN DISK-READONLY-OK
# expect: VGPU-XEN VIF-PING-OK
# expect: VGPU-XEN DOMU-DESTROYED pod-dev
# expect: VGPU-XEN NOTHING-LEFT
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "VGPU-XEN $* t=$(up)"; }
fail() {
	echo "VGPU-XEN-FAIL $*"
	xl list
	echo "--- xen-hotplug.log"; cat /var/log/xen/xen-hotplug.log 2>/dev/null | tail -n 20
	for f in /var/log/xen/console/guest-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
	exit 1
}
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
wait_console() {
	n=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		n=$((n + 1))
		[ $n -gt $(($3 * 10)) ] && return 1
		sleep 0.1
	done
}
for m in loop xen-blkback xen-netback llc stp bridge; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
ip link add xenbr0 type bridge && ip addr add 10.99.0.1/24 dev xenbr0 && ip link set xenbr0 up || fail "bridge"
dd if=/dev/zero of=/tmp/rootfs.img bs=1M count=8 2>/dev/null
echo "IMAGE-MARKER-FROM-DOM0" | dd of=/tmp/rootfs.img conv=notrunc 2>/dev/null
losetup /dev/loop0 /tmp/rootfs.img || fail "losetup"

t0=$(up)
xen-domctl create pod-dev --kernel /boot/guest-vmlinux.gz --initrd /boot/guest.cpio.gz --memory 192 \
	--cmdline "console=hvc0 rdinit=/init quiet vgpu.scenario=devices" \
	--disk /dev/loop0:xvda:ro --vif xenbr0:00:16:3e:00:00:42 || fail "create pod-dev"
mark DOMU-CREATED pod-dev "create_s=$(dt "$t0" "$(up)")"
domid=$(xen-domctl find pod-dev | sed -n 's/.*domid=\([0-9]*\).*/\1/p')
L=/var/log/xen/console/guest-pod-dev.log
wait_console $L GUEST-DONE 120 || fail "guest did not finish"
grep GUEST $L
echo "bridge ports: $(ls /sys/class/net/xenbr0/brif)"
grep -q 'GUEST-DISK IMAGE-MARKER-FROM-DOM0' $L || fail "guest did not read the image"
mark DISK-READ-OK
grep -q GUEST-DISK-READONLY $L || fail "guest could write a read-only disk"
mark DISK-READONLY-OK
grep -q GUEST-PING-OK $L || fail "no ping through the vif"
mark VIF-PING-OK

t0=$(up)
xen-domctl destroy pod-dev || fail "destroy"
mark DOMU-DESTROYED pod-dev "destroy_s=$(dt "$t0" "$(up)")"
sleep 1
xen-domctl list | grep -q 'XENCTL domains=1$' || fail "domains left"
[ -z "$(ls /sys/class/net/xenbr0/brif)" ] || fail "vif left on the bridge: $(ls /sys/class/net/xenbr0/brif)"
xenstore-ls -f /local/domain/0/backend 2>/dev/null | grep -q "/$domid/" && fail "backend paths of $domid left"
xenstore-ls /local/domain | grep -q "^$domid " && fail "xenstore /local/domain/$domid left"
mark NOTHING-LEFT
exit 0
