#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The full-system scenario (make e2e), run inside the Debian 12 guest as root at every boot.
# Boot 1: step 1, then reboot. Boot 2: steps 2-7, then power off. See docs/e2e.md.
#
# Inputs on the second disk (/mnt/jf): debs/*.deb, rootfs.tar (the test rootfs), this
# script and guest-lib.sh. Results: /mnt/jf/results (see guest-lib.sh).

# shellcheck source=test/e2e/guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"

BUS="io.jackfruit.Jackfruit1"
MGR_PATH="/io/jackfruit/Jackfruit1"
MGR_IF="io.jackfruit.Jackfruit1.Manager"
CT_IF="io.jackfruit.Jackfruit1.Container"
HOG_PATH="$MGR_PATH/container/hog"
SOFT=$((40 << 20))
HARD=$((64 << 20))
USER_NAME=alice

phase1() {
	wait_boot
	step 1 "dpkg -i both packages; DKMS builds and installs the module"
	check "jackfruit is not installed yet" "! dpkg -s jackfruit >/dev/null 2>&1"
	CHECK_TIMEOUT=1200 check "dpkg -i jackfruit-monitor-dkms jackfruit" "dpkg -i $JF/debs/jackfruit-monitor-dkms_*.deb $JF/debs/jackfruit_*.deb"
	check_match "dkms status shows container-monitor installed for $(uname -r)" \
		"container-monitor/[^,]+, $(uname -r), x86_64: installed" "dkms status"
	check "the module file is installed under /lib/modules/$(uname -r)" \
		"find /lib/modules/$(uname -r) -name 'container_monitor.ko*' | grep ."
	check_match "jackfruit.socket is enabled" "^enabled" "systemctl is-enabled jackfruit.socket"
	check_match "jackfruit.service is not enabled (socket activated)" "^disabled" \
		"systemctl is-enabled jackfruit.service || true"
	check "group jackfruit exists (sysusers.d)" "getent group jackfruit"
	# The image has no man-db, so verify cannot resolve Documentation=man:...; check that
	# those pages are installed instead.
	check "systemd-analyze verify on the installed units" \
		"systemd-analyze verify --man=no /lib/systemd/system/jackfruit.socket /lib/systemd/system/jackfruit.service /lib/systemd/system/jackfruit.slice"
	check "the man pages the units refer to are installed" \
		"ls /usr/share/man/man1/jackfruit.1.gz /usr/share/man/man1/jackfruit-supervisor.1.gz"
	check "systemd-analyze security jackfruit.service" \
		"systemd-analyze security --no-pager jackfruit.service | tail -n 1"
	systemd-analyze security --no-pager jackfruit.service >"$R/security.txt" 2>&1
	check "install the test rootfs as the base rootfs /var/lib/jackfruit/rootfs" \
		"mkdir -p /var/lib/jackfruit/rootfs && tar -C /var/lib/jackfruit/rootfs -xf $JF/rootfs.tar && test -x /var/lib/jackfruit/rootfs/usr/bin/memory_hog"
	check "create the unprivileged user $USER_NAME" "id $USER_NAME >/dev/null 2>&1 || useradd -m $USER_NAME"
	save_logs boot1
	end_step
	set_phase 2
	log ""
	log "rebooting"
	leave reboot
}

