#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs what is missing, builds
# Hato twice (warnings as errors; then with AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs every test under ctest in both.
# Each integration test starts its own private MariaDB and SMTP peers on
# loopback and stops them itself.
set -uo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh || exit 1
jobs=$(nproc 2>/dev/null || echo 2)
status=0

run_suite() {
	local dir=$1; shift
	echo "== build $dir ($*)"
	cmake -S . -B "$dir" -DHATO_WERROR=ON "$@" >"$dir.cmake.log" 2>&1 || { cat "$dir.cmake.log"; return 1; }
	cmake --build "$dir" -j"$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\]|^-- ' || true
	[ "${PIPESTATUS[0]}" -eq 0 ] || return 1
	echo "== test $dir"
	(cd "$dir" && ctest --output-on-failure --timeout 300 -j"$jobs")
}

# Static analysis first: it takes seconds, and a finding is a failure
# (reviewed false positives are in tools/cppcheck/suppressions.txt).
echo "== cppcheck"
tools/cppcheck/run.sh || status=1

mkdir -p build build-asan
run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo || status=1
# The sanitizer pass runs the crash test and the hostile list on smaller
# jobs (the plain pass: 20,000 and 1,000,000 recipients).
HATO_CRASH_RECIPIENTS=5000 HATO_HOSTILE_RECIPIENTS=200000 \
ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DHATO_SANITIZE=ON || status=1

# Every parser under libFuzzer (clang, ASan+UBSan) for a few seconds each,
# and its regression inputs; long runs: tests/fuzz/README.md.
echo "== fuzz build-fuzz"
CC=clang cmake -S . -B build-fuzz -DHATO_FUZZ=ON -DHATO_SANITIZE=OFF -DHATO_WERROR=ON -DHATO_FUZZ_SECONDS=4 \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz.cmake.log 2>&1 || { cat build-fuzz.cmake.log; status=1; }
if cmake --build build-fuzz -j"$jobs" >build-fuzz.build.log 2>&1; then
	(cd build-fuzz && ctest --output-on-failure -R '^fuzz\.' -j"$jobs") || status=1
else
	tail -40 build-fuzz.build.log
	status=1
fi
exit $status
