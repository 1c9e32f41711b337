#!/usr/bin/env bash
# `make test`: runs every test binary of the build directory, unit tests
# first (then the fuzz targets' corpus replays, tests/fuzz/replay.c, then
# the black-box tests), each under a time limit, then checks that the run left the host as
# it found it, and adds everything up into the closing line
# "N passed, N failed, N skipped" (what the run left behind counts as one
# more failure).
#
# The run gets a /tmp and a mount table of its own (a private mount
# namespace, with a fresh directory bound on /tmp), so that what it leaves
# there is told apart from what other runs on the same host do meanwhile:
# every test's temporary directory, every daemon's data directory and every
# mount the daemons make live in it. What a namespace cannot hold (cgroups,
# network interfaces) the test binaries note in a manifest
# (client_manifest_note() in tests/client.c), or is compared before and
# after. Anything found is printed, counted and removed.
set -uo pipefail
build=${1:-build/asan}

# The cgroups the manifest names: prints "host check: <what>" for each one
# left, removes it, and adds them to $leftovers.
check_manifest_cgroups() {
	local manifest=$1 kind what parent dir
	while read -r kind what parent; do
		case $kind in daemon | cgroup) ;; *) continue ;; esac
		[ "$kind" = cgroup ] && parent=$what
		for dir in /sys/fs/cgroup/"$parent" /sys/fs/cgroup/*/"$parent"; do
			[ -d "$dir" ] || continue
			echo "host check: cgroup $dir left behind"
			leftovers=$((leftovers + 1))
			# Deepest first: thaw, kill what is in it, remove it.
			while read -r d; do
				[ -f "$d/freezer.state" ] && echo THAWED >"$d/freezer.state"
				[ -f "$d/cgroup.freeze" ] && echo 0 >"$d/cgroup.freeze"
				xargs -r kill -9 <"$d/cgroup.procs" 2>/dev/null
				for _ in $(seq 100); do rmdir "$d" 2>/dev/null && break; sleep 0.02; done
			done < <(find "$dir" -depth -type d)
		done
	done <"$manifest"
}

if [ -z "${BUNKER_TEST_INNER:-}" ]; then
	[ -d "$build" ] || { echo "no build directory '$build'" >&2; exit 2; }
	manifest="$PWD/$build/test-run.manifest"
	counts="$PWD/$build/test-run.counts"
	: >"$manifest"
	echo "0 0 0" >"$counts"
	nets_before=$(ls /sys/class/net | sort)
	forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
	nft_before=$(nft list tables 2>/dev/null | grep ' bunker_' | sort)
	run_tmp=$(mktemp -d /tmp/bk-test-run-XXXXXX)
	# It becomes the run's /tmp: a /tmp's mode, so that the postgres
	# user of the PostgreSQL tests can reach its directory in it.
	chmod 1777 "$run_tmp"
	if unshare --mount --propagation private true 2>/dev/null; then
		BUNKER_TEST_INNER=$run_tmp BUNKER_TEST_MANIFEST=$manifest BUNKER_TEST_COUNTS=$counts \
			unshare --mount --propagation private "$0" "$build"
	else
		echo "note: no private mount namespace here; the run shares the host's /tmp"
		BUNKER_TEST_INNER=shared BUNKER_TEST_MANIFEST=$manifest BUNKER_TEST_COUNTS=$counts \
			"$0" "$build"
	fi
	read -r passed failed skipped leftovers <"$counts"
	leftovers=${leftovers:-0}
	# A failed test keeps its daemon's log on purpose: moved out of the
	# run's /tmp (removed below) into the build directory, its end shown
	# where CI prints it.
	for f in "$run_tmp"/bk-log-*; do
		[ -d "$f" ] || continue
		mkdir -p "$build/test-logs"
		rm -rf "$build/test-logs/${f##*/}"
		mv "$f" "$build/test-logs/"
		echo "log of a failed test kept: $build/test-logs/${f##*/}/bunkerd.log"
		if [ "${CI:-}" = true ]; then
			tail -n 40 "$build/test-logs/${f##*/}/bunkerd.log" 2>/dev/null | sed 's/^/    /'
		fi
	done
	# Temporary files: the run's /tmp must be empty, and nothing the
	# manifest names may remain.
	for f in "$run_tmp"/* "$run_tmp"/.[!.]*; do
		[ -e "$f" ] || continue
		echo "host check: /tmp/${f#"$run_tmp"/} left behind"
		leftovers=$((leftovers + 1))
	done
	rm -rf --one-file-system "$run_tmp"
	while read -r kind what _; do
		case $kind in daemon | dir) ;; *) continue ;; esac
		[ -e "$what" ] || continue
		echo "host check: $what left behind"
		leftovers=$((leftovers + 1))
	done <"$manifest"
	# A daemon's /run/bunker/<instance> (its mount namespace's pin): on
	# the host's /run, whichever namespace made it.
	while read -r kind what parent; do
		[ "$kind" = daemon ] && [ -e "/run/bunker/$parent" ] || continue
		echo "host check: /run/bunker/$parent (of $what) left behind"
		umount -l "/run/bunker/$parent/mnt" 2>/dev/null
		rm -rf --one-file-system "/run/bunker/$parent"
		leftovers=$((leftovers + 1))
	done <"$manifest"
	check_manifest_cgroups "$manifest"
	# Egress switches forwarding on while a daemon runs, and the last
	# daemon to stop puts it back.
	forward_after=$(cat /proc/sys/net/ipv4/ip_forward)
	if [ "$forward_after" != "$forward_before" ]; then
		echo "host check: net.ipv4.ip_forward left at $forward_after (was $forward_before)"
		echo "$forward_before" >/proc/sys/net/ipv4/ip_forward
		leftovers=$((leftovers + 1))
	fi
	nets_after=$(ls /sys/class/net | sort)
	for i in $(comm -13 <(echo "$nets_before") <(echo "$nets_after")); do
		echo "host check: network interface $i left behind"
		leftovers=$((leftovers + 1))
	done
	# The daemons' egress tables (sandbox/egress.c): a clean stop deletes
	# its own, a restart one a crash left.
	nft_after=$(nft list tables 2>/dev/null | grep ' bunker_' | sort)
	for t in $(comm -13 <(echo "$nft_before") <(echo "$nft_after") | awk '{print $3}'); do
		echo "host check: nftables table inet $t left behind"
		nft delete table inet "$t" 2>/dev/null
		leftovers=$((leftovers + 1))
	done
	rm -f "$manifest" "$counts"
	if [ "$leftovers" -gt 0 ]; then
		echo "FAIL host check: the run left $leftovers things behind (above)"
		failed=$((failed + 1))
	else
		echo "PASS host check: nothing left behind"
		passed=$((passed + 1))
	fi
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
fi

# ---- inside the run's own mount namespace ----
if [ "$BUNKER_TEST_INNER" != shared ]; then
	# The namespace starts with a copy of the host's mounts, other runs'
	# among them (their data directories under /tmp, session disks and
	# roots anywhere): copies that would pin their file systems for as long
	# as this run lasts, and make the cleanup of another run, which kills
	# the processes whose mount table names its data directory, kill ours.
	# They go, in this namespace only.
	awk '{ split($0, a, " - "); split(a[2], b, " ");
	       if ($5 ~ "^/tmp/" || b[2] == "bunker-disk" || b[1] == "overlay") print $5 }' \
		/proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
	mount --bind "$BUNKER_TEST_INNER" /tmp || exit 1
	# Each daemon pins its own mount namespace under /run/bunker, which it
	# makes a private bind mount of itself first (sandbox/mntns.c): made
	# here before the count of mounts, it is not one the run leaves.
	mkdir -p /run/bunker && { mountpoint -q /run/bunker || mount --bind /run/bunker /run/bunker; } &&
		mount --make-private /run/bunker || exit 1
	# The egress tests' `ip netns add` makes /run/netns a shared bind mount
	# of itself on its first use in a namespace (iproute2 does, where no
	# earlier `ip netns` on the host made it): made here, the same way and
	# before the count, it is not one the run leaves.
	mkdir -p /run/netns && { mountpoint -q /run/netns || mount --bind /run/netns /run/netns; } &&
		mount --make-shared /run/netns || exit 1
fi
export BUNKER_BUILD="$PWD/$build"
# LeakSanitizer cannot follow the daemon's clone3() children; leaks are
# checked in the unit tests, where nothing clones.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mounts_before=$(awk '{print $5}' /proc/self/mountinfo | sort)
passed=0 failed=0 skipped=0
for t in "$build"/tests/unit_* "$build"/tests/fuzz_* "$build"/tests/bb_*; do
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

echo "== host check"
leftovers=0
# Processes: none of the run's may outlive it, in this mount namespace
# (test children), in a daemon's own (below) or in a cgroup of one of its
# daemons (sandboxes).
self_ns=$(readlink /proc/self/ns/mnt)
for p in /proc/[0-9]*; do
	pid=${p#/proc/}
	[ "$pid" = $$ ] && continue
	ppid=$(awk '/^PPid:/ {print $2}' "$p/status" 2>/dev/null) || continue
	[ "$ppid" = $$ ] && continue
	[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$self_ns" ] || continue
	echo "host check: process $pid ($(cat "$p/comm" 2>/dev/null)) left running; killing it"
	kill -9 "$pid" 2>/dev/null
	leftovers=$((leftovers + 1))
done
# The daemons' own mount namespaces, pinned on /run/bunker/<instance>/mnt
# (the instance is named as the cgroup parent): a clean stop removes the
# pin, a crash leaves it with the session disks in it. What still runs in
# one is killed first.
while read -r kind what parent; do
	[ "$kind" = daemon ] || continue
	pin=/run/bunker/$parent/mnt
	if mountpoint -q "$pin" 2>/dev/null; then
		ino=$(stat -L -c %i "$pin")
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "mnt:[$ino]" ] || continue
			echo "host check: process ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) left in the mount namespace of $what; killing it"
			kill -9 "${p#/proc/}" 2>/dev/null
			leftovers=$((leftovers + 1))
		done
		echo "host check: mount namespace of $what left on $pin; detaching it"
		umount -l "$pin"
		leftovers=$((leftovers + 1))
	fi
	if [ -e "/run/bunker/$parent" ]; then
		echo "host check: /run/bunker/$parent left behind"
		rm -rf --one-file-system "/run/bunker/$parent"
		leftovers=$((leftovers + 1))
	fi
done <"$BUNKER_TEST_MANIFEST"
check_manifest_cgroups "$BUNKER_TEST_MANIFEST"
# Mounts: the daemons' disks and run directories, detached by now.
mounts_after=$(awk '{print $5}' /proc/self/mountinfo | sort)
for m in $(comm -13 <(echo "$mounts_before") <(echo "$mounts_after") | sort -r); do
	echo "host check: mount $m left behind; detaching it"
	umount -l "$m" 2>/dev/null
	leftovers=$((leftovers + 1))
done
echo "$passed $failed $skipped $leftovers" >"$BUNKER_TEST_COUNTS"
