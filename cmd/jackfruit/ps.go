// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

func (c *cli) newPsCmd() *cobra.Command {
	var all, quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ps [flags]",
		Aliases: []string{"list", "ls"},
		Short:   "List containers",
		Long: `List running containers (--all: also those that have exited).

RSS is the container's resident memory (the kernel monitor's measure, or VmRSS summed from
/proc without it); CGROUP MEM is its cgroup's memory.current (page cache included). LIMITS
shows the soft/hard memory limits: enforced by the kernel monitor, by the container's cgroup
(memory.max) where the module is not loaded, marked "(cgroup)", or "(not enforced)" where
neither can. --format takes "table" (default), "json"
(an array of the objects "inspect" prints) or a Go template applied to each container, with
the protocol's fields in Go form, e.g. --format '{{.Name}} {{.State}} {{.RSS}}' (.State is the
state string, as in podman ps; podman's .State.* paths are inspect's).

On a terminal the table fits its width: COMMAND, then STATUS are shortened, then CGROUP MEM, CREATED,
PID, STATUS and RSS are left out, in that order, as far as needed. Piped, every column is printed
(COMMAND shortened to 30 characters). --no-trunc prints full IDs and commands and never fits.

--filter KEY=VALUE (-f, repeatable) lists only the containers that match, as podman's does:
  name=REGEXP   the name matches the regular expression (anywhere: ^web$ for exactly "web")
  id=PREFIX     the full ID starts with PREFIX
  status=WORD   created, running, stopping, exited (every ended container: killed ones
                too, as in podman), killed or killed-by-memory-limit; a status filter lists
                ended containers without -a, as podman's does
  exited=N      ended with exit code N as run and wait return it (128+S when signal S
                killed it); only ended containers have one, so without -a or a status
                filter it matches nothing, as in podman
Filters with the same key match any of their values; different keys must all match.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			filter, err := parsePsFilters(filters)
			if err != nil {
				return &usageError{cmd, err}
			}
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			infos, err := cl.List(cmd.Context(), all || filter.status)
			if err != nil {
				return err
			}
			infos = filter.apply(infos)
			switch {
			case quiet:
				for _, i := range infos {
					if noTrunc {
						fmt.Fprintln(c.stdout, i.ID)
					} else {
						fmt.Fprintln(c.stdout, i.ShortID())
					}
				}
				return nil
			case format == "json":
				return writeJSON(c.stdout, infos)
			case format == "" || format == "table":
				width := 0
				if !noTrunc {
					width = terminalWidth(c.stdout)
				}
				return writeTable(c.stdout, infos, time.Now(), noTrunc, width)
			default:
				return writeTemplate(cmd, c.stdout, format, infos, false)
			}
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also show containers that have exited")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only container IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten IDs and commands")
	cmd.Flags().StringVar(&format, "format", "table", `output format: table, json or a Go template`)
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "list only containers matching KEY=VALUE: name=REGEXP, id=PREFIX, status=WORD, exited=N (repeatable)")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("filter", cobra.FixedCompletions([]string{"name=", "id=", "status=", "exited="}, cobra.ShellCompDirectiveNoSpace|cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (c *cli) newInspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [flags] NAME...",
		Short: "Show containers in detail as a JSON array",
		Long: `Print a JSON array with one object per container: every field the supervisor knows
(state, pid, exit code or signal, limits and what enforces them (enforced_by: module or cgroup),
RSS and peak RSS, the cgroup and its memory.current, times, rootfs, log file, and the confinement: capabilities, seccomp, no_new_privileges, network). The fields are those of the control protocol's Container type
(docs/protocol.md). --format applies a Go template to each instead, with those fields in Go
form ({{.Name}}, {{.State}}, {{.RSS}}, {{.HardLimit}}, ...) and podman inspect's paths:
{{.Id}} (the full ID), {{.State.Status}} (created, running, stopping or exited: killed
containers are exited, as in podman), {{.State.Running}}, {{.State.Pid}} (0 when not running),
{{.State.ExitCode}} (as run and wait return it: 128+N for signal N), {{.State.OOMKilled}}
(killed at the hard memory limit), {{.State.StartedAt}} and {{.State.FinishedAt}} (times).
{{.State}} alone is still the state string wherever it is printed, compared (eq, ne, lt, ...)
or given to json.`,
		ValidArgsFunction: c.completeNames(nil),
		Args:              names(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			var infos []service.ContainerInfo
			var errs []error
			for _, n := range args {
				i, err := cl.Get(cmd.Context(), n)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				infos = append(infos, i)
			}
			// Like podman: print what was found, then report what was not.
			if len(infos) > 0 || len(errs) == 0 {
				var werr error
				if format == "" || format == "json" {
					werr = writeJSON(c.stdout, infos)
				} else {
					werr = writeTemplate(cmd, c.stdout, format, infos, true)
				}
				if werr != nil {
					return werr
				}
			}
			switch len(errs) {
			case 0:
				return nil
			case 1:
				return errs[0]
			}
			for _, e := range errs {
				fmt.Fprintf(c.stderr, "Error: %v\n", e)
			}
			return &exitError{code: 1}
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "json", "output format: json or a Go template")
	return cmd
}

func writeJSON(w io.Writer, infos []service.ContainerInfo) error {
	out := make([]control.Container, 0, len(infos))
	for _, i := range infos {
		out = append(out, control.ContainerToWire(i))
	}
	b, err := json.MarshalIndent(out, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeTemplate applies a --format template to each container: the protocol's fields, and
// with podmanPaths (inspect) also podman inspect's .Id and .State.* (see inspectView).
func writeTemplate(cmd *cobra.Command, w io.Writer, format string, infos []service.ContainerInfo, podmanPaths bool) error {
	funcs := template.FuncMap{
		"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
	}
	if podmanPaths {
		cmps, err := stateComparisons()
		if err != nil {
			return err
		}
		maps.Copy(funcs, cmps)
	}
	t, err := template.New("format").Funcs(funcs).Parse(format)
	if err != nil {
		return &usageError{cmd, fmt.Errorf("--format: %w", err)}
	}
	for _, i := range infos {
		var v any = control.ContainerToWire(i)
		if podmanPaths {
			v = newInspectView(i)
		}
		if err := t.Execute(w, v); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// inspectView is what an inspect template sees: every field of the protocol's Container, as
// ps's template has them, plus the paths podman's inspect has, so that scripts written for
// podman work: {{.Id}}, and .State as an object ({{.State.Pid}}, {{.State.Status}}, ...)
// that still prints as the plain state string.
type inspectView struct {
	control.Container
	State inspectState // shadows Container.State
	Id    string       // podman's spelling of the full ID (.ID is there too)
}

// MarshalJSON keeps {{json .}} the protocol's object, as before .State became one.
func (v inspectView) MarshalJSON() ([]byte, error) { return json.Marshal(v.Container) }

// inspectState is podman inspect's State, in podman's terms.
type inspectState struct {
	state service.State
	// Status is podman's word: killed containers, by a signal or at the memory limit, are
	// "exited" (ExitCode and OOMKilled say how).
	Status string
	// Running: the command is still running (also while stopping); Pid is 0 otherwise.
	Running bool
	Pid     int
	// ExitCode is what run and wait return: 128+N for signal N; 0 while running.
	ExitCode  int
	OOMKilled bool // killed at its hard memory limit
	// Zero (0001-01-01 00:00:00 +0000 UTC) when not yet, as podman's.
	StartedAt  time.Time
	FinishedAt time.Time
}

// String makes {{.State}} print the state, as it did when .State was a string.
func (s inspectState) String() string { return string(s.state) }

// MarshalJSON keeps {{json .State}} the state string, as before.
func (s inspectState) MarshalJSON() ([]byte, error) { return json.Marshal(string(s.state)) }

func newInspectView(i service.ContainerInfo) inspectView {
	st := inspectState{state: i.State, Status: string(i.State), StartedAt: i.StartedAt, FinishedAt: i.FinishedAt}
	switch {
	case i.State.Final():
		st.Status = "exited"
		st.ExitCode = exitCode(i)
		st.OOMKilled = i.State == service.StateOOMKill
	case i.State != service.StateCreated:
		st.Running = true
		st.Pid = i.Pid
	}
	return inspectView{Container: control.ContainerToWire(i), State: st, Id: i.ID}
}

// stateComparisons are text/template's comparison functions for inspect templates, where
// .State is an object: it is compared as its string, so `{{if eq .State "running"}}` means
// what it meant when .State was one. The comparing itself is left to the builtins (each run
// through a template of its own), so their rules and errors stay exactly text/template's.
func stateComparisons() (template.FuncMap, error) {
	plain := func(v any) any {
		if s, ok := v.(inspectState); ok {
			return string(s.state)
		}
		return v
	}
	funcs := template.FuncMap{}
	for _, op := range []string{"eq", "ne", "lt", "le", "gt", "ge"} {
		builtin, err := template.New(op).Parse("{{" + op + " (index . 0) (index . 1)}}")
		if err != nil {
			return nil, err
		}
		cmp := func(a, b any) (bool, error) {
			var out strings.Builder
			if err := builtin.Execute(&out, []any{plain(a), plain(b)}); err != nil {
				// The builtin's own error, without the helper template's position.
				var xe template.ExecError
				if errors.As(err, &xe) && errors.Unwrap(xe.Err) != nil {
					err = errors.Unwrap(xe.Err)
				}
				return false, err
			}
			return out.String() == "true", nil
		}
		funcs[op] = cmp
		if op != "eq" {
			continue
		}
		// eq alone takes several: true when the first equals any of the others.
		funcs[op] = func(a any, bs ...any) (bool, error) {
			if len(bs) == 0 {
				return false, errors.New("missing argument for comparison")
			}
			for _, b := range bs {
				if r, err := cmp(a, b); r || err != nil {
					return r, err
				}
			}
			return false, nil
		}
	}
	return funcs, nil
}

// writeTable prints the ps table. width > 0 fits it into that many columns (a terminal's
// width, see fitColumns); 0 prints every column at its natural width.
func writeTable(w io.Writer, infos []service.ContainerInfo, now time.Time, noTrunc bool, width int) error {
	cols := []tableColumn{
		{header: "CONTAINER ID"},
		{header: "NAME"},
		{header: "STATE"},
		{header: "PID", drop: 3},
		{header: "RSS", drop: 5},
		// memory.current of the container's cgroup: page cache included, what memory.max
		// limits where the cgroup enforces.
		{header: "CGROUP MEM", short: "CG MEM", drop: 1},
		// The values (40M/64M) are much narrower than the header: a short header is the
		// cheapest saving on a narrow terminal and loses nothing.
		{header: "LIMITS (SOFT/HARD)", short: "SOFT/HARD"},
		{header: "CREATED", drop: 2},
		{header: "STATUS", min: 12, shrink: 2, drop: 4},
		{header: "COMMAND", min: 12, shrink: 1},
	}
	for _, i := range infos {
		id := i.ShortID()
		if noTrunc {
			id = i.ID
		}
		pid := "-"
		if i.Pid > 0 {
			pid = fmt.Sprint(i.Pid)
		}
		rss := "-"
		if i.RSS > 0 || !i.State.Final() {
			rss = humanSize(i.RSS)
		}
		cgmem := "-"
		if i.MemoryCurrent > 0 {
			cgmem = humanSize(i.MemoryCurrent)
		}
		limits := humanSize(i.SoftLimit) + "/" + humanSize(i.HardLimit)
		switch {
		case !i.LimitsEnforced:
			limits += " (not enforced)"
		case i.EnforcedBy == service.EnforcedByCgroup:
			limits += " (cgroup)"
		}
		command := strings.Join(i.Command, " ")
		if !noTrunc {
			command = truncate(command, 30)
		}
		for n, v := range []string{id, i.Name, string(i.State), pid, rss, cgmem, limits, ago(now, i.CreatedAt), statusText(i, now), command} {
			cols[n].cells = append(cols[n].cells, v)
		}
	}
	if width > 0 {
		cols = fitColumns(cols, width, tablePadding)
	}
	tw := tabwriter.NewWriter(w, 0, 8, tablePadding, ' ', 0)
	row := make([]string, len(cols))
	for n, c := range cols {
		row[n] = c.header
	}
	fmt.Fprintln(tw, strings.Join(row, "\t"))
	for r := range infos {
		for n, c := range cols {
			row[n] = truncate(c.cells[r], c.width)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// statusText says what a container is doing, in podman's words.
func statusText(i service.ContainerInfo, now time.Time) string {
	switch i.State {
	case service.StateCreated:
		return "Created"
	case service.StateRunning:
		return "Up " + since(now, i.StartedAt)
	case service.StateStopping:
		return "Stopping (up " + since(now, i.StartedAt) + ")"
	case service.StateExited:
		return fmt.Sprintf("Exited (%d) %s", i.ExitCode, ago(now, i.FinishedAt))
	case service.StateKilled:
		return fmt.Sprintf("Killed (%s) %s", i.Signal, ago(now, i.FinishedAt))
	case service.StateOOMKill:
		return "Killed by memory limit " + ago(now, i.FinishedAt)
	}
	return string(i.State)
}

// since renders a duration like podman: "5 seconds", "3 minutes", "2 hours", "4 days".
func since(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "less than a second"
	case d < time.Minute:
		return plural(int(d/time.Second), "second")
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	default:
		return plural(int(d/(24*time.Hour)), "day")
	}
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return since(now, t) + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// humanSize renders bytes in binary units: 512B, 40M, 1.5G.
func humanSize(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	v, suffix := float64(b), ""
	for _, s := range []string{"K", "M", "G", "T", "P"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	if v == float64(uint64(v)) || v >= 100 {
		return fmt.Sprintf("%.0f%s", v, suffix)
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}

func mib(b uint64) string { return humanSize(b) + "iB" }
