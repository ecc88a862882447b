#!/bin/bash
# rt/final-on-device.sh: issue 10's device run, in one call. Builds build-dev, then: the export
# tables test through the shim on the real GPU (export_test, cuda backend), the driver-check
# truth (integrity_truth), the runtime-API / cuBLAS / PyTorch programs natively, through the
# pass-through and through the shim (rt/run-on-device.sh), and the Driver API tests and
# benchmark as a regression check (run-on-device.sh quick). Logs in $OUT.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
mkdir -p "$OUT"
export PATH=$PATH:/usr/local/cuda/bin
{ cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$B" -j"$(nproc)"; } >"$OUT/final-build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/final-build.log"; exit 1; }
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
{
    echo "\$ test/gpu/with-broker.sh $B/test/gpu/broker_host cuda $B/shim $B/test/gpu/export_test"
    bash test/gpu/with-broker.sh "$B/test/gpu/broker_host" cuda "$B/shim" "$B/test/gpu/export_test" 2>&1 | grep -v "^vgpu info"
    echo "exit ${PIPESTATUS[0]}"
    echo "\$ integrity_truth $real"
    gcc -O2 -Ishim -o "$OUT/integrity_truth" test/gpu/integrity_truth.c shim/darkhash.c -ldl -lpthread &&
        "$OUT/integrity_truth" "$real"
    echo "exit $?"
    rm -f "$OUT/integrity_truth"
} >"$OUT/export-summary.txt" 2>&1
OUT=$OUT bash test/gpu/rt/run-on-device.sh >/dev/null 2>&1
OUT=$OUT bash test/gpu/run-on-device.sh quick >"$OUT/regression.txt" 2>&1
# every "not supported" line the shim logged, by program (the log of unsupported calls)
grep -H "is not supported" "$OUT"/*shim*.log 2>/dev/null | sed 's/^.*\/\([^/]*\)\.log:/\1: /' | sort | uniq -c >"$OUT/unsupported.txt"
cat "$OUT/export-summary.txt" "$OUT/compat-summary.txt" "$OUT/unsupported.txt"
tail -30 "$OUT/regression.txt"
# the device tool brings back few files: everything in one archive, the summaries beside it
tar czf /tmp/final-out.tgz -C "$OUT" . && mkdir -p /tmp/final-keep &&
    cp "$OUT/export-summary.txt" "$OUT/compat-summary.txt" "$OUT/unsupported.txt" /tmp/final-keep/ &&
    rm -rf "${OUT:?}"/* && mv /tmp/final-out.tgz /tmp/final-keep/* "$OUT/"
