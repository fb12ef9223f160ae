// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	argv := strings.Fields(c.vmBenchCmd)
	if len(argv) == 0 {
		b.report.skip(item, "jackfruit", "no -vm-bench command")
		return
	}
	if _, err := os.Stat(argv[0]); err != nil {
		b.report.skip(item, "jackfruit", fmt.Sprintf("%s is missing", argv[0]))
		return
	}
	b.logf("item 6: `%s` (full-system QEMU guest, %d warm-ups + %d interleaved runs per subject, up to %s)", c.vmBenchCmd, c.warmup, c.vmRuns, c.vmTimeout)
	cctx, cancel := context.WithTimeout(ctx, c.vmTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BENCH_RUNS="+strconv.Itoa(c.vmRuns), "BENCH_WARMUP="+strconv.Itoa(c.warmup))
	// Its own process group, so a timeout also ends the QEMU it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(t0)
	_ = os.WriteFile(filepath.Join(c.work, "vmbench.log"), out.Bytes(), 0o644)

	info, subs, bad := parseVMBench(out.Bytes())
	b.report.Notes = append(b.report.Notes, bad...)
	b.report.Details["systemd_path"] = map[string]any{"info": info, "subjects": subs}
	if len(subs) == 0 {
		reason := "no VMBENCH lines"
		if runErr != nil {
			reason = fmt.Sprintf("`%s` failed: %v; last output: %s", c.vmBenchCmd, runErr, strings.ReplaceAll(trimLines(out.String(), 4), "\n", " | "))
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
