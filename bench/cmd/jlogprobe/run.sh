#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs jlogprobe against a private journald: private mount and PID namespaces with tmpfs on
# /run/systemd and /run/log, as bench/ns.sh sets up for `make bench` item 4. Flags go to
# jlogprobe (-h lists them). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CGO_ENABLED=0 go build -o bin/jlogprobe ./bench/cmd/jlogprobe
work=$(mktemp -d /tmp/jlogprobe.XXXXXX)
out=${JLOGPROBE_OUT:-$work}
exec unshare --mount --propagation private --pid --fork --mount-proc bash -c '
	set -e
	# A pure cgroup2 hierarchy (as bench/ns.sh), so a sender can sit where the bench'"'"'s supervisor does.
	if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then umount -l /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup; fi
	mkdir -p /run/systemd /run/log
	mount -t tmpfs -o mode=0755 tmpfs /run/systemd
	mount -t tmpfs -o mode=0755 tmpfs /run/log
	export JLOGPROBE_PRIVATE_NS=1
	exec bin/jlogprobe -work "$0" "$@"' "$out" "$@"
