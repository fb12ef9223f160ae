#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs as PID 1 of the bench's private PID namespace, inside its private mount namespace
# (started by bench/run.sh; never run it directly: its mounts would hit the host).
# bash as PID 1 also reaps the orphans (detached crun containers, daemonised conmons).
set -euo pipefail
if [ "$$" -ne 1 ]; then
	echo "bench/ns.sh: must be started by bench/run.sh (PID 1 of a private namespace)" >&2
	exit 1
fi
work=$1
shift

# A pure cgroup2 hierarchy where the host has the hybrid layout (crun refuses hybrid).
if [ "$(stat -f -c %T /sys/fs/cgroup)" != "cgroup2fs" ]; then
	umount -l /sys/fs/cgroup
	mount -t cgroup2 none /sys/fs/cgroup
fi
# A private journald's sockets and journal files.
mkdir -p /run/systemd /run/log
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/log
# Container state, overlays, peer state and bundles: in memory, gone with the namespace.
mount -t tmpfs -o mode=0755,size=50% tmpfs "$work"

export JFBENCH_PRIVATE_NS=1
bin/jfbench -work "$work" "$@"
