#!/bin/bash
# run-pods-on-device.sh: issue 6 on the real GPU. Builds the GPU path (VGPU_GPU_ONLY), runs the
# two-pod test with the `cuda` backend (two-pods.sh) and the compute-share measurement
# (compute-share.py: shares 75/25 twice, 50/50, 90/10). Logs in $OUT. Run from the repo root.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
mkdir -p "$OUT"
S=$OUT/pods-summary.txt
export PATH=$PATH:/usr/local/cuda/bin
{ date -u +%FT%TZ; nvidia-smi -L; nvidia-smi --query-gpu=driver_version --format=csv,noheader; } >"$S" 2>&1
if ! { cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$B" -j"$(nproc)"; } >"$OUT/pods-build.log" 2>&1; then
    echo "BUILD FAILED" >>"$S"; tail -40 "$OUT/pods-build.log" >>"$S"; exit 1
fi
cp "$B/test/gpu/kernels2.ptx" "$OUT/kernels2.ptx"
fails=0
echo "\$ test/gpu/two-pods.sh $B cuda" >>"$S"
bash test/gpu/two-pods.sh "$B" cuda >>"$S" 2>&1 || fails=$((fails + 1))
for shares in 75,25 75,25 50,50 90,10; do
    echo "\$ test/gpu/compute-share.py --backend cuda --shares $shares --seconds 10 --cycles 1000000" >>"$S"
    python3 test/gpu/compute-share.py --broker-host "$B/test/gpu/broker_host" --backend cuda \
        --shim-dir "$B/shim" --program "$B/test/gpu/compute_share" --shares "$shares" \
        --seconds 10 --cycles 1000000 --tolerance 0.10 >>"$S" 2>&1 || fails=$((fails + 1))
done
echo "failures: $fails" >>"$S"
cat "$S"
