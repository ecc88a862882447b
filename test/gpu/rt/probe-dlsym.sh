#!/bin/bash
# rt/probe-dlsym.sh (device machine): which driver symbols a program looks up with dlsym and
# does not find in libvgpu.so (LD_DEBUG=symbols,bindings). Needs build-dev and build-dev/rt.
# Usage: probe-dlsym.sh PROGRAM... ; output in $OUT/dlsym-*.txt
B=${VGPU_BUILD:-build-dev}
d=$(mktemp -d)
"$B/test/gpu/broker_host" --backend cuda --workers 4 --pod "A=$d/a.sock" 2>/dev/null & bp=$!
for i in $(seq 100); do [ -S "$d/a.sock" ] && break; sleep 0.1; done
for p in "$@"; do
    n=$(basename "${p%% *}")
    LD_DEBUG=symbols,bindings LD_DEBUG_OUTPUT=/tmp/ldd.$n LD_LIBRARY_PATH="$B/shim" VGPU_SOCKET="$d/a.sock" \
        timeout 120 $p >/dev/null 2>&1
    cat /tmp/ldd.$n.* | grep -oE "symbol=cu[A-Za-z0-9_]+" | sed 's/symbol=//' | sort -u > /tmp/looked.$n
    cat /tmp/ldd.$n.* | grep -oE "normal symbol .cu[A-Za-z0-9_]+" | sed 's/normal symbol .//' | sort -u > /tmp/bound.$n
    comm -23 /tmp/looked.$n /tmp/bound.$n > "$OUT/dlsym-$n.txt"
    echo "$n: $(wc -l < /tmp/looked.$n) looked up, $(wc -l < "$OUT/dlsym-$n.txt") not found"
    rm -f /tmp/ldd.$n.*
done
kill $bp; wait
