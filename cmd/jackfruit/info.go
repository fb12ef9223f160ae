// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

func (c *cli) newStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "status",
		Aliases: []string{"info"},
		Short:   "Show the supervisor's state: version, memory monitor, journal, container counts",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				b, err := json.MarshalIndent(st, "", "    ")
				if err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "%s\n", b)
				return nil
			}
			if format != "" && format != "text" {
				return &usageError{cmd, fmt.Errorf("--format %q: use text or json", format)}
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 8, 1, ' ', 0)
			fmt.Fprintf(tw, "Supervisor version:\t%s\n", st.Version)
			fmt.Fprintf(tw, "Control socket:\t%s\n", c.socket)
			fmt.Fprintf(tw, "Base rootfs:\t%s\n", st.BaseRootfs)
			mon := "available: memory limits are enforced"
			switch {
			case st.MemoryEnforcer == service.EnforcedByCgroup:
				// MonitorMessage says why the module is not used and that cgroups enforce.
				mon = "NOT available: " + st.MonitorMessage
			case !st.MonitorAvailable:
				mon = "NOT available: " + monitorReason(st.MonitorMessage)
			}
			fmt.Fprintf(tw, "Memory monitor:\t%s\n", mon)
			journal := "available"
			if !st.JournalAvailable {
				journal = "not available: output goes to the log files only"
			}
			fmt.Fprintf(tw, "Journal:\t%s\n", journal)
			fmt.Fprintf(tw, "Containers:\t%d (%d running)\n", st.ContainerCount, st.RunningCount)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// notEnforced is how the core's monitor messages begin.
const notEnforced = "memory limits are not enforced"

// monitorReason says that limits are not enforced, and why, exactly once: the core's
// message usually starts with the same words, which are not repeated.
func monitorReason(msg string) string {
	reason := strings.TrimPrefix(strings.TrimPrefix(msg, notEnforced), ": ")
	if reason == "" {
		return notEnforced
	}
	return notEnforced + ": " + reason
}

func (c *cli) newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the supervisor's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(c.stdout, "Client:  %s\n", service.Version)
			cl, err := c.dial(cmd.Context())
			if err != nil {
				fmt.Fprintf(c.stdout, "Server:  unavailable\n")
				fmt.Fprintf(c.stderr, "Note: %v\n", err)
				return nil
			}
			defer cl.Close()
			info, err := cl.GetInfo(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Server:  %s\n", info.Version)
			return nil
		},
	}
}

func (c *cli) newEventsCmd() *cobra.Command {
	var format string
	var names []string
	var reconnect time.Duration
	cmd := &cobra.Command{
		Use:   "events [flags]",
		Short: "Print container events as they happen (started, exited, memory limits, removed)",
		Long: `Print each event of the supervisor's event stream until interrupted: containers
started, exited (with code or signal), crossing the soft memory limit, killed at the hard limit,
removed, and other state changes. --format json prints one JSON object per line.

When the supervisor restarts (systemctl restart, an upgrade, a crash), events reconnects and
goes on with the events of the new supervisor, which has taken over the running containers;
a note on stderr marks the gap. It gives up when no supervisor answers for --reconnect.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &usageError{cmd, fmt.Errorf("--format %q: use text or json", format)}
			}
			want := map[string]bool{}
			for _, n := range names {
				want[n] = true
			}
			ctx := cmd.Context()
			cl, err := c.dial(ctx)
			if err != nil {
				return err
			}
			defer func() { cl.Close() }()
			show := func(ev service.Event) error {
				if len(want) > 0 && !want[ev.Container.Name] {
					return nil
				}
				var werr error
				if format == "json" {
					w := control.EventToWire(ev)
					b, err := json.Marshal(w)
					if err != nil {
						return err
					}
					_, werr = fmt.Fprintf(c.stdout, "%s\n", b)
				} else {
					_, werr = fmt.Fprintln(c.stdout, eventText(ev))
				}
				if werr != nil {
					return errStopOutput
				}
				return nil
			}
			for {
				err = cl.Events(ctx, nil, show)
				gone := errors.Is(err, control.ErrConnectionClosed) || errors.Is(err, control.ErrSupervisorRestarting)
				if !gone || ctx.Err() != nil || reconnect <= 0 {
					break
				}
				cl.Close()
				fmt.Fprintln(c.stderr, "jackfruit: the supervisor closed the connection (restarting?); reconnecting")
				if cl, err = c.redial(ctx, reconnect); err != nil {
					return err
				}
				fmt.Fprintln(c.stderr, "jackfruit: reconnected; events from here on")
			}
			if errors.Is(err, errStopOutput) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&reconnect, "reconnect", 2*time.Minute, "how long to keep trying to reconnect after the supervisor went away (0: exit instead)")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.Flags().StringArrayVar(&names, "container", nil, "only events of this container (repeatable)")
	return cmd
}

// eventText renders an event as one line: time, type, container, details.
func eventText(ev service.Event) string {
	ci := ev.Container
	s := fmt.Sprintf("%s container %s %s (id %s", ev.Time.Local().Format(time.RFC3339Nano), ev.Type, ci.Name, ci.ShortID())
	switch ev.Type {
	case service.EventStarted:
		s += fmt.Sprintf(", pid %d, command %s", ci.Pid, quoteArgs(ci.Command))
	case service.EventExited:
		switch ci.State {
		case service.StateExited:
			s += fmt.Sprintf(", exit code %d", ci.ExitCode)
		case service.StateKilled:
			s += ", signal " + ci.Signal
		case service.StateOOMKill:
			s += ", killed at the hard memory limit"
		}
	case service.EventSoftLimit, service.EventHardLimit:
		s += fmt.Sprintf(", rss %d, limit %d", ev.RSS, ev.Limit)
	case service.EventChanged:
		s += ", state " + string(ci.State)
	}
	return s + ")"
}
