#!/usr/bin/env bash
# Run the demo pod against a running vgpu-cri (see demo-pod.py): a busybox image from a local
# registry this starts, one pod, one container, its log printed. Usage: demo-pod.sh [SOCKET] [--cleanup]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sock=${1:-/run/vgpu-cri/vgpu-cri.sock}
shift || true
exec /usr/bin/python3 "$top/deploy/demo-pod.py" --socket "$sock" "$@"
