#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make bench` (after `make build rootfs`): jackfruit side by side with crun, runc, conmon and
# systemd-cat. Prints a table and writes bench/results/<timestamp>.json. See docs/bench.md.
#
# Everything runs inside fresh private mount and PID namespaces (bench/ns.sh): /sys/fs/cgroup
# becomes a pure cgroup2 mount there (crun refuses this host's hybrid layout), /run/systemd and
# /run/log become tmpfs for a private journald, and the PID namespace guarantees that no
# container, conmon or journald outlives the bench. The host's mounts are never touched.
#
# Usage: bench/run.sh [--profile] [jfbench flags...]   e.g. bench/run.sh -items latency -runs 50
#   --profile   also record the supervisor with perf (unstripped build) during items 1, 2 and 4,
#               and run bench/cmd/jfprof (in-process heap and CPU profiles of the core);
#               reports land next to the JSON in bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/run.sh: must run as root (namespaces, mounts, containers)" >&2
	exit 1
fi
for tool in unshare mount go; do
	command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool not found" >&2; exit 1; }
done
# Peers that are missing only turn their rows into "not measured"; say so up front.
for tool in crun runc conmon systemd-cat journalctl perf; do
	command -v "$tool" >/dev/null || echo "bench/run.sh: warning: $tool not installed (make deps)" >&2
done

args=()
jackfruit=bin/jackfruit
for a in "$@"; do
	if [ "$a" = "--profile" ]; then
		# The release build is stripped (-s -w); perf needs the symbol table.
		CGO_ENABLED=0 go build -o bin/jackfruit-prof ./cmd/jackfruit
		CGO_ENABLED=0 go build -o bin/jfprof ./bench/cmd/jfprof
		jackfruit=bin/jackfruit-prof
		args+=(-profile -jfprof bin/jfprof)
	else
		args+=("$a")
	fi
done
[ -x "$jackfruit" ] || echo "bench/run.sh: warning: $jackfruit missing (make build); jackfruit rows will say not measured" >&2
[ -x build/rootfs/bin/busybox ] || echo "bench/run.sh: warning: build/rootfs missing (make rootfs)" >&2

CGO_ENABLED=0 go build -o bin/jfbench ./bench/cmd/jfbench

work=$(mktemp -d /tmp/jfbench.XXXXXX)
# jackfruit's state directory lives on disk, as /var/lib/jackfruit does in production.
state=$(mktemp -d /var/tmp/jfbench-state.XXXXXX)
trap 'rm -rf "$work" "$state"' EXIT
unshare --mount --propagation private --pid --fork --mount-proc \
	bash bench/ns.sh "$work" -jackfruit "$jackfruit" -rootfs build/rootfs -results bench/results \
	-state-base "$state" "${args[@]}"
