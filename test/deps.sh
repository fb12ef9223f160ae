#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian package and Go tool that build, tests, packaging and benchmarks use.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
	build-essential make git cpio e2fsprogs fakeroot
	busybox-static
	qemu-system-x86 qemu-utils
	linux-image-amd64 linux-headers-amd64
	linux-image-6.12-amd64 linux-headers-6.12-amd64 dwarves
	sparse linux-source-6.1
	mmdebstrap
	debhelper dh-dkms dkms lintian dpkg-dev
	systemd dbus libglib2.0-bin
	crun runc conmon linux-perf
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
	go install honnef.co/go/tools/cmd/staticcheck@latest
fi
go mod download
