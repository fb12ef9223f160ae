#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Sourced by the guest scenarios (guest-e2e.sh, guest-demo.sh). Runs inside the Debian guest
# as root, started at every boot by jf-guest-runner.service from the second disk (/mnt/jf).
#
# Results go to /mnt/jf/results on that disk (the host reads it back with debugfs after the
# guest powered off), never over the serial console:
#   transcript.txt  every check: the command, its output, ok/FAIL
#   summary.txt     one "PASS step N: title" / "FAIL step N: title" line per step
#   phase           which boot the scenario is in (it reboots the guest itself)
#   done            written last: the scenario ran to its end
# Progress goes to the host while the guest runs (run.sh shows it as it comes): each step's
# title when it starts and its verdict when it ends, each failed check, boots and reboots,
# one line each on the virtio serial port jf.progress.
set -u

JF=${JF:-/mnt/jf}
# dpkg runs without a terminal here; keep debconf from trying dialog/readline frontends.
export DEBIAN_FRONTEND=noninteractive
R=$JF/results
T=$R/transcript.txt
mkdir -p "$R"
# Per check; a DKMS build under software emulation on a busy host can take minutes, so the
# install checks raise it (CHECK_TIMEOUT=... check ...).
CHECK_TIMEOUT=${CHECK_TIMEOUT:-300}

log() {
	printf '%s\n' "$*" >>"$T"
	printf '%s\n' "$*"
}

PROGRESS=/dev/virtio-ports/jf.progress
# The port's driver, virtio_console, is a module that udev may load only after the scenario
# has started: load it now and let udev create the port, so that progress shows from the
# first line and no check races with the module's loading (lsmod then says "libkmod: ERROR
# ... could not open '/sys/module/virtio_console/holders'").
if [ ! -c "$PROGRESS" ]; then
	modprobe virtio_console 2>/dev/null
	udevadm settle --timeout=30 2>/dev/null
fi
# progress TEXT: one line for the host to show now (nothing if the port is absent).
progress() {
	[ -c "$PROGRESS" ] || return 0
	printf '%s\n' "$*" >>"$PROGRESS" 2>/dev/null || true
}

# Output that reads like a failure: the word "error" (not part of a name such as
# org.freedesktop.DBus.Error.X or stderr) or a broken pipe. A check that expects success
# fails when its output has such a line, unless its expected output (check_match) is it.
NOISE_RE='(^|[^[:alnum:]_.])error([^[:alnum:]_.]|$)|broken pipe'

# indent OUTPUT: show a command's output under it, at most 60 lines.
indent() {
	[ -n "$1" ] || return 0
	local n
	n=$(printf '%s\n' "$1" | wc -l)
	printf '%s\n' "$1" | head -n 60 | sed 's/^/       | /' >>"$T"
	[ "$n" -le 60 ] || printf '       | ... (%d more lines)\n' $((n - 60)) >>"$T"
}

STEP=""
STEP_TITLE=""
STEP_OK=1

step() {
	end_step
	STEP=$1
	STEP_TITLE=$2
	STEP_OK=1
	STEP_START=$SECONDS
	log ""
	log "=== STEP $STEP: $STEP_TITLE"
	progress "step $STEP: $STEP_TITLE"
}

end_step() {
	[ -n "$STEP" ] || return 0
	local r=PASS
	[ "$STEP_OK" = 1 ] || r=FAIL
	printf '%s step %s: %s\n' "$r" "$STEP" "$STEP_TITLE" >>"$R/summary.txt"
	log "--- $r step $STEP"
	progress "$r step $STEP ($((SECONDS - STEP_START))s)"
	STEP=""
	sync
}

