// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// vmSubject is one `VMBENCH {json}` line of test/e2e/guest-bench.sh: a subject's samples in
// microseconds, or why it was not measured.
type vmSubject struct {
	Subject    string    `json:"subject"`
	Role       string    `json:"role"` // main, jackfruit, peer or part
	Cmd        string    `json:"cmd"`
	Error      string    `json:"error,omitempty"`
	Failed     int       `json:"failed"`
	FirstError string    `json:"first_error,omitempty"`
	Us         []float64 `json:"us"`
}

// vmLine is either the guest's info object or a subject.
type vmLine struct {
	Info map[string]any `json:"info,omitempty"`
	vmSubject
}

// parseVMBench reads the VMBENCH lines out of the runner's output (the guest transcript).
func parseVMBench(out []byte) (info map[string]any, subs []vmSubject, bad []string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "VMBENCH ")
		if i < 0 {
			continue
		}
		var l vmLine
		if err := json.Unmarshal([]byte(strings.TrimSpace(line[i+len("VMBENCH "):])), &l); err != nil {
			bad = append(bad, fmt.Sprintf("unparsable VMBENCH line %q: %v", line, err))
			continue
		}
		if l.Info != nil {
			info = l.Info
			continue
		}
		if l.Subject == "" {
			bad = append(bad, fmt.Sprintf("VMBENCH line without a subject: %q", line))
			continue
		}
		subs = append(subs, l.vmSubject)
	}
	return info, subs, bad
}

// itemSystemd: item 6, the systemd path. In the full-system Debian guest of `make e2e` (QEMU,
// systemd as PID 1, our packages installed with dpkg), start-to-exit of /bin/true with
// jackfruit (the packaged CLI against the socket-activated jackfruit.service, each container
// in a unit of its own), podman, systemd-nspawn and systemd-run, interleaved, on the same
// rootfs directory. The guest does the timing and prints VMBENCH lines; this item runs it and
// turns the lines into rows.
func (b *bench) itemSystemd(ctx context.Context) {
	const item = "6 systemd path"
	c := b.cfg
	argv, ok := b.guestArgv(item, "jackfruit", "-vm-bench", c.vmBenchCmd)
	if !ok {
		return
	}
	b.logf("item 6: `%s` (full-system QEMU guest, %d warm-ups + %d interleaved runs per subject, up to %s)", c.vmBenchCmd, c.warmup, c.vmRuns, c.vmTimeout)
	out, elapsed, runErr := runGuest(ctx, argv, c.vmTimeout, []string{"BENCH_RUNS=" + strconv.Itoa(c.vmRuns), "BENCH_WARMUP=" + strconv.Itoa(c.warmup)})
	_ = os.WriteFile(filepath.Join(c.work, "vmbench.log"), out, 0o644)

	info, subs, bad := parseVMBench(out)
	b.report.Notes = append(b.report.Notes, bad...)
	b.report.Details["systemd_path"] = map[string]any{"info": info, "subjects": subs}
	if len(subs) == 0 {
		reason := "no VMBENCH lines"
		if runErr != nil {
			reason = fmt.Sprintf("`%s` failed: %v; last output: %s", c.vmBenchCmd, runErr, strings.ReplaceAll(trimLines(string(out), 4), "\n", " | "))
		}
		b.report.skip(item, "jackfruit", reason)
		return
	}
	if runErr != nil {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("item 6: `%s` exited with %v after printing %d subjects (a guest step failed; its transcript is in the runner's output)", c.vmBenchCmd, runErr, len(subs)))
	}
	guest := "the guest"
	if info != nil {
		guest = fmt.Sprintf("the guest (kernel %v, %v vCPUs; %v; %v; %v; %v)", info["kernel"], info["cpus"], info["jackfruit"], info["systemd"], info["podman"], info["crun"])
	}
	b.report.how("systemd path: `%s` (%.0f s) boots the full-system Debian 12 VM of `make e2e` (QEMU TCG, no KVM: several times slower than hardware, so compare the ratios, not the times), installs build/deb's packages with dpkg -i and times each command below in %s with bash's clock ($EPOCHREALTIME) around fork, exec and wait; %d warm-ups, then %d rounds, interleaved; NAME is a fresh container name per run", c.vmBenchCmd, elapsed.Seconds(), guest, c.warmup, c.vmRuns)
	for _, s := range subs {
		b.report.how("systemd path, %s: `%s`", s.Subject, s.Cmd)
	}
	b.systemdRows(item, subs, c.vmRuns)
	b.traceRows(item, out)
}