phase2() {
	wait_boot
	step 2 "after reboot: module loaded at boot by modules-load.d, device is crw-------"
	check "lsmod shows container_monitor" "lsmod | grep '^container_monitor '"
	# Nothing else loads it at boot (the module has no modalias): modules-load.d did.
	check_match "modules-load.d lists it" "^container_monitor$" \
		"cat /usr/lib/modules-load.d/container_monitor.conf"
	check_match "systemd-modules-load.service ran successfully" "^Result=success$" \
		"systemctl show -p ActiveState -p Result systemd-modules-load.service"
	# One version everywhere: the package, the module (modinfo) and the binary (--version
	# does not contact the supervisor, so the service stays stopped for step 3).
	check_match "module, package and binary carry the same version" "^ok " \
		"v=\$(dpkg-query -W -f='\${Version}' jackfruit); m=\$(modinfo -F version container_monitor); b=\$(jackfruit --version | sed -n 's/^jackfruit version //p'); echo \"package=\$v module=\$m binary=\$b\"; [ \"\$v\" = \"\$m\" ] && [ \"\$v\" = \"\$b\" ] && echo \"ok \$v\""
	check_match "/dev/container_monitor is crw------- root root" "^crw------- root root" \
		"stat -c '%A %U %G' /dev/container_monitor"

	step 3 "socket activation: not running until 'jackfruit ps'; StatusText has the count"
	check_match "jackfruit.socket is active" "^active" "systemctl is-active jackfruit.socket"
	check_match "jackfruit.service is not running" "^inactive" "systemctl is-active jackfruit.service || true"
	check_match "socket is srw-rw---- root jackfruit" "^srw-rw---- root jackfruit" \
		"stat -c '%A %U %G' /run/jackfruit/jackfruit.sock"
	check "jackfruit ps (connects to the socket, which starts the service)" "jackfruit ps"
	check_match "systemctl is-active jackfruit -> active" "^active" "systemctl is-active jackfruit"
	check_match "StatusText has the container count" "^StatusText=.*[0-9]+ container" \
		"systemctl show -p StatusText jackfruit"
	check_match "the supervisor owns $BUS on the system bus" "$BUS" \
		"busctl --no-pager list | grep $BUS"
	# Containers start from the small setup-stage binary, which the supervisor holds open.
	check_match "the supervisor holds /usr/libexec/jackfruit/jackfruit-init open" "/usr/libexec/jackfruit/jackfruit-init" \
		"ls -l /proc/\$(systemctl show -P MainPID jackfruit)/fd"

	step 4 "busctl StartContainer hog (soft 40 MiB, hard 64 MiB): soft and hard limits end to end"
	check_match "busctl call StartContainer hog /usr/bin/memory_hog" "^o \"$HOG_PATH\"" \
		"busctl call -- $BUS $MGR_PATH $MGR_IF StartContainer 'ssastta{sv}' hog '' 3 /usr/bin/memory_hog -step-mib=4 -interval=200ms $SOFT $HARD 0"
	wait_for "hog reaches a final state" 120 \
		"busctl get-property $BUS $HOG_PATH $CT_IF State | grep -Eq '\"(exited|killed|killed-by-memory-limit)\"'"
	check_match "busctl get-property State = killed-by-memory-limit" '^s "killed-by-memory-limit"$' \
		"busctl get-property $BUS $HOG_PATH $CT_IF State"
	check_match "busctl get-property SoftLimitExceeded = true" '^b true$' \
		"busctl get-property $BUS $HOG_PATH $CT_IF SoftLimitExceeded"
	check_match "jackfruit ps shows hog killed-by-memory-limit" "hog .*killed-by-memory-limit" "jackfruit ps -a"
	check_match "journalctl CONTAINER=hog has the container's output" "memory_hog" \
		"journalctl --no-pager CONTAINER=hog -o cat"
	check_match "journalctl CONTAINER=hog has the soft-limit event" "soft memory limit" \
		"journalctl --no-pager CONTAINER=hog MESSAGE_ID=59d0b9852ee649eda0b6f951687171f2 -o cat"
	check_match "journalctl CONTAINER=hog has the hard-limit event" "hard memory limit" \
		"journalctl --no-pager CONTAINER=hog MESSAGE_ID=eec714b8053645d4a3a81f09bd2db01c -o cat"
	check_match "dmesg: SOFT LIMIT container=hog" \
		"\[container_monitor\] SOFT LIMIT container=hog pid=[0-9]+ rss=[0-9]+ limit=$SOFT" "dmesg | grep container_monitor"
	check_match "dmesg: HARD LIMIT container=hog" \
		"\[container_monitor\] HARD LIMIT container=hog pid=[0-9]+ rss=[0-9]+ limit=$HARD" "dmesg | grep container_monitor"
	check_match "exactly one SOFT LIMIT line for hog" "^1$" "dmesg | grep -c 'SOFT LIMIT container=hog'"

	step 5 "as the unprivileged user $USER_NAME: gdbus ListContainers works, StartContainer is refused"
	check_match "gdbus call ListContainers as $USER_NAME" "'hog', 'killed-by-memory-limit'" \
		"runuser -u $USER_NAME -- gdbus call --system --dest $BUS --object-path $MGR_PATH --method $MGR_IF.ListContainers"
	_run match "gdbus call StartContainer as $USER_NAME is refused with AccessDenied" \
		"io.jackfruit.Jackfruit1.Error.AccessDenied" \
		"runuser -u $USER_NAME -- gdbus call --system --dest $BUS --object-path $MGR_PATH --method $MGR_IF.StartContainer evil '' \"['/bin/true']\" 0 0 '{}'; test \$? -ne 0"
	check_fails "no container 'evil' was created" "jackfruit inspect evil"
	check_fails "jackfruit ps as $USER_NAME (not in group jackfruit) cannot use the socket" \
		"runuser -u $USER_NAME -- jackfruit ps"

	step 5b "isolation under the packaged unit: a container's root cannot reach the host"
	# Each probe prints what the call did (jfprobe: ok or the errno), so a container that did
	# not start, or a probe that did not run, cannot pass.
	JR="jackfruit run --rm"
	check_match "CapEff is the OCI default set (00000000a80425fb)" "^CapEff:[[:space:]]+00000000a80425fb$" \
		"$JR iso-caps -- /bin/grep CapEff /proc/self/status"
	check_match "the default seccomp filter is on (Seccomp: 2)" "^Seccomp:[[:space:]]+2$" \
		"$JR iso-seccomp -- /bin/grep -E '^Seccomp:' /proc/self/status"
	check_match "two filters: jackfruit.service's system calls (the floor) and the container's own" \
		"^Seccomp_filters:[[:space:]]+2$" "$JR iso-filters -- /bin/grep -E '^Seccomp_filters:' /proc/self/status"
	check_match "a set-user-ID bit is refused (RestrictSUIDSGID=, from the floor)" "Operation not permitted" \
		"$JR iso-suid -- /bin/sh -c 'touch /tmp/f && chmod u+s /tmp/f 2>&1'; true"
	check_match "mount is refused (EPERM)" "^EPERM$" "$JR iso-mount -- /usr/bin/jfprobe mount tmpfs none /tmp; true"
	check_match "a host sysctl cannot be written" "^(EROFS|EACCES|EPERM)$" \
		"$JR iso-sysctl -- /usr/bin/jfprobe write /proc/sys/kernel/hostname escaped; true"
	check_match "/proc/sys cannot be remounted read-write" "^EPERM$" "$JR iso-procsys -- /usr/bin/jfprobe remount-rw /proc/sys; true"
	check_match "no user namespace (unshare -U)" "Operation not permitted" "$JR iso-userns -- /bin/sh -c 'unshare -U true 2>&1'; true"
	# Under systemd ptrace is outside jackfruit.service's SystemCallFilter=@system-service,
	# which every container's setup stage installs as its floor (seccomp.Floor): EPERM before
	# the pid is even looked up (in manual mode the host tests see ESRCH: the supervisor's pid
	# names nothing inside the container's PID namespace).
	check_match "ptrace of a host process is refused (EPERM)" "^EPERM$" \
		"$JR iso-ptrace -- /usr/bin/jfprobe ptrace \$(systemctl show -P MainPID jackfruit); true"
	check_match "/sys cannot be remounted read-write" "^(EPERM|EACCES)$" "$JR iso-sys -- /usr/bin/jfprobe remount-rw /sys; true"
	check_match "dmesg (syslog) is refused" "^EPERM$" "$JR iso-dmesg -- /usr/bin/jfprobe syslog; true"
	check_match "init_module is refused" "^EPERM$" "$JR iso-mod -- /usr/bin/jfprobe init-module; true"
	check_match "keyctl is refused" "^EPERM$" "$JR iso-key -- /usr/bin/jfprobe keyctl; true"
	check_match "bpf is refused" "^EPERM$" "$JR iso-bpf -- /usr/bin/jfprobe bpf; true"
	# The root disk's node: the unit's device cgroup (DevicePolicy=closed) refuses mknod itself,
	# so the node never exists; where mknod works (no device cgroup), nodev refuses the open.
	disk=$(stat -c '%t %T' /dev/vda | { read -r ma mi && printf '%d %d' "0x$ma" "0x$mi"; })
	check_match "the root disk cannot be reached through a node made with mknod" \
		"^mknod=EPERM read=ENOENT$|^mknod=ok read=(EACCES|EPERM)$" \
		"$JR iso-disk -- /bin/sh -c 'p=/usr/bin/jfprobe; echo mknod=\$(\$p mknod /dev/shm/disk b $disk) read=\$(\$p read /dev/shm/disk)'"
	check_match "--network none: only lo, and it is up" "^lo UP$" \
		"$JR iso-net --network none -- /bin/sh -c 'echo \$(ls /sys/class/net) \$(cat /sys/class/net/lo/operstate | tr a-z A-Z | sed s/UNKNOWN/UP/)'"
	check_match "ordinary workloads: a raw socket (ping) works" "^ok$" "$JR iso-ping -- /usr/bin/jfprobe raw-socket"
	check_match "ordinary workloads: binding port 80 works" "^ok$" "$JR iso-bind -- /usr/bin/jfprobe bind-tcp 80"
	# jackfruit.service has NoNewPrivileges=yes, which every container inherits: inspect says so
	# although the container did not ask for --security-opt no-new-privileges.
	check_match "inspect shows the no_new_privs inherited from the unit" '"no_new_privileges": ?true' \
		"jackfruit start iso-nnp -- /bin/sleep 60 >/dev/null && jackfruit inspect iso-nnp; jackfruit rm -f iso-nnp >/dev/null"
	check_match "and the container has it" "^NoNewPrivs:[[:space:]]+1$" "$JR iso-nnp2 -- /bin/grep NoNewPrivs /proc/self/status"
	check_fails "an unknown capability is refused" "jackfruit start iso-bad --cap-add NOT_A_CAP -- /bin/true"
	check_fails "and no container was created" "jackfruit inspect iso-bad"

	step 11a "each container is a systemd unit (jackfruit-NAME.service in jackfruit.slice) and a machine"
	check "start 'web' (sleep, stop timeout 2 s)" "jackfruit start web --stop-timeout 2 -- /bin/sleep 3600"
	check_match "systemctl is-active jackfruit-web.service" "^active$" "systemctl is-active jackfruit-web.service"
	check_match "systemctl status jackfruit-web.service: described, in jackfruit.slice, with its memory and tasks" \
		"jackfruit container web" \
		"systemctl status --no-pager jackfruit-web.service | tee /dev/stderr | grep -q 'CGroup: /jackfruit.slice/jackfruit-web.service' && systemctl status --no-pager jackfruit-web.service | grep -Eq 'Memory: |Tasks: ' && systemctl show -P Description jackfruit-web.service"
	check_match "the unit's main process is the container's init (same pid as jackfruit inspect)" "^same [0-9]+$" \
		"u=\$(systemctl show -P MainPID jackfruit-web.service); j=\$(jackfruit inspect web | sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); [ \"\$u\" = \"\$j\" ] && echo same \$u || echo \"unit \$u inspect \$j\""
	check_match "systemd-cgls shows the unit and its sleep under jackfruit.slice" "jackfruit-web.service" \
		"systemd-cgls --no-pager -u jackfruit.slice | tee /dev/stderr | grep -A10 jackfruit-web.service | grep -q 'sleep 3600' && echo jackfruit-web.service"
	check_match "systemd-cgtop lists it" "jackfruit.slice/jackfruit-web.service" \
		"systemd-cgtop -b -n 2 -d 1 --depth=3 -P | grep jackfruit-web"
	for p in CapabilityBoundingSet NoNewPrivileges DevicePolicy UMask; do
		check_match "the unit has jackfruit.service's $p" "^same$" \
			"a=\$(systemctl show -p $p jackfruit.service); b=\$(systemctl show -p $p jackfruit-web.service); [ \"\$a\" = \"\$b\" ] && echo same || { echo \"service: \$a\"; echo \"unit:    \$b\"; }"
	done
	# jackfruit.service's system-call section reaches the container as one filter its setup
	# stage installs (the floor), not as unit properties systemd would compile at every start.
	# (systemctl shows an unset SystemCallFilter= as "~", an empty deny list.)
	check_match "no system-call filter from systemd: SystemCallFilter, RestrictSUIDSGID, LockPersonality unset" \
		"^\|~?\|no no\|$" \
		"echo \"|\$(systemctl show -P SystemCallFilter jackfruit-web.service)|\$(systemctl show -P RestrictSUIDSGID,LockPersonality jackfruit-web.service | tr '\\n' ' ' | sed 's/ \$//')|\""
	check_match "the unit's process has the floor and its own filter (Seccomp_filters: 2)" "^Seccomp_filters:[[:space:]]+2$" \
		"grep -E '^Seccomp_filters:' /proc/\$(systemctl show -P MainPID jackfruit-web.service)/status"
	# The supervisor's mount namespace settings stay the supervisor's: the container leaves
	# the host's file systems behind itself (units/jackfruit.service says why).
	check_match "no mount namespace from systemd: ProtectSystem, ProtectHome, PrivateTmp, ProtectKernelTunables off" \
		"^no no no no$" \
		"systemctl show -P ProtectSystem,ProtectHome,PrivateTmp,ProtectKernelTunables jackfruit-web.service | tr '\\n' ' ' | sed 's/ \$//'"
	check_match "DeviceAllow: the standard devices and pts, not the monitor's device" "^DeviceAllow=char-pts rw$" \
		"systemctl show -p DeviceAllow jackfruit-web.service"
	check_match "machinectl list shows web (class container, service jackfruit)" "^web +container +jackfruit" \
		"machinectl list --no-pager --no-legend"
	check_match "machinectl status web names its unit" "Unit: jackfruit-web.service" "machinectl status --no-pager web"
	check "machinectl terminate web" "machinectl terminate web"
	wait_for "web ends" 60 "jackfruit ps -a | grep -Eq ' web +(killed|exited) '"
	check_match "web ended killed (SIGTERM ignored by PID 1, SIGKILL after the stop timeout)" '"state": ?"killed"' "jackfruit inspect web"
	check_match "and its unit is gone" "^inactive$" "systemctl is-active jackfruit-web.service; true"
	check_nomatch "and so is the machine" "^web " "machinectl list --no-pager --no-legend"
	check "jackfruit rm web" "jackfruit rm web"
	check_match "exit codes come through the unit: jackfruit run exits 7" "^rc=7$" \
		"jackfruit run --rm code7 -- /bin/sh -c 'exit 7'; echo rc=\$?"
	check_match "output, and the overlay mounted inside the unit" "^hello written$" \
		"jackfruit run --rm ov -- /bin/sh -c 'echo written > /etc/w; echo hello \$(cat /etc/w)'"
	check_fails "the base rootfs did not get the write" "test -e /var/lib/jackfruit/rootfs/etc/w"
	check_match "jackfruit exec reaches a unit's container" "^sleep" \
		"jackfruit start ex -- /bin/sleep 600 >/dev/null && jackfruit exec ex -- /bin/cat /proc/1/comm; jackfruit rm -f ex >/dev/null"
	check "a foreign unit named jackfruit-clash.service" "systemd-run --unit jackfruit-clash.service /bin/sleep 600"
	check_match "jackfruit start clash fails, naming the unit systemd already has" \
		"systemd already has a unit jackfruit-clash.service" "jackfruit start clash -- /bin/sleep 600 2>&1; true"
	check_fails "no container 'clash' was created" "jackfruit inspect clash"
	check_match "the foreign unit was left alone" "^active$" "systemctl is-active jackfruit-clash.service"
	check "stop the foreign unit" "systemctl stop jackfruit-clash.service"
	check "start 'my_app' (a name machined refuses: '_')" "jackfruit start my_app -- /bin/sleep 600"
	check_match "it runs, in its unit" "^active$" "systemctl is-active jackfruit-my_app.service"
	check_match "the supervisor warned that machined refuses the name" "machined refuses the name" \
		"journalctl --no-pager -u jackfruit.service -o cat | grep my_app"
	check "jackfruit rm -f my_app" "jackfruit rm -f my_app"
	check "a foreign machine 'other' (another manager's, registered by hand)" \
		"systemd-run --unit fake-machine.service /bin/sleep 600 && busctl call org.freedesktop.machine1 /org/freedesktop/machine1 org.freedesktop.machine1.Manager RegisterMachine sayssus other 0 foreign container \$(systemctl show -P MainPID fake-machine.service) /"
	check "jackfruit start other still starts" "jackfruit start other -- /bin/sleep 600"
	check_match "with a warning about the clash" "already has a machine ..?other..? of another manager" \
		"journalctl --no-pager -u jackfruit.service -o cat | grep other"
	check_match "machinectl still shows the foreign machine" "^other +container +foreign" "machinectl list --no-pager --no-legend"
	check "jackfruit rm -f other; stop the foreign machine" "jackfruit rm -f other && systemctl stop fake-machine.service"
	check_match "no container unit is left" "^0 loaded units listed" \
		"systemctl list-units --all --no-pager 'jackfruit-*.service'"

	step 11b "live restore: containers survive restart, SIGKILL and upgrade of the supervisor"
	# pid/state of a container, and the supervisor's main pid, as one-line commands.
	ctpid() { echo "jackfruit inspect $1 | tr -d ' \n' | sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p'"; }
	SUPPID="systemctl show -P MainPID jackfruit.service"
	check "start 'counter' printing numbered lines" \
		"jackfruit start counter -- /bin/sh -c 'i=0; while [ \$i -lt 100000 ]; do i=\$((i+1)); echo line \$i; sleep 0.1; done'"
	cpid=$(bash -c "$(ctpid counter)")
	log "  counter's init: pid $cpid"
	# A container on a terminal: its master is kept in the fd store with the pipes, so a
	# restart hangs nothing up.
	check "start 'ttyc' on a terminal (-t), printing numbered lines" \
		"jackfruit start -t ttyc -- /bin/sh -c 'i=0; while [ \$i -lt 100000 ]; do i=\$((i+1)); echo line \$i; sleep 0.1; done'"
	tpid=$(bash -c "$(ctpid ttyc)")
	spid=$($SUPPID)
	check "systemctl restart jackfruit" "systemctl restart jackfruit"
	check_match "counter runs on with the same pid $cpid" "^$cpid\$" "jackfruit ps >/dev/null; $(ctpid counter)"
	check_match "the supervisor is a new process" "^new$" "[ \"\$($SUPPID)\" != $spid ] && echo new"
	check_match "its D-Bus object is back: State running" '^s "running"$' \
		"busctl get-property $BUS $MGR_PATH/container/counter $CT_IF State"
	spid=$($SUPPID)
	check "SIGKILL the supervisor's main process" "kill -KILL $spid"
	wait_for "systemd restarts it (Restart=on-failure)" 60 \
		"systemctl is-active --quiet jackfruit && [ \"\$($SUPPID)\" != $spid ] && [ \"\$($SUPPID)\" != 0 ] && jackfruit ps >/dev/null"
	check_match "counter runs on with the same pid $cpid" "^$cpid\$" "$(ctpid counter)"
	spid=$($SUPPID)
	CHECK_TIMEOUT=600 check "dpkg -i jackfruit (the same package: the upgrade path)" "dpkg -i $JF/debs/jackfruit_*.deb"
	wait_for "the postinst restarted the supervisor" 60 \
		"systemctl is-active --quiet jackfruit && [ \"\$($SUPPID)\" != $spid ] && jackfruit ps >/dev/null"
	check_match "counter runs on with the same pid $cpid" "^$cpid\$" "$(ctpid counter)"
	check_match "jackfruit ps: counter running" " counter +running " "jackfruit ps"
	check_match "ttyc runs on with the same pid $tpid" "^$tpid\$" "$(ctpid ttyc)"
	# exec gives a command the init's confinement; the supervisors since the start rebuilt it
	# from state.json (they did not start the init).
	check_match "exec into counter, taken over three times: the init's capabilities, no_new_privs and filter" \
		"^same$" \
		"i=\$(grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$cpid/status); e=\$(jackfruit exec counter /bin/grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status); [ \"\$i\" = \"\$e\" ] && echo same || { echo \"init: \$i\"; echo \"exec: \$e\"; }"
	check "jackfruit stop counter" "jackfruit stop counter"
	INORDER="awk '\$1 == \"line\" { n++; if (\$2 != n) { print \"line \" n \" missing or repeated: \" \$0; bad = 1; exit } } END { if (!bad && n > 20) print \"in order: \" n \" lines\"; else if (!bad) print \"too few: \" n }'"
	check_match "jackfruit logs counter: every line once, in order" "^in order: [0-9]+ lines$" "jackfruit logs counter | $INORDER"
	check_match "journalctl CONTAINER=counter: every line once, in order" "^in order: [0-9]+ lines$" \
		"journalctl --no-pager CONTAINER=counter -o cat | $INORDER"
	check "jackfruit rm counter" "jackfruit rm counter"
	check "jackfruit stop ttyc" "jackfruit stop ttyc"
	check_match "jackfruit logs ttyc: every line once, in order, across the three restarts" "^in order: [0-9]+ lines$" \
		"jackfruit logs ttyc | tr -d '\\r' | $INORDER"
	check "jackfruit rm ttyc" "jackfruit rm ttyc"
	check "start 'seven' (exits 7 after 8 s)" "jackfruit start seven -- /bin/sh -c 'echo before; sleep 8; echo after; exit 7'"
	check "start 'hog2' (hard limit 64 MiB, allocates from 8 s on)" \
		"jackfruit start hog2 --soft-mib 40 --hard-mib 64 -- /bin/sh -c 'sleep 8; exec /usr/bin/memory_hog -step-mib=8 -interval=100ms'"
	spid=$($SUPPID)
	check "SIGSTOP the supervisor" "kill -STOP $spid"
	wait_for "seven ends while the supervisor is stopped: its unit records 7" 60 \
		"[ \"\$(systemctl show -P ExecMainStatus jackfruit-seven.service)\" = 7 ]"
	wait_for "hog2 is killed at its hard limit meanwhile: its unit records SIGKILL" 60 \
		"[ \"\$(systemctl show -P ExecMainStatus jackfruit-hog2.service)\" = 9 ]"
	check "SIGKILL the stopped supervisor" "kill -KILL $spid"
	wait_for "systemd restarts it" 60 \
		"systemctl is-active --quiet jackfruit && [ \"\$($SUPPID)\" != $spid ] && [ \"\$($SUPPID)\" != 0 ] && jackfruit ps >/dev/null"
	check_match "seven is reported exited with code 7" '"state":"exited".*"exit_code":7,|"exit_code":7,.*"state":"exited"' \
		"jackfruit inspect seven | tr -d ' \n'"
	check_match "with all its output" "^before after$" "echo \$(jackfruit logs seven)"
	check_match "hog2 is reported killed-by-memory-limit" '"state":"killed-by-memory-limit"' \
		"jackfruit inspect hog2 | tr -d ' \n'"
	check_match "and their units are gone" "^0 loaded units listed" \
		"systemctl list-units --all --no-pager jackfruit-seven.service jackfruit-hog2.service"
	check "jackfruit rm seven hog2" "jackfruit rm seven hog2"

	step 11c "without the kernel module the unit's cgroup enforces the hard limit (MemoryMax=, memory.oom.group)"
	DROPIN=/run/systemd/system/jackfruit.service.d/50-no-module.conf
	check "run the supervisor without the module (a runtime drop-in: --monitor-device none)" \
		"mkdir -p \$(dirname $DROPIN) && printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/jackfruit supervisor --monitor-device none\\n' >$DROPIN && systemctl daemon-reload && systemctl restart jackfruit && jackfruit ps >/dev/null"
	check "start 'cghog' (hard limit 64 MiB, allocates from 5 s on)" \
		"jackfruit start cghog --soft-mib 40 --hard-mib 64 -- /bin/sh -c 'sleep 5; exec /usr/bin/memory_hog -step-mib=8 -interval=100ms'"
	check_match "its unit has the hard limit as MemoryMax=" "^MemoryMax=67108864$" "systemctl show -p MemoryMax jackfruit-cghog.service"
	wait_for "cghog ends" 60 "jackfruit ps -a | grep -Eq ' cghog +(killed|exited|killed-by-memory-limit) '"
	# Killed by memory.max through memory.oom.group; whether the supervisor still finds the
	# kill in memory.events before systemd removes the exited unit's cgroup is a race it can
	# lose (docs/design.md), so the state is killed-by-memory-limit or killed.
	check_match "cghog is SIGKILLed at its limit, enforced by the cgroup" \
		'"state":"(killed-by-memory-limit|killed)".*"signal":"SIGKILL".*"enforced_by":"cgroup"' \
		"jackfruit inspect cghog | tr -d ' \n'"
	check_match "the kernel's OOM kill was in its unit's cgroup (memory.oom.group)" "oom_memcg=/jackfruit.slice/jackfruit-cghog.service" \
		"dmesg | grep 'oom-kill:' | grep -o 'oom_memcg=[^,]*' | sort -u"
	check "jackfruit rm cghog" "jackfruit rm cghog"
	# The soft limit across a restart: warned once, and still said after it.
	check "start 'cgsoft' (soft 40 MiB, holds 48 MiB)" \
		"jackfruit start cgsoft --soft-mib 40 --hard-mib 200 -- /usr/bin/memory_hog -step-mib=8 -interval=50ms -max-mib=48 -hold"
	wait_for "cgsoft is over its soft limit" 60 "jackfruit inspect cgsoft | tr -d ' \n' | grep -q '\"soft_limit_exceeded\":true'"
	check "systemctl restart jackfruit (the cgroup enforcer takes cgsoft over)" "systemctl restart jackfruit && jackfruit ps >/dev/null"
	sleep 3 # the cgroup watcher's polls
	check_match "after the restart inspect still says soft_limit_exceeded" '"soft_limit_exceeded":true' \
		"jackfruit inspect cgsoft | tr -d ' \n'"
	check_match "one soft-limit warning for cgsoft, not one per supervisor" "^1$" \
		"journalctl --no-pager CONTAINER=cgsoft MESSAGE_ID=59d0b9852ee649eda0b6f951687171f2 -o cat | grep -c ."
	check "jackfruit rm -f cgsoft" "jackfruit rm -f cgsoft"
	check "back to the packaged supervisor" "rm -f $DROPIN && systemctl daemon-reload && systemctl restart jackfruit && jackfruit ps >/dev/null"
	check_match "no container unit is left" "^0 loaded units listed" \
		"systemctl list-units --all --no-pager 'jackfruit-*.service'"

	step 6 "systemctl restart and stop behave; no unit failed"
	check "start a long-running container 'sleeper'" "jackfruit start sleeper -- /bin/sleep 3600"
	check "systemctl restart jackfruit" "systemctl restart jackfruit"
	check_match "active after restart" "^active" "systemctl is-active jackfruit"
	check_match "state survives the restart: hog still killed-by-memory-limit" \
		"hog .*killed-by-memory-limit" "jackfruit ps -a"
	check "start 'sleeper2' for the stop test" "jackfruit rm -f sleeper >/dev/null 2>&1; jackfruit start sleeper2 -- /bin/sleep 3600"
	# Reinstalling takes the upgrade path of the maintainer scripts: it must not stop the
	# supervisor or its containers (debian/rules: no stop/restart on upgrade).
	CHECK_TIMEOUT=600 check "reinstall (upgrade path): dpkg -i jackfruit while sleeper2 runs" \
		"dpkg -i $JF/debs/jackfruit_*.deb"
	check_match "sleeper2 still running after the upgrade" "sleeper2 +running" "jackfruit ps"
	check "systemctl stop jackfruit" "time systemctl stop jackfruit"
	check_match "jackfruit.service is inactive (not failed)" "^inactive" "systemctl is-active jackfruit || true"
	check_match "jackfruit.socket stays active" "^active" "systemctl is-active jackfruit.socket"
	check_fails "no container process is left behind" "pgrep -a -x sleep"
	check_match "no failed units" "^0 loaded units listed" "systemctl --failed --no-pager"
	save_logs boot2

	step 7 "dpkg --purge both: module, DKMS tree and units are gone"
	check "dpkg --purge jackfruit jackfruit-monitor-dkms" "dpkg --purge jackfruit jackfruit-monitor-dkms"
	check_fails "container_monitor is no longer loaded" "lsmod | grep '^container_monitor '"
	check_nomatch "dkms status has no container-monitor" "container-monitor" "dkms status"
	check_fails "no DKMS tree left (/var/lib/dkms/container-monitor, /usr/src/container-monitor-*)" \
		"ls -d /var/lib/dkms/container-monitor /usr/src/container-monitor-* 2>/dev/null | grep ."
	check_fails "no module file left under /lib/modules" "find /lib/modules -name 'container_monitor.ko*' | grep ."
	check_fails "no /dev/container_monitor" "test -e /dev/container_monitor"
	check_fails "purge removed the state directory /var/lib/jackfruit" "ls -d /var/lib/jackfruit"
	# list-unit-files exits 1 when nothing matches; the listing is what counts.
	check_match "no jackfruit unit files left" "^0 unit files listed" \
		"systemctl list-unit-files --no-pager 'jackfruit*'; true"
	check_nomatch "no jackfruit unit loaded" "jackfruit" "systemctl list-units --all --no-legend --no-pager 'jackfruit*'"
	check_fails "no leftover unit symlinks" "find /etc/systemd/system -name 'jackfruit*' | grep ."
	check_match "no failed units" "^0 loaded units listed" "systemctl --failed --no-pager"
	check_fails "no BUG/WARNING/Oops in the kernel log" \
		"dmesg | grep -E 'BUG:|WARNING:|Oops|general protection|list_del corruption'"
	save_logs boot2-end
	end_step
	log ""
	log "scenario finished"
	touch "$R/done"
	leave poweroff
}

case $(phase) in
1) phase1 ;;
2) phase2 ;;
*) log "unexpected phase $(phase)"; leave poweroff ;;
esac
