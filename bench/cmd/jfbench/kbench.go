package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// itemKmod: item 5. The kernel module can only be loaded in a QEMU guest here, so the kmod
// test runner does the measuring and prints one `KBENCH {json}` line per result; this item
// runs it and folds those numbers into the table.
func (b *bench) itemKmod(ctx context.Context) {
	const item = "5 monitor"
	c := b.cfg
	argv := strings.Fields(c.kbenchCmd)
	if len(argv) == 0 {
		b.report.skip(item, "kernel module", "no -kmod-bench command")
		return
	}
	if _, err := os.Stat(argv[0]); err != nil {
		if _, lerr := exec.LookPath(argv[0]); lerr != nil {
			b.report.skip(item, "kernel module", fmt.Sprintf("%s is missing (kernel module bench not there yet)", argv[0]))
			return
		}
	}
	b.logf("item 5: `%s` (QEMU, up to %s)", c.kbenchCmd, c.kbenchTmo)
	cctx, cancel := context.WithTimeout(ctx, c.kbenchTmo)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	// Its own process group, so a timeout also ends the QEMU it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	runErr := cmd.Run()
	b.report.how("monitor: `%s` (kernel module loaded in a QEMU guest by the kmod test runner, %.0f s); its KBENCH lines are shown as they come", c.kbenchCmd, time.Since(t0).Seconds())
	_ = os.WriteFile(b.cfg.work+"/kbench.log", out.Bytes(), 0o644)

	var results []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
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
			reason = fmt.Sprintf("`%s` failed: %v; last output: %s", c.kbenchCmd, runErr, strings.ReplaceAll(trimLines(out.String(), 4), "\n", " | "))
		}
		b.report.skip(item, "kernel module", reason)
		return
	}
	if runErr != nil {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("kmod bench exited with %v after printing %d results", runErr, len(results)))
	}
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
			row.Versus = fmt.Sprintf("%.0f%% of the 1 ms budget (QEMU TCG, no KVM)", s.Median/10)
		}
	case metric == "kill_latency_scan_intervals":
		row.Goal = "<= 2 scan intervals"
	case metric == "kill_latency_ms":
		row.Goal = "within 2 scan intervals"
	}
	b.report.add(row)
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
