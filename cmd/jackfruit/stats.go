// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// The stats refresh: the first frame measures CPU over statsFirstInterval (so it appears
// quickly), every later one over statsInterval.
const (
	statsFirstInterval = 500 * time.Millisecond
	statsInterval      = time.Second
)

// ANSI sequences of the in-place refresh: each frame is drawn over the last from the top
// left, every line cleared to its end and the rest of the screen below it, in one write,
// so nothing flickers; the cursor is hidden meanwhile.
const (
	ansiHideCursor = "\x1b[?25l"
	ansiShowCursor = "\x1b[?25h"
	ansiHome       = "\x1b[H"
	ansiClear      = "\x1b[2J"
	ansiClearEOL   = "\x1b[K"
	ansiClearBelow = "\x1b[J"
)

func (c *cli) newStatsCmd() *cobra.Command {
	var noStream bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [flags] [NAME...]",
		Short: "Show a live view of containers' memory, CPU and tasks",
		Long: `Show the resource use of running containers (or of the named ones), refreshed every
second in place like docker stats and systemd-cgtop, until interrupted (ctrl-c); the terminal
is restored on exit.

  CPU %    CPU time used over the last interval, in percent of one CPU (200% is two
           CPUs busy); the first frame measures the 0.5 s before it
  RSS      memory as ps shows it: the kernel monitor's RSS of the whole container, or
           the sum of its processes' RSS from /proc without the monitor
  CGROUP   the container's cgroup's memory.current (page cache included), where
           containers have cgroups
  SOFT %   the memory the limits apply to (RSS with the kernel monitor, CGROUP when the
           cgroup enforces them) in percent of the soft limit (over 100%: warned)
  HARD %   the same in percent of the hard limit (the container is killed at 100%)
  LIMITS   the soft/hard limits; "(cgroup)" when the cgroup enforces them, "(not
           enforced)" when nothing does
  TASKS    threads in the container

--no-stream prints one frame and exits; its CPU % is measured over 0.5 s (docker's
--no-stream reports the interval between two samples too). --format json prints each
frame as a JSON array of the control protocol's ContainerStats (docs/protocol.md) with
cpu_percent (null while unknown), memory (what the percentages are of), soft_percent and
hard_percent added: one line per frame
while streaming, one indented array with --no-stream. Without names, containers that start
later join the view and those that end leave it; a named container that is not running is
an error, and one that ends while shown stays with its state.`,
		ValidArgsFunction: c.completeNames(running),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return &usageError{cmd, fmt.Errorf("--format %q: expected table or json", format)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			cl, err := c.dial(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			prev, err := cl.Stats(ctx, args)
			if err != nil {
				return err
			}
			if len(args) > 0 {
				for _, s := range prev {
					if s.State.Final() {
						return service.Errorf(service.KindInvalidState, "container %q is not running (%s)", s.Name, s.State)
					}
				}
			}
			v := &statsView{w: c.stdout, format: format, once: noStream}
			if format == "table" && !noStream {
				v.width, v.height = terminalSize(c.stdout)
				v.live = v.width > 0
			}
			if v.live {
				io.WriteString(c.stdout, ansiHideCursor+ansiHome+ansiClear)
				defer io.WriteString(c.stdout, ansiShowCursor)
			}
			wait := statsFirstInterval
			for {
				select {
				case <-ctx.Done():
					return nil // interrupted: the deferred writes restore the terminal
				case <-time.After(wait):
				}
				cur, err := cl.Stats(ctx, args)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if err := v.frame(statsRows(prev, cur)); err != nil {
					return err
				}
				if noStream {
					return nil
				}
				prev, wait = cur, statsInterval
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one frame (CPU measured over 0.5 s) and exit")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// statsRow is one container of a frame: its sample and the CPU use since the previous one.
type statsRow struct {
	control.ContainerStats
	CPUPercent *float64 `json:"cpu_percent"` // nil without an earlier sample of it
	// Memory is what the limits apply to: memory_current when the cgroup enforces them,
	// else rss; the percentages are of it.
	Memory      uint64  `json:"memory"`
	SoftPercent float64 `json:"soft_percent"`
	HardPercent float64 `json:"hard_percent"`
	running     bool
}

// statsRows pairs each sample of cur with the same container's in prev (by ID: a container
// removed and started again under its name is another one).
func statsRows(prev, cur []service.ContainerStats) []statsRow {
	before := make(map[string]service.ContainerStats, len(prev))
	for _, s := range prev {
		before[s.ID] = s
	}
	rows := make([]statsRow, 0, len(cur))
	for _, s := range cur {
		mem := s.RSS
		if s.EnforcedBy == service.EnforcedByCgroup {
			mem = s.MemoryCurrent
		}
		r := statsRow{ContainerStats: control.StatsToWire(s), running: !s.State.Final(), Memory: mem,
			SoftPercent: percent(mem, s.SoftLimit), HardPercent: percent(mem, s.HardLimit)}
		if p, ok := before[s.ID]; ok && r.running && !p.State.Final() && s.Time.After(p.Time) {
			pct := cpuPercent(s.CPUTime-p.CPUTime, s.Time.Sub(p.Time))
			r.CPUPercent = &pct
		}
		rows = append(rows, r)
	}
	return rows
}

func percent(v, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(v) / float64(of)
}

// statsView writes frames: JSON, a plain table (not a terminal, or --no-stream), or a live
// table redrawn in place.
type statsView struct {
	w             io.Writer
	format        string
	once          bool
	live          bool
	width, height int
}

func (v *statsView) frame(rows []statsRow) error {
	if v.format == "json" {
		var b []byte
		var err error
		if v.once {
			b, err = json.MarshalIndent(rows, "", "    ")
		} else {
			b, err = json.Marshal(rows)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(v.w, "%s\n", b)
		return err
	}
	if v.live {
		v.width, v.height = terminalSize(v.w) // the terminal may have been resized
	}
	var buf bytes.Buffer
	if err := writeStatsTable(&buf, rows, v.width); err != nil {
		return err
	}
	if !v.live {
		_, err := v.w.Write(buf.Bytes())
		return err
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if v.height > 1 && len(lines) > v.height-1 {
		// A frame taller than the terminal would scroll and break the redraw in place.
		more := len(lines) - (v.height - 2)
		lines = append(lines[:v.height-2], fmt.Sprintf("… %d more", more))
	}
	var out strings.Builder
	out.WriteString(ansiHome)
	for _, l := range lines {
		out.WriteString(l + ansiClearEOL + "\n")
	}
	out.WriteString(ansiClearBelow)
	_, err := io.WriteString(v.w, out.String())
	return err
}

// writeStatsTable prints one frame's table; width > 0 fits it into a terminal that wide.
func writeStatsTable(w io.Writer, rows []statsRow, width int) error {
	cols := []tableColumn{
		{header: "CONTAINER ID", drop: 2},
		{header: "NAME", min: 8, shrink: 1},
		{header: "CPU %"},
		{header: "RSS"},
		{header: "CGROUP MEM", short: "CGROUP", drop: 3},
		{header: "SOFT %"},
		{header: "HARD %"},
		{header: "LIMITS (SOFT/HARD)", short: "SOFT/HARD"},
		{header: "TASKS", drop: 1},
	}
	hasCgroup := false
	for _, r := range rows {
		id := r.ID
		if len(id) > 12 {
			id = id[:12]
		}
		name, cpu, mem, cgmem, soft, hard, tasks := r.Name, "--", "--", "--", "--", "--", "--"
		if r.running {
			if r.CPUPercent != nil {
				cpu = fmt.Sprintf("%.2f%%", *r.CPUPercent)
			}
			mem = humanSize(r.RSS)
			if r.MemoryCurrent > 0 {
				cgmem = humanSize(r.MemoryCurrent)
				hasCgroup = true
			}
			soft = fmt.Sprintf("%.1f%%", r.SoftPercent)
			hard = fmt.Sprintf("%.1f%%", r.HardPercent)
			tasks = fmt.Sprint(r.Tasks)
		} else {
			name += " (" + r.State + ")"
		}
		limits := humanSize(r.SoftLimit) + "/" + humanSize(r.HardLimit)
		switch {
		case !r.LimitsEnforced:
			limits += " (not enforced)"
		case r.EnforcedBy == service.EnforcedByCgroup:
			limits += " (cgroup)"
		}
		for n, s := range []string{id, name, cpu, mem, cgmem, soft, hard, limits, tasks} {
			cols[n].cells = append(cols[n].cells, s)
		}
	}
	if !hasCgroup {
		// No container has a cgroup (a hybrid host): a column of dashes says nothing.
		cols = append(cols[:4], cols[5:]...)
	}
	if width > 0 {
		cols = fitColumns(cols, width, tablePadding)
	}
	tw := tabwriter.NewWriter(w, 0, 8, tablePadding, ' ', 0)
	line := make([]string, len(cols))
	for n, c := range cols {
		line[n] = c.header
	}
	fmt.Fprintln(tw, strings.Join(line, "\t"))
	for i := range rows {
		for n, c := range cols {
			line[n] = truncate(c.cells[i], c.width)
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// terminalSize is the size of the terminal w writes to, or 0, 0 when w is not a terminal.
func terminalSize(w io.Writer) (width, height int) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0
	}
	return int(ws.Col), int(ws.Row)
}
