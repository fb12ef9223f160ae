#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The systemd-path bench (make bench, item 6; test/e2e/run.sh --scenario bench), run inside the
# Debian 12 guest as root: install the packages as a user would, then time start-to-exit of
# /bin/true for jackfruit (the packaged CLI against the socket-activated jackfruit.service,
# each container in a systemd unit of its own), podman, systemd-nspawn and systemd-run,
# interleaved, all on the same rootfs directory. One boot, then power off.
#
# Output: one `VMBENCH {json}` line per subject in the transcript (bench/cmd/jfbench parses
# them, docs/bench.md), with every sample in microseconds, or the reason it was not measured.
# Knobs on the data disk, bench.env (written by run.sh): BENCH_RUNS (timed runs per subject),
# BENCH_WARMUP (untimed runs per subject first).

# shellcheck source=test/e2e/guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"

BENCH_RUNS=20
BENCH_WARMUP=3
# shellcheck disable=SC1091 # written by run.sh on the data disk
[ ! -f "$JF/bench.env" ] || . "$JF/bench.env"
# The one rootfs every subject runs on: jackfruit's base rootfs (the lower layer of its
# default overlay), given as is to podman --rootfs, systemd-nspawn -D and jackfruit --rootfs.
DIR=/var/lib/jackfruit/rootfs

# json_str TEXT: TEXT as a JSON string (one line, quotes and backslashes escaped).
json_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=$(printf '%s' "$s" | tr '\n\t' '  ' | tr -d '\000-\037')
	printf '"%s"' "$s"
}

# The subjects, in the order they are interleaved. Each has a name, a role (peer: compared
# with jackfruit; part: a piece of jackfruit's own path, for the analysis), the exit status
# it must end with, and a command line (shell words, run with eval: quoted values stay one
# word); NAME in it becomes a fresh container name per run.
SUBJ_NAME=()
SUBJ_ROLE=()
SUBJ_RC=()
SUBJ_CMD=()
subject() {
	SUBJ_NAME+=("$1")
	SUBJ_ROLE+=("$2")
	SUBJ_RC+=("$3")
	SUBJ_CMD+=("$4")
}
subject jackfruit main 0 "jackfruit run --rm NAME -- /bin/true"
subject "jackfruit --rootfs DIR" jackfruit 0 "jackfruit run --rm NAME --rootfs $DIR -- /bin/true"
# podman: what a user types to run a command from a plain directory. --network host is
# jackfruit's (and systemd-nspawn's) default; podman's own default, a bridge with a fresh
# network namespace, needs a network stack the guest does not configure (and would do more
# work than the others). Everything else is podman's default: crun, conmon, the systemd
# cgroup manager (a libpod-ID.scope per container), its seccomp profile and capabilities.
subject podman peer 0 "podman run --rm --network host --rootfs $DIR /bin/true"
subject systemd-nspawn peer 0 "systemd-nspawn --quiet -D $DIR /bin/true"
# No rootfs: the command on the host, in a transient service of its own.
subject systemd-run peer 0 "systemd-run --wait --pipe --quiet /bin/true"
# Parts of jackfruit's path: the CLI's Go start-up alone, the same plus one call to the
# supervisor, and the small setup-stage binary's Go start-up alone (it says it does nothing
# by hand and exits 2).
subject "jackfruit --version (client start-up)" part 0 "jackfruit --version"
subject "jackfruit ps (client + one call)" part 0 "jackfruit ps"
subject "jackfruit-init by hand (stage binary start-up)" part 2 "/usr/libexec/jackfruit/jackfruit-init"

