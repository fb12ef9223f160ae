#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A/B of two jackfruit builds, 100 starts at once, in alternating rounds:
#   bench/ab/ab100.sh DIR_A DIR_B ROOTFS [ORDER]
# DIR_A and DIR_B as for ab.sh. ORDER is the sequence of rounds (default ABBAABBA); each round
# is 100 `run --rm NAME -- /bin/true` started together, 5 s after the previous round (so one
# side's deletions do not land on the other's round), and prints the wall time per container.
# The state directories are on disk, in a fresh directory under /var/tmp, as in bench/run.sh.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '3,8p' "$0"; exit 2; }
A=$(realpath "$1") B=$(realpath "$2") ROOTFS=$(realpath "$3") ORDER=${4:-ABBAABBA}
exec unshare --mount --propagation private --pid --fork --mount-proc bash -s "$A" "$B" "$ROOTFS" "$ORDER" <<'INNER'
set -euo pipefail
A=$1 B=$2 ROOTFS=$3 ORDER=$4
w=$(mktemp -d /tmp/ab.XXXX)
mount -t tmpfs tmpfs "$w"
sb=$(mktemp -d /var/tmp/ab100.XXXX)
for v in A B; do
	d=${!v}
	mkdir -p "$w/$v"
	"$d/jackfruit" supervisor --socket "$w/$v/s.sock" --state-dir "$sb/$v/state" --run-dir "$w/$v/run" \
		--base-rootfs "$ROOTFS" --no-dbus >"$w/$v/log" 2>&1 &
done
for v in A B; do for _ in $(seq 100); do [ -S "$w/$v/s.sock" ] && break; sleep 0.1; done; done
for i in $(seq 10); do for v in A B; do JACKFRUIT_SOCKET=$w/$v/s.sock "${!v}/jackfruit" run --rm "w$i" -- /bin/true; done; done
r=0
for v in $(echo "$ORDER" | grep -o .); do
	d=${!v}
	r=$((r + 1))
	sleep 5
	s=$EPOCHREALTIME
	pids=()
	for i in $(seq 100); do JACKFRUIT_SOCKET=$w/$v/s.sock "$d/jackfruit" run --rm "p$r-$i" -- /bin/true & pids+=($!); done
	wait "${pids[@]}"
	e=$EPOCHREALTIME
	echo "$v $(echo "($e-$s)*10" | bc -l | cut -c1-6) ms/container"
done
kill %1 %2
wait
rm -rf "$sb"
INNER
