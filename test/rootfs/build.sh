#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the test rootfs: Debian's static busybox with an applet symlink for each command in
# /bin, the static memory_hog as /usr/bin/memory_hog, the isolation tests' static syscall probe
# as /usr/bin/jfprobe, minimal /etc files and the mount-point
# directories the runtime needs (proc, dev, sys). Idempotent and fast: files are only
# rewritten when their content changed, stale applet links are removed.
#
# usage: test/rootfs/build.sh BINDIR OUTDIR     (make rootfs: test/rootfs/build.sh bin build/rootfs)
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 BINDIR OUTDIR"
bindir=$1
out=$2
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$bindir/memory_hog" ] || die "$bindir/memory_hog not found: run 'make build' (or go build -o $bindir/memory_hog ./cmd/memory_hog) first"
[ -x "$bindir/jfprobe" ] || die "$bindir/jfprobe not found: run 'make build' (or go build -o $bindir/jfprobe ./cmd/jfprobe) first"
[ -x "$busybox" ] || die "$busybox not found: install Debian's busybox-static (apt-get install busybox-static)"

# A dynamically linked binary would not run inside a rootfs without libc; refuse it early
# rather than produce a rootfs whose every command fails with "not found".
is_static() {
	# Only dynamically linked files have a PT_INTERP program header (the loader's path).
	local f=$1 headers
	if command -v readelf >/dev/null 2>&1; then
		headers=$(LC_ALL=C readelf -lW "$f" 2>/dev/null) || return 1
		[[ $headers != *INTERP* ]]
	else
		! grep -qa -e '/lib64/ld-linux' -e '/lib/ld-linux' -e '/lib/ld-musl' "$f"
	fi
}
is_static "$busybox" || die "$busybox is dynamically linked: install busybox-static (not busybox)"
for b in memory_hog jfprobe; do
	is_static "$bindir/$b" || die "$bindir/$b is dynamically linked: build it with CGO_ENABLED=0"
done

# install_file SRC DST MODE: copy only when the content differs, so reruns are cheap.
install_file() {
	if ! cmp -s "$1" "$2"; then
		install -m "$3" "$1" "$2.tmp.$$"
		mv -f "$2.tmp.$$" "$2"
	fi
	chmod "$3" "$2"
}

# write_file DST MODE < content
write_file() {
	local tmp="$1.tmp.$$"
	cat >"$tmp"
	chmod "$2" "$tmp"
	if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

mkdir -p "$out"
for d in bin sbin usr/bin usr/sbin etc proc dev sys run var var/tmp; do
	mkdir -p "$out/$d"
	chmod 0755 "$out/$d"
done
mkdir -p "$out/root" "$out/tmp"
chmod 0700 "$out/root"
chmod 1777 "$out/tmp" "$out/var/tmp"

install_file "$busybox" "$out/bin/busybox" 0755
install_file "$bindir/memory_hog" "$out/usr/bin/memory_hog" 0755
install_file "$bindir/jfprobe" "$out/usr/bin/jfprobe" 0755

# Absolute links, as `busybox --install -s` makes them; the runtime must resolve them inside
# the rootfs, never on the host.
# One find instead of a readlink per applet keeps reruns fast.
declare -A want=() have=()
while read -r name; do
	have[$name]=1
done < <(find "$out/bin" -maxdepth 1 -type l -lname /bin/busybox -printf '%f\n')
while read -r applet; do
	[ -n "$applet" ] && [ "$applet" != busybox ] || continue
	want[$applet]=1
	[ -n "${have[$applet]:-}" ] || ln -sfn /bin/busybox "$out/bin/$applet"
done < <("$out/bin/busybox" --list)
# Drop links for applets a new busybox no longer has.
for name in "${!have[@]}"; do
	[ -n "${want[$name]:-}" ] || rm -f "$out/bin/$name"
done

write_file "$out/etc/passwd" 0644 <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
write_file "$out/etc/group" 0644 <<'EOF'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
EOF
write_file "$out/etc/hostname" 0644 <<<'jackfruit'
write_file "$out/etc/hosts" 0644 <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF

echo "rootfs ready: $out ($(ls "$out/bin" | wc -l) entries in /bin)"
