#!/bin/bash
# run-on-device.sh [quick|full]: build the GPU path with CUDA present (VGPU_GPU_ONLY), run the
# test programs natively and through libvgpu.so against a broker on the real GPU (`cuda`
# backend), the GPU-path security tests, and the benchmark (native, then shim, same script).
# Logs go to $OUT (default /tmp/vgpu-device-out). Run from the repository root.
set -u
mode=${1:-full}
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
mkdir -p "$OUT"
S=$OUT/summary.txt
: >"$S"
note() { echo "$*" | tee -a "$S"; }
export PATH=$PATH:/usr/local/cuda/bin

note "== $(date -u +%FT%TZ) run-on-device.sh $mode"
nvidia-smi -L 2>&1 | tee -a "$S"
nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | sed 's/^/driver /' | tee -a "$S"
nvcc --version 2>&1 | tail -2 | tee -a "$S"
nproc | sed 's/^/cpus /' | tee -a "$S"

if ! { cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$B" -j"$(nproc)"; } >"$OUT/build.log" 2>&1; then
    note "BUILD FAILED"; tail -60 "$OUT/build.log"; exit 1
fi
note "build ok"
rm -f "$OUT/build.log"

tests="vector_add matmul streams_events many_params two_threads"
fails=0
run() { # name cmd...
    local name=$1; shift
    local t0=$(date +%s%N)
    if timeout 300 "$@" >>"$OUT/tests.log" 2>&1; then r=PASS; else r="FAIL($?)"; fails=$((fails+1)); fi
    note "$(printf '%-40s %s %dms' "$name" "$r" $(( ($(date +%s%N) - t0) / 1000000 )))"
}

echo "--- idm unit" >>"$OUT/tests.log"; run "idm unit tests" "$B/test/gpu/idm_test"
note "== native (real libcuda.so.1)"
for t in $tests; do
    echo "--- native $t" >>"$OUT/tests.log"; run "native $t" "$B/test/gpu/$t"
done

dir=$(mktemp -d /tmp/vgpu-dev.XXXXXX)
"$B/test/gpu/broker_host" --backend cuda --workers "${VGPU_WORKERS:-8}" \
    --pod "A=$dir/a.sock" --pod "B=$dir/b.sock,quota=8589934592" 2>"$OUT/broker.log" &
bpid=$!
for i in $(seq 200); do [ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] && break; sleep 0.1; done
shim=(env VGPU_SOCKET="$dir/a.sock" VGPU_SOCKET_A="$dir/a.sock" VGPU_SOCKET_B="$dir/b.sock"
      LD_LIBRARY_PATH="$PWD/$B/shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

note "== through libvgpu.so -> broker (cuda backend)"
for t in $tests fault_isolation; do
    echo "--- shim $t" >>"$OUT/tests.log"; run "shim $t" "${shim[@]}" "$B/test/gpu/$t"
done

if [ -x "$B/test/security/gpu_attack_test" ]; then
    note "== security tests (broker inside the test, cuda backend: a process per pod)"
    echo "--- security" >>"$OUT/tests.log"
    run "security gpu_attack_test (cuda)" env VGPU_TEST_BACKEND=cuda "$B/test/security/gpu_attack_test"
fi

note "== benchmark"
bq=; [ "$mode" = quick ] && bq=--quick
echo "\$ $B/test/gpu/bench $bq   (native)" >"$OUT/bench-native.txt"
timeout 300 "$B/test/gpu/bench" $bq >>"$OUT/bench-native.txt" 2>&1
timeout 120 "$B/test/gpu/bench" $bq --clients 8 >>"$OUT/bench-native.txt" 2>&1
echo "\$ LD_LIBRARY_PATH=$B/shim VGPU_SOCKET=... $B/test/gpu/bench $bq   (shim)" >"$OUT/bench-shim.txt"
"${shim[@]}" timeout 300 "$B/test/gpu/bench" $bq >>"$OUT/bench-shim.txt" 2>&1
"${shim[@]}" timeout 120 "$B/test/gpu/bench" $bq --clients 8 >>"$OUT/bench-shim.txt" 2>&1
python3 test/gpu/bench-compare.py "$OUT/bench-native.txt" "$OUT/bench-shim.txt" | tee "$OUT/bench-table.md" | tee -a "$S"

kill -TERM $bpid; wait $bpid; brc=$?
note "broker exit $brc"
rm -rf "$dir"
note "failures: $fails"
[ $fails -eq 0 ] && [ $brc -eq 0 ]
