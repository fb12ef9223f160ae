#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The full-system VM test (make e2e), the VM demo (test/demo.sh) and the systemd-path bench
# (make bench, item 6):
#   test/e2e/run.sh [--scenario e2e|demo|bench]
#
# Boots the cached Debian 12 guest image (test/e2e/image.sh) in qemu-system-x86_64 with a
# per-run qcow2 overlay, plus a second disk carrying our .debs (build/deb), the test rootfs
# (build/rootfs) and the guest scenario. The guest runs the scenario at boot
# (jf-guest-runner.service), reboots itself when the scenario asks for it, and powers off at
# the end; the results come back from the second disk (debugfs), not the serial console.
# Prints the guest transcript and exits non-zero if any step failed or the run did not finish.
#
# Environment: CACHE_DIR (default /var/cache/jackfruit-test), E2E_TIMEOUT seconds for the
# whole guest run (default 1800), DEB_DIR (default build/deb), ROOTFS (default build/rootfs),
# E2E_KEEP=1 keeps the run directory (always kept on failure); for the bench scenario
# BENCH_RUNS (default 20) and BENCH_WARMUP (default 3) runs per subject.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/test/e2e"
scenario=e2e
while [ $# -gt 0 ]; do
	case $1 in
	--scenario) scenario=${2:?--scenario needs e2e, demo or bench}; shift 2 ;;
	--scenario=*) scenario=${1#*=}; shift ;;
	-h | --help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
case $scenario in e2e | demo | bench) ;; *) echo "run.sh: unknown scenario '$scenario' (e2e, demo or bench)" >&2; exit 2 ;; esac

CACHE_DIR=${CACHE_DIR:-/var/cache/jackfruit-test}
E2E_TIMEOUT=${E2E_TIMEOUT:-1800}
DEB_DIR=${DEB_DIR:-$top/build/deb}
ROOTFS=${ROOTFS:-$top/build/rootfs}
export CACHE_DIR

