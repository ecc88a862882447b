#!/bin/bash
# rt/torch-timing.sh [ROUNDS]: PyTorch (torch_check.py: correctness + GPT-style training step)
# natively and through libvgpu.so, alternating, ROUNDS times each (default 3); one JSON line per
# run in $OUT/torch-timing.txt. Builds build-dev if needed. Run from the repository root.
# VGPU_TORCH_MODEL=big (passed on to torch_check.py): the GPU-bound model.
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
B=${VGPU_BUILD:-build-dev}
rounds=${1:-3}
mkdir -p "$OUT"
[ -x "$B/test/gpu/broker_host" ] || { cmake -S . -B "$B" -DVGPU_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$B" -j"$(nproc)"; } >"$OUT/torch-timing-build.log" 2>&1
d=$(mktemp -d)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$d/a.sock" 2>"$OUT/torch-timing-broker.log" &
bp=$!
for i in $(seq 100); do [ -S "$d/a.sock" ] && break; sleep 0.1; done
T=$OUT/torch-timing.txt
: >"$T"
for r in $(seq "$rounds"); do
    echo "native $(python3 test/gpu/rt/torch_check.py 2>/dev/null | grep '^{')" >>"$T"
    echo "shim $(LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$d/a.sock" python3 test/gpu/rt/torch_check.py 2>/dev/null | grep '^{')" >>"$T"
done
kill $bp; wait $bp
cat "$T"
