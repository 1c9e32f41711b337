#!/bin/sh
# Runs the preview proxy benchmark (wrk against a session's Bun app,
# directly inside the session, through bunkerd's preview proxy, and through
# an nginx baseline) against the daemon of BUILD_DIR, as root:
# bench/preview.sh build/release. Builds nothing: `make SAN=0 all
# build/release/bench/preview` builds the daemon and it. BENCH_SECONDS,
# BENCH_ROUNDS, BENCH_CONNECTIONS and BENCH_NGINX tune it (see
# bench/preview.c). Takes about two minutes.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(realpath "$1")
for f in bunkerd bunker bunker-init bench/preview; do
	if [ ! -x "$build/$f" ]; then
		echo "$0: $build/$f is missing; run 'make SAN=0 all $1/bench/preview'" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: bunkerd needs root (namespaces, cgroups, mounts)" >&2
	exit 1
fi
command -v wrk >/dev/null 2>&1 || { echo "$0: wrk is missing (scripts/install-deps.sh)" >&2; exit 1; }
if [ "${BENCH_NGINX:-1}" != 0 ] && [ ! -x /usr/sbin/nginx ]; then
	echo "$0: nginx is missing (scripts/install-deps.sh installs nginx-light; BENCH_NGINX=0 runs without)" >&2
	exit 1
fi
exec "$build/bench/preview" "$build"