die() { echo "run.sh: $*" >&2; exit 1; }
BENCH_RUNS=${BENCH_RUNS:-20}
BENCH_WARMUP=${BENCH_WARMUP:-3}
[[ $BENCH_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$BENCH_RUNS: want a positive count"
[[ $BENCH_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP=$BENCH_WARMUP: want a count"
# shellcheck source=test/lib/vm-progress.sh
. "$top/test/lib/vm-progress.sh"
[ "$(id -u)" -eq 0 ] || die "must run as root"
for t in qemu-system-x86_64 qemu-img debugfs mkfs.ext4 timeout; do
	command -v "$t" >/dev/null || die "$t not found; run 'make deps' (test/deps.sh)"
done
debs=("$DEB_DIR"/jackfruit_*.deb "$DEB_DIR"/jackfruit-monitor-dkms_*.deb)
for d in "${debs[@]}"; do [ -f "$d" ] || die "$d not found: run 'make deb' first"; done
[ -x "$ROOTFS/usr/bin/memory_hog" ] || die "$ROOTFS/usr/bin/memory_hog not found: run 'make rootfs' first"

img=$("$here/image.sh")
kver=$(cat "$img/kver")

mkdir -p "$CACHE_DIR/runs"
# Only the latest few runs are kept for diagnosis.
{ ls -1dt "$CACHE_DIR"/runs/*/ 2>/dev/null || true; } | tail -n +6 | xargs -r rm -rf
run=$(mktemp -d "$CACHE_DIR/runs/$scenario-$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
echo "run.sh: scenario $scenario, guest kernel $kver, image $img, run dir $run"

# The guest's disk: a copy-on-write overlay; the cached image is never written.
qemu-img create -q -f qcow2 -F raw -b "$img/root.img" "$run/root.qcow2"

# The second disk: inputs in, results out.
in="$run/in"
mkdir -p "$in/debs" "$in/results"
cp "${debs[@]}" "$in/debs/"
tar -C "$ROOTFS" -cf "$in/rootfs.tar" .
install -m 0755 "$here/guest.sh" "$in/guest.sh"
install -m 0644 "$here/guest-lib.sh" "$in/guest-lib.sh"
install -m 0755 "$here/guest-$scenario.sh" "$in/scenario.sh"
printf 'BENCH_RUNS=%s\nBENCH_WARMUP=%s\n' "$BENCH_RUNS" "$BENCH_WARMUP" >"$in/bench.env"
truncate -s 512M "$run/data.img"
mkfs.ext4 -q -F -L jf-data -d "$in" "$run/data.img"

# No KVM here: TCG, multi-threaded over both vCPUs. The guest reboots itself between phases
# (so no -no-reboot) and powers off at the end, which ends QEMU. The guest scenario writes
# one line per step (its title when it starts, PASS/FAIL when it ends) and per failed check
# to the virtio serial port jf.progress (guest-lib.sh), which lands in progress.log; it is
# shown here as it grows. The results themselves still come back on the data disk.
case $scenario in
e2e) typical="about 7 minutes (two boots and a DKMS build under software emulation)" ;;
demo) typical="about 4 minutes (one boot and a DKMS build under software emulation)" ;;
bench) typical="about 7 minutes (one boot, a DKMS build and $((BENCH_RUNS + BENCH_WARMUP)) rounds of timed starts under software emulation)" ;;
esac
echo "run.sh: booting the guest (software emulation; timeout ${E2E_TIMEOUT}s): $(vm_timing_hint "e2e-$scenario" "$typical")"
echo "run.sh: console log: $run/console.log (follow it with: tail -f $run/console.log)"
: >"$run/progress.log"
start=$EPOCHSECONDS
set +e
timeout --foreground -k 10 "$E2E_TIMEOUT" qemu-system-x86_64 \
	-accel tcg,thread=multi -m 2048 -smp 2 \
	-nographic -monitor none -serial "file:$run/console.log" \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw panic=-1 systemd.show_status=false" \
	-drive "file=$run/root.qcow2,format=qcow2,if=virtio,cache=unsafe" \
	-drive "file=$run/data.img,format=raw,if=virtio" \
	-device virtio-serial-pci -chardev "file,id=progress,path=$run/progress.log" \
	-device virtserialport,chardev=progress,name=jf.progress \
	-nic none </dev/null >"$run/qemu.log" 2>&1 &
qpid=$!
vm_stop_on_interrupt "$qpid"
vm_follow "$run/progress.log" "$qpid" | vm_stamp "$start" &
fpid=$!
wait "$qpid"
qrc=$?
wait "$fpid"
set -e
elapsed=$((EPOCHSECONDS - start))

rm -rf "$run/results"
debugfs -R "rdump /results $run" "$run/data.img" >/dev/null 2>&1 || true

echo
echo "================ guest transcript ($scenario) ================"
if [ -f "$run/results/transcript.txt" ]; then
	vm_clean <"$run/results/transcript.txt"
else
	echo "(no transcript: the scenario never started)"
fi
echo "================================================================"

fail=0
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
	echo "run.sh: FAIL: the guest did not finish within ${E2E_TIMEOUT}s; last console lines:"
	tail -n 40 "$run/console.log" | vm_clean || true
	fail=1
elif [ $qrc -ne 0 ]; then
	echo "run.sh: FAIL: qemu exited with $qrc:"
	cat "$run/qemu.log"
	fail=1
fi
if [ ! -f "$run/results/done" ]; then
	echo "run.sh: FAIL: the scenario did not run to its end (see $run/console.log and $run/results/)"
	fail=1
fi
if [ -f "$run/results/summary.txt" ]; then
	echo "summary:"
	sed 's/^/  /' "$run/results/summary.txt"
	grep -q '^FAIL' "$run/results/summary.txt" && fail=1
fi
# A passing run prints no error text a user could take for a failure: the guest fails a check
# whose output says "error" unexpectedly (guest-lib.sh); "Broken pipe" is never expected.
if [ $fail -eq 0 ] && grep -qi 'broken pipe' "$run/results/transcript.txt"; then
	echo "run.sh: FAIL: the transcript says 'Broken pipe':"
	grep -ni 'broken pipe' "$run/results/transcript.txt" | vm_clean
	fail=1
fi
passed=$(grep -c '^PASS' "$run/results/summary.txt" 2>/dev/null || true)
failed=$(grep -c '^FAIL' "$run/results/summary.txt" 2>/dev/null || true)
echo "run.sh: guest run took ${elapsed}s"
echo "e2e: ${passed:-0} passed, ${failed:-0} failed"
if [ $fail -ne 0 ]; then
	echo "run.sh: $scenario FAILED; run directory kept: $run"
	exit 1
fi
vm_timing_record "e2e-$scenario" "$elapsed"
[ "${E2E_KEEP:-0}" = 1 ] || rm -f "$run/root.qcow2" "$run/data.img"
echo "run.sh: $scenario passed"
