#!/usr/bin/env bash
# Static analysis of src/: cppcheck, then gcc -fanalyzer on every file.
# cppcheck's findings that are wrong are suppressed in place
# (`// cppcheck-suppress <id>` with the reason on the line above the
# finding). gcc has no such comment, so its wrong findings are listed in
# scripts/analyze-known.txt as "file function checker  reason" (no line
# numbers: they move); anything else fails the run. Output goes to
# build/analyze/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/analyze
mkdir -p "$out"
pkg_cflags=$(pkg-config --cflags libmicrohttpd jansson sqlite3 libsodium libseccomp libarchive)
status=0

echo "== cppcheck"
if ! cppcheck --quiet --std=c11 --enable=warning,portability --inline-suppr \
	-D_GNU_SOURCE -Isrc --error-exitcode=1 -j2 src 2>"$out/cppcheck.txt"; then
	cat "$out/cppcheck.txt"
	echo "FAIL cppcheck: findings above"
	status=1
else
	echo "PASS cppcheck"
fi

echo "== gcc -fanalyzer"
: >"$out/fanalyzer.txt"
for f in $(git ls-files 'src/*.c'); do
	# shellcheck disable=SC2086
	LC_ALL=C gcc -std=gnu17 -D_GNU_SOURCE -O1 -fanalyzer -fdiagnostics-plain-output \
		-fno-diagnostics-show-caret -Isrc $pkg_cflags -c "$f" -o /dev/null 2>&1 |
		awk -v file="$f" '
			/In function \047/ { fn = $0; sub(/^[^\047]*\047/, "", fn); sub(/\047.*/, "", fn) }
			/warning:.*\[-Wanalyzer-/ {
				ck = $0; sub(/.*\[-W/, "", ck); sub(/\].*/, "", ck)
				print file, fn, ck "\t" $0
			}' >>"$out/fanalyzer.txt" || true
done
new=0
while IFS=$'\t' read -r key line; do
	if ! grep -q "^$key " scripts/analyze-known.txt; then
		echo "$line"
		new=$((new + 1))
	fi
done <"$out/fanalyzer.txt"
# A listed finding gcc no longer reports is stale: drop it from the list.
stale=0
while read -r file fn ck _; do
	case $file in '#'* | '') continue ;; esac
	if ! grep -q "^$file $fn $ck"$'\t' "$out/fanalyzer.txt"; then
		echo "scripts/analyze-known.txt: '$file $fn $ck' is no longer reported; remove it"
		stale=$((stale + 1))
	fi
done <scripts/analyze-known.txt
if [ "$new" -gt 0 ] || [ "$stale" -gt 0 ]; then
	echo "FAIL gcc -fanalyzer: $new new findings, $stale stale entries"
	status=1
else
	echo "PASS gcc -fanalyzer ($(wc -l <"$out/fanalyzer.txt") findings, each in scripts/analyze-known.txt)"
fi
exit $status
