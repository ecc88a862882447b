#!/bin/bash
# two-pods.sh BUILD_DIR BACKEND: the two-GPU-pods test of test/integration/test_gpu_pods.py, done
# with the standalone broker host (for the device machine, where the daemon cannot be built):
# pods A (64 MiB quota) and B (no quota) on their own sockets, each running the driver-API test
# programs through libvgpu.so at the same time. Checks results, the quota (A stops at 64 MiB and
# cuMemGetInfo says 64 MiB; B allocates 256 MiB), the per-pod usage the broker reports at removal
# (launches, bytes, peak, nothing left in use) and that the broker frees everything (exit 0).
set -u
B=$1 backend=$2
dir=$(mktemp -d /tmp/vgpu-2pods.XXXXXX)
fail() { echo "two-pods: FAIL: $*"; cat "$dir/broker.log"; kill $bpid 2>/dev/null; exit 1; }
"$B/test/gpu/broker_host" --backend "$backend" --workers 4 \
    --pod "A=$dir/a.sock,quota=67108864" --pod "B=$dir/b.sock" 2>"$dir/broker.log" &
bpid=$!
for i in $(seq 300); do [ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] && break; sleep 0.1; done
on() { local pod=$1; shift; VGPU_SOCKET=$dir/$pod.sock LD_LIBRARY_PATH=$B/shim "$@"; }

on a "$B/test/gpu/vector_add" >"$dir/va.out" 2>&1 & pa=$!
on b sh -c "$B/test/gpu/vector_add && $B/test/gpu/vector_add" >"$dir/vb.out" 2>&1 & pb=$!
wait $pa || fail "vector_add in pod A: $(cat "$dir/va.out")"
wait $pb || fail "vector_add x2 in pod B: $(cat "$dir/vb.out")"
[ "$(grep -c 'vector_add: OK' "$dir/va.out")" = 1 ] || fail "pod A result"
[ "$(grep -c 'vector_add: OK' "$dir/vb.out")" = 2 ] || fail "pod B results"
grep '^device:' "$dir/va.out" | head -1 | sed 's/^/pod A /'

on a "$B/test/gpu/mem_quota" 256 >"$dir/qa.out" 2>&1 & pa=$!
on b "$B/test/gpu/mem_quota" 256 >"$dir/qb.out" 2>&1 & pb=$!
wait $pa || fail "mem_quota in pod A: $(cat "$dir/qa.out")"
wait $pb || fail "mem_quota in pod B: $(cat "$dir/qb.out")"
grep -q "meminfo free=67108864 total=67108864" "$dir/qa.out" || fail "pod A cuMemGetInfo: $(cat "$dir/qa.out")"
grep -q "allocated_mib=64 result=2" "$dir/qa.out" || fail "pod A quota: $(cat "$dir/qa.out")"
grep -q "allocated_mib=256 result=0" "$dir/qb.out" || fail "pod B: $(cat "$dir/qb.out")"
sed 's/^/pod A: /' "$dir/qa.out" | grep -v '^pod A: device'
sed 's/^/pod B: /' "$dir/qb.out" | grep -v '^pod B: device'

sleep 0.5 # pod processes publish their usage every 100 ms
kill -TERM $bpid; wait $bpid; brc=$?
[ $brc = 0 ] || fail "broker exit $brc"
grep 'broker_host: pod' "$dir/broker.log"
# vector_add: 3 vectors of 3 Mi floats in, 2 (+16 bytes) out, one launch per run; mem_quota adds
# 1 MiB in per allocation (A: 4, B: 16) and launches nothing
V=$((3 * 1048576 * 4))
expect() { grep "broker_host: pod $1:" "$dir/broker.log" | grep -q "$2" || fail "pod $1 usage: want '$2'"; }
expect A "launches 1, htod $((3 * V + 4 * 1048576)) B, dtoh $((2 * V + 16)) B"
expect B "launches 2, htod $((6 * V + 16 * 1048576)) B, dtoh $((4 * V + 32)) B"
expect A "mem peak 67108864 B, in use before removal (snapshot) 0 B"
expect B "mem peak 268435456 B, in use before removal (snapshot) 0 B"
rm -rf "$dir"
echo "two-pods: OK ($backend)"
