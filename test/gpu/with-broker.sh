#!/bin/sh
# with-broker.sh BROKER_HOST BACKEND SHIM_DIR PROGRAM [ARGS...]
# Starts a broker serving pods A and B (B with a 1 GiB quota) in a temporary folder, runs the
# program through the shim on pod A, stops the broker; fails if either fails (the broker fails
# when it cannot free everything, and under ASan when it leaks).
set -u
broker=$1 backend=$2 shimdir=$3
shift 3
dir=$(mktemp -d /tmp/vgpu-test.XXXXXX)
"$broker" --backend "$backend" --workers "${VGPU_TEST_WORKERS:-2}" \
    --pod-processes "${VGPU_TEST_POD_PROCESSES:-1}" \
    --pod "A=$dir/a.sock" --pod "B=$dir/b.sock,quota=1073741824" 2>"$dir/broker.log" &
bpid=$!
i=0
while [ ! -S "$dir/a.sock" ] || [ ! -S "$dir/b.sock" ]; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 $bpid 2>/dev/null; then
        echo "with-broker: broker did not start" >&2
        cat "$dir/broker.log" >&2
        kill $bpid 2>/dev/null
        rm -rf "$dir"
        exit 1
    fi
    sleep 0.05
done
VGPU_SOCKET=$dir/a.sock VGPU_SOCKET_A=$dir/a.sock VGPU_SOCKET_B=$dir/b.sock \
    LD_LIBRARY_PATH="$shimdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
rc=$?
kill -TERM $bpid
wait $bpid
brc=$?
cat "$dir/broker.log" >&2
rm -rf "$dir"
echo "with-broker: program exit $rc, broker exit $brc" >&2
[ $rc -eq 0 ] && [ $brc -eq 0 ]
