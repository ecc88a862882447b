#!/usr/bin/env bash
# Build the libFuzzer targets with clang into build-fuzz/ and run each for SECONDS (default 60).
# Usage: test/fuzz/run.sh [SECONDS] [TARGET...]      (TARGET: idm_ring, idm_xen, broker_dispatch, ...)
# Fails (exit 1) on any crash, leak, sanitizer report or failed check; prints, per target, the
# executions and the coverage reached (libFuzzer's cov: edges and ft: features) from its final stats.
# New inputs go to build-fuzz/fuzz-corpus/<target>/ (kept between runs); the seeds in
# test/fuzz/corpus/<target>/ are read only. A failing input is saved as
# build-fuzz/fuzz-artifacts/<target>/crash-* (or leak-*, timeout-*, oom-*).
# Env: VGPU_FUZZ_BUILD_DIR (default <top>/build-fuzz), VGPU_FUZZ_JOBS (build jobs, default nproc),
#      VGPU_FUZZ_FLAGS (extra libFuzzer flags).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${1:-60}
shift || true
all=(idm_ring idm_xen broker_dispatch image_ref manifest layer_unpack config cri_rpc)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
build=${VGPU_FUZZ_BUILD_DIR:-$top/build-fuzz}
jobs=${VGPU_FUZZ_JOBS:-$(nproc)}

command -v clang >/dev/null || { echo "fuzz: clang not found (Debian: clang, libclang-rt-14-dev)" >&2; exit 1; }
echo "=== fuzz: build ($build)"
CC=clang cmake -S "$top" -B "$build" -DVGPU_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

# A sanitizer report fails the run at the first error; leaks are checked after every input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

rc=0
summary=()
for t in "${targets[@]}"; do
	exe="$build/test/fuzz/fuzz_$t"
	seeds="$top/test/fuzz/corpus/$t"
	corpus="$build/fuzz-corpus/$t"
	artifacts="$build/fuzz-artifacts/$t"
	log="$build/fuzz-logs/$t.log"
	mkdir -p "$corpus" "$artifacts" "$(dirname "$log")" "$scratch/$t"
	echo "=== fuzz: $t for ${secs}s"
	start=$(date +%s)
	trc=0
	# shellcheck disable=SC2086
	TMPDIR="$scratch/$t" "$exe" -max_total_time="$secs" -print_final_stats=1 -timeout=30 \
		-rss_limit_mb=2048 -artifact_prefix="$artifacts/" ${VGPU_FUZZ_FLAGS:-} \
		"$corpus" "$seeds" >"$log" 2>&1 || trc=$?
	took=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
	cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
	status=ok
	if [ $trc -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz check failed|check failed:' "$log"; then
		status="FAILED (exit $trc)"
		rc=1
		echo "--- fuzz: $t failed; last lines of $log:"
		tail -40 "$log"
		ls -1 "$artifacts" | sed 's/^/    artifact: /' || true
	fi
	line=$(printf '%-16s %-10s execs %-10s cov %-6s ft %-7s corpus %-6s %ss' "$t" "$status" \
		"${execs:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "$took")
	echo "$line"
	summary+=("$line")
done
echo "=== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $rc
