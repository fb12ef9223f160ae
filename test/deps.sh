#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian package and Go tool that build, tests, packaging and benchmarks use.
#   test/deps.sh           install what is missing
#   test/deps.sh --check   only report what is missing (exit 1 if anything is)
# Another apt-get or dpkg at work (an unattended upgrade, a second make) is waited for, for up
# to DEPS_LOCK_TIMEOUT seconds (default 600), saying who holds the lock, instead of failing
# at once with "Could not get lock".
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
lock_timeout=${DEPS_LOCK_TIMEOUT:-600}
pkgs=(
	build-essential make git cpio e2fsprogs fakeroot
	busybox-static
	qemu-system-x86 qemu-utils
	linux-image-amd64 linux-headers-amd64
	linux-image-6.12-amd64 linux-headers-6.12-amd64 dwarves
	sparse linux-source-6.1
	mmdebstrap
	debhelper dh-dkms dkms lintian dpkg-dev
	systemd dbus libglib2.0-bin
	crun runc conmon linux-perf
	tmux tini
)
check_only=0
case ${1:-} in
--check) check_only=1 ;;
"") ;;
*) echo "deps: unknown argument '$1' (usage: test/deps.sh [--check])" >&2; exit 2 ;;
esac

# The locks apt and dpkg take (fcntl/POSIX locks, which flock(1) cannot see).
locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock)

# lock_holder FILE: prints the PID holding a lock on FILE (from /proc/locks); fails if none.
lock_holder() {
	local dev ino maj min
	[ -e "$1" ] || return 1
	read -r dev ino < <(stat -L -c '%D %i' "$1")
	dev=$((16#$dev))
	maj=$(((dev >> 8) & 0xfff))
	min=$(((dev & 0xff) | ((dev >> 12) & 0xfff00)))
	awk -v id="$(printf '%02x:%02x:%d' "$maj" "$min" "$ino")" \
		'{ for (i = 1; i <= NF; i++) if ($i == id) { print $(i - 1); found = 1; exit } } END { exit !found }' /proc/locks
}

# wait_for_package_manager: returns once no apt-get/dpkg holds its locks, saying who is
# waited for; fails after lock_timeout seconds. Reading the package states while dpkg is
# at work would see half-installed packages, so this comes before the check as well.
wait_for_package_manager() {
	local l pid waited=0 said=""
	while :; do
		pid=""
		for l in "${locks[@]}"; do
			pid=$(lock_holder "$l") && break
			pid=""
		done
		[ -n "$pid" ] || break
		if [ "$said" != "$pid $l" ]; then
			echo "deps: waiting for another package manager to finish: $l is held by PID $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-100 || echo '?')); up to ${lock_timeout}s (DEPS_LOCK_TIMEOUT)" >&2
			said="$pid $l"
		fi
		if [ "$waited" -ge "$lock_timeout" ]; then
			echo "deps: FAIL: $l still held by PID $pid after ${lock_timeout}s" >&2
			exit 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
	[ -z "$said" ] || echo "deps: the package manager is free (waited ${waited}s)" >&2
}

wait_for_package_manager
# One dpkg-query for all (one per package takes seconds on a busy machine).
declare -A installed=()
while read -r p st; do
	[ "$st" != "install ok installed" ] || installed[$p]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
	[ -n "${installed[$p]:-}" ] || missing+=("$p")
done
if [ $check_only = 1 ]; then
	[ ${#missing[@]} -eq 0 ] || { echo "deps: missing: ${missing[*]}" >&2; exit 1; }
	exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
	# Lock::Timeout covers a package manager that starts between the wait and these.
	apt-get -o DPkg::Lock::Timeout="$lock_timeout" update -qq
	apt-get -o DPkg::Lock::Timeout="$lock_timeout" install -y --no-install-recommends "${missing[@]}"
fi
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
	go install honnef.co/go/tools/cmd/staticcheck@latest
fi
go mod download
