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
	"sort"
	"strings"
	"syscall"
	"time"
)

// guestArgv splits cmd, the command line of a QEMU item (given with flag), and checks that its
// program exists (a path, or a name on PATH); otherwise it reports the item's subject as
// skipped and returns false.
func (b *bench) guestArgv(item, subject, flag, cmd string) ([]string, bool) {
	argv := strings.Fields(cmd)
	if len(argv) == 0 {
		b.report.skip(item, subject, "no "+flag+" command")
		return nil, false
	}
	if _, err := os.Stat(argv[0]); err != nil {
		if _, lerr := exec.LookPath(argv[0]); lerr != nil {
			b.report.skip(item, subject, fmt.Sprintf("%s is missing", argv[0]))
			return nil, false
		}
	}
	return argv, true
}

// runGuest runs argv, a command that boots a QEMU guest, for at most timeout, with env added
// to ours, and returns its combined output and how long it ran. It runs in a process group of
// its own, so that a timeout also ends the QEMU it started.
func runGuest(ctx context.Context, argv []string, timeout time.Duration, env []string) ([]byte, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	return out.Bytes(), time.Since(t0), err
}

// itemKmod: item 5. The kernel module can only be loaded in a QEMU guest here, so the kmod
// test runner does the measuring and prints one `KBENCH {json}` line per result; this item
// runs it and folds those numbers into the table.
func (b *bench) itemKmod(ctx context.Context) {
	const item = "5 monitor"
	c := b.cfg
	argv, ok := b.guestArgv(item, "kernel module", "-kmod-bench", c.kbenchCmd)
	if !ok {
		return
	}
	b.logf("item 5: `%s` (QEMU, up to %s)", c.kbenchCmd, c.kbenchTmo)
	out, elapsed, runErr := runGuest(ctx, argv, c.kbenchTmo, nil)
	b.report.how("monitor: `%s` (kernel module loaded in a QEMU guest by the kmod test runner, %.0f s); its KBENCH lines are shown as they come", c.kbenchCmd, elapsed.Seconds())
	_ = os.WriteFile(b.cfg.work+"/kbench.log", out, 0o644)

	var results []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "KBENCH ")
		if i < 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(line[i+len("KBENCH "):])), &m); err != nil {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf("unparsable KBENCH line %q: %v", line, err))
			continue
		}
		results = append(results, m)
	}
	b.report.Details["kbench"] = results
	if len(results) == 0 {
		reason := "no KBENCH lines"
		if runErr != nil {
			reason = fmt.Sprintf("`%s` failed: %v; last output: %s", c.kbenchCmd, runErr, strings.ReplaceAll(trimLines(string(out), 4), "\n", " | "))
		}
		b.report.skip(item, "kernel module", reason)
		return
	}
	if runErr != nil {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("kmod bench exited with %v after printing %d results", runErr, len(results)))
	}
	b.tcgCalibration(ctx)
	for _, m := range results {
		b.kbenchRows(item, m)
	}
}

// kbenchRows turns one KBENCH object into rows. Objects are read loosely: labels (strings
// and small integers such as kernel, entries) name the subject; numbers and summary objects
// ({"median":..,"p5":..,"p95":..}) become metrics.
func (b *bench) kbenchRows(item string, m map[string]any) {
	if metric, ok := m["metric"].(string); ok {
		if _, ok := m["median"].(float64); ok {
			b.kbenchMetricRow(item, metric, m)
			return
		}
	}
	var labels []string
	entries := -1
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			labels = append(labels, k+"="+v)
		case float64:
			if isLabelKey(k) {
				labels = append(labels, fmt.Sprintf("%s=%g", k, v))
				if k == "entries" || k == "containers" || k == "n" {
					entries = int(v)
				}
			}
		}
	}
	subject := strings.Join(labels, " ")
	for _, k := range keys {
		if isLabelKey(k) {
			continue
		}
		row := Row{Item: item, Subject: subject, Metric: k, Unit: unitOf(k), Goal: kbenchGoal(k, entries)}
		switch v := m[k].(type) {
		case float64:
			vv := v
			row.Value = &vv
		case map[string]any:
			s, ok := summaryFrom(v)
			if !ok {
				continue
			}
			row.Summary = &s
		default:
			continue
		}
		b.report.add(row)
	}
}

