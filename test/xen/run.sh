#!/usr/bin/env bash
# Boot Xen 4.17 in QEMU (TCG, no KVM needed), dom0 from the test bed's initramfs, run a scenario in
# dom0 and decide pass/fail from markers on the serial console (never from QEMU's exit code: QEMU
# exits 0 when dom0 crashes, too). Exit 0 only if the log has "VGPU-XEN-RESULT PASS", every
# "# expect:" marker of the scenario, and no "VGPU-XEN-FAIL" line.
#   test/xen/run.sh [-s SCENARIO] [-t TIMEOUT_S] [-l LOG] [-n (no build: use $VGPU_XEN_CACHE/current)]
# Env: VGPU_XEN_CACHE (see build.sh), VGPU_XEN_QEMU_MEM (MiB, 2048), VGPU_XEN_SMP (2).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$top/test/xen
CACHE=${VGPU_XEN_CACHE:-/var/cache/vgpu-cri-xen}
scenario=lifecycle
timeout_s=420
log=
build=1
while getopts "s:t:l:n" opt; do
	case $opt in
	s) scenario=$OPTARG ;;
	t) timeout_s=$OPTARG ;;
	l) log=$OPTARG ;;
	n) build=0 ;;
	*) echo "usage: $0 [-s scenario] [-t timeout_s] [-l log] [-n]" >&2; exit 2 ;;
	esac
done
[ -f "$here/scenarios/$scenario.sh" ] || { echo "run: no scenario $scenario" >&2; exit 2; }
if [ $build = 1 ]; then
	A=$("$here/build.sh" | tail -n 1)
else
	A=$(readlink -f "$CACHE/current")
fi
[ -e "$A/.complete" ] || { echo "run: no artifacts in $A (run build.sh)" >&2; exit 1; }
[ -n "$log" ] || log=$CACHE/logs/$scenario-$(date -u +%Y%m%dT%H%M%SZ).log
mkdir -p "$(dirname "$log")"

# The guest watchdog fires before our hard timeout so that dom0 prints what was running.
watchdog=$((timeout_s - 30))
xen_args="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 loglvl=all guest_loglvl=all console_timestamps=boot"
dom0_args="console=hvc0 earlyprintk=xen vgpu.scenario=$scenario vgpu.watchdog=$watchdog"
# qemu64 + rdrand (else getrandom stalls) + npt (PVH needs HAP; harmless for PV): -cpu max breaks
# PV dom0 (SMAP), EPYC models panic in mwait (docs/xen-testing.md).
echo "run: scenario=$scenario artifacts=$A log=$log timeout=${timeout_s}s" >&2
t0=$(date +%s.%N)
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu qemu64,+rdrand,+npt \
	-m "${VGPU_XEN_QEMU_MEM:-2048}" -smp "${VGPU_XEN_SMP:-2}" -nographic -monitor none -serial stdio -no-reboot \
	-kernel "$A/xen" -append "$xen_args" -initrd "$A/vmlinux $dom0_args,$A/dom0.cpio.zst" </dev/null 2>&1 |
	python3 -u -c '
import sys, time
t0 = time.monotonic()
out = open(sys.argv[1], "w")
for raw in sys.stdin.buffer:
    out.write("[%7.2f] %s\n" % (time.monotonic() - t0, raw.decode("utf-8", "replace").rstrip("\r\n")))
    out.flush()
' "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "[host] qemu rc=$qemu_rc wall=${wall}s (124/137 would mean the hard timeout of ${timeout_s}s)" >> "$log"

# ---- verdict from the serial log ----
fails=()
grep -q "VGPU-XEN-RESULT PASS scenario=$scenario" "$log" || fails+=("no 'VGPU-XEN-RESULT PASS'")
while IFS= read -r want; do
	grep -qF "$want" "$log" || fails+=("missing marker '$want'")
done < <(sed -n 's/^# expect: //p' "$here/scenarios/$scenario.sh")
if grep -q 'VGPU-XEN-FAIL' "$log"; then fails+=("$(grep -m1 'VGPU-XEN-FAIL' "$log")"); fi
[ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ] && fails+=("hard timeout after ${timeout_s}s")
grep -E 'VGPU-XEN |VGPU-XEN-RESULT|XENCTL (created|destroyed|state)|VCHAN-OK|VCHAN server sent' "$log" >&2 || true
if [ ${#fails[@]} -eq 0 ]; then
	echo "run: PASS scenario=$scenario wall=${wall}s log=$log" >&2
	exit 0
fi
echo "run: FAIL scenario=$scenario wall=${wall}s log=$log" >&2
printf '  - %s\n' "${fails[@]}" >&2
echo "--- last 40 lines of $log" >&2
tail -n 40 "$log" >&2
exit 1
