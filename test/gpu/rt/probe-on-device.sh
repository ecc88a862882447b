#!/bin/bash
# rt/probe-on-device.sh: one device run for issue 10's export tables. Builds the GPU path
# (build-dev), the runtime-API programs, cuBLAS and the pass-through; then
#  1. integrity_truth: the shim's driver-check value against the real driver's;
#  2. each program and PyTorch through the pass-through with the tables wrapped in place
#     (VGPU_PT_INPLACE=1, d4082055 skipped): export-table slots called, with arguments, and every
#     driver function called, with counts;
#  3. each program and PyTorch through libvgpu.so (VGPU_SHIM_TRACE=1) against broker_host.
# Env: PROBE_PT=0 (no pass-through runs), PROBE_TORCH=0, PROBE_PROGS (runtime programs),
# PROBE_PT_SHIM="cublas_gemm torch" (those through the pass-through in front of libvgpu.so).
# Logs in $OUT. Run from the repository root.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
R=$B/rt
mkdir -p "$OUT" "$R"
S=$OUT/probe-summary.txt
: >"$S"
export PATH=$PATH:/usr/local/cuda/bin
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
echo "real driver: $real; $(nvcc --version | tail -1)" >>"$S"
{ cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$B" -j"$(nproc)"; } >"$OUT/probe-build.log" 2>&1 || { echo "BUILD FAILED" >>"$S"; tail -30 "$OUT/probe-build.log" >>"$S"; }
sh test/gpu/passthru/build.sh "$R/pt" "$real" >>"$S" 2>&1 || echo "passthru build FAILED" >>"$S"
gcc -O2 -Ishim -o "$R/integrity_truth" test/gpu/integrity_truth.c shim/darkhash.c -ldl -lpthread >>"$S" 2>&1
progs=""
pids=""
for p in ${PROBE_PROGS:-rt_vector_add rt_matmul_streams rt_malloc_async rt_graph}; do
    nvcc -O2 -arch=sm_90 -o "$R/${p}_static" test/gpu/rt/$p.cu >>"$OUT/rt-build.log" 2>&1 &
    nvcc -O2 -arch=sm_90 -cudart shared -o "$R/${p}_shared" test/gpu/rt/$p.cu >>"$OUT/rt-build.log" 2>&1 &
    progs="$progs ${p}_static ${p}_shared"
done
nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm" test/gpu/rt/cublas_gemm.cu -lcublas >>"$OUT/rt-build.log" 2>&1 &
progs="$progs cublas_gemm"
wait
echo "programs:$progs" >>"$S"
echo "== integrity_truth" >>"$S"
"$R/integrity_truth" "$real" >>"$S" 2>&1
echo "integrity_truth exit $?" >>"$S"
dir=$(mktemp -d /tmp/vgpu-rt.XXXXXX)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$dir/a.sock" 2>"$OUT/probe-broker.log" &
bpid=$!
for i in $(seq 300); do [ -S "$dir/a.sock" ] && break; sleep 0.1; done
run() { # label logname cmd...
    local label=$1 log=$2; shift 2
    local t0=$(date +%s%N)
    if timeout ${PROBE_TIMEOUT:-120} "$@" >"$OUT/$log" 2>&1; then r=PASS; else r="FAIL($?)"; fi
    printf '%-40s %-10s %6dms\n' "$label" "$r" $(( ($(date +%s%N) - t0) / 1000000 )) >>"$S"
}
ptenv="LD_LIBRARY_PATH=$R/pt VGPU_REAL_LIBCUDA=$real VGPU_PT_INPLACE=1 VGPU_PT_SKIP=d4082055"
for p in $progs; do
    [ -x "$R/$p" ] || { echo "$p: not built" >>"$S"; continue; }
    [ "${PROBE_PT:-1}" = 1 ] && run "passthru-inplace $p" "probe-pt-$p.log" env $ptenv VGPU_PT_LOG="$OUT/probe-pt-$p.txt" "$R/$p"
    run "shim $p" "probe-shim-$p.log" env LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$dir/a.sock" VGPU_SHIM_TRACE=1 "$R/$p"
done
if [ -n "${PROBE_PT_SHIM:-}" ]; then # the pass-through in front of the shim: what it misses
    sh test/gpu/passthru/build.sh "$R/pt-shim" "$B/shim/libvgpu.so" >>"$S" 2>&1
    for p in $PROBE_PT_SHIM; do
        cmd="$R/$p"; [ "$p" = torch ] && cmd="python3 test/gpu/rt/torch_check.py"
        run "passthru-over-shim $p" "probe-pts-$p.log" env LD_LIBRARY_PATH="$R/pt-shim" \
            VGPU_REAL_LIBCUDA="$PWD/$B/shim/libvgpu.so" VGPU_PT_INPLACE=1 VGPU_PT_SKIP=d4082055 \
            VGPU_PT_LOG="$OUT/probe-pts-$p.txt" VGPU_SOCKET="$dir/a.sock" VGPU_SHIM_TRACE=1 $cmd
    done
fi
if [ "${PROBE_TORCH:-1}" = 1 ]; then
    [ "${PROBE_PT:-1}" = 1 ] && run "passthru-inplace torch" "probe-pt-torch.log" env $ptenv VGPU_PT_LOG="$OUT/probe-pt-torch.txt" python3 test/gpu/rt/torch_check.py
    run "shim torch" "probe-shim-torch.log" env LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$dir/a.sock" VGPU_SHIM_TRACE=1 python3 test/gpu/rt/torch_check.py
fi
kill -TERM $bpid; wait $bpid
echo "broker exit $?" >>"$S"
rm -rf "$dir"
cat "$S"
