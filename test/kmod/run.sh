#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Kernel module test bench (`make kmod-test`) and benchmark (`make bench` calls
# `test/kmod/run.sh --bench`).
#
# For each Debian 12 kernel (6.1 from linux-image-amd64, 6.12 from
# linux-image-6.12-amd64; installed here when missing) it builds kmod/ against
# that kernel's headers (any compiler warning fails), builds the static guest
# program test/kmod/guest, packs both with busybox into an initramfs, boots the
# kernel in qemu-system-x86_64 (TCG, -m 1024 -smp 2) and reads the results from
# the serial console. The run fails if a test fails, the guest does not finish
# (timeout), or the guest kernel log shows BUG:/WARNING:/Oops/general
# protection/list_del corruption/KASAN or any call trace.
#
# Usage: test/kmod/run.sh [--bench] [--kernel 6.1|6.12]...
# KTEST_ONLY=<regexp> runs only the tests whose name matches (and "load").
# Artifacts and console logs: $CACHE_DIR/kmod/<kernel>/ (default
# /var/cache/jackfruit-test). Output format of --bench: test/kmod/README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_DIR=${CACHE_DIR:-/var/cache/jackfruit-test}
work=$CACHE_DIR/kmod
mode=test
want=()
while [ $# -gt 0 ]; do
	case "$1" in
	--bench) mode=bench ;;
	--kernel) want+=("$2"); shift ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ ${#want[@]} -gt 0 ] || want=(6.1 6.12)
timeout_s=${KTEST_TIMEOUT:-420}
[ "$mode" = bench ] && timeout_s=${KTEST_TIMEOUT:-900}

log() { echo "kmod-test: $*" >&2; }
# shellcheck source=test/lib/vm-progress.sh
. "$root/test/lib/vm-progress.sh"

apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

# newest installed kernel of a series whose image and headers are both there
find_kernel() {
	local series=$1 v
	for v in $(ls /boot 2>/dev/null | sed -n "s/^vmlinuz-\(${series//./\\.}[.-].*-amd64\)$/\1/p" | sort -rV); do
		if [ -e "/lib/modules/$v/build/Makefile" ]; then
			echo "$v"
			return 0
		fi
	done
	return 1
}

ensure_kernel() {
	local series=$1 kv
	if kv=$(find_kernel "$series"); then echo "$kv"; return 0; fi
	case "$series" in
	6.1) apt_install linux-image-amd64 linux-headers-amd64 ;;
	6.12) apt_install linux-image-6.12-amd64 linux-headers-6.12-amd64 dwarves ;;
	*) log "unsupported kernel series $series"; return 1 ;;
	esac
	find_kernel "$series" || { log "no $series kernel with headers after installing"; return 1; }
}

apt_install qemu-system-x86 busybox-static cpio gzip make gcc
mkdir -p "$work"

log "building the static guest program"
(cd "$root" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -o "$work/ktest" ./test/kmod/guest)

# Evidence lines worth seeing in CI output.
show='^(KTEST-|KLOG |KBENCH|.*\[container_monitor\] (SOFT|HARD) LIMIT)'
# Kernel complaints, anchored at a printk timestamp so that test output
# quoting them cannot trigger it.
bad='^\[ *[0-9]+\.[0-9]+\] (.*(BUG:|WARNING:|Oops|general protection|list_del corruption|list_add corruption|KASAN|UBSAN|Kernel panic|Call Trace))'

