#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the runtime's host tests, then the seccomp package's and the cgroup package's, inside QEMU on a Debian kernel with
# a busybox initramfs as the root filesystem. This covers what the host tests cannot: the
# distribution kernels (6.1, 6.12), an initramfs root, which pivot_root refuses to move (the
# runtime falls back to MS_MOVE + chroot there), and i386 syscalls (int 0x80), which the build
# hosts' kernel cannot run.
#
# usage: service/runtime/testdata/initramfs-test.sh ROOTFS [KERNEL_VERSION...]
#   ROOTFS is the test rootfs from `make rootfs` (build/rootfs); kernel versions default to
#   every /boot/vmlinuz-* installed. Needs qemu-system-x86, cpio, busybox-static. Exit 0 only
#   when the tests pass on every kernel and the guest log has no BUG/WARNING/Oops.
set -euo pipefail

die() { echo "initramfs-test: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 ROOTFS [KERNEL_VERSION...]"
rootfs=$(realpath "$1"); shift
[ -x "$rootfs/bin/busybox" ] || die "$rootfs is not a test rootfs (run make rootfs)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
command -v cpio >/dev/null || die "cpio missing"
kernels=("$@")
if [ ${#kernels[@]} -eq 0 ]; then
	for k in /boot/vmlinuz-*; do kernels+=("${k#/boot/vmlinuz-}"); done
fi
[ ${#kernels[@]} -gt 0 ] || die "no kernel in /boot"

repo=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=test/lib/vm-progress.sh
. "$repo/test/lib/vm-progress.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo" && CGO_ENABLED=0 go test -c -o "$work/runtime.test" ./service/runtime/)
(cd "$repo" && CGO_ENABLED=0 go test -c -o "$work/seccomp.test" ./service/runtime/seccomp/)
(cd "$repo" && CGO_ENABLED=0 go test -c -o "$work/cgroup.test" ./service/cgroup/)

# TCG on purpose: build machines here have a /dev/kvm node that does not work.
# Single-threaded TCG: with thread=multi, Debian's 6.12 kernel sometimes Oopses at boot
# ("Oops: int3" in sched_clock_cpu while a static key is live-patched with text_poke_bp),
# before any of our code runs. One host thread for both vCPUs keeps cross-CPU code patching
# coherent; the guest still has 2 CPUs, so the concurrency tests still run on SMP.
accel=(-accel tcg,thread=single -cpu max)
# The console logs stay after the run, per kernel, for diagnosis and to follow with tail -f.
logdir=${INITRAMFS_TEST_LOG_DIR:-${CACHE_DIR:-/var/cache/jackfruit-test}/runtime-vm}
mkdir -p "$logdir"
failed=0
tpass=0
tfail=0
tskip=0
for kv in "${kernels[@]}"; do
	kernel=/boot/vmlinuz-$kv
	[ -r "$kernel" ] || die "no $kernel"
	img=$work/img-$kv
	mkdir -p "$img"/{bin,proc,sys,dev,tmp,lib/modules}
	cp /bin/busybox "$img/bin/busybox"
	ln -sf busybox "$img/bin/sh"
	cp "$work/runtime.test" "$work/seccomp.test" "$work/cgroup.test" "$img/"
	cp -a "$rootfs" "$img/rootfs"
	ov=$(find "/lib/modules/$kv/kernel/fs/overlayfs" -name 'overlay.ko*' 2>/dev/null | head -1)
	[ -n "$ov" ] && cp "$ov" "$img/lib/modules/"
	cat >"$img/init" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# A pure cgroup2 with the memory controller (the build host has none): service/cgroup's
# memory.max and OOM tests run here for real.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in /lib/modules/overlay.ko*; do [ -e "$m" ] && insmod "$m"; done
echo "=== kernel $(uname -r), root: $(grep ' / / ' /proc/self/mountinfo | head -1)"
cd /
JACKFRUIT_TEST_ROOTFS=/rootfs TMPDIR=/tmp /runtime.test -test.count=1 -test.v -test.timeout=5m 2>&1
echo "=== exit $?"
TMPDIR=/tmp /seccomp.test -test.count=1 -test.v -test.timeout=5m 2>&1
echo "=== exit $?"
TMPDIR=/tmp /cgroup.test -test.count=1 -test.v -test.timeout=5m 2>&1
echo "=== exit $?"
poweroff -f
EOF
	chmod +x "$img/init"
	(cd "$img" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd-$kv.gz"
	log=$work/log-$kv
	keep=$logdir/console-$kv.log
	series=${kv%%-*}
	echo "--- booting $kv (timeout 900s): $(vm_timing_hint "runtime-vm-${series%.*}" "about 1 minute")"
	echo "    console log: $keep (tail -f it to follow the whole output)"
	: >"$keep"
	start=$EPOCHSECONDS
	timeout 900 qemu-system-x86_64 "${accel[@]}" -m 2048 -smp 2 -nographic -no-reboot -nodefaults -no-user-config \
		-serial "file:$keep" -monitor none \
		-kernel "$kernel" -initrd "$work/initrd-$kv.gz" \
		-append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null >"$work/qemu-$kv.log" 2>&1 &
	qpid=$!
	vm_stop_on_interrupt "$qpid"
	# Each top-level test's verdict as it ends; the tests' own output is in the console log.
	vm_follow "$keep" "$qpid" | grep --line-buffered -E '^(=== kernel|=== exit|--- (PASS|FAIL|SKIP): )' | vm_stamp "$start" &
	fpid=$!
	wait "$qpid" || true
	wait "$fpid" || true
	vm_clean <"$keep" >"$log"
	p=$(grep -c '^--- PASS: ' "$log" || true)
	f=$(grep -c '^--- FAIL: ' "$log" || true)
	k=$(grep -c '^--- SKIP: ' "$log" || true)
	tpass=$((tpass + p)) tfail=$((tfail + f)) tskip=$((tskip + k))
	echo "    $kv: $p passed, $f failed, $k skipped in $(vm_duration $((EPOCHSECONDS - start)))"
	ok=1
	# The three test binaries (the runtime's, service/runtime/seccomp's and service/cgroup's)
	# must pass: three PASS lines, three clean exits.
	if [ "$(grep -c '^PASS$' "$log")" -ne 3 ] || [ "$(grep -c '^=== exit 0$' "$log")" -ne 3 ] || [ "$f" -ne 0 ]; then
		echo "FAIL on $kv (last 50 lines of $keep below)"; tail -50 "$log"; ok=0
	fi
	if grep -E 'BUG:|WARNING:|Oops|KASAN' "$log"; then
		echo "FAIL on $kv: kernel complained"; ok=0
	fi
	if [ $ok = 1 ]; then
		vm_timing_record "runtime-vm-${series%.*}" $((EPOCHSECONDS - start))
	else
		failed=1
	fi
done
echo "runtime-vm-test: $tpass passed, $tfail failed, $tskip skipped (top-level tests, over ${#kernels[@]} kernels)"
exit $failed
