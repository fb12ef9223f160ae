#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the kernel-test initramfs: Debian's busybox-static, the module, the
# static ktest program and an /init that runs `ktest <mode>` and powers off.
#   mkinitramfs.sh MODULE.ko KTEST-BINARY OUTPUT.cpio.gz
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 MODULE.ko KTEST OUTPUT.cpio.gz" >&2; exit 2; }
ko=$1 ktest=$2 out=$3
busybox=/bin/busybox
! ldd "$busybox" >/dev/null 2>&1 ||
	{ echo "mkinitramfs: $busybox is not static; apt-get install busybox-static" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$ko" "$root/lib/container_monitor.ko"
cp "$ktest" "$root/ktest"
cat >"$root/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mode=test
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ktest.mode=*) mode=${arg#ktest.mode=} ;;
	ktest.only=*) export KTEST_ONLY=${arg#ktest.only=} ;;
	esac
done
echo "KTEST-BOOT kernel=$(uname -r) mode=$mode"
/ktest "$mode"
echo "KTEST-EXIT rc=$?"
poweroff -f
INIT
chmod 755 "$root/init" "$root/ktest"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
