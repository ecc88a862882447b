#!/bin/sh
# many-functions.sh BROKER_HOST SHIM_DIR PROGRAM PTX: runs PROGRAM (vector_add) on the soft TEST
# DEVICE with a module of 66 functions: the test kernels plus 60 "// .entry vec_add" lines, which
# the soft device's loader lists as functions too. With 1 KiB messages (VGPU_IDM_MAX_MSG) the
# function list needs several replies, so the shim's MODULE_FUNCS loop runs in CI (on a GPU,
# cuBLAS's modules do it: docs/bench/xen-limits-2026-11-29). Passes when the program passes and
# the shim says it needed extra function-list replies.
set -u
dir=$(mktemp -d /tmp/vgpu-manyf.XXXXXX)
{ cat "$4"; i=0; while [ $i -lt 60 ]; do echo "// .entry vec_add"; i=$((i + 1)); done; } >"$dir/many.ptx"
out=$(VGPU_KERNELS_PTX=$dir/many.ptx VGPU_SHIM_STATS=1 VGPU_IDM_MAX_MSG=1024 \
    "$(dirname "$0")/with-broker.sh" "$1" soft "$2" "$3" 2>&1)
rc=$?
rm -rf "$dir"
echo "$out" | grep -v "^vgpu info"
[ $rc -eq 0 ] || exit 1
echo "$out" | grep -q "extra function-list replies [1-9]" || { echo "many-functions: no paged function list"; exit 1; }
