#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entry point on the data disk: jf-guest-runner.service runs /mnt/jf/guest.sh at every boot.
# It runs the scenario (scenario.sh, copied from guest-e2e.sh or guest-demo.sh by run.sh)
# from a copy in /run, so nothing holds the data disk open when the scenario unmounts it
# before a reboot or the power-off. A scenario that dies without leaving (a bug in it)
# still powers the guest off, so the host does not wait for its timeout.
#
# The runner is a systemd service, and systemd starts services with SIGPIPE ignored
# (IgnoreSIGPIPE=yes is the default), which every command inherits. Then a writer whose
# reader has gone gets EPIPE instead of dying quietly, and says so: dkms's `[ -e <(echo) ]`
# (/usr/sbin/dkms line 2497, bookworm's dkms 3.0.10) printed "echo: write error: Broken
# pipe" under every `dpkg -i` and `dkms status`, which a user at a terminal never sees. The
# scenario runs with SIGPIPE at its default, as from a login shell. (Set here rather than
# with IgnoreSIGPIPE=no in the image's runner unit: that would change the cached image.)
if [ "$0" != /run/jf-guest/guest.sh ]; then
	mkdir -p /run/jf-guest
	cp /mnt/jf/guest.sh /mnt/jf/guest-lib.sh /mnt/jf/scenario.sh /run/jf-guest/
	exec env --default-signal=PIPE /bin/sh /run/jf-guest/guest.sh
fi
cd /
JF=/mnt/jf /bin/bash /run/jf-guest/scenario.sh
rc=$?
if [ $rc -ne 0 ]; then
	msg="scenario.sh exited with status $rc before it finished; powering off"
	echo "$msg" | tee -a /mnt/jf/results/transcript.txt
	[ ! -c /dev/virtio-ports/jf.progress ] || echo "$msg" >>/dev/virtio-ports/jf.progress
	sync
	systemctl poweroff
fi
