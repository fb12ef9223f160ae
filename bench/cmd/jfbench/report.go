// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what bench/results/<timestamp>.json holds.
type Report struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Host     HostInfo          `json:"host"`
	Versions map[string]string `json:"versions"`
	// HowRun says exactly how each subject was run (command lines, config changes).
	HowRun  []string          `json:"how_run"`
	Rows    []Row             `json:"rows"`
	Details map[string]any    `json:"details"`
	Notes   []string          `json:"notes,omitempty"`
	Skipped map[string]string `json:"not_measured,omitempty"`
}

// HostInfo identifies the machine.
type HostInfo struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	MemTotalKiB int64  `json:"mem_total_kib"`
}

// Row is one line of the table.
type Row struct {
	Item        string   `json:"item"`
	Subject     string   `json:"subject"`
	Metric      string   `json:"metric"`
	Unit        string   `json:"unit"`
	Summary     *Summary `json:"summary,omitempty"`
	Value       *float64 `json:"value,omitempty"` // a derived number (e.g. a per-container increment)
	Spread      string   `json:"spread,omitempty"`
	Versus      string   `json:"versus,omitempty"` // ratio to the peer, spelled out
	Goal        string   `json:"goal,omitempty"`
	NotMeasured string   `json:"not_measured,omitempty"`
}

func newReport() *Report {
	return &Report{
		Started:  time.Now().UTC(),
		Versions: map[string]string{},
		Details:  map[string]any{},
		Skipped:  map[string]string{},
	}
}

func (r *Report) add(row Row) { r.Rows = append(r.Rows, row) }

func (r *Report) how(format string, args ...any) {
	r.HowRun = append(r.HowRun, fmt.Sprintf(format, args...))
}

func (r *Report) skip(item, subject, reason string) {
	r.Skipped[item+" / "+subject] = reason
	r.add(Row{Item: item, Subject: subject, NotMeasured: reason})
}

func fmtNum(x float64) string {
	switch ax := abs(x); {
	case ax == 0:
		return "0"
	case ax >= 100000:
		return fmt.Sprintf("%.0f", x)
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func printTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\njackfruit bench  %s  kernel %s, %d CPUs, %d MiB\n",
		r.Started.Format(time.RFC3339), r.Host.Kernel, r.Host.CPUs, r.Host.MemTotalKiB/1024)
	for _, k := range []string{"jackfruit", "crun", "runc", "conmon", "systemd"} {
		fmt.Fprintf(w, "  %-9s %s\n", k, r.Versions[k])
	}
	fmt.Fprintln(w, "\nHow each subject was run:")
	for _, h := range r.HowRun {
		fmt.Fprintf(w, "  - %s\n", h)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ITEM\tSUBJECT\tMETRIC\tMEDIAN\tSPREAD (p5..p95)\tUNIT\tVS PEER\tGOAL")
	for _, row := range r.Rows {
		if row.NotMeasured != "" {
			// The reason goes last: an unterminated cell does not widen the columns.
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t\t\t\t%s\tnot measured: %s\n", row.Item, row.Subject, row.Metric, row.Goal, row.NotMeasured)
			continue
		}
		med, spread := "", row.Spread
		if row.Summary != nil {
			med = fmtNum(row.Summary.Median)
			if spread == "" {
				spread = fmt.Sprintf("%s..%s (n=%d)", fmtNum(row.Summary.P5), fmtNum(row.Summary.P95), row.Summary.N)
			}
		}
		if row.Value != nil {
			med = fmtNum(*row.Value)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Item, row.Subject, row.Metric, med, spread, row.Unit, row.Versus, row.Goal)
	}
	tw.Flush()
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

func numCPU() int { return runtime.NumCPU() }

func memTotalKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kib int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kib); n == 1 {
			return kib
		}
	}
	return 0
}

// ratio spells a comparison out so nobody has to guess which way it goes.
func ratio(ours, peer float64, peerName string, lowerIsBetter bool) string {
	if ours <= 0 || peer <= 0 {
		return ""
	}
	if lowerIsBetter {
		if ours <= peer {
			return fmt.Sprintf("%.2fx faster than %s", peer/ours, peerName)
		}
		return fmt.Sprintf("%.2fx slower than %s", ours/peer, peerName)
	}
	return fmt.Sprintf("%.0f%% of %s", 100*ours/peer, peerName)
}

func trimLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
