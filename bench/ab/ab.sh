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
exec unshare --mount --propagation private --pid --fork --mount-proc bash -s "$A" "$B" "$ROOTFS" "$N" <<'INNER'
set -euo pipefail
A=$1 B=$2 ROOTFS=$3 N=$4
w=$(mktemp -d /tmp/ab.XXXX)
mount -t tmpfs tmpfs "$w"
base=${STATEBASE:-$w}
for v in A B; do
	d=${!v}
	mkdir -p "$w/$v"
	"$d/jackfruit" supervisor --socket "$w/$v/s.sock" --state-dir "$base/$v/state" --run-dir "$w/$v/run" \
		--base-rootfs "$ROOTFS" --no-dbus >"$w/$v/log" 2>&1 &
done
for v in A B; do for _ in $(seq 100); do [ -S "$w/$v/s.sock" ] && break; sleep 0.1; done; done
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
for v in A B; do
	d=${!v}
	s=$EPOCHREALTIME
	pids=()
	for i in $(seq 100); do JACKFRUIT_SOCKET=$w/$v/s.sock "$d/jackfruit" run --rm "p$i" -- /bin/true & pids+=($!); done
	wait "${pids[@]}"
	e=$EPOCHREALTIME
	echo "$v 100 at once: $(echo "($e-$s)*10" | bc -l | cut -c1-6) ms/container"
done
kill %1 %2
wait
INNER
