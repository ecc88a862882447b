#!/bin/bash
# rt/xen-limits-on-device.sh: the Xen transport's limits on the real GPU, without Xen (the device
# machine has none). broker_host (cuda backend) serves local channels with 256 KiB messages (the
# Xen transport's IDM_XEN_MAX_MSG; TEST KNOB VGPU_IDM_MAX_MSG) and, in a second run, 64 KiB; the
# shim keeps page-locked host memory plain (TEST KNOB VGPU_SHIM_PLAIN_HOST=1, as on Xen). So every
# module image over a message is staged in chunks (MODULE_STAGE), long function lists come in
# several replies (MODULE_FUNCS) and copies go through the rings: what a xen GPU pod's programs
# do. Runs the runtime-API programs, cublas_gemm (cuBLAS's default workspace, its big images) and
# torch_check.py natively and through the shim, then the Driver API regression (run-on-device.sh
# quick; XL_REGRESSION=0 leaves it out). Logs in $OUT; summary xen-limits-summary.txt.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
R=$B/rt
mkdir -p "$OUT" "$R"
S=$OUT/xen-limits-summary.txt
: >"$S"
export PATH=$PATH:/usr/local/cuda/bin
{ cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$B" -j"$(nproc)"; } >"$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
echo "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); $(nvcc --version | tail -1)" >>"$S"
progs=""
for p in rt_vector_add rt_matmul_streams rt_malloc_async rt_graph; do
    nvcc -O2 -arch=sm_90 -o "$R/${p}_static" test/gpu/rt/$p.cu >>"$OUT/rt-build.log" 2>&1 && progs="$progs ${p}_static"
done
nvcc -O2 -arch=sm_90 -o "$R/cublas_gemm" test/gpu/rt/cublas_gemm.cu -lcublas >>"$OUT/rt-build.log" 2>&1 && progs="$progs cublas_gemm"
echo "built:$progs" >>"$S"
run() { # label logname cmd...
    local label=$1 log=$2; shift 2
    local t0=$(date +%s%N)
    if timeout 300 "$@" >"$OUT/$log" 2>&1; then r=PASS; else r="FAIL($?)"; fi
    printf '%-44s %-10s %6dms\n' "$label" "$r" $(( ($(date +%s%N) - t0) / 1000000 )) >>"$S"
    grep -h "libvgpu stats: module" "$OUT/$log" | sed 's/^/    /' >>"$S"
}
for p in $progs; do run "native $p" "native-$p.log" "$R/$p"; done
run "native torch" "native-torch.log" python3 test/gpu/rt/torch_check.py
for mm in 262144 65536; do
    dir=$(mktemp -d /tmp/vgpu-xl.XXXXXX)
    VGPU_IDM_MAX_MSG=$mm "$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$dir/a.sock" \
        2>"$OUT/broker-$mm.log" &
    bpid=$!
    for i in $(seq 300); do [ -S "$dir/a.sock" ] && break; sleep 0.1; done
    env="LD_LIBRARY_PATH=$B/shim VGPU_SOCKET=$dir/a.sock VGPU_SHIM_PLAIN_HOST=1 VGPU_SHIM_STATS=1"
    for p in $progs; do run "shim max_msg=$mm $p" "shim-$mm-$p.log" env $env "$R/$p"; done
    run "shim max_msg=$mm torch" "shim-$mm-torch.log" env $env python3 test/gpu/rt/torch_check.py
    kill -TERM $bpid; wait $bpid
    echo "broker (max_msg=$mm) exit $?" >>"$S"
    rm -rf "$dir"
done
grep -h "is not supported" "$OUT"/shim-*.log 2>/dev/null | sort | uniq -c >>"$S"
[ "${XL_REGRESSION:-1}" = 1 ] && OUT=$OUT bash test/gpu/run-on-device.sh quick >"$OUT/regression.txt" 2>&1
cat "$S"
[ -e "$OUT/regression.txt" ] && tail -25 "$OUT/regression.txt"
tar czf /tmp/xl-out.tgz -C "$OUT" . && cp "$S" /tmp/xl-summary.txt && rm -rf "${OUT:?}"/* &&
    mv /tmp/xl-out.tgz /tmp/xl-summary.txt "$OUT/"
