#!/bin/bash
# rt/probe-cublas.sh (device machine): the real driver's answers to some export-table slots
# (passthru/dark_probe.c) and cuBLAS through the shim with its own debug logs. Logs in $OUT.
OUT2=$OUT; export OUT=/tmp/o PROBE_PT=0 PROBE_TORCH=0 PROBE_PROGS=rt_vector_add
bash test/gpu/rt/probe-on-device.sh > /dev/null 2>&1
real=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
gcc -O2 -o /tmp/dp test/gpu/passthru/dark_probe.c -ldl && /tmp/dp $real > /tmp/o/dark-probe.txt 2>&1
echo "dark_probe exit $?" >> /tmp/o/dark-probe.txt
which gdb ltrace strace >> /tmp/o/dark-probe.txt 2>&1
d=$(mktemp -d); build-dev/test/gpu/broker_host --backend cuda --workers 4 --pod "A=$d/a.sock" 2>/tmp/o/b2.log & bp=$!
for i in $(seq 100); do [ -S $d/a.sock ] && break; sleep 0.1; done
CUBLASLT_LOG_LEVEL=5 CUBLAS_LOGINFO_DBG=1 CUBLAS_LOGDEST_DBG=stderr LD_LIBRARY_PATH=build-dev/shim VGPU_SOCKET=$d/a.sock VGPU_SHIM_TRACE=1 timeout 60 build-dev/rt/cublas_gemm > /tmp/o/cublas-dbg.log 2>&1
kill $bp; wait
tar czf $OUT2/probe.tgz -C /tmp/o .
cat /tmp/o/dark-probe.txt; grep -iv "c693336e slot 2" /tmp/o/cublas-dbg.log | tail -30
