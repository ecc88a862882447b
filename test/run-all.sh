#!/usr/bin/env bash
# The README's test command: install dependencies, then build and run every test twice: a normal
# -Werror build (build/) and an ASan+UBSan build (build-asan/). Run as root on Debian 12.
# Exits non-zero on any failure. Set VGPU_SKIP_ASAN=1 to run only the normal build.
# Then the fuzz targets (test/fuzz/run.sh, VGPU_FUZZ_SECONDS per target, default 20; VGPU_SKIP_FUZZ=1
# skips them).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$top/deploy/install-deps.sh"

run_suite() { # name build_dir cmake-args...
	local name=$1 dir=$2
	shift 2
	echo "=== $name: build ($dir)"
	"$top/deploy/build.sh" "$dir" "$@"
	echo "=== $name: test"
	(cd "$dir" && ctest --output-on-failure --timeout 900)
}

rc=0
run_suite "normal" "$top/build" || rc=1
if [ "${VGPU_SKIP_ASAN:-0}" != 1 ]; then
	# halt_on_error: a sanitizer report fails the test that triggered it.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	# The Xen-under-QEMU boot runs once, in the normal suite (minutes of TCG emulation).
	run_suite "asan+ubsan" "$top/build-asan" -DVGPU_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DVGPU_XEN_QEMU_TESTS=OFF || rc=1
fi
if [ "${VGPU_SKIP_FUZZ:-0}" != 1 ]; then
	# Third stage: every libFuzzer target (test/fuzz) for a short fixed time, clang build in
	# build-fuzz/; a crash, leak or sanitizer report fails it. Longer runs: test/fuzz/run.sh 600.
	"$top/test/fuzz/run.sh" "${VGPU_FUZZ_SECONDS:-20}" || rc=1
fi
if [ $rc -eq 0 ]; then echo "=== all test suites passed"; else echo "=== some tests FAILED"; fi
exit $rc
