#!/bin/bash
# rt/cublas-shim.sh (device machine): cublas_gemm as built (cuBLAS's default workspace) and with
# -DVGPU_CUBLAS_WORKSPACE, natively and through libvgpu.so against broker_host (cuda backend),
# with the shim's trace of export-table slots. Logs in $OUT.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
R=/tmp/rtc
mkdir -p "$OUT" "$R"
export PATH=$PATH:/usr/local/cuda/bin
{ cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release && cmake --build "$B" -j"$(nproc)"; } > "$OUT/cs-build.log" 2>&1 || { echo BUILD FAILED; tail -20 "$OUT/cs-build.log"; }
nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm" test/gpu/rt/cublas_gemm.cu -lcublas >> "$OUT/cs-build.log" 2>&1 &
nvcc -O2 -arch=sm_90 -DVGPU_CUBLAS_WORKSPACE -o "$R/cublas_gemm_ws" test/gpu/rt/cublas_gemm.cu -lcublas >> "$OUT/cs-build.log" 2>&1 &
wait
d=$(mktemp -d)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$d/a.sock" 2> "$OUT/cs-broker.log" & bp=$!
for i in $(seq 300); do [ -S "$d/a.sock" ] && break; sleep 0.1; done
for p in cublas_gemm cublas_gemm_ws; do
    timeout 60 "$R/$p" > "$OUT/cs-native-$p.log" 2>&1; echo "native $p exit $?"
    env LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$d/a.sock" VGPU_SHIM_TRACE=${TRACE:-1} timeout 60 "$R/$p" > "$OUT/cs-shim-$p.log" 2>&1
    echo "shim $p exit $?"
    grep -v "c693336e" "$OUT/cs-shim-$p.log" | tail -${TAIL:-25}
done
kill $bp; wait