// kbenchMetricRow handles the documented format (test/kmod/README.md):
// {"kernel":..,"metric":..,"containers":..,"unit":..,"samples":..,"median":..,"p10":..,"p90":..,"min":..,"max":..}
func (b *bench) kbenchMetricRow(item, metric string, m map[string]any) {
	num := func(k string) float64 { v, _ := m[k].(float64); return v }
	kernel, _ := m["kernel"].(string)
	unit, _ := m["unit"].(string)
	n := int(num("containers"))
	s := Summary{N: int(num("samples")), Median: num("median"), Min: num("min"), Max: num("max")}
	// The guest reports p10/p90; keep them as the spread and say so.
	spread := fmt.Sprintf("p10..p90 %s..%s, max %s (n=%d)", fmtNum(num("p10")), fmtNum(num("p90")), fmtNum(s.Max), s.N)
	if _, ok := m["p10"]; !ok {
		spread = fmt.Sprintf("%s..%s (min..max, n=%d)", fmtNum(s.Min), fmtNum(s.Max), s.N)
	}
	row := Row{Item: item, Subject: "kmod " + kernel, Metric: fmt.Sprintf("%s @%d", metric, n), Unit: unit,
		Summary: &s, Spread: spread}
	switch {
	case metric == "scan_time_us" && n == 1000:
		row.Goal = "< 1 ms CPU per scan of 1000"
		if s.Median > 0 {
			row.Versus = fmt.Sprintf("%.0f%% of the 1 ms budget in QEMU TCG", s.Median/10)
			if f := b.conservativeTCGFactor(); f > 1 {
				row.Versus += fmt.Sprintf("; est. <= %s us native (/ smaller TCG slowdown %.1fx)", fmtNum(s.Median/f), f)
			}
		}
	case metric == "kill_latency_scan_intervals":
		row.Goal = "<= 2 scan intervals"
	case metric == "kill_latency_ms":
		row.Goal = "within 2 scan intervals"
	}
	b.report.add(row)
}

// conservativeTCGFactor is the smaller of the measured guest/host slowdowns (0 when none
// was measured): dividing a guest time by it over- rather than under-estimates native time.
func (b *bench) conservativeTCGFactor() float64 {
	f := 0.0
	for _, x := range b.tcgFactors {
		if f == 0 || x < f {
			f = x
		}
	}
	return f
}

func isLabelKey(k string) bool {
	switch k {
	case "kernel", "entries", "containers", "n", "runs", "samples", "bench", "name", "test", "what", "kind":
		return true
	}
	return false
}

func unitOf(k string) string {
	switch {
	case strings.HasSuffix(k, "_ns"):
		return "ns"
	case strings.HasSuffix(k, "_us"):
		return "us"
	case strings.HasSuffix(k, "_ms"):
		return "ms"
	case strings.Contains(k, "interval"):
		return "intervals"
	}
	return ""
}

func kbenchGoal(k string, entries int) string {
	switch {
	case strings.Contains(k, "scan") && entries == 1000:
		return "< 1 ms CPU per scan at 1000"
	case strings.Contains(k, "kill"):
		return "within 2 scan intervals"
	}
	return ""
}

func summaryFrom(v map[string]any) (Summary, bool) {
	get := func(names ...string) (float64, bool) {
		for _, n := range names {
			if x, ok := v[n].(float64); ok {
				return x, true
			}
		}
		return 0, false
	}
	med, ok := get("median", "p50")
	if !ok {
		return Summary{}, false
	}
	s := Summary{Median: med}
	s.P5, _ = get("p5", "min")
	s.P95, _ = get("p95", "max")
	s.Min, _ = get("min")
	s.Max, _ = get("max")
	s.Mean, _ = get("mean", "avg")
	if n, ok := get("n", "samples", "runs"); ok {
		s.N = int(n)
	}
	return s, true
}

// The calibration workloads, run with the same busybox on the host and in a QEMU guest
// booted the way the kmod bench boots it: a CPU-bound loop, and procfs reads (kernel code
// reading a task's mm counters, like the monitor's scan).
var calibrations = []struct{ name, prog string }{
	{"cpu loop", `BEGIN { for (i = 0; i < 150000; i++) s += i; print s > "/dev/null" }`},
	{"procfs reads", `BEGIN { for (i = 0; i < 10000; i++) { while ((getline l < "/proc/self/statm") > 0) n++; close("/proc/self/statm") } print n > "/dev/null" }`},
}

const calRuns = 5