failed=0
npass=0
nfail=0
tpass=0
tfail=0
for series in "${want[@]}"; do
	kv=$(ensure_kernel "$series")
	if [ ! -r "/boot/vmlinuz-$kv" ]; then
		log "[$kv] FAIL: cannot read /boot/vmlinuz-$kv (Debian makes it root-only; run as root)"
		failed=1; nfail=$((nfail + 1))
		continue
	fi
	dir=$work/$kv
	rm -rf "$dir/build"
	mkdir -p "$dir/build"
	cp "$root"/kmod/{monitor.c,monitor_ioctl.h,monitor_compat.h,Kbuild} "$root/VERSION" "$dir/build/"
	log "[$kv] building container_monitor.ko"
	if ! make -C "/lib/modules/$kv/build" M="$dir/build" modules >"$dir/build.log" 2>&1; then
		cat "$dir/build.log" >&2
		log "[$kv] FAIL: module build failed"
		failed=1; nfail=$((nfail + 1))
		continue
	fi
	if grep -qiE 'warning|error' "$dir/build.log"; then
		grep -iE 'warning|error' "$dir/build.log" >&2
		log "[$kv] FAIL: the module build printed warnings"
		failed=1; nfail=$((nfail + 1))
		continue
	fi
	"$root/test/kmod/mkinitramfs.sh" "$dir/build/container_monitor.ko" "$work/ktest" "$dir/initrd.gz"

	console=$dir/console-$mode.log
	case $mode in
	test) typical="about 1 minute" ;;
	bench) typical="about 5 minutes" ;;
	esac
	log "[$kv] booting in QEMU (mode $mode, timeout ${timeout_s}s): $(vm_timing_hint "kmod-$mode-$series" "$typical")"
	log "[$kv] console log: $console"
	: >"$console"
	start=$EPOCHSECONDS
	set +e
	# Single-threaded TCG: with thread=multi, Debian's 6.12 kernel sometimes Oopses at boot
	# ("Oops: int3" in sched_clock_cpu while a static key is live-patched with text_poke_bp),
	# before any of our code runs. One host thread for both vCPUs keeps cross-CPU code patching
	# coherent; the guest still has 2 CPUs, so the concurrency tests still run on SMP.
	timeout -k 10 "$timeout_s" qemu-system-x86_64 -nodefaults -no-user-config -nographic \
		-accel tcg,thread=single -cpu max -m 1024 -smp 2 -no-reboot \
		-kernel "/boot/vmlinuz-$kv" -initrd "$dir/initrd.gz" \
		-append "console=ttyS0 loglevel=5 panic=-1 ktest.mode=$mode${KTEST_ONLY:+ ktest.only=$KTEST_ONLY}" \
		-serial "file:$console" -monitor none </dev/null >"$dir/qemu.log" 2>&1 &
	qpid=$!
	vm_stop_on_interrupt "$qpid"
	# Each test's verdict (and the evidence lines) as the guest prints it.
	vm_follow "$console" "$qpid" | grep --line-buffered -aE "$show" | vm_stamp "$start" >&2 &
	fpid=$!
	wait "$qpid"
	qrc=$?
	wait "$fpid"
	set -e
	elapsed=$((EPOCHSECONDS - start))
	log "[$kv] guest finished in $(vm_duration "$elapsed") (qemu rc $qrc)"
	tp=$(tr -d '\r' <"$console" | grep -ac '^KTEST-RESULT .* PASS' || true)
	tf=$(tr -d '\r' <"$console" | grep -ac '^KTEST-RESULT .* FAIL' || true)
	tpass=$((tpass + tp))
	tfail=$((tfail + tf))

	ok=1
	if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
		log "[$kv] FAIL: guest timed out after ${timeout_s}s"; ok=0
	elif [ $qrc -ne 0 ]; then
		cat "$dir/qemu.log" >&2
		log "[$kv] FAIL: qemu exited with $qrc"; ok=0
	fi
	if vm_clean <"$console" | grep -aE "$bad" >&2; then
		log "[$kv] FAIL: the guest kernel complained (lines above)"; ok=0
	fi
	if [ "$mode" = test ]; then
		done_line=$(tr -d '\r' <"$console" | grep -a '^KTEST-DONE' || true)
		if [ -z "$done_line" ]; then
			log "[$kv] FAIL: no KTEST-DONE line: the guest test program died"; ok=0
		elif [ "$done_line" != "${done_line/fail=0/}" ]; then
			log "[$kv] $done_line"
		else
			log "[$kv] FAIL: $done_line"; ok=0
		fi
	elif ! tr -d '\r' <"$console" | grep -aq '^KBENCH-DONE'; then
		log "[$kv] FAIL: no KBENCH-DONE line"; ok=0
	fi
	if [ $ok -eq 1 ]; then
		log "[$kv] PASS"; npass=$((npass + 1))
		vm_timing_record "kmod-$mode-$series" "$elapsed"
	else
		failed=1; nfail=$((nfail + 1))
	fi
done
if [ "$mode" = test ]; then
	echo "kmod-test: $tpass passed, $tfail failed (tests, over ${#want[@]} kernels: $npass passed, $nfail failed)"
else
	echo "kmod-$mode: $npass passed, $nfail failed"
fi
exit $failed
