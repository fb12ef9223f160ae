# SPDX-License-Identifier: Apache-2.0
# Sourced by the QEMU runners (test/e2e/run.sh, test/kmod/run.sh,
# service/runtime/testdata/initramfs-test.sh) to show a guest's progress while it runs
# instead of minutes of silence, and to say beforehand how long a run usually takes.

# vm_clean: copies stdin to stdout, line by line as it comes, without terminal control
# sequences (SeaBIOS clears the screen and switches line wrapping off with them), carriage
# returns or other control characters, so that guest output never drives the terminal.
vm_clean() {
	LC_ALL=C sed -u -E \
		-e $'s/\x1b\\[[0-9;?]*[ -/]*[@-~]//g' \
		-e $'s/\x1b\\][^\x07\x1b]*(\x07|\x1b\\\\)?//g' \
		-e $'s/\x1b[ -/]*[0-~]//g' \
		-e $'s/[\x01-\x08\x0b-\x1f\x7f]//g'
}

# vm_follow FILE PID: prints FILE (cleaned, see vm_clean) as it grows, from its start, until
# process PID has ended and everything it wrote was read.
vm_follow() {
	tail -n +1 -s 0.5 -F --pid="$2" "$1" 2>/dev/null | vm_clean
}

# vm_stamp START: prefixes each line of stdin with the time since START (epoch seconds).
vm_stamp() {
	local line s
	while IFS= read -r line; do
		s=$((EPOCHSECONDS - $1))
		printf '  [%2d:%02d] %s\n' $((s / 60)) $((s % 60)) "$line"
	done
}

# vm_duration SECONDS: "42s" or "6m05s".
vm_duration() {
	if [ "$1" -lt 60 ]; then echo "${1}s"; else printf '%dm%02ds\n' $(($1 / 60)) $(($1 % 60)); fi
}

# vm_timing_hint NAME TYPICAL: how long the run NAME usually takes: TYPICAL (measured on 2
# cores without KVM) and, once one passed here, how long the last one took on this machine.
vm_timing_hint() {
	local f=${CACHE_DIR:-/var/cache/jackfruit-test}/timings/$1 last
	last=$(cat "$f" 2>/dev/null || true)
	if [[ $last =~ ^[0-9]+$ ]]; then
		echo "usually $2; the last run here took $(vm_duration "$last")"
	else
		echo "usually $2"
	fi
}

# vm_timing_record NAME SECONDS: remembers a passing run's duration for vm_timing_hint.
vm_timing_record() {
	local d=${CACHE_DIR:-/var/cache/jackfruit-test}/timings
	mkdir -p "$d" 2>/dev/null && echo "$2" >"$d/$1.tmp" && mv "$d/$1.tmp" "$d/$1" || true
}

# vm_stop_on_interrupt PID: an interrupted runner (Ctrl-C, SIGTERM) takes the QEMU it
# started in the background (PID, a `timeout` wrapping it, which passes the signal on)
# down with it rather than leaving it running until its timeout.
vm_stop_on_interrupt() {
	# shellcheck disable=SC2064 # PID is meant to be expanded now
	trap "kill $1 2>/dev/null; exit 130" INT TERM HUP
}
