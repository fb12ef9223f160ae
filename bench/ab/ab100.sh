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
LIB=$(dirname "$(realpath "$0")")/lib.sh
exec unshare --mount --propagation private --pid --fork --mount-proc bash -s "$A" "$B" "$ROOTFS" "$ORDER" "$LIB" <<'INNER'
set -euo pipefail
A=$1 B=$2 ROOTFS=$3 ORDER=$4
# shellcheck source=bench/ab/lib.sh
. "$5"
w=$(mktemp -d /tmp/ab.XXXX)
mount -t tmpfs tmpfs "$w"
sb=$(mktemp -d /var/tmp/ab100.XXXX)
start_pair "$w" "$sb" "$ROOTFS"
for i in $(seq 10); do for v in A B; do JACKFRUIT_SOCKET=$w/$v/s.sock "${!v}/jackfruit" run --rm "w$i" -- /bin/true; done; done
r=0
for v in $(echo "$ORDER" | grep -o .); do
	r=$((r + 1))
	sleep 5
	burst "$w" "$v" "p$r-"
done
kill %1 %2
wait
rm -rf "$sb"
INNER
