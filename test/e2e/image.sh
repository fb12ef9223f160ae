#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds (once) and caches the Debian 12 guest image used by the full-system VM test and the
# VM demo. Prints the directory holding root.img, vmlinuz, initrd.img and kver.
#
# The cache key is the hash of THIS file: the package list and every hook live here, so any
# change to the recipe yields a new key and a rebuild; an unchanged recipe reuses the image.
# Nothing from the project is baked in: the packages under test, the test rootfs and the
# scenario arrive on a second disk at every run, so the image only changes with this recipe.
set -euo pipefail

CACHE_DIR=${CACHE_DIR:-/var/cache/jackfruit-test}
SUITE=bookworm
MIRROR=${JACKFRUIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${JACKFRUIT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_SIZE=4G
# What the guest needs: systemd as PID 1, the system bus, udev + kmod for the device node and
# modules-load.d, dkms with a compiler and the headers matching the installed kernel, busybox
# for the test rootfs tools, gdbus (libglib2.0-bin) for step 5, e2fsprogs/procps for the
# scenario's own checks; systemd-container (machined, machinectl) for the per-container
# units and machine registration; tmux for the terminal tests; tini for --init; podman
# (with conmon and crun) for the systemd-path bench's peer (make bench, item 6).
PACKAGES=(
	systemd systemd-sysv dbus kmod udev
	dkms gcc make libc6-dev
	linux-image-amd64 linux-headers-amd64 initramfs-tools
	busybox-static libglib2.0-bin e2fsprogs procps
	systemd-container tmux tini podman
)

die() { echo "image.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap, mkfs.ext4 -d with root-owned files)"
for t in mmdebstrap mkfs.ext4 sha256sum flock; do
	command -v "$t" >/dev/null || die "$t not found; run 'make deps' (test/deps.sh)"
done

key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
out="$CACHE_DIR/e2e-image-$key"
mkdir -p "$CACHE_DIR"

# Serialise concurrent builds (e2e and demo may run at once); the second waits and reuses.
exec 9>"$CACHE_DIR/e2e-image.lock"
flock 9

if [ -f "$out/complete" ]; then
	echo "$out"
	exit 0
fi

echo "image.sh: building Debian $SUITE guest image in $out (about 5 minutes)" >&2
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"
tree="$out.tmp/tree"

# The runner baked into the image: on every boot, if the second disk (/dev/vdb) carries
# guest.sh, mount it and run it. Type=exec (not oneshot) so the boot can finish while the
# scenario runs; the scenario itself waits for `systemctl is-system-running --wait`.
runner_unit='[Unit]
Description=jackfruit VM test runner (runs guest.sh from the second disk)
ConditionPathExists=/dev/vdb
After=basic.target dbus.service systemd-udev-settle.service
[Service]
Type=exec
ExecStart=/usr/local/sbin/jf-guest-runner
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target'
runner_script='#!/bin/sh
set -e
mkdir -p /mnt/jf
mountpoint -q /mnt/jf || mount -t ext4 /dev/vdb /mnt/jf
if [ -x /mnt/jf/guest.sh ]; then exec /mnt/jf/guest.sh /mnt/jf; fi
echo "jf-guest-runner: /mnt/jf/guest.sh missing, nothing to do"'

mmdebstrap --variant=minbase --mode=root \
	--aptopt='APT::Install-Recommends "false"' \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	--customize-hook='echo jackfruit-e2e > "$1/etc/hostname"' \
	--customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 jackfruit-e2e\n" > "$1/etc/hosts"' \
	--customize-hook='printf "/dev/vda / ext4 rw,errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
	--customize-hook='chroot "$1" passwd -d root' \
	--customize-hook="printf '%s\n' '$runner_unit' > \"\$1/etc/systemd/system/jf-guest-runner.service\"" \
	--customize-hook="printf '%s\n' '$runner_script' > \"\$1/usr/local/sbin/jf-guest-runner\"" \
	--customize-hook='chmod 0755 "$1/usr/local/sbin/jf-guest-runner"' \
	--customize-hook='chroot "$1" systemctl enable jf-guest-runner.service' \
	--customize-hook='rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*_Packages' \
	"$SUITE" "$tree" \
	"deb $MIRROR $SUITE main" \
	"deb $MIRROR $SUITE-updates main" \
	"deb $SECURITY_MIRROR $SUITE-security main" >&2

vmlinuz=$(ls "$tree"/boot/vmlinuz-* | sort -V | tail -n1)
[ -n "$vmlinuz" ] || die "no kernel installed in the image"
kver=${vmlinuz##*/vmlinuz-}
[ -f "$tree/boot/initrd.img-$kver" ] || die "no initrd for $kver in the image"
[ -d "$tree/usr/src/linux-headers-$kver" ] || die "headers for $kver missing in the image"
cp "$vmlinuz" "$out.tmp/vmlinuz"
cp "$tree/boot/initrd.img-$kver" "$out.tmp/initrd.img"
echo "$kver" >"$out.tmp/kver"

truncate -s "$IMAGE_SIZE" "$out.tmp/root.img"
mkfs.ext4 -q -F -L jf-root -d "$tree" "$out.tmp/root.img"
rm -rf "$tree"
touch "$out.tmp/complete"
mv "$out.tmp" "$out"

# Older images (other recipe hashes) are dead weight; keep only this one.
for old in "$CACHE_DIR"/e2e-image-*; do
	[ "$old" = "$out" ] || [ "$old" = "$CACHE_DIR/e2e-image.lock" ] || rm -rf "$old"
done
echo "$out"
