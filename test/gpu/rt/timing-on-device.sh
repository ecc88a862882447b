#!/bin/bash
# rt/timing-on-device.sh: issue 10's second device run: export_test on the GPU, cublas_gemm with
# cuBLAS's default workspace natively and through the shim, PyTorch step time native vs shim
# (small and big model, alternating) and the shim's round trips per operation
# (VGPU_SHIM_STATS=1). Everything in $OUT/timing.tgz plus a summary on stdout.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
W=/tmp/timing-out
mkdir -p "$W"
export PATH=$PATH:/usr/local/cuda/bin
{ cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release && cmake --build "$B" -j"$(nproc)"; } > "$W/build.log" 2>&1 || { echo BUILD FAILED; tail -20 "$W/build.log"; }
{
    echo "\$ test/gpu/with-broker.sh $B/test/gpu/broker_host cuda $B/shim $B/test/gpu/export_test"
    bash test/gpu/with-broker.sh "$B/test/gpu/broker_host" cuda "$B/shim" "$B/test/gpu/export_test" 2>&1 | grep -v "^vgpu info"
    echo "exit ${PIPESTATUS[0]}"
} > "$W/export-summary.txt" 2>&1
OUT=$W TAIL=4 bash test/gpu/rt/cublas-shim.sh > "$W/cublas-shim.txt" 2>&1
OUT=$W bash test/gpu/rt/torch-timing.sh 3 > /dev/null 2>&1; mv "$W/torch-timing.txt" "$W/torch-timing-small.txt"
OUT=$W VGPU_TORCH_MODEL=big bash test/gpu/rt/torch-timing.sh 2 > /dev/null 2>&1; mv "$W/torch-timing.txt" "$W/torch-timing-big.txt"
d=$(mktemp -d)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$d/a.sock" 2>/dev/null & bp=$!
for i in $(seq 100); do [ -S "$d/a.sock" ] && break; sleep 0.1; done
LD_LIBRARY_PATH=$B/shim VGPU_SOCKET=$d/a.sock VGPU_SHIM_STATS=1 python3 test/gpu/rt/torch_check.py > "$W/torch-stats.txt" 2>&1
kill $bp; wait $bp
tar czf "$OUT/timing.tgz" -C "$W" .
cat "$W/export-summary.txt"; grep -v "^vgpu" "$W/cublas-shim.txt"
cat "$W/torch-timing-small.txt" "$W/torch-timing-big.txt"; grep "stats" "$W/torch-stats.txt"