# _run MODE DESC REGEX CMD: runs CMD with bash under a timeout and records the result.
#   ok: exit 0; fail: non-zero exit; match: exit 0 and output matches REGEX (grep -E);
#   nomatch: output does not match REGEX (exit status ignored).
_run() {
	local mode=$1 desc=$2 re=$3 cmd=$4 out rc pass=0
	out=$(timeout "$CHECK_TIMEOUT" bash -c "$cmd" 2>&1)
	rc=$?
	case $mode in
	ok) [ $rc -eq 0 ] && pass=1 ;;
	fail) [ $rc -ne 0 ] && [ $rc -ne 124 ] && pass=1 ;;
	match) [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq -- "$re" && pass=1 ;;
	nomatch) printf '%s\n' "$out" | grep -Eq -- "$re" || pass=1 ;;
	esac
	local noise=""
	if [ $pass = 1 ] && [ "$mode" != fail ]; then
		noise=$(printf '%s\n' "$out" | grep -Ei -- "$NOISE_RE" |
			{ if [ "$mode" = match ]; then grep -Ev -- "$re"; else cat; fi; } | head -n 3)
		[ -z "$noise" ] || pass=0
	fi
	if [ $pass = 1 ]; then
		log "  ok   $desc"
	else
		STEP_OK=0
		local why="exit $rc"
		[ $rc -eq 124 ] && why="timed out after ${CHECK_TIMEOUT}s"
		case $mode in
		fail) why="$why, expected failure" ;;
		match) why="$why, expected output matching /$re/" ;;
		nomatch) why="$why, output must not match /$re/" ;;
		esac
		[ -z "$noise" ] || why="exit $rc, but the output reads like an error: $(printf '%s' "$noise" | head -n 1)"
		log "  FAIL $desc ($why)"
		progress "  FAIL $desc ($why)"
	fi
	printf '       $ %s\n' "$cmd" >>"$T"
	indent "$out"
	return $((1 - pass))
}
check() { _run ok "$1" "" "$2"; }
check_fails() { _run fail "$1" "" "$2"; }
check_match() { _run match "$1" "$2" "$3"; }
check_nomatch() { _run nomatch "$1" "$2" "$3"; }

# note TEXT: informational line in the transcript.
note() { log "  ..   $*"; }

# wait_for DESC SECONDS CMD: polls CMD every second until it succeeds; records the result.
wait_for() {
	local desc=$1 secs=$2 cmd=$3 i
	for ((i = 0; i < secs; i++)); do
		if timeout 30 bash -c "$cmd" >/dev/null 2>&1; then
			_run ok "$desc (after ${i}s)" "" "$cmd"
			return
		fi
		sleep 1
	done
	_run ok "$desc (gave up after ${secs}s)" "" "$cmd"
}

phase() { cat "$R/phase" 2>/dev/null || echo 1; }
set_phase() { echo "$1" >"$R/phase"; sync; }

# Waits for the boot to settle (jf-guest-runner is Type=exec, so it does not hold it up).
wait_boot() {
	local st
	st=$(timeout 300 systemctl is-system-running --wait 2>&1)
	# udev may still be loading modules for the hardware (acpi_cpufreq, virtio_console) after
	# the boot is "running"; lsmod during such a load prints "libkmod: ERROR ... holders",
	# which fails the check (step 2 did so once: acpi_cpufreq's holders).
	udevadm settle --timeout=60 2>/dev/null
	log "boot $(phase): system state: $st (uptime $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r))"
	progress "boot $(phase): $st after $(cut -d' ' -f1 /proc/uptime)s"
}

# save_logs TAG: the boot's journal and kernel log next to the results, for diagnosis.
save_logs() {
	journalctl -b --no-pager -o short-monotonic >"$R/journal-$1.txt" 2>&1
	dmesg >"$R/dmesg-$1.txt" 2>&1
	sync
}

# leave reboot|poweroff: closes the results disk cleanly, then reboots or powers off.
leave() {
	end_step
	progress "$1"
	sync
	cd /
	umount "$JF" 2>/dev/null || true
	systemctl "$1" --no-block
	exit 0
}
