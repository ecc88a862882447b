#!/bin/bash
# rt/torch-algos.sh (device machine): which cuBLASLt algorithms PyTorch's big-model step uses,
# natively and through libvgpu.so (CUBLASLT_LOG_LEVEL=5 to a file; counted per algorithm/tile).
# Needs build-dev (torch-timing.sh builds it). Output in $OUT/torch-algos.txt.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
d=$(mktemp -d)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$d/a.sock" 2>/dev/null &
bp=$!
for i in $(seq 100); do [ -S "$d/a.sock" ] && break; sleep 0.1; done
summarize() { grep -o 'algo=\[[^]]*\]' "$1" | sort | uniq -c | sort -rn | head -20; }
for mode in native shim; do
    env=""; [ $mode = shim ] && env="LD_LIBRARY_PATH=$B/shim VGPU_SOCKET=$d/a.sock"
    env $env VGPU_TORCH_MODEL=big CUBLASLT_LOG_LEVEL=5 CUBLASLT_LOG_FILE=/tmp/lt-$mode.log \
        python3 test/gpu/rt/torch_check.py 2>/dev/null | grep '^{' > /tmp/res-$mode.txt
    { echo "== $mode: $(cat /tmp/res-$mode.txt)"; summarize /tmp/lt-$mode.log; } >> "$OUT/torch-algos.txt"
done
kill $bp; wait $bp
cat "$OUT/torch-algos.txt"
