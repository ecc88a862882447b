#!/bin/bash
# rt/probe-watch.sh (device machine): cuBLAS's default-workspace path, call by call. cublas_gemm
# (cuBLAS's default workspace) through the pass-through with the private slots it uses watched
# (VGPU_PT_WATCH: arguments, results, memory at argument addresses before/after, cuMemAlloc/Free in
# the same sequence), and dark_probe (slot 51's object vs the public memory pools). Logs in $OUT.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
R=/tmp/rtw
mkdir -p "$OUT" "$R"
export PATH=$PATH:/usr/local/cuda/bin
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
sh test/gpu/passthru/build.sh "$R/pt" "$real" > "$OUT/watch-build.log" 2>&1
nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm" test/gpu/rt/cublas_gemm.cu -lcublas >> "$OUT/watch-build.log" 2>&1
gcc -O2 -o "$R/dp" test/gpu/passthru/dark_probe.c -ldl >> "$OUT/watch-build.log" 2>&1
W=${WATCH:-21318c60:51,21318c60:39,21318c60:4,1734dc26:4,1734dc26:13}
env LD_LIBRARY_PATH=$R/pt VGPU_REAL_LIBCUDA=$real VGPU_PT_INPLACE=1 VGPU_PT_SKIP=d4082055 \
    VGPU_PT_WATCH=$W VGPU_PT_LOG=$OUT/watch-report.txt timeout 120 "$R/cublas_gemm" > "$OUT/watch-cublas.log" 2>&1
echo "cublas_gemm exit $?" >> "$OUT/watch-cublas.log"
timeout 60 "$R/dp" "$real" > "$OUT/watch-dark-probe.txt" 2>&1
echo "dark_probe exit $?" >> "$OUT/watch-dark-probe.txt"
grep -c PTW "$OUT/watch-cublas.log"
grep PTW "$OUT/watch-cublas.log" | head -150
grep -A1 "slot 51" "$OUT/watch-dark-probe.txt"
