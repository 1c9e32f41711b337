#!/bin/sh
# Runs the latency benchmark against the daemon of BUILD_DIR (as root):
# bench/run.sh build/release. Builds nothing: `make bench` builds
# BUILD_DIR/bench/bench and the daemon first. BENCH_N sets the number of
# iterations of each measurement (200).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(realpath "$1")
for f in bunkerd bunker bunker-init bench/bench; do
	if [ ! -x "$build/$f" ]; then
		echo "$0: $build/$f is missing; run 'make bench'" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: bunkerd needs root (namespaces, cgroups, mounts)" >&2
	exit 1
fi
exec "$build/bench/bench" "$build"
