#!/usr/bin/env bash
# Installs what Bunker needs to build, test and run, and nothing twice: a
# second run with everything in place takes well under a second.
#   - Debian packages (compiler, libraries' -dev packages, test tools,
#     Chromium for the preview test that drives a real browser, nginx for
#     bench/preview's baseline)
#   - Bun, from the npm registry package @oven/bun-linux-x64 at a pinned
#     version, unpacked to /opt/bunker/bun-<version> with /opt/bunker/bun
#     pointing at it.
set -euo pipefail

BUN_VERSION=1.4.5
BUN_ROOT=/opt/bunker

PKGS=(build-essential pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev
      libsodium-dev libseccomp-dev libarchive-dev libzstd-dev libcurl4-openssl-dev
      util-linux procps python3 python3-pip python3-venv sqlite3 wrk ca-certificates
      chromium postgresql-15 libpq-dev clang libclang-rt-14-dev cppcheck clang-format
      libmnl-dev libnftables-dev nftables nginx-light erofs-utils)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches Bun; a machine may already have one from outside Debian.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || { echo "install-deps: missing ${missing[*]}; run as root" >&2; exit 1; }
	echo "install-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Packages that come with a service (nginx, PostgreSQL) would start it
	# on install: a policy-rc.d that forbids starting anything keeps them
	# down, unless the machine has one of its own already.
	own_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# install-deps.sh: no service starts on install\nexit 101\n' \
			>/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		own_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if [ -n "$own_policy" ]; then
		rm -f /usr/sbin/policy-rc.d
		trap - EXIT
	fi
fi

# Debian's postgresql-15 creates and starts a system cluster (15/main);
# Bunker never uses it (the tests start servers of their own, bunkerd is
# given a URI), so it is stopped and kept from starting at boot.
if [ -f /etc/postgresql/15/main/start.conf ] && [ "$(id -u)" = 0 ]; then
	if ! grep -qx manual /etc/postgresql/15/main/start.conf; then
		echo manual >/etc/postgresql/15/main/start.conf
		command -v systemctl >/dev/null 2>&1 && systemctl disable --now postgresql >/dev/null 2>&1 || true
	fi
	pg_ctlcluster 15 main status >/dev/null 2>&1 && pg_ctlcluster 15 main stop || true
fi

# nginx-light is only bench/preview's baseline, which starts an nginx of
# its own with its own configuration: the system service (port 80) is kept
# from starting at boot, and stopped if something started it anyway. Only
# the service's own pid file is read: other nginx processes are not ours.
if [ -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ]; then
	if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled nginx >/dev/null 2>&1; then
		systemctl disable --now nginx >/dev/null 2>&1 || true
	fi
	if ls /etc/rc[2-5].d/S[0-9][0-9]nginx >/dev/null 2>&1; then
		update-rc.d nginx disable >/dev/null 2>&1 || true
	fi
	if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
		/usr/sbin/nginx -s quit >/dev/null 2>&1 || kill "$(cat /run/nginx.pid)" 2>/dev/null || true
	fi
fi

bun_dir="$BUN_ROOT/bun-$BUN_VERSION"
if [ ! -x "$bun_dir/bin/bun" ]; then
	[ "$(id -u)" = 0 ] || { echo "install-deps: bun missing; run as root" >&2; exit 1; }
	echo "install-deps: installing bun $BUN_VERSION from the npm registry" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "@oven/bun-linux-x64@$BUN_VERSION" >/dev/null)
	mkdir -p "$tmp/x"
	tar -xzf "$tmp"/oven-bun-linux-x64-"$BUN_VERSION".tgz -C "$tmp/x"
	chmod 0755 "$tmp/x/package/bin/bun"
	"$tmp/x/package/bin/bun" --version >/dev/null
	mkdir -p "$BUN_ROOT"
	rm -rf "$bun_dir.tmp"
	mkdir -p "$bun_dir.tmp/bin"
	mv "$tmp/x/package/bin/bun" "$bun_dir.tmp/bin/bun"
	mv "$bun_dir.tmp" "$bun_dir"
fi
ln -sfn "bun-$BUN_VERSION" "$BUN_ROOT/bun.tmp" && mv -T "$BUN_ROOT/bun.tmp" "$BUN_ROOT/bun"
