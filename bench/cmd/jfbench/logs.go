// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// logRun is one run of one side of item 4.
type logRun struct {
	Side         string    `json:"side"`
	Seconds      float64   `json:"seconds"`
	LinesPerSec  float64   `json:"lines_per_sec"`
	FileLines    int       `json:"file_lines,omitempty"` // distinct numbers 1..N in the log file
	JournalLines int       `json:"journal_lines"`        // distinct numbers 1..N in the journal
	File         *seqCheck `json:"file_check,omitempty"`
	Journal      *seqCheck `json:"journal_check,omitempty"`
	Lost         int       `json:"lost"`
	// CPU seconds spent during the run: where the time goes.
	SupervisorCPU float64 `json:"supervisor_cpu_s,omitempty"`
	JournaldCPU   float64 `json:"journald_cpu_s"`
	Error         string  `json:"error,omitempty"`
}

// itemLogs: item 4. The same busybox `seq 1 N` writes N short lines either inside a
// jackfruit container (supervisor -> log file + journal) or straight into systemd-cat (stream
// transport). The clock stops when the last line is readable from the journal.
func (b *bench) itemLogs(ctx context.Context) {
	const item = "4 log throughput"
	c := b.cfg
	goal := ">= 80% of systemd-cat, 0 lost"
	if b.journal == nil {
		b.report.skip(item, "jackfruit and systemd-cat", "no private journald (see stderr)")
		return
	}
	b.logf("item 4: %d lines, %d interleaved runs per side", c.logLines, c.logRuns)
	busybox := filepath.Join(c.rootfs, "bin", "busybox")
	// A log cap above the run's size (about 23 bytes per short line), so rotation does not
	// discard lines the bench then counts as lost.
	capMiB := c.logLines*32/(1<<20) + 16
	sup, supErr := startSupervisor(ctx, c, "logs", append(b.profileFlags(), "--log-max-size", fmt.Sprintf("%dM", capMiB))...)
	if supErr == nil {
		defer sup.stop()
		b.startProfile(ctx, sup, "logs")
	}
	var runs []logRun
	var jfRate, catRate []float64
	jfLost, catLost, jfDups := 0, 0, 0
	var jfErr, catErr error = supErr, nil
	if _, err := os.Stat(busybox); err != nil {
		catErr = fmt.Errorf("%s: %w (run `make rootfs`)", busybox, err)
	} else if _, err := exec.LookPath("systemd-cat"); err != nil {
		catErr = err
	}
	for i := 0; i < c.logRuns; i++ {
		if err := b.journal.reset(ctx); err != nil {
			b.logf("journal reset: %v", err)
		}
		if jfErr == nil {
			r := b.logRunJackfruit(ctx, sup, i)
			runs = append(runs, r)
			if r.Error != "" {
				jfErr = errors.New(r.Error)
			} else {
				jfRate = append(jfRate, r.LinesPerSec)
				jfLost += r.Lost
				jfDups += r.File.Dups + r.Journal.Dups
			}
		}
		if err := b.journal.reset(ctx); err != nil {
			b.logf("journal reset: %v", err)
		}
		if catErr == nil {
			r := b.logRunCat(ctx, busybox, i)
			runs = append(runs, r)
			if r.Error != "" {
				catErr = errors.New(r.Error)
			} else {
				catRate = append(catRate, r.LinesPerSec)
				catLost += r.Lost
			}
		}
	}
	b.report.Details["logs"] = runs
	if supErr == nil {
		b.report.how("log throughput, jackfruit: `jackfruit start NAME -- seq 1 %d` (busybox seq in the container; supervisor writes the log file and the private journald); clock from the CLI's fork until, after `journalctl --sync`, the last line is among the newest `journalctl CONTAINER=NAME` entries; then every number 1..N is checked off in the log file (parsed from its binary format) and in the journal (other lines, i.e. lifecycle events, are ignored)", c.logLines)
	}
	b.report.how("log throughput, systemd-cat: `%s seq 1 %d | systemd-cat -t TAG` (same busybox, stream transport to the same private journald); same stop condition", busybox, c.logLines)
	b.report.how("journald: private /usr/lib/systemd/systemd-journald on tmpfs /run/systemd and /run/log with /run/systemd/journald.conf.d/jfbench.conf: Storage=volatile, RateLimitIntervalSec=0, RateLimitBurst=0, no forwarding, no kmsg/audit")

	// Where the time goes: CPU per line of the supervisor and of journald on each side.
	perLine := map[string][]float64{}
	for _, r := range runs {
		if r.Error != "" {
			continue
		}
		perLine[r.Side+" journald"] = append(perLine[r.Side+" journald"], 1e6*r.JournaldCPU/float64(c.logLines))
		if r.Side == "jackfruit" {
			perLine["jackfruit supervisor"] = append(perLine["jackfruit supervisor"], 1e6*r.SupervisorCPU/float64(c.logLines))
		}
	}
	defer func() {
		for _, k := range []string{"jackfruit supervisor", "jackfruit journald", "systemd-cat journald"} {
			if len(perLine[k]) == 0 {
				continue
			}
			s := summarize(perLine[k])
			b.report.add(Row{Item: item, Subject: k, Metric: "CPU per line", Unit: "us", Summary: &s,
				Spread: fmt.Sprintf("%s..%s (n=%d)", fmtNum(s.Min), fmtNum(s.Max), s.N)})
		}
	}()

	var catSum *Summary
	if len(catRate) > 0 {
		s := summarize(catRate)
		catSum = &s
	}
	if jfErr != nil && len(jfRate) == 0 {
		b.report.skip(item, "jackfruit", jfErr.Error())
		b.report.Rows[len(b.report.Rows)-1].Goal = goal
	} else {
		s := summarize(jfRate)
		row := Row{Item: item, Subject: "jackfruit (file+journal)", Metric: "lines/s", Unit: "lines/s", Summary: &s, Goal: goal}
		vs := []string{fmt.Sprintf("lost %d of %d, %d duplicated", jfLost, c.logLines*len(jfRate), jfDups)}
		if catSum != nil {
			vs = append([]string{ratio(s.Median, catSum.Median, "systemd-cat", false)}, vs...)
		}
		row.Versus = strings.Join(vs, "; ")
		b.report.add(row)
	}
	if catSum == nil {
		reason := "no successful run"
		if catErr != nil {
			reason = catErr.Error()
		}
		b.report.skip(item, "systemd-cat", reason)
	} else {
		b.report.add(Row{Item: item, Subject: "systemd-cat (journal)", Metric: "lines/s", Unit: "lines/s", Summary: catSum,
			Versus: fmt.Sprintf("reference; lost %d of %d", catLost, c.logLines*len(catRate))})
	}
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	j := bytes.LastIndexByte(b, ')')
	if j < 0 {
		return 0
	}
	f := strings.Fields(string(b[j+1:]))
	// After the comm: state(0) ppid(1) ... utime(11) stime(12), in clock ticks (USER_HZ=100).
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func (b *bench) logRunJackfruit(ctx context.Context, sup *supervisor, i int) logRun {
	c := b.cfg
	name := fmt.Sprintf("jfb-log-%d", i)
	r := logRun{Side: "jackfruit"}
	want := strconv.Itoa(c.logLines)
	sup0, jd0 := cpuSeconds(sup.pid()), cpuSeconds(b.journal.pid())
	t0 := time.Now()
	out, err := sup.cli(ctx, "start", name, "--", "seq", "1", want).CombinedOutput()
	if err != nil {
		r.Error = "jackfruit start: " + errString(err, out)
		return r
	}
	logPath := filepath.Join(sup.stateDir, "containers", name, "container.log")
	n, err := followLines(logPath, c.logLines, 20*time.Second)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	// Lifecycle events about the container share its fields; the checks below tell them
	// apart from the numbers seq printed.
	filter := []string{"CONTAINER=" + name}
	if err := b.waitJournalTail(ctx, filter, want, n); err != nil {
		r.Error = err.Error()
		return r
	}
	d := time.Since(t0)
	r.SupervisorCPU = cpuSeconds(sup.pid()) - sup0
	r.JournaldCPU = cpuSeconds(b.journal.pid()) - jd0
	r.Seconds = d.Seconds()
	r.LinesPerSec = float64(c.logLines) / d.Seconds()
	r.File = newSeqCheck(c.logLines)
	if err := checkFile(logPath, r.File); err != nil {
		r.Error = err.Error()
		return r
	}
	r.Journal = newSeqCheck(c.logLines)
	if err := b.journal.check(ctx, r.Journal, filter...); err != nil {
		r.Error = err.Error()
		return r
	}
	r.FileLines, r.JournalLines = r.File.Distinct, r.Journal.Distinct
	r.Lost = c.logLines - min(r.FileLines, r.JournalLines)
	// Free the disk for the next run (--rm would have deleted the file before it was
	// counted); the container may still be finishing, so wait for it first.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_ = sup.cli(wctx, "wait", name).Run()
	cancel()
	if out, err := sup.cli(ctx, "rm", name).CombinedOutput(); err != nil {
		b.logf("  jackfruit rm %s: %s", name, errString(err, out))
	}
	b.logf("  jackfruit run %d: %.0f lines/s, file %d, journal %d", i+1, r.LinesPerSec, r.FileLines, r.JournalLines)
	return r
}

func (b *bench) logRunCat(ctx context.Context, busybox string, i int) logRun {
	c := b.cfg
	tag := fmt.Sprintf("jfb-cat-%d", i)
	r := logRun{Side: "systemd-cat"}
	want := strconv.Itoa(c.logLines)
	jd0 := cpuSeconds(b.journal.pid())
	pr, pw, err := os.Pipe()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	producer := exec.CommandContext(ctx, busybox, "seq", "1", want)
	producer.Stdout = pw
	consumer := exec.CommandContext(ctx, "systemd-cat", "-t", tag)
	consumer.Stdin = pr
	var cerr bytes.Buffer
	consumer.Stderr = &cerr
	t0 := time.Now()
	if err := consumer.Start(); err != nil {
		r.Error = err.Error()
		return r
	}
	if err := producer.Start(); err != nil {
		r.Error = err.Error()
		return r
	}
	pw.Close()
	pr.Close()
	perr := producer.Wait()
	if err := consumer.Wait(); err != nil || perr != nil {
		r.Error = fmt.Sprintf("seq | systemd-cat: %v %v %s", perr, err, cerr.String())
		return r
	}
	filter := []string{"SYSLOG_IDENTIFIER=" + tag}
	if err := b.waitJournalTail(ctx, filter, want, c.logLines); err != nil {
		r.Error = err.Error()
		return r
	}
	d := time.Since(t0)
	r.JournaldCPU = cpuSeconds(b.journal.pid()) - jd0
	r.Seconds = d.Seconds()
	r.LinesPerSec = float64(c.logLines) / d.Seconds()
	r.Journal = newSeqCheck(c.logLines)
	if err := b.journal.check(ctx, r.Journal, filter...); err != nil {
		r.Error = err.Error()
		return r
	}
	r.JournalLines = r.Journal.Distinct
	r.Lost = c.logLines - r.JournalLines
	b.logf("  systemd-cat run %d: %.0f lines/s, journal %d", i+1, r.LinesPerSec, r.JournalLines)
	return r
}

// waitJournalTail syncs the journal and waits until the last line printed is among the
// newest matching entries (lifecycle events may follow it). journald keeps one sender's entries in order, so the last line being there
// means everything before it was processed too (the full count afterwards checks for loss).
func (b *bench) waitJournalTail(ctx context.Context, filter []string, want string, seen int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := b.journal.sync(ctx); err != nil {
			return err
		}
		last, err := b.journal.tail(ctx, 10, filter...)
		if err != nil {
			return err
		}
		for _, l := range last {
			if l == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("journal: newest %s entries %q do not include %q, 60 s after the producer finished (%d lines reached the log file)", strings.Join(filter, " "), last, want, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recordCounter counts complete lines in jackfruit's binary log file format (see
// service/logs/record.go: "JFLOG01\n", then 16-byte headers 0xA5 flags 0 0 len:u32le
// time:i64le, each followed by len data bytes). It is written independently of the logs
// package on purpose: the bench checks the file as an outside reader would.
type recordCounter struct {
	buf    []byte
	magic  bool
	lines  int
	broken error
	check  *seqCheck // optional: gets each complete line's data
}

func (rc *recordCounter) feed(p []byte) {
	rc.buf = append(rc.buf, p...)
	if !rc.magic {
		if len(rc.buf) < 8 {
			return
		}
		if string(rc.buf[:8]) != "JFLOG01\n" {
			rc.broken = fmt.Errorf("not a jackfruit log file (magic %q)", rc.buf[:8])
			return
		}
		rc.magic = true
		rc.buf = rc.buf[8:]
	}
	off := 0
	for rc.broken == nil && len(rc.buf)-off >= 16 {
		h := rc.buf[off:]
		if h[0] != 0xA5 {
			rc.broken = fmt.Errorf("record marker %#x, want 0xa5", h[0])
			break
		}
		n := int(binary.LittleEndian.Uint32(h[4:8]))
		if len(h) < 16+n {
			break
		}
		if h[1]&2 == 0 { // not a partial piece: a whole line ends here
			rc.lines++
			if rc.check != nil {
				rc.check.add(h[16 : 16+n])
			}
		}
		off += 16 + n
	}
	rc.buf = append(rc.buf[:0], rc.buf[off:]...)
}

// followLines tails a growing log file until it holds want lines, or nothing was appended
// for stall. It returns the number of lines seen.
func followLines(path string, want int, stall time.Duration) (int, error) {
	var f *os.File
	deadline := time.Now().Add(stall)
	for f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("log file %s never appeared: %w", path, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var rc recordCounter
	last := time.Now()
	for rc.lines < want {
		k, err := f.Read(buf)
		if k > 0 {
			rc.feed(buf[:k])
			if rc.broken != nil {
				return rc.lines, fmt.Errorf("%s: %w", path, rc.broken)
			}
			last = time.Now()
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return rc.lines, err
		}
		if time.Since(last) > stall {
			return rc.lines, fmt.Errorf("log file %s stopped growing at %d of %d lines", path, rc.lines, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rc.lines, nil
}

// checkFile feeds every complete line of the log file and its rotated predecessor (path.1)
// to sc.
func checkFile(path string, sc *seqCheck) error {
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		rc := recordCounter{check: sc}
		rc.feed(b)
		if rc.broken != nil {
			return fmt.Errorf("%s: %w", p, rc.broken)
		}
	}
	return nil
}
