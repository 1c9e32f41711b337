#!/usr/bin/env bash
# `make test`: runs every test binary of the build directory, unit tests
# first, each under a time limit, and adds their counts up into the closing
# line "N passed, N failed, N skipped".
set -uo pipefail
build=${1:-build/asan}
export BUNKER_BUILD="$PWD/$build"
# LeakSanitizer cannot follow the daemon's clone3() children; leaks are
# checked in the unit tests, where nothing clones.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0 failed=0 skipped=0
for t in "$build"/tests/unit_* "$build"/tests/bb_*; do
	[ -x "$t" ] || continue
	echo "== $(basename "$t")"
	out=$(timeout 1200 "$t" 2>&1)
	rc=$?
	echo "$out"
	line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
	if [ -z "$line" ]; then
		echo "FAIL $(basename "$t"): exited $rc without a summary"
		failed=$((failed + 1))
		continue
	fi
	read -r p f s < <(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/')
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $(basename "$t"): exited $rc"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
