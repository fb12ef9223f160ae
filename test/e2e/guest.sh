#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entry point on the data disk: jf-guest-runner.service runs /mnt/jf/guest.sh at every boot.
# It runs the scenario (scenario.sh, copied from guest-e2e.sh or guest-demo.sh by run.sh)
# from a copy in /run, so nothing holds the data disk open when the scenario unmounts it
# before a reboot or the power-off. A scenario that dies without leaving (a bug in it)
# still powers the guest off, so the host does not wait for its timeout.
if [ "$0" != /run/jf-guest/guest.sh ]; then
	mkdir -p /run/jf-guest
	cp /mnt/jf/guest.sh /mnt/jf/guest-lib.sh /mnt/jf/scenario.sh /run/jf-guest/
	exec /bin/sh /run/jf-guest/guest.sh
fi
cd /
JF=/mnt/jf /bin/bash /run/jf-guest/scenario.sh
rc=$?
if [ $rc -ne 0 ]; then
	echo "scenario.sh exited with status $rc before it finished; powering off" | tee -a /mnt/jf/results/transcript.txt
	sync
	systemctl poweroff
fi
