#!/bin/sh
# Runs the lifecycle benchmark (idle and deep sleep: wake latencies, save
# times, snapshot sizes, the cost of sleeping sessions) against the daemon
# of BUILD_DIR, as root: bench/lifecycle.sh build/release. Builds nothing:
# `make SAN=0 all build/release/bench/lifecycle` builds the daemon and it.
# BENCH_IDLE_N, BENCH_REPS_SMALL, BENCH_REPS_LARGE, BENCH_SESSIONS and
# BENCH_SKIP_1G tune it (see bench/lifecycle.c). Takes several minutes.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(realpath "$1")
for f in bunkerd bunker bunker-init bench/lifecycle; do
	if [ ! -x "$build/$f" ]; then
		echo "$0: $build/$f is missing; run 'make SAN=0 all $1/bench/lifecycle'" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: bunkerd needs root (namespaces, cgroups, mounts)" >&2
	exit 1
fi
exec "$build/bench/lifecycle" "$build"
