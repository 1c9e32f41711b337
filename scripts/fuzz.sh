#!/usr/bin/env bash
# `make fuzz` and `make fuzz-merge`: runs the libFuzzer builds of
# tests/fuzz/<name>.c (build/fuzz/<name>).
#
#   scripts/fuzz.sh run [name...]    each for FUZZ_SECONDS (60), one after the other
#   scripts/fuzz.sh merge [name...]  tests/fuzz/corpus/<name>/ minimised, with
#                                    what the runs found added
#
# A run reads its seeds from tests/fuzz/corpus/<name>/ (never written) and
# keeps what it finds in build/fuzz/corpus/<name>/; a crash, leak, timeout
# or memory blow-up is written to build/fuzz/crashes/<name>/ and ends the
# run with a failure. Fix it, copy the input into tests/fuzz/corpus/<name>/
# as regress-<what> (the replay test in `make tests` then guards it, and
# merges keep it, as they keep the hand-written seed-*) and say so in
# CHANGELOG.md. FUZZ_NICE (10) is the runs' niceness; FUZZ_FLAGS adds
# libFuzzer flags (-jobs=2, -max_len=...). tests/fuzz/<name>.dict, when
# there is one, is the run's dictionary.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
[ "$mode" = run ] || [ "$mode" = merge ] || { echo "usage: $0 run|merge [name...]" >&2; exit 2; }
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in tests/fuzz/*.c; do
		n=$(basename "$f" .c)
		[ "$n" = replay ] || names+=("$n")
	done
fi
seconds=${FUZZ_SECONDS:-60}
nice_n=${FUZZ_NICE:-10}
# Per input: 10 s, 2 GiB; a single allocation over 512 MiB is a finding
# too (every parser here bounds what it holds). Inputs of at most
# FUZZ_MAX_LEN (8192) bytes: the regress-* inputs that need more are
# replayed whole by the replay tests.
common=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=${FUZZ_MAX_LEN:-8192} -print_final_stats=1)
failed=0
for n in "${names[@]}"; do
	bin=build/fuzz/$n
	seeds=tests/fuzz/corpus/$n
	work=build/fuzz/corpus/$n
	[ -x "$bin" ] || { echo "no $bin: make fuzz-bin" >&2; exit 2; }
	mkdir -p "$work" "$seeds" "build/fuzz/crashes/$n"
	dict=()
	[ -f "tests/fuzz/$n.dict" ] && dict=(-dict="tests/fuzz/$n.dict")
	case $mode in
	run)
		echo "== fuzz $n for ${seconds}s"
		# shellcheck disable=SC2086
		nice -n "$nice_n" "$bin" "${common[@]}" "${dict[@]}" -max_total_time="$seconds" \
			-artifact_prefix="build/fuzz/crashes/$n/" ${FUZZ_FLAGS:-} "$work" "$seeds" \
			2>&1 | tee "build/fuzz/$n.log" | grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|ERROR|SUMMARY|^artifact_prefix|Test unit written'
		if [ "${PIPESTATUS[0]}" -ne 0 ]; then
			echo "FAIL fuzz $n: see build/fuzz/$n.log and build/fuzz/crashes/$n/"
			failed=$((failed + 1))
		else
			echo "PASS fuzz $n"
		fi
		;;
	merge)
		echo "== merge $n"
		tmp=$(mktemp -d "build/fuzz/merge-$n-XXXXXX")
		if nice -n "$nice_n" "$bin" "${common[@]}" -merge=1 "$tmp" "$seeds" "$work" \
			>"build/fuzz/$n.merge.log" 2>&1; then
			# Inputs named by their content, as libFuzzer names them;
			# seed-* (written by hand) and regress-* (an input that
			# found a bug) always stay, and no copy of them is added.
			find "$seeds" -maxdepth 1 -type f ! -name 'regress-*' ! -name 'seed-*' -delete
			cp -n "$tmp"/* "$seeds"/ 2>/dev/null
			for r in "$seeds"/regress-* "$seeds"/seed-*; do
				[ -f "$r" ] && rm -f "$seeds/$(sha1sum <"$r" | cut -d' ' -f1)"
			done
			echo "$n: $(ls "$seeds" | wc -l) inputs"
		else
			echo "FAIL merge $n: see build/fuzz/$n.merge.log"
			failed=$((failed + 1))
		fi
		rm -rf "$tmp"
		;;
	esac
done
[ "$failed" -eq 0 ]
