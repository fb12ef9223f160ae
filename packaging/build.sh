#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make deb`: builds the jackfruit and jackfruit-monitor-dkms packages with Debian's own
# tooling (dpkg-buildpackage, debhelper, dh-dkms) and checks them with lintian.
#
# The source tree is staged under build/deb/src (the repository files plus packaging/debian
# as debian/), the changelog is written from VERSION (the one version source), and the
# results (.deb, .buildinfo, .changes) land in build/deb/. Set LINTIAN=0 to skip lintian.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/deb"
die() { echo "packaging/build.sh: $*" >&2; exit 1; }

version=$(tr -d ' \n' <"$top/VERSION")
[[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "VERSION '$version' is not a valid Debian version"

for t in dpkg-buildpackage dh dh_dkms lintian; do
	command -v "$t" >/dev/null || die "$t not found; run 'make deps' (test/deps.sh)"
done
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || die "no Go toolchain on PATH or in /usr/local/go/bin (Debian 12's golang-go is too old)"

# The module package installs to /usr/src/container-monitor-<VERSION>/; dkms.conf must agree.
dkms_conf="$top/kmod/dkms.conf"
[ -f "$dkms_conf" ] || die "$dkms_conf is missing (the module's DKMS configuration)"
grep -Eq '^PACKAGE_NAME="?container-monitor"?$' "$dkms_conf" ||
	die "kmod/dkms.conf: PACKAGE_NAME must be \"container-monitor\""
pv=$(sed -n 's/^PACKAGE_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$dkms_conf")
case "$pv" in
"@VERSION@" | "#MODULE_VERSION#" | "$version") ;;
*) die "kmod/dkms.conf: PACKAGE_VERSION is '$pv'; use @VERSION@ so it follows VERSION ($version)" ;;
esac

stage="$out/src/jackfruit-$version"
rm -rf "$out"
mkdir -p "$stage"

# Stage the sources: what git knows about (tracked, or new and not ignored) when this is a
# checkout, otherwise the tree minus build outputs.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf -) | tar -C "$stage" -xf -
	rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
	epoch=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
else
	tar -C "$top" --exclude=./build --exclude=./bin --exclude=./.git -cf - . | tar -C "$stage" -xf -
	rev=unknown
	epoch=$(date +%s)
fi
rm -rf "$stage/debian"
cp -a "$top/packaging/debian" "$stage/debian"

# Reproducible timestamps in the packages follow the last commit.
export SOURCE_DATE_EPOCH=$epoch
cat >"$stage/debian/changelog" <<CHANGELOG
jackfruit ($version) unstable; urgency=medium

  * Build of jackfruit $version (git $rev).

 -- Jackfruit developers <team@jackfruit.io>  $(date -u -R -d "@$epoch")
CHANGELOG

echo "packaging/build.sh: building jackfruit $version in $stage"
(cd "$stage" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
	tail -n 60 "$out/build.log" >&2
	die "dpkg-buildpackage failed; full log in $out/build.log"
}
mv "$out/src"/*.deb "$out/src"/*.buildinfo "$out/src"/*.changes "$out/"
ls -l "$out"/*.deb

if [ "${LINTIAN:-1}" != 0 ]; then
	echo "packaging/build.sh: lintian"
	# Errors fail the build; warnings are printed (the ones we keep are overridden with a
	# reason in debian/*.lintian-overrides, see docs/packaging.md).
	# lintian unpacks what it checks and warns that doing so as root "is not recommended":
	# as root, it runs as nobody on a copy of the packages that nobody can read.
	lint_cmd=(lintian)
	lint_debs=("$out"/*.deb)
	if [ "$(id -u)" -eq 0 ]; then
		id nobody >/dev/null 2>&1 || die "no user 'nobody' to run lintian as (it should not run as root)"
		lint_dir=$(mktemp -d /tmp/jackfruit-lintian.XXXXXX)
		trap 'rm -rf "$lint_dir"' EXIT
		cp "${lint_debs[@]}" "$lint_dir/"
		chmod 0755 "$lint_dir"
		chmod 0644 "$lint_dir"/*.deb
		lint_debs=("$lint_dir"/*.deb)
		lint_cmd=(setpriv --reuid=nobody --regid=nogroup --clear-groups env -i PATH=/usr/bin:/bin HOME="$lint_dir" LANG=C.UTF-8 lintian)
	fi
	if ! (cd / && "${lint_cmd[@]}" --fail-on error --display-info "${lint_debs[@]}") | tee "$out/lintian.txt"; then
		die "lintian reported errors (see above and $out/lintian.txt)"
	fi
	echo "packaging/build.sh: lintian: $(grep -c '^E:' "$out/lintian.txt" || true) errors, $(grep -c '^W:' "$out/lintian.txt" || true) warnings, $(grep -c '^I:' "$out/lintian.txt" || true) info"
fi