// traceRows adds where the time of a traced jackfruit run goes, from the guest's results in
// the runner's run directory (test/e2e/run.sh names it on its first line).
func (b *bench) traceRows(item string, out []byte) {
	const subject = "jackfruit, traced (3 runs)"
	m := regexp.MustCompile(`run dir (\S+)`).FindSubmatch(out)
	if m == nil {
		b.report.skip(item, subject, "the runner's output names no run directory")
		return
	}
	dir := filepath.Join(string(m[1]), "results")
	times, err := os.ReadFile(filepath.Join(dir, "trace-times.txt"))
	var bus []byte
	if err == nil {
		bus, err = os.ReadFile(filepath.Join(dir, "trace-bus.json"))
	}
	var phases [][]float64
	var calls []float64
	if err == nil {
		phases, calls, err = traceTimeline(times, bus)
	}
	if err != nil {
		b.report.skip(item, subject, err.Error())
		return
	}
	var total float64
	meds := make([]float64, len(phases))
	for i, p := range phases {
		meds[i] = summarize(p).Median
		total += meds[i]
	}
	b.report.how("systemd path, %s: three more `jackfruit run --rm NAME -- /bin/true` after the timed ones, with `busctl monitor --system --json=short` recording (it slows the bus: these runs are not in the table above); each phase is cut at the bus message that ends it; %s", subject, dir)
	for i, p := range phases {
		s := summarize(p)
		b.report.add(Row{Item: item, Subject: subject, Metric: tracePhases[i], Unit: "ms", Summary: &s,
			Spread: fmt.Sprintf("min..max %s..%s (n=%d)", fmtNum(s.Min), fmtNum(s.Max), s.N),
			Versus: fmt.Sprintf("%.0f%% of the sum of the medians", 100*meds[i]/total)})
	}
	s := summarize(calls)
	b.report.add(Row{Item: item, Subject: subject, Metric: "method calls to systemd and machined per run (any sender)", Unit: "calls", Summary: &s,
		Spread: fmt.Sprintf("min..max %s..%s (n=%d)", fmtNum(s.Min), fmtNum(s.Max), s.N)})
}

// systemdRows writes one row per subject: jackfruit's with its ratio to every peer, the peers'
// with theirs to jackfruit, jackfruit's parts with their share of its median.
func (b *bench) systemdRows(item string, subs []vmSubject, want int) {
	const metric = "start-to-exit in QEMU"
	const goal = "jackfruit fastest of them"
	sums := map[string]Summary{}
	var main string
	for _, s := range subs {
		if s.Role == "main" {
			main = s.Subject
		}
		if s.Error == "" && len(s.Us) > 0 {
			ms := make([]float64, len(s.Us))
			for i, us := range s.Us {
				ms[i] = us / 1000
			}
			sums[s.Subject] = summarize(ms)
		}
	}
	jf, jfOK := sums[main]
	for _, s := range subs {
		g := ""
		if s.Role == "main" {
			g = goal
		}
		sum, ok := sums[s.Subject]
		if !ok {
			reason := s.Error
			if reason == "" {
				reason = "no successful run"
				if s.FirstError != "" {
					reason += "; first error: " + s.FirstError
				}
			}
			b.report.skip(item, s.Subject, reason)
			b.report.Rows[len(b.report.Rows)-1].Metric = metric
			b.report.Rows[len(b.report.Rows)-1].Goal = g
			continue
		}
		row := Row{Item: item, Subject: s.Subject, Metric: metric, Unit: "ms", Summary: &sum, Goal: g,
			Spread: fmt.Sprintf("%s..%s; min..max %s..%s (n=%d)", fmtNum(sum.P5), fmtNum(sum.P95), fmtNum(sum.Min), fmtNum(sum.Max), sum.N)}
		var vs []string
		switch s.Role {
		case "main", "jackfruit":
			fastest := true
			for _, p := range subs {
				ps, ok := sums[p.Subject]
				if p.Role != "peer" || !ok {
					continue
				}
				vs = append(vs, ratio(sum.Median, ps.Median, p.Subject, true))
				fastest = fastest && sum.Median < ps.Median
			}
			if s.Role == "main" && len(vs) > 0 {
				if fastest {
					vs = append(vs, "fastest")
				} else {
					vs = append(vs, "not the fastest")
				}
			}
		case "peer":
			if jfOK {
				vs = append(vs, fmt.Sprintf("jackfruit's median is %.0f%% of it", 100*jf.Median/sum.Median))
			}
		case "part":
			if jfOK {
				vs = append(vs, fmt.Sprintf("%.0f%% of jackfruit's median", 100*sum.Median/jf.Median))
			}
		}
		if sum.N < want {
			vs = append(vs, fmt.Sprintf("only %d/%d runs succeeded", sum.N, want))
		}
		row.Versus = strings.Join(vs, "; ")
		b.report.add(row)
	}
}

