#!/bin/bash
# find-checked-tables.sh PROGRAM: which export tables the CUDA runtime refuses to see wrapped.
# Runs PROGRAM through the pass-through libcuda with every table wrapped, with none, and with
# each table left unwrapped in turn, and each wrapped alone; prints PASS/FAIL per variant. Needs $PT (the directory with
# the pass-through libcuda.so.1) and $REAL (the real driver).
set -u
prog=$1
tables="f8cff951 6bd5fb6c a094798c 42d85a81 c693336e 263e8860 d4082055"
for skip in none all $tables $(for t in $tables; do echo "allbut:$t"; done); do
    if env LD_LIBRARY_PATH="$PT" VGPU_REAL_LIBCUDA="$REAL" VGPU_PT_SKIP="$skip" VGPU_PT_LOG=/dev/null \
        timeout 60 "$prog" >/tmp/fct.out 2>&1; then r=PASS; else r="FAIL: $(tail -1 /tmp/fct.out)"; fi
    echo "unwrapped=$skip $r"
done
