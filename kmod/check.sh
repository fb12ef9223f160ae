#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# C lint for the kernel module: checkpatch.pl --no-tree and sparse against every
# installed kernel's headers, plus a W=1 build that must print no warning.
#
# checkpatch.pl is not shipped in any Debian 12 binary package except inside the
# kernel source tarball of linux-source-6.1; this script installs that package
# when missing and extracts the three files checkpatch needs into $CACHE_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-/var/cache/jackfruit-test}
cp_dir=$CACHE_DIR/checkpatch
checkpatch=$cp_dir/scripts/checkpatch.pl
fail=0

if [ ! -f "$checkpatch" ]; then
	tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true)
	if [ -z "$tarball" ]; then
		echo "check.sh: installing linux-source-6.1 (it holds scripts/checkpatch.pl)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linux-source-6.1 >/dev/null ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linux-source-6.1 >/dev/null; }
		tarball=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n1)
	fi
	top=$(basename "$tarball" .tar.xz)
	mkdir -p "$cp_dir"
	echo "check.sh: extracting checkpatch.pl from $tarball" >&2
	tar -C "$cp_dir" -xJf "$tarball" --strip-components=1 \
		"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
fi

echo "== checkpatch.pl --no-tree"
if ! perl "$checkpatch" --no-tree --quiet --show-types -f \
	"$here/monitor.c" "$here/monitor_ioctl.h" "$here/monitor_compat.h"; then
	fail=1
fi

kernels=$(ls -d /lib/modules/*/build 2>/dev/null | awk -F/ '{print $4}')
[ -n "$kernels" ] || { echo "check.sh: no kernel headers under /lib/modules/*/build" >&2; exit 1; }
for kv in $kernels; do
	work=$(mktemp -d)
	cp "$here"/monitor.c "$here"/monitor_ioctl.h "$here"/monitor_compat.h "$here"/Kbuild "$work"/
	log=$work/build.log
	echo "== $kv: W=1 build + sparse"
	if ! make -s -C "/lib/modules/$kv/build" M="$work" W=1 C=1 CHECK=sparse modules >"$log" 2>&1; then
		cat "$log"
		echo "check.sh: build against $kv failed" >&2
		fail=1
	elif grep -v '^Skipping BTF generation' "$log" | grep -q .; then
		# Any line from gcc or sparse is a finding; the BTF note is kbuild's, not ours.
		grep -v '^Skipping BTF generation' "$log"
		echo "check.sh: warnings building against $kv" >&2
		fail=1
	fi
	rm -rf "$work"
done

if [ $fail -ne 0 ]; then
	echo "check.sh: FAILED" >&2
	exit 1
fi
echo "check.sh: clean"
