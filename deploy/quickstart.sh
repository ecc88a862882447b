#!/usr/bin/env bash
# The README's main command: install dependencies, build, and run the vgpu-cri daemon in the
# foreground with the default config, runs a demo pod and prints its log, until Ctrl-C.
# Run as root on Debian 12.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$top/deploy/install-deps.sh"
"$top/deploy/build.sh" "$top/build"
if [ ! -e /etc/vgpu-cri/config.yaml ]; then
	install -d -m 0755 /etc/vgpu-cri
	install -m 0644 "$top/deploy/config.yaml" /etc/vgpu-cri/config.yaml
	# The GPU demo needs the shim from this build; without a GPU it needs the soft test device.
	sed -i "s|^  shim_path: .*|  shim_path: $top/build/shim/libvgpu.so|" /etc/vgpu-cri/config.yaml
	if ! ldconfig -p | grep -q 'libcuda\.so\.1 '; then
		sed -i 's|^  backend: auto$|  backend: soft  # quickstart: no GPU driver here, so the SOFT TEST DEVICE|' \
			/etc/vgpu-cri/config.yaml
		echo "quickstart: no GPU driver found: the broker runs the soft TEST device (a CPU emulation)"
	fi
	echo "quickstart: installed /etc/vgpu-cri/config.yaml"
fi
sock=$(sed -n 's/^socket:[[:space:]]*//p' /etc/vgpu-cri/config.yaml)
sock=${sock:-/run/vgpu-cri/vgpu-cri.sock}
"$top/build/cri/vgpu-cri" --config /etc/vgpu-cri/config.yaml &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
# Show that a CRI client gets answers (the same calls crictl version / crictl info make), then
# run the demo pod: a busybox image from a local registry, one pod, its log printed.
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
/usr/bin/python3 "$top/deploy/cri-probe.py" --socket "$sock" || true
"$top/deploy/demo-pod.sh" "$sock" || echo "quickstart: the demo pod failed (see above)"
/usr/bin/python3 "$top/deploy/demo-gpu-pod.py" --socket "$sock" || echo "quickstart: the GPU demo failed (see above)"
echo "quickstart: vgpu-cri is serving unix://$sock (pid $pid); Ctrl-C stops it"
wait $pid