// tcgCalibration estimates how much slower the QEMU guest (TCG, no KVM) runs than this host,
// so item 5's scan times, measured in the guest, can be read against a budget meant for real
// hardware. It is an estimate from two simple workloads, and the table says so.
func (b *bench) tcgCalibration(ctx context.Context) {
	const item = "5 monitor"
	c := b.cfg
	kernels, _ := filepathGlob("/boot/vmlinuz-6.1.*-amd64")
	qemu, qerr := exec.LookPath("qemu-system-x86_64")
	busybox := filepath.Join(c.rootfs, "bin", "busybox") // busybox-static: the guest has no libc
	_, cerr := exec.LookPath("cpio")
	_, berr := os.Stat(busybox)
	switch {
	case berr != nil:
		b.report.skip(item, "QEMU TCG slowdown", berr.Error())
		return
	case len(kernels) == 0:
		b.report.skip(item, "QEMU TCG slowdown", "no /boot/vmlinuz-6.1.*-amd64")
		return
	case qerr != nil || cerr != nil:
		b.report.skip(item, "QEMU TCG slowdown", "qemu-system-x86_64 or cpio missing (make deps)")
		return
	}
	dir := filepath.Join(c.work, "tcg-cal")
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.report.skip(item, "QEMU TCG slowdown", err.Error())
			return
		}
	}
	bb, err := os.ReadFile(busybox)
	if err == nil {
		err = os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755)
	}
	init := "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
	for i, cal := range calibrations {
		_ = os.WriteFile(filepath.Join(root, fmt.Sprintf("cal%d.awk", i)), []byte(cal.prog+"\n"), 0o644)
		init += fmt.Sprintf("for r in $(/bin/busybox seq %d); do t0=$(/bin/busybox cut -d' ' -f1 /proc/uptime); /bin/busybox awk -f /cal%d.awk; t1=$(/bin/busybox cut -d' ' -f1 /proc/uptime); echo \"TCGCAL %d $t0 $t1\"; done\n", calRuns, i, i)
	}
	init += "/bin/busybox poweroff -f\n"
	if err == nil {
		err = os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	if err == nil {
		cmd := exec.CommandContext(ctx, "sh", "-c", "cd "+root+" && find . | cpio -o -H newc --quiet | gzip -1 > "+initrd)
		if out, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("initramfs: %s", errString(cerr, out))
		}
	}
	if err != nil {
		b.report.skip(item, "QEMU TCG slowdown", err.Error())
		return
	}

	// Host side first, with the same busybox and programs.
	host := make([][]float64, len(calibrations))
	for i := range calibrations {
		for r := 0; r < calRuns; r++ {
			d, err := timeCmd(exec.CommandContext(ctx, busybox, "awk", "-f", filepath.Join(root, fmt.Sprintf("cal%d.awk", i))))
			if err != nil {
				b.report.skip(item, "QEMU TCG slowdown", "host run: "+err.Error())
				return
			}
			host[i] = append(host[i], ms(d))
		}
	}
	// Same machine options as test/kmod/run.sh's guest.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	argv := []string{qemu, "-nodefaults", "-no-user-config", "-nographic", "-accel", "tcg,thread=single",
		"-cpu", "max", "-m", "512", "-smp", "2", "-no-reboot", "-kernel", kernels[len(kernels)-1],
		"-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1 rdinit=/init", "-serial", "stdio", "-monitor", "none"}
	out, qrunErr := exec.CommandContext(qctx, argv[0], argv[1:]...).CombinedOutput()
	guest := make([][]float64, len(calibrations))
	for _, line := range strings.Split(string(out), "\n") {
		var i int
		var t0, t1 float64
		if k := strings.Index(line, "TCGCAL "); k >= 0 {
			if n, _ := fmt.Sscanf(strings.TrimSpace(line[k:]), "TCGCAL %d %g %g", &i, &t0, &t1); n == 3 && i < len(guest) {
				guest[i] = append(guest[i], 1000*(t1-t0))
			}
		}
	}
	for i, cal := range calibrations {
		if len(guest[i]) == 0 {
			reason := "no TCGCAL lines from the guest"
			if qrunErr != nil {
				reason = fmt.Sprintf("qemu: %v: %s", qrunErr, strings.ReplaceAll(trimLines(string(out), 3), "\n", " | "))
			}
			b.report.skip(item, "QEMU TCG slowdown", reason)
			return
		}
		h, g := summarize(host[i]), summarize(guest[i])
		f := g.Median / h.Median
		b.tcgFactors = append(b.tcgFactors, f)
		b.report.add(Row{Item: item, Subject: "QEMU TCG slowdown", Metric: cal.name + " guest/host", Unit: "x", Value: &f,
			Spread: fmt.Sprintf("host %s ms, guest %s ms (10 ms clock), n=%d", fmtNum(h.Median), fmtNum(g.Median), g.N)})
	}
	b.report.how("QEMU TCG slowdown: the same busybox awk programs (a CPU loop; procfs reads of /proc/self/statm) timed on this host and in a QEMU guest booted like the kmod bench's (%s, TCG, -smp 2); an estimate to read item 5's guest times against real-hardware budgets", kernels[len(kernels)-1])
}

func filepathGlob(p string) ([]string, error) { return filepath.Glob(p) }
