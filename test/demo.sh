#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: the README's first command. Runs the memory-limit demo end to end on a Debian 12
# machine, as root, from a fresh clone:
#   - installs what the build needs (test/deps.sh), builds the packages and the test rootfs;
#   - where the running kernel can load modules: installs the packages on THIS machine (DKMS
#     builds the module for the running kernel; systemd socket-activates the supervisor), or,
#     without systemd as PID 1, loads the module with insmod and runs the supervisor by hand;
#     then runs the memory hog and shows its journal entries and the kernel's lines;
#   - where it cannot (no /proc/modules, modules disabled, e.g. a container or a kernel
#     built without module support), runs the same demo inside a Debian 12 VM (QEMU, the
#     full-system test's image and harness) and prints the guest's transcript.
# JACKFRUIT_DEMO=vm forces the VM, JACKFRUIT_DEMO=host forces this machine.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
die() { echo "demo: $*" >&2; exit 1; }
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and loads a kernel module)"
export PATH="$PATH:/usr/local/go/bin"

can_load_modules() {
	[ -e /proc/modules ] || return 1
	[ "$(cat /proc/sys/kernel/modules_disabled 2>/dev/null || echo 1)" = 0 ] || return 1
	[ -d "/lib/modules/$(uname -r)" ] || return 1
}

mode=${JACKFRUIT_DEMO:-auto}
if [ "$mode" = auto ]; then
	if can_load_modules; then mode=host; else mode=vm; fi
fi
case $mode in host | vm) ;; *) die "JACKFRUIT_DEMO must be host or vm, not '$mode'" ;; esac

say "installing build dependencies (test/deps.sh)"
test/deps.sh
command -v go >/dev/null || die "no Go toolchain: install Go >= the version in go.mod to /usr/local/go"

say "building the packages and the test rootfs (make deb rootfs)"
make deb rootfs

if [ "$mode" = vm ]; then
	say "this kernel cannot load modules ($(uname -r)): running the demo in a Debian 12 VM"
	echo "(first run builds and caches the guest image, about 5 minutes; the VM run takes a few minutes more)"
	exec test/e2e/run.sh --scenario demo
fi

hog_name=hog
say "installing kernel headers for $(uname -r) so DKMS can build the module"
if ! apt-get install -y --no-install-recommends "linux-headers-$(uname -r)" >/dev/null 2>&1; then
	apt-get update -qq
	apt-get install -y --no-install-recommends "linux-headers-$(uname -r)" >/dev/null ||
		die "linux-headers-$(uname -r) is not installable; DKMS needs the running kernel's headers"
fi

if [ -d /run/systemd/system ]; then
	say "dpkg -i the packages (DKMS builds and loads container_monitor)"
	dpkg -i build/deb/jackfruit-monitor-dkms_*.deb build/deb/jackfruit_*.deb
	dkms status | grep container-monitor
	if [ ! -x /var/lib/jackfruit/rootfs/bin/sh ]; then
		say "installing the test rootfs as the base rootfs /var/lib/jackfruit/rootfs"
		mkdir -p /var/lib/jackfruit/rootfs
		cp -a build/rootfs/. /var/lib/jackfruit/rootfs/
	fi
	jf=/usr/bin/jackfruit
	stop_supervisor() { :; }
else
	say "no systemd: loading the module with insmod and running 'jackfruit supervisor' by hand"
	make -C kmod >/dev/null
	grep -q '^container_monitor ' /proc/modules || insmod kmod/container_monitor.ko
	jf=$top/bin/jackfruit
	state=$(mktemp -d /tmp/jackfruit-demo.XXXXXX)
	"$jf" supervisor --state-dir "$state/state" --run-dir "$state/run" \
		--socket "$state/run/jackfruit.sock" --base-rootfs "$top/build/rootfs" >"$state/supervisor.log" 2>&1 &
	sup=$!
	export JACKFRUIT_SOCKET=$state/run/jackfruit.sock
	for _ in $(seq 50); do [ -S "$JACKFRUIT_SOCKET" ] && break; sleep 0.2; done
	stop_supervisor() { kill "$sup" 2>/dev/null; wait "$sup" 2>/dev/null || true; }
	trap stop_supervisor EXIT
fi

# A hog from an earlier demo run is replaced.
"$jf" rm -f "$hog_name" >/dev/null 2>&1 || true
say "jackfruit run $hog_name --soft-mib 40 --hard-mib 64 -- /usr/bin/memory_hog"
set +e
"$jf" run "$hog_name" --soft-mib 40 --hard-mib 64 -- /usr/bin/memory_hog
echo "exit code: $?"
set -e
say "jackfruit ps -a"
"$jf" ps -a
if command -v journalctl >/dev/null && [ -S /run/systemd/journal/socket ]; then
	say "journalctl CONTAINER=$hog_name"
	journalctl --no-pager -o short CONTAINER="$hog_name" | tail -n 20
else
	say "jackfruit logs $hog_name (no journald here)"
	"$jf" logs "$hog_name" | tail -n 20
fi
say "kernel log (dmesg | grep container_monitor)"
dmesg | grep container_monitor | tail -n 5
stop_supervisor
