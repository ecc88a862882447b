# daemon-lib.sh: what the scenarios that run our daemon in dom0 share (sourced, not a scenario):
# markers, timing, failing with the logs that explain it, starting and stopping vgpu-cri.
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "VGPU-XEN $* t=$(up)"; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
dlog=/var/log/vgpu/daemon.log
fail() {
	echo "VGPU-XEN-FAIL $*"
	xl list
	echo "--- daemon log"; tail -n 60 $dlog
	echo "--- xen-hotplug.log"; tail -n 20 /var/log/xen/xen-hotplug.log 2>/dev/null
	for f in /var/log/xen/console/guest-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }; done
	exit 1
}
start_daemon() {
	vgpu-cri --config /etc/vgpu-cri/config.yaml >>$dlog 2>&1 &
	daemon_pid=$!
	i=0
	while ! cri-client -t 5 version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt 120 ] && fail "daemon did not answer Version"
		kill -0 $daemon_pid 2>/dev/null || fail "daemon exited"
		sleep 0.5
	done
}
stop_daemon() {
	kill -TERM $daemon_pid
	wait $daemon_pid || fail "daemon exit status $?"
}
# dom0 for scenarios with containers in xen pods and no GPU: loop + blkback (image disks), loopback,
# the daemon's config (runc and xen handlers, 256 MiB guests).
setup_xen_containers() {
	for m in loop xen-blkback; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
	ip link set lo up
	mkdir -p /etc/vgpu-cri /var/log/pods /var/log/vgpu
	cat > /etc/vgpu-cri/config.yaml <<'YAML'
log_level: info
gpu:
  backend: none
runtime_handlers:
  runc:
    type: runc
  xen:
    type: xen
    guest_kernel: /boot/guest-vmlinux.gz
    guest_initrd: /boot/guest.cpio.gz
    guest_cmdline: "console=hvc0 rdinit=/sbin/vgpu-agent quiet"
    guest_memory_mb: 256
    agent_timeout_s: 240
YAML
}