ERRF=/run/jf-bench.err
SEQ=0
# run_one I: runs subject I once; sets US (microseconds, start to exit) and RC.
run_one() {
	local cmd=${SUBJ_CMD[$1]} t0 t1
	SEQ=$((SEQ + 1))
	cmd=${cmd//NAME/jfb$SEQ}
	# The clock: bash's own (no fork for it), around the fork, exec and wait of the command.
	t0=$EPOCHREALTIME
	eval "$cmd" </dev/null >/dev/null 2>"$ERRF"
	RC=$?
	t1=$EPOCHREALTIME
	US=$((${t1/./} - ${t0/./}))
}

wait_boot
step 1 "install: dpkg -i jackfruit-monitor-dkms jackfruit, the base rootfs, podman present"
CHECK_TIMEOUT=1200 check "dpkg -i" "dpkg -i $JF/debs/jackfruit-monitor-dkms_*.deb $JF/debs/jackfruit_*.deb"
check "base rootfs (busybox) in $DIR" \
	"mkdir -p $DIR && tar -C $DIR -xf $JF/rootfs.tar && test -x $DIR/bin/true"
check "jackfruit ps (socket activation starts jackfruit.service)" "jackfruit ps"
check_match "containers run in units of their own (--container-units auto)" "^active$" \
	"jackfruit start unitcheck -- /bin/sleep 60 >/dev/null && systemctl is-active jackfruit-unitcheck.service; jackfruit rm -f unitcheck >/dev/null"
# The floor for a hardened unit: systemd-run of the same /bin/true with the restrictions every
# container gets, read from the installed jackfruit.service: its "Hardening" section, which
# service/sdunit gives the unit (the monitor's DeviceAllow= is the supervisor's alone), and its
# "System calls" section, which jackfruit installs as one filter of its own (seccomp.Floor)
# and systemd-run gets as unit properties.
hardening=""
while IFS= read -r line; do
	hardening+="-p $(printf '%q' "$line") "
done < <(sed -n '/^# --- Hardening/,/^\[Install\]/p' /lib/systemd/system/jackfruit.service |
	grep -Ev '^(#|\[|$)' | grep -v container_monitor)
subject "systemd-run with the units' hardening" part 0 "systemd-run --wait --pipe --quiet ${hardening}/bin/true"
check "versions" "jackfruit --version; podman --version; systemd-nspawn --version | head -n 1; uname -r; nproc"
log "VMBENCH {\"info\":{\"kernel\":$(json_str "$(uname -r)"),\"cpus\":$(nproc),\"runs\":$BENCH_RUNS,\"warmup\":$BENCH_WARMUP,\"rootfs\":$(json_str "$DIR"),\"jackfruit\":$(json_str "$(jackfruit --version 2>&1 | head -n 1)"),\"podman\":$(json_str "$(podman --version 2>&1)"),\"systemd\":$(json_str "$(systemctl --version | head -n 1)"),\"crun\":$(json_str "$(crun --version 2>&1 | head -n 1)"),\"conmon\":$(json_str "$(conmon --version 2>&1 | head -n 1)")}}"

step 2 "each subject runs once"
# A subject that fails here is left out of the timing (its VMBENCH line says why).
SKIP=()
for i in "${!SUBJ_NAME[@]}"; do
	SKIP[i]=""
	run_one "$i"
	if [ "$RC" != "${SUBJ_RC[$i]}" ]; then
		SKIP[i]="\`${SUBJ_CMD[$i]}\` exited with $RC (want ${SUBJ_RC[$i]}): $(head -c 400 "$ERRF")"
		note "left out: ${SKIP[$i]}"
	else
		note "${SUBJ_NAME[$i]}: $((US / 1000)) ms"
	fi
done
end_step

step 3 "start-to-exit, interleaved: $BENCH_WARMUP warm-ups, then $BENCH_RUNS runs per subject"
declare -A SAMPLES FAILS
for ((r = -BENCH_WARMUP; r < BENCH_RUNS; r++)); do
	for i in "${!SUBJ_NAME[@]}"; do
		[ -z "${SKIP[$i]}" ] || continue
		run_one "$i"
		if [ "$RC" != "${SUBJ_RC[$i]}" ]; then
			FAILS[$i]=$((${FAILS[$i]:-0} + 1))
			[ -n "${FIRSTERR[$i]:-}" ] || FIRSTERR[i]="exit $RC: $(head -c 400 "$ERRF")"
			continue
		fi
		[ "$r" -lt 0 ] || SAMPLES[$i]+="${SAMPLES[$i]:+,}$US"
	done
	[ $((r % 5)) -ne 4 ] || progress "  round $((r + 1))/$BENCH_RUNS"
done
for i in "${!SUBJ_NAME[@]}"; do
	line="{\"subject\":$(json_str "${SUBJ_NAME[$i]}"),\"role\":\"${SUBJ_ROLE[$i]}\",\"cmd\":$(json_str "${SUBJ_CMD[$i]}")"
	if [ -n "${SKIP[$i]}" ]; then
		line+=",\"error\":$(json_str "${SKIP[$i]}")}"
	else
		line+=",\"failed\":${FAILS[$i]:-0}"
		[ -z "${FIRSTERR[$i]:-}" ] || line+=",\"first_error\":$(json_str "${FIRSTERR[$i]}")"
		line+=",\"us\":[${SAMPLES[$i]:-}]}"
	fi
	log "VMBENCH $line"
	[ "${FAILS[$i]:-0}" = 0 ] || { STEP_OK=0; note "${SUBJ_NAME[$i]}: ${FAILS[$i]} runs failed, first: ${FIRSTERR[$i]}"; }
done
check_match "no container unit is left" "^0 loaded units listed" \
	"systemctl list-units --all --no-pager 'jackfruit-*.service'"
end_step

# Where jackfruit's time goes, off the clock: three runs with every system-bus message
# recorded (busctl monitor, timestamped) and the journal of those seconds, for reading the
# timeline by hand (docs/bench.md). The monitor slows the bus, so these runs are not timed
# with the others.
step 4 "a timeline of three jackfruit runs (bus messages and journal, in the results)"
busctl monitor --system --json=short >"$R/trace-bus.json" 2>"$R/trace-bus.err" &
mon=$!
sleep 2
since=$(date '+%Y-%m-%d %H:%M:%S')
for n in 1 2 3; do
	t0=$EPOCHREALTIME
	jackfruit run --rm "trace$n" -- /bin/true
	printf 'trace%s %s %s rc=%s\n' "$n" "$t0" "$EPOCHREALTIME" "$?" >>"$R/trace-times.txt"
done
sleep 1
kill "$mon" 2>/dev/null
wait "$mon" 2>/dev/null
journalctl --no-pager -o short-precise --since "$since" >"$R/trace-journal.txt" 2>&1
check "the timeline was recorded" "test -s $R/trace-bus.json && cat $R/trace-times.txt"
save_logs bench
end_step
touch "$R/done"
leave poweroff
