#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CPU of jackfruit's whole `run --rm` path, for A/B of changes too small to see in wall time:
#   bench/ab/cpu.sh DIR ROOTFS [N]
# Runs DIR's supervisor under `perf stat -e task-clock` (which counts its children: the setup
# stages and the containers), makes N serial `run --rm NAME -- /bin/true` (the clients are
# not counted), stops it and prints the task-clock per run. State on disk under /var/tmp.
# Interleave two builds' runs (A B B A ...) and compare the medians.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '3,8p' "$0"; exit 2; }
D=$(realpath "$1") ROOTFS=$(realpath "$2") N=${3:-200}
exec unshare --mount --propagation private --pid --fork --mount-proc bash -s "$D" "$ROOTFS" "$N" <<'INNER'
set -euo pipefail
D=$1 ROOTFS=$2 N=$3
w=$(mktemp -d /tmp/cpu.XXXX)
mount -t tmpfs tmpfs "$w"
st=$(mktemp -d /var/tmp/cpust.XXXX)
perf stat -x, -e task-clock -o "$w/stat" -- "$D/jackfruit" supervisor --socket "$w/s.sock" --state-dir "$st" \
	--run-dir "$w/run" --base-rootfs "$ROOTFS" --no-dbus >"$w/log" 2>&1 &
for _ in $(seq 100); do [ -S "$w/s.sock" ] && break; sleep 0.1; done
for i in $(seq "$N"); do JACKFRUIT_SOCKET=$w/s.sock "$D/jackfruit" run --rm "c$i" -- /bin/true; done
pkill -INT -f "jackfruit supervisor --socket $w/s.sock"
wait
awk -F, -v n="$N" -v d="$D" '/task-clock/ {printf "%s: %.3f ms CPU per run\n", d, $1/n}' "$w/stat"
rm -rf "$st"
INNER
