#!/bin/bash
# rt/run-on-device.sh: issue 10 on the real GPU. Builds the runtime-API programs with nvcc (shared
# and static cudart), cuBLAS, and the pass-through libcuda (test/gpu/passthru); runs each program
# natively, through the pass-through (which records cuGetProcAddress names and export-table
# UUIDs/slots) and through libvgpu.so against broker_host (cuda backend); then PyTorch the same
# three ways. Needs the GPU build in $VGPU_BUILD (run-pods-on-device.sh makes it). Logs in $OUT.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
R=$B/rt
mkdir -p "$OUT" "$R"
S=$OUT/compat-summary.txt
: >"$S"
export PATH=$PATH:/usr/local/cuda/bin
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
echo "real driver: $real; $(nvcc --version | tail -1)" >>"$S"
sh test/gpu/passthru/build.sh "$R/pt" "$real" >>"$S" 2>&1 || echo "passthru build FAILED" >>"$S"
progs=""
for p in rt_vector_add rt_matmul_streams rt_malloc_async rt_graph; do
    nvcc -O2 -arch=sm_90 -o "$R/${p}_static" test/gpu/rt/$p.cu >>"$OUT/rt-build.log" 2>&1 && progs="$progs ${p}_static"
    nvcc -O2 -arch=sm_90 -cudart shared -o "$R/${p}_shared" test/gpu/rt/$p.cu >>"$OUT/rt-build.log" 2>&1 && progs="$progs ${p}_shared"
done
nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm" test/gpu/rt/cublas_gemm.cu -lcublas >>"$OUT/rt-build.log" 2>&1 && progs="$progs cublas_gemm"
# the same program against the cuBLAS that PyTorch ships (its wheel's nvidia/cu13/lib)
tl=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null)
[ -n "$tl" ] && [ -e "$tl/libcublas.so.13" ] &&
    nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm_torchlib" test/gpu/rt/cublas_gemm.cu -L"$tl" -lcublas \
        -Xlinker -rpath="$tl" >>"$OUT/rt-build.log" 2>&1 && progs="$progs cublas_gemm_torchlib"
echo "built:$progs" >>"$S"
dir=$(mktemp -d /tmp/vgpu-rt.XXXXXX)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$dir/a.sock" 2>"$OUT/rt-broker.log" &
bpid=$!
for i in $(seq 300); do [ -S "$dir/a.sock" ] && break; sleep 0.1; done
run() { # label logname cmd...
    local label=$1 log=$2; shift 2
    local t0=$(date +%s%N)
    if timeout 300 "$@" >"$OUT/$log" 2>&1; then r=PASS; else r="FAIL($?)"; fi
    printf '%-40s %-10s %6dms\n' "$label" "$r" $(( ($(date +%s%N) - t0) / 1000000 )) >>"$S"
}
# the pass-through wraps the tables in place (the runtime's driver check covers their addresses)
ptenv="LD_LIBRARY_PATH=$R/pt VGPU_REAL_LIBCUDA=$real VGPU_PT_INPLACE=1 VGPU_PT_SKIP=d4082055"
for p in $progs; do
    run "native $p" "rt-native-$p.log" "$R/$p"
    run "passthru $p" "rt-pt-$p.log" env $ptenv VGPU_PT_LOG="$OUT/pt-$p.txt" "$R/$p"
    run "shim $p" "rt-shim-$p.log" env LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$dir/a.sock" "$R/$p"
done
run "native torch" "torch-native.log" python3 test/gpu/rt/torch_check.py
run "passthru torch" "torch-pt.log" env $ptenv VGPU_PT_LOG="$OUT/pt-torch.txt" python3 test/gpu/rt/torch_check.py
run "shim torch" "torch-shim.log" env LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$dir/a.sock" python3 test/gpu/rt/torch_check.py
kill -TERM $bpid; wait $bpid
echo "broker exit $?" >>"$S"
rm -rf "$dir"
cat "$S"
