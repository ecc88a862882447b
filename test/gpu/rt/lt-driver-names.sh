#!/bin/bash
# rt/lt-driver-names.sh (device machine): driver functions named in cuBLAS/cuBLASLt (and
# PyTorch's CUDA libraries) that the real libcuda.so.1 exports and libvgpu.so does not.
# Usage: lt-driver-names.sh SHIM_SO LIB...
shim=$1; shift
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
nm -D --defined-only "$real" | awk '{print $3}' | sed 's/@.*//' | sort -u > /tmp/real.names
nm -D --defined-only "$shim" | awk '{print $3}' | sed 's/@.*//' | sort -u > /tmp/shim.names
for lib in "$@"; do
    echo "== $lib"
    strings -n 6 "$lib" | grep -E '^cu[A-Z][A-Za-z0-9_]+$' | sort -u | comm -12 - /tmp/real.names | comm -23 - /tmp/shim.names | tr '\n' ' '
    echo
done
