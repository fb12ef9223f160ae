# SPDX-License-Identifier: Apache-2.0
# Sourced by ab.sh and ab100.sh inside their private namespaces.

# start_pair W STATEBASE ROOTFS: a supervisor of build $A and one of build $B side by side,
# sockets and run directories on W (a tmpfs), state under STATEBASE; returns once both serve.
start_pair() {
	local w=$1 base=$2 rootfs=$3 v d
	for v in A B; do
		d=${!v}
		mkdir -p "$w/$v"
		"$d/jackfruit" supervisor --socket "$w/$v/s.sock" --state-dir "$base/$v/state" --run-dir "$w/$v/run" \
			--base-rootfs "$rootfs" --no-dbus >"$w/$v/log" 2>&1 &
	done
	for v in A B; do for _ in $(seq 100); do [ -S "$w/$v/s.sock" ] && break; sleep 0.1; done; done
}

# burst W SIDE PREFIX: 100 `run --rm` of /bin/true started together on SIDE's supervisor;
# prints the wall time per container.
burst() {
	local w=$1 v=$2 prefix=$3 d=${!2} s e i pids=()
	s=$EPOCHREALTIME
	for i in $(seq 100); do JACKFRUIT_SOCKET=$w/$v/s.sock "$d/jackfruit" run --rm "$prefix$i" -- /bin/true & pids+=($!); done
	wait "${pids[@]}"
	e=$EPOCHREALTIME
	echo "$v 100 at once: $(echo "($e-$s)*10" | bc -l | cut -c1-6) ms/container"
}
