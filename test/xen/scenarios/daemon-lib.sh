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
# A xen runtime handler: NAME, kernel command line words, guest memory (MiB), agent timeout (s).
xen_handler() {
	cat <<YAML
  $1:
    type: xen
    guest_kernel: /boot/guest-vmlinux.gz
    guest_initrd: /boot/guest.cpio.gz
    guest_cmdline: "console=hvc0 $2 quiet"
    guest_memory_mb: $3
    agent_timeout_s: $4
YAML
}
# The daemon's config: the gpu section's lines ($1), other top-level sections ($2, may be empty),
# the `xen` handler's guest memory in MiB ($3), more handlers ($4, xen_handler's output or empty);
# handlers runc and xen always.
write_config() {
	mkdir -p /etc/vgpu-cri /var/log/pods /var/log/vgpu
	{
		printf 'log_level: info\ngpu:\n%s\n' "$1"
		if [ -n "$2" ]; then printf '%s\n' "$2"; fi
		printf 'runtime_handlers:\n  runc:\n    type: runc\n'
		xen_handler xen rdinit=/sbin/vgpu-agent "$3" 240
		if [ -n "$4" ]; then printf '%s\n' "$4"; fi
	} >/etc/vgpu-cri/config.yaml
}
# dom0 for scenarios with containers in xen pods and no GPU: loop + blkback (image disks), loopback,
# the daemon's config (runc and xen handlers, 256 MiB guests).
setup_xen_containers() {
	for m in loop xen-blkback; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
	ip link set lo up
	write_config "  backend: none" "" 256 ""
}
