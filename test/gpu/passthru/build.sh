#!/bin/sh
# build.sh OUTDIR [REAL_LIBCUDA]: builds the pass-through libcuda.so.1 into OUTDIR (device machine).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1 real=${2:-/usr/lib/x86_64-linux-gnu/libcuda.so.1}
mkdir -p "$out"
sh "$here/gen-stubs.sh" "$real" "$out/stubs.S"
gcc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" \
    "$here/passthru.c" "$here/tramp.S" "$out/stubs.S" -ldl -lpthread
