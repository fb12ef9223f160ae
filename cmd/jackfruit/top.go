// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

func (c *cli) newTopCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "top [flags] NAME",
		Short: "Show the processes of a running container",
		Long: `List the processes of a running container: its init, their descendants and every
command run in it with "exec", with podman top's default columns:

  USER     the effective user, named from the container's /etc/passwd (else the number)
  PID      the pid inside the container (1 is its init)
  PPID     the parent's pid inside the container; 0 when the parent is outside it
           (the init's and those of exec'd commands)
  %CPU     CPU time over elapsed time since the process started, as ps and podman show it
  ELAPSED  time since the process started
  TTY      its controlling terminal (pts/0), ? for none
  TIME     CPU time used (user + system)
  COMMAND  the command line; [name] <defunct> for a zombie

--format json prints the processes as a JSON array (the control protocol's Process type,
docs/protocol.md), with host_pid, the pid in the supervisor's namespace, besides.`,
		ValidArgsFunction: c.completeNames(running),
		Args:              names(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return &usageError{cmd, fmt.Errorf("--format %q: expected table or json", format)}
			}
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			ps, err := cl.Top(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == "json" {
				out := make([]control.Process, 0, len(ps))
				for _, p := range ps {
					out = append(out, control.ProcessToWire(p))
				}
				b, err := json.MarshalIndent(out, "", "    ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.stdout, "%s\n", b)
				return err
			}
			return writeTop(c.stdout, ps)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// writeTop prints processes as podman top does by default.
func writeTop(w io.Writer, ps []service.Process) error {
	tw := tabwriter.NewWriter(w, 0, 8, tablePadding, ' ', 0)
	fmt.Fprintln(tw, "USER\tPID\tPPID\t%CPU\tELAPSED\tTTY\tTIME\tCOMMAND")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%v\t%s\t%v\t%s\n", p.User, p.Pid, p.PPid,
			cpuPercent(p.CPUTime, p.Elapsed), p.Elapsed.Round(time.Millisecond), p.TTY,
			p.CPUTime, strings.Join(p.Args, " "))
	}
	return tw.Flush()
}

// cpuPercent is CPU time over wall time, in percent of one CPU; 0 for no time at all.
func cpuPercent(cpu, wall time.Duration) float64 {
	if wall <= 0 || cpu <= 0 {
		return 0
	}
	return 100 * float64(cpu) / float64(wall)
}
