#!/bin/bash
# rt/probe-watch-torch.sh (device machine): PyTorch's calls of the private slots the shim does not
# answer (69a28e9f 19/21/24/25, 1734dc26 4/13), watched through the pass-through
# (VGPU_PT_WATCH: arguments, results, memory at argument addresses, the calling library).
set -u
OUT=${OUT:-/tmp/vgpu-device-out}
R=/tmp/rtw
mkdir -p "$OUT" "$R"
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
sh test/gpu/passthru/build.sh "$R/pt" "$real" > "$OUT/wt-build.log" 2>&1
W=${WATCH:-69a28e9f:19,69a28e9f:21,69a28e9f:24,69a28e9f:25,1734dc26:4,1734dc26:13}
env LD_LIBRARY_PATH=$R/pt VGPU_REAL_LIBCUDA=$real VGPU_PT_INPLACE=1 VGPU_PT_SKIP=d4082055 \
    VGPU_PT_WATCH=$W VGPU_PT_LOG=$OUT/wt-report.txt timeout 300 python3 test/gpu/rt/torch_check.py > "$OUT/wt-torch.log" 2>&1
echo "torch exit $?" >> "$OUT/wt-torch.log"
grep -v "^PTW" "$OUT/wt-torch.log" | tail -15
grep "^PTW" "$OUT/wt-torch.log" | grep -v "cuMem" | head -120
