#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A/B of two jackfruit builds, for measuring one change (docs/bench.md, table of changes):
#   bench/ab/ab.sh DIR_A DIR_B ROOTFS [N]
# DIR_A and DIR_B each hold a `jackfruit` and a `jackfruit-init` (e.g. `go build -o DIR_A/
# ./cmd/jackfruit ./cmd/jackfruit-init` at two commits). Starts a supervisor of each side by
# side (no D-Bus, no kernel monitor), then times N `run --rm NAME -- /bin/true` of each,
# interleaved A B A B (after 3 warm-ups), and one burst of 100 at once per side. The state
# directories are on tmpfs unless STATEBASE names a directory on disk (e.g. /var/tmp/ab.1,
# which is what `bench/run.sh` measures). Root only; runs in private mount and PID
# namespaces, so nothing it mounts or starts outlives it.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '3,11p' "$0"; exit 2; }
A=$(realpath "$1") B=$(realpath "$2") ROOTFS=$(realpath "$3") N=${4:-40}
LIB=$(dirname "$(realpath "$0")")/lib.sh
exec unshare --mount --propagation private --pid --fork --mount-proc bash -s "$A" "$B" "$ROOTFS" "$N" "$LIB" <<'INNER'
set -euo pipefail
A=$1 B=$2 ROOTFS=$3 N=$4
# shellcheck source=bench/ab/lib.sh
. "$5"
w=$(mktemp -d /tmp/ab.XXXX)
mount -t tmpfs tmpfs "$w"
start_pair "$w" "${STATEBASE:-$w}" "$ROOTFS"
declare -A t
for i in $(seq $((N + 3))); do
	for v in A B; do
		d=${!v}
		s=$EPOCHREALTIME
		JACKFRUIT_SOCKET=$w/$v/s.sock "$d/jackfruit" run --rm "c$i" -- /bin/true
		e=$EPOCHREALTIME
		[ "$i" -le 3 ] || t[$v]+="$(echo "($e-$s)*1000" | bc -l) "
	done
done
for v in A B; do
	printf '%s %s: median ' "$v" "${!v}"
	echo "${t[$v]}" | tr ' ' '\n' | grep . | sort -g |
		awk '{a[NR]=$1} END {printf "%.2f ms p10 %.2f p90 %.2f n=%d\n", a[int(NR/2)+1], a[int(NR*0.1)+1], a[int(NR*0.9)], NR}'
done
for v in A B; do burst "$w" "$v" p; done
kill %1 %2
wait
INNER