// busMsg is one message of `busctl monitor --json=short`.
type busMsg struct {
	Type        string `json:"type"`
	Sender      string `json:"sender"`
	Destination string `json:"destination"`
	Path        string `json:"path"`
	Member      string `json:"member"`
	TimeUs      int64  `json:"timestamp-realtime"`
	Payload     struct {
		Data []any `json:"data"`
	} `json:"payload"`
}

// tracePhases are the stretches of one traced `jackfruit run --rm NAME -- /bin/true`, cut at
// the bus messages that mark them. (The supervisor's ContainerExited signal is no mark: it
// is sent after the reply, sometimes after the client has exited.)
var tracePhases = []string{
	"client start, Run call, supervisor's preparation (to StartTransientUnit)",
	"systemd starts the unit: fork, sandbox, spawn stage, its exit (to JobRemoved)",
	"MainPID, cgroup, setup stage handshake, exec, RegisterMachine (to ContainerStarted)",
	"the command runs and exits, pidfd (to the exit record's first read)",
	"exit record, StopUnit, ResetFailed, Unref, final state, reply, client exit",
}

// traceTimeline reads the guest's three traced runs (trace-times.txt: NAME START END rc=N,
// seconds; trace-bus.json: busctl monitor --json=short) and returns, per phase, its duration
// in each run (ms), and the calls each run made to systemd and machined.
func traceTimeline(times, bus []byte) (phases [][]float64, calls []float64, err error) {
	var msgs []busMsg
	sc := bufio.NewScanner(bytes.NewReader(bus))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var m busMsg
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			msgs = append(msgs, m)
		}
	}
	phases = make([][]float64, len(tracePhases))
	for _, line := range strings.Split(strings.TrimSpace(string(times)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		t0, e0 := strconv.ParseFloat(f[1], 64)
		t1, e1 := strconv.ParseFloat(f[2], 64)
		if e0 != nil || e1 != nil {
			return nil, nil, fmt.Errorf("trace-times.txt: unreadable line %q", line)
		}
		name, unit := f[0], "jackfruit-"+f[0]+".service"
		from, to := int64(t0*1e6), int64(t1*1e6)
		marks := []int64{from, 0, 0, 0, 0, to}
		n := 0
		for _, m := range msgs {
			if m.TimeUs < from || m.TimeUs > to {
				continue
			}
			arg0 := ""
			if len(m.Payload.Data) > 0 {
				arg0, _ = m.Payload.Data[0].(string)
			}
			switch {
			case m.Type == "method_call" && (m.Destination == "org.freedesktop.systemd1" || m.Destination == "org.freedesktop.machine1"):
				n++
				if m.Member == "StartTransientUnit" && arg0 == unit && marks[1] == 0 {
					marks[1] = m.TimeUs
				}
				// The exit record: pipelined Gets of the Service interface since d4d3d0e (a
				// GetAll before; machined's own reads are of the Unit interface).
				if (m.Member == "GetAll" || m.Member == "Get") && arg0 == "org.freedesktop.systemd1.Service" &&
					marks[3] != 0 && marks[4] == 0 && strings.HasSuffix(m.Path, "/"+sddbusEscape(unit)) {
					marks[4] = m.TimeUs
				}
			case m.Type == "signal" && m.Member == "JobRemoved" && marks[1] != 0 && marks[2] == 0 && len(m.Payload.Data) > 2 && m.Payload.Data[2] == unit:
				marks[2] = m.TimeUs
			case m.Type == "signal" && m.Member == "ContainerStarted" && arg0 == name:
				marks[3] = m.TimeUs
			}
		}
		for i := 1; i < len(marks)-1; i++ {
			if marks[i] == 0 {
				return nil, nil, fmt.Errorf("%s: no bus message marks the end of %q", name, tracePhases[i-1])
			}
		}
		for i := range tracePhases {
			phases[i] = append(phases[i], float64(marks[i+1]-marks[i])/1000)
		}
		calls = append(calls, float64(n))
	}
	if len(calls) == 0 {
		return nil, nil, errors.New("trace-times.txt lists no run")
	}
	return phases, calls, nil
}

// sddbusEscape is sd_bus_path_encode's escaping of a unit name in its object path.
func sddbusEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (c >= '0' && c <= '9' && i > 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	return b.String()
}
