// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// cli holds what every client verb needs: where the socket is and where to write.
type cli struct {
	socket string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// exitError ends the program with a specific exit code. A nil err means the message (if any)
// was already printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks a command-line mistake; its message suggests --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\nSee '%s --help'.", e.err, e.cmd.CommandPath())
}

func (e *usageError) Unwrap() error { return e.err }

// execute runs the CLI with args and returns the process exit code.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.newRootCmd(args)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", ee.err)
		}
		return ee.code
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command") {
		msg += "\nRun 'jackfruit --help' for a list of commands."
	}
	fmt.Fprintf(stderr, "Error: %s\n", msg)
	// A mistyped flag of a verb whose exit status is the container's is jackfruit's own error,
	// 125 as podman says it, not a code the command could have exited with.
	var ue *usageError
	if errors.As(err, &ue) && passThrough[ue.cmd.Name()] {
		return 125
	}
	return 1
}

// passThrough are the verbs that exit with the container command's own status, keeping
// 125 (and 126, 127) for their own errors.
var passThrough = map[string]bool{"run": true, "exec": true, "attach": true}

// newRootCmd builds the command tree. When args name a container verb, only that verb's
// command is built: the rest of the tree is not needed to run it, and building ~16
// commands with their flags is time spent before every `jackfruit run`.
func (c *cli) newRootCmd(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "jackfruit",
		Short: "Run and supervise small Linux containers with kernel-enforced memory limits",
		Long: `jackfruit runs commands in containers (own PID, UTS, mount and IPC namespaces and
root filesystem) under a supervisor daemon, with soft and hard memory limits watched by the
container_monitor kernel module, output sent to journald, and a D-Bus interface.

Every verb except "supervisor" is a client of the supervisor's control socket
(` + control.DefaultSocket + `, or --socket, or $` + control.SocketEnv + `).
Reading (ps, inspect, logs, top, stats, events, status) is open to anyone allowed on the socket;
changing containers needs root or membership in the jackfruit group.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Version:           service.Version,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetVersionTemplate("jackfruit version {{.Version}}\n")
	def := os.Getenv(control.SocketEnv)
	if def == "" {
		def = control.DefaultSocket
	}
	root.PersistentFlags().StringVar(&c.socket, "socket", def, "control socket of the supervisor (env "+control.SocketEnv+")")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd, err: err}
	})
	root.AddGroup(&cobra.Group{ID: "containers", Title: "Container commands:"},
		&cobra.Group{ID: "supervisor", Title: "Supervisor commands:"})

	hot := map[string]func() *cobra.Command{
		"start": c.newStartCmd, "run": c.newRunCmd, "stop": c.newStopCmd, "kill": c.newKillCmd,
		"rm": c.newRmCmd, "ps": c.newPsCmd, "logs": c.newLogsCmd, "wait": c.newWaitCmd, "exec": c.newExecCmd,
		// The first process of every container's unit (unit mode).
		"spawn": newSpawnCmd,
	}
	if len(args) > 0 {
		if mk, ok := hot[args[0]]; ok {
			sub := mk()
			sub.GroupID = "containers"
			root.AddCommand(sub)
			return root
		}
	}
	for _, sub := range []*cobra.Command{
		c.newStartCmd(), c.newRunCmd(), c.newStopCmd(), c.newKillCmd(), c.newRmCmd(),
		c.newPsCmd(), c.newInspectCmd(), c.newLogsCmd(), c.newWaitCmd(), c.newExecCmd(), c.newAttachCmd(),
		c.newTopCmd(), c.newStatsCmd(),
	} {
		sub.GroupID = "containers"
		root.AddCommand(sub)
	}
	for _, sub := range []*cobra.Command{newSupervisorCmd(), c.newStatusCmd(), c.newEventsCmd(), c.newVersionCmd()} {
		sub.GroupID = "supervisor"
		root.AddCommand(sub)
	}
	root.AddCommand(c.newGenDocsCmd(root), newSpawnCmd())
	return root
}

// dial connects to the supervisor.
func (c *cli) dial(ctx context.Context) (*control.Client, error) {
	return control.DialContext(ctx, c.socket)
}

// redial connects again after the supervisor went away, trying for up to patience: under
// systemd the socket unit keeps the socket and the connection waits for the new supervisor;
// a self-bound socket is gone until the new supervisor binds it again.
func (c *cli) redial(ctx context.Context, patience time.Duration) (*control.Client, error) {
	deadline := time.Now().Add(patience)
	delay := 100 * time.Millisecond
	for {
		cl, err := c.dial(ctx)
		if err == nil {
			return cl, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no supervisor to reconnect to within %v: %w", patience, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// completeNames completes container names from the running supervisor; finalOnly restricts
// them to containers in a final state (for rm), runningOnly to live ones (stop, kill).
func (c *cli) completeNames(filter func(service.ContainerInfo) bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cl, err := c.dial(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer cl.Close()
		infos, err := cl.List(cmd.Context(), true)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, i := range infos {
			if (filter == nil || filter(i)) && strings.HasPrefix(i.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(i.Name, string(i.State)))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func running(i service.ContainerInfo) bool { return !i.State.Final() }

// names accepts at least one container name (exactly one when single), with an error that
// says what is missing rather than counting arguments.
func names(single bool) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return &usageError{cmd, errors.New("missing container NAME")}
		case single && len(args) > 1:
			return &usageError{cmd, fmt.Errorf("one container NAME expected, got %d: %q", len(args), args)}
		}
		return nil
	}
}
