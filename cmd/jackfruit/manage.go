// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// forEach runs fn for every name on one connection, printing each error and going on with
// the rest (as podman does); the command fails if any name failed.
func (c *cli) forEach(ctx context.Context, names []string, fn func(*control.Client, string) error) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	failed := 0
	for _, n := range names {
		if err := fn(cl, n); err != nil {
			if len(names) == 1 {
				return err
			}
			fmt.Fprintf(c.stderr, "Error: %v\n", err)
			failed++
			continue
		}
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// maxParallel bounds the connections a verb working on many containers opens at once. The
// calls mostly wait (stop's timeout), so the bound is about descriptors, not CPU.
const maxParallel = 32

// forEachParallel is forEach for slow calls (stop, rm -f): every name gets its own
// connection, so that the calls run at the same time (stopping 20 containers takes one stop
// timeout, not 20; calls on one connection are answered in order). fn returns what to print
// on success; output and errors still appear in argument order, each as soon as it and all
// names before it are done.
func (c *cli) forEachParallel(ctx context.Context, names []string, fn func(*control.Client, string) (string, error)) error {
	if len(names) == 1 {
		return c.forEach(ctx, names, func(cl *control.Client, n string) error {
			out, err := fn(cl, n)
			if err == nil {
				fmt.Fprintln(c.stdout, out)
			}
			return err
		})
	}
	type result struct {
		out string
		err error
	}
	// The first connection is made up front: without a supervisor, say so once, not per name.
	first, err := c.dial(ctx)
	if err != nil {
		return err
	}
	results := make([]chan result, len(names))
	sem := make(chan struct{}, maxParallel)
	for i, n := range names {
		results[i] = make(chan result, 1)
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cl := first
			if i > 0 {
				var err error
				if cl, err = c.dial(ctx); err != nil {
					results[i] <- result{err: err}
					return
				}
			}
			defer cl.Close()
			out, err := fn(cl, n)
			results[i] <- result{out, err}
		}()
	}
	failed := 0
	for i := range names {
		r := <-results[i]
		if r.err != nil {
			fmt.Fprintf(c.stderr, "Error: %v\n", r.err)
			failed++
			continue
		}
		fmt.Fprintln(c.stdout, r.out)
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// allNames returns the names of all (or all running) containers, for --all.
func (c *cli) allNames(ctx context.Context, runningOnly bool) ([]string, error) {
	cl, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	infos, err := cl.List(ctx, !runningOnly)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(infos))
	for _, i := range infos {
		names = append(names, i.Name)
	}
	return names, nil
}

func (c *cli) newStopCmd() *cobra.Command {
	var timeout int
	var all bool
	cmd := &cobra.Command{
		Use:   "stop [flags] NAME...",
		Short: "Stop containers: SIGTERM, then SIGKILL after a timeout",
		Long: `Stop each container: send SIGTERM to its init, wait for it to exit, and send SIGKILL when
it has not exited after the timeout (--time, default: the container's stop timeout, 10 seconds
unless set at start). Returns once the container has exited and its output is saved.
Several containers are stopped at the same time; their names are printed in argument order.`,
		ValidArgsFunction: c.completeNames(running),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				if len(args) > 0 {
					return &usageError{cmd, errors.New("give container names or --all, not both")}
				}
				var err error
				if args, err = c.allNames(cmd.Context(), true); err != nil {
					return err
				}
			} else if len(args) == 0 {
				return &usageError{cmd, errors.New("missing container NAME")}
			}
			d, err := secondsFlag("time", timeout)
			if err != nil {
				return &usageError{cmd, err}
			}
			if !cmd.Flags().Changed("time") {
				d = 0 // the container's own stop timeout
			} else if timeout == 0 {
				d = service.NoGrace // --time 0: SIGKILL right after SIGTERM
			}
			return c.forEachParallel(cmd.Context(), args, func(cl *control.Client, name string) (string, error) {
				if _, err := cl.Stop(cmd.Context(), name, d); err != nil {
					return "", err
				}
				return name, nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "seconds to wait after SIGTERM before SIGKILL (default: the container's stop timeout)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "stop all running containers")
	return cmd
}

// parseSignal accepts KILL, SIGKILL, sigkill and 9.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		// Which numbers are signals is the core's rule; 0 and below cannot be sent at all
		// (0 would read as "no signal given", the core's default SIGKILL).
		if n <= 0 || n > math.MaxInt32 {
			return 0, fmt.Errorf("invalid signal %q: not a signal number", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal %q: use a name such as TERM, SIGTERM or KILL, or a number", s)
}

func (c *cli) newKillCmd() *cobra.Command {
	var sigName string
	cmd := &cobra.Command{
		Use:               "kill [flags] NAME...",
		Short:             "Send a signal to containers (default SIGKILL)",
		ValidArgsFunction: c.completeNames(running),
		Args:              names(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := parseSignal(sigName)
			if err != nil {
				return &usageError{cmd, err}
			}
			return c.forEach(cmd.Context(), args, func(cl *control.Client, name string) error {
				if err := cl.Kill(cmd.Context(), name, sig); err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, name)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&sigName, "signal", "s", "KILL", "signal to send: a name (TERM, SIGTERM) or a number")
	return cmd
}

func (c *cli) newRmCmd() *cobra.Command {
	var force, all bool
	var timeout int
	cmd := &cobra.Command{
		Use:     "rm [flags] NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove containers that have exited (-f: stop them first)",
		Long: `Remove each container with its writable layer and log file. A running container is
refused unless --force is given, which stops it first (as "stop" does).`,
		ValidArgsFunction: c.completeNames(nil),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				if len(args) > 0 {
					return &usageError{cmd, errors.New("give container names or --all, not both")}
				}
				var err error
				if args, err = c.allNames(cmd.Context(), false); err != nil {
					return err
				}
			} else if len(args) == 0 {
				return &usageError{cmd, errors.New("missing container NAME")}
			}
			d, err := secondsFlag("time", timeout)
			if err != nil {
				return &usageError{cmd, err}
			}
			if !cmd.Flags().Changed("time") {
				d = 0
			} else if timeout == 0 {
				d = service.NoGrace
			}
			return c.forEachParallel(cmd.Context(), args, func(cl *control.Client, name string) (string, error) {
				if force {
					info, err := cl.Get(cmd.Context(), name)
					if err != nil {
						return "", err
					}
					if !info.State.Final() {
						if _, err := cl.Stop(cmd.Context(), name, d); err != nil {
							return "", err
						}
					}
				}
				if err := cl.Remove(cmd.Context(), name); err != nil {
					if service.KindOf(err) == service.KindInvalidState && !force {
						return "", fmt.Errorf("%w (use --force to stop and remove it)", err)
					}
					return "", err
				}
				return name, nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop running containers before removing them")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all containers")
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "with --force: seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

func (c *cli) newWaitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "wait NAME...",
		Short:             "Wait for containers to exit and print their exit codes",
		ValidArgsFunction: c.completeNames(running),
		Args:              names(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.forEach(cmd.Context(), args, func(cl *control.Client, name string) error {
				info, err := cl.Wait(cmd.Context(), name)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, exitCode(info))
				return nil
			})
		},
	}
	return cmd
}

// maxSeconds is the most whole seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / uint(time.Second)

// secondsFlag converts a number of seconds given on the command line. It refuses only what a
// time.Duration cannot hold, before converting (a wrapped product would pass for another
// value); the core decides the range it accepts and says so.
func secondsFlag(name string, v int) (time.Duration, error) {
	if v > int(maxSeconds) || v < -int(maxSeconds) {
		return 0, fmt.Errorf("--%s %d: too large to be a duration (at most %d seconds)", name, v, maxSeconds)
	}
	return time.Duration(v) * time.Second, nil
}
