#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The demo (test/demo.sh on a machine whose kernel cannot load modules), run inside the
# Debian 12 guest as root: install the packages as a user would, run the memory hog with a
# 40 MiB soft and 64 MiB hard limit, and show what the journal and the kernel log say.

# shellcheck source=test/e2e/guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"

wait_boot
step 1 "install: dpkg -i jackfruit-monitor-dkms jackfruit (DKMS builds and loads the module)"
CHECK_TIMEOUT=1200 check "dpkg -i" "dpkg -i $JF/debs/jackfruit-monitor-dkms_*.deb $JF/debs/jackfruit_*.deb"
check "dkms status" "dkms status | grep container-monitor"
check_match "module loaded, device node present" "^crw-------" \
	"lsmod | grep ^container_monitor && ls -l /dev/container_monitor | tail -n1 | cut -c1-10 && ls -l /dev/container_monitor"
check "base rootfs (busybox + memory_hog) in /var/lib/jackfruit/rootfs" \
	"mkdir -p /var/lib/jackfruit/rootfs && tar -C /var/lib/jackfruit/rootfs -xf $JF/rootfs.tar && ls /var/lib/jackfruit/rootfs/usr/bin"

step 2 "jackfruit run hog --soft-mib 40 --hard-mib 64 -- /usr/bin/memory_hog"
_run match "the hog grows until the monitor kills it at 64 MiB (exit 137)" "^exit=137$" \
	"jackfruit run hog --soft-mib 40 --hard-mib 64 -- /usr/bin/memory_hog; echo exit=\$?"
check "jackfruit ps -a" "jackfruit ps -a"
check "systemctl status jackfruit (socket activated on first use)" \
	"systemctl status --no-pager -n 0 jackfruit | head -n 8"
check "busctl: the container's State property" \
	"busctl get-property io.jackfruit.Jackfruit1 /io/jackfruit/Jackfruit1/container/hog io.jackfruit.Jackfruit1.Container State"

step 3 "what the journal and the kernel say"
check_match "journalctl CONTAINER=hog" "hard memory limit" "journalctl --no-pager CONTAINER=hog -o short"
check_match "dmesg | grep container_monitor" "HARD LIMIT container=hog" "dmesg | grep container_monitor"
save_logs demo
end_step
touch "$R/done"
leave poweroff
