// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// startFlags are shared by start and run.
type startFlags struct {
	name        string
	rootfs      string
	hostname    string
	softMiB     uint64
	hardMiB     uint64
	memory      string // podman's --memory: the hard limit as a size ("64m")
	memoryRes   string // podman's --memory-reservation: the soft limit
	env         []string
	stopTimeout uint
	tty         bool
	init        bool
	capAdd      []string
	capDrop     []string
	securityOpt []string
	network     string
}

func (f *startFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "the container's name, podman's way: instead of the NAME argument (the arguments are then [ROOTFS] [--] CMD)")
	fs.StringVar(&f.rootfs, "rootfs", "", "root filesystem directory used as is (default: an overlay of the supervisor's base rootfs)")
	fs.StringVar(&f.hostname, "hostname", "", "hostname inside the container (default: the container name)")
	fs.Uint64Var(&f.softMiB, "soft-mib", service.DefaultSoftLimit>>20, "soft memory limit in MiB: one warning when RSS exceeds it")
	fs.Uint64Var(&f.hardMiB, "hard-mib", service.DefaultHardLimit>>20, "hard memory limit in MiB: the container is killed when RSS exceeds it")
	// podman's spellings of the same limits, in its size syntax.
	fs.StringVarP(&f.memory, "memory", "m", "", "hard memory limit as podman writes it: bytes, or a number with b, k, m or g (KiB, MiB, GiB), e.g. 64m (instead of --hard-mib)")
	fs.StringVar(&f.memoryRes, "memory-reservation", "", "soft memory limit as podman writes it, e.g. 40m (instead of --soft-mib)")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: take it from this environment); repeatable")
	fs.UintVar(&f.stopTimeout, "stop-timeout", uint(service.DefaultStopTimeout/time.Second), "seconds stop waits after SIGTERM before SIGKILL (0: none)")
	fs.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal (attach to it; its output is still logged)")
	fs.BoolVar(&f.init, "init", false, "run a tiny init (tini) as PID 1 that forwards signals to the command and reaps orphaned processes")
	// The supervisor checks the names; the CLI passes them on as typed, so the socket, D-Bus
	// and the CLI accept exactly the same.
	fs.StringSliceVar(&f.capAdd, "cap-add", nil, "add capabilities to the default set (NET_ADMIN or CAP_NET_ADMIN, any case, or ALL); repeatable, comma-separated")
	fs.StringSliceVar(&f.capDrop, "cap-drop", nil, "drop capabilities from the default set (or ALL); repeatable, comma-separated")
	fs.StringArrayVar(&f.securityOpt, "security-opt", nil, "security option: no-new-privileges, or seccomp=unconfined to run without the default seccomp filter; repeatable")
	fs.StringVar(&f.network, "network", "host", "network: host (the host's network) or none (a network namespace of its own with only lo)")
}

// request builds the StartRequest from the flags and positional arguments:
//
//	NAME [flags] [ROOTFS] [--] CMD [ARGS...]
//
// Flags may come before or after NAME but not after ROOTFS or CMD, so the command's own
// options need no quoting (`jackfruit start web /srv/web /bin/httpd -f`), and `--` may
// separate the command as well. A positional ROOTFS (the seed's `engine start hog
// ./rootfs-alpha /memory_hog`) is an existing directory followed by a command.
//
// podman's --name NAME replaces the NAME argument: the arguments are then [ROOTFS] [--] CMD,
// and the first one is never a name (`--name nginx nginx` runs nginx, as podman users
// expect). Only `X -- CMD` with X not a directory can be a NAME given twice, and is refused
// as such.
func (f *startFlags) request(cmd *cobra.Command, args []string) (service.StartRequest, error) {
	fs := cmd.Flags()
	named := fs.Changed("name")
	var name string
	var pos []string
	var dash bool
	if named {
		if f.name == "" {
			return service.StartRequest{}, &usageError{cmd, errors.New(`--name "": the container needs a name`)}
		}
		// Cobra has parsed the flags up to the first positional argument and taken a -- that
		// came before it: then all of args is the command, even a directory.
		name, pos, dash = f.name, args, cmd.ArgsLenAtDash() == 0
	} else {
		if len(args) == 0 || args[0] == "--" {
			return service.StartRequest{}, &usageError{cmd, errors.New("missing container NAME (the first argument, or --name NAME)")}
		}
		name = args[0]
		// Cobra stops parsing at NAME (interspersed flags are off); parse the flags that follow
		// NAME here, up to the first positional argument.
		rest := args[1:]
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, pflag.ErrHelp) {
				return service.StartRequest{}, errHelpShown{cmd.Help()}
			}
			return service.StartRequest{}, &usageError{cmd, err}
		}
		if fs.Changed("name") {
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("NAME %q and --name %q: give the container's name once, as the first argument or with --name", name, f.name)}
		}
		pos = fs.Args()
		consumed := len(rest) - len(pos)
		dash = consumed > 0 && rest[consumed-1] == "--"
	}
	// twice is the error for `--name N X -- CMD` when X, which can only be a rootfs there,
	// looks like a name rather than a path: most likely the name given a second time.
	twice := func(x string) error {
		if !named || strings.Contains(x, "/") {
			return nil
		}
		return &usageError{cmd, fmt.Errorf("unexpected argument %q before --: the name is given with --name %q, and only a ROOTFS directory may come before -- (give the name once)", x, name)}
	}
	rootfs := f.rootfs
	if fs.Changed("rootfs") && rootfs == "" {
		return service.StartRequest{}, &usageError{cmd, errors.New(`--rootfs "": no directory given (leave --rootfs out to run on an overlay of the base rootfs)`)}
	}
	command := pos
	switch {
	case dash:
	case len(pos) >= 2 && pos[1] == "--":
		// NAME ROOTFS -- CMD
		if rootfs != "" {
			if err := twice(pos[0]); err != nil {
				return service.StartRequest{}, err
			}
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("unexpected argument %q: the rootfs is already given with --rootfs", pos[0])}
		}
		if fi, err := os.Stat(pos[0]); err != nil || !fi.IsDir() {
			if err := twice(pos[0]); err != nil {
				return service.StartRequest{}, err
			}
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("rootfs %q is not a directory", pos[0])}
		}
		rootfs, command = pos[0], pos[2:]
	case len(pos) >= 2 && rootfs == "":
		if fi, err := os.Stat(pos[0]); err == nil && fi.IsDir() {
			rootfs, command = pos[0], pos[1:]
		}
	case len(pos) == 1 && rootfs == "":
		// `start NAME DIR`: the seed's form with the command forgotten. A directory is never
		// a command, so say what is missing instead of "executable file DIR not found".
		if fi, err := os.Stat(pos[0]); err == nil && fi.IsDir() {
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("no command given after ROOTFS %s: jackfruit %s NAME [flags] ROOTFS CMD [ARGS...] (to run %s inside the base rootfs, put -- before it)", pos[0], cmd.Name(), pos[0])}
		}
	}
	if len(command) > 0 && strings.HasPrefix(command[0], "-") {
		return service.StartRequest{}, &usageError{cmd, fmt.Errorf("%q is not a command: flags go before ROOTFS and CMD", command[0])}
	}
	if len(command) == 0 {
		return service.StartRequest{}, &usageError{cmd, errors.New("no command given: jackfruit " + cmd.Name() + " NAME [flags] -- CMD [ARGS...]")}
	}
	if rootfs != "" {
		// The supervisor resolves paths in its own working directory; send an absolute one.
		abs, err := filepath.Abs(rootfs)
		if err != nil {
			return service.StartRequest{}, fmt.Errorf("rootfs %q: %w", rootfs, err)
		}
		rootfs = abs
	}
	// Only limits the user gave are sent: the core fills in its defaults and, when a default
	// clashes with a given limit, says "(the default)" instead of blaming a value nobody typed.
	const maxMiB = math.MaxUint64 >> 20 // the most MiB a byte count can hold
	var limits [2]uint64
	for i, l := range []struct {
		name, size string // --soft-mib and podman's spelling of the same limit
		v          uint64
		sizeV      string
	}{{"soft-mib", "memory-reservation", f.softMiB, f.memoryRes}, {"hard-mib", "memory", f.hardMiB, f.memory}} {
		// 0 cannot be sent: on the wire it means "not given" (the default), which is not
		// what whoever typed it asked for. Every other range rule is the core's.
		switch {
		case fs.Changed(l.name) && fs.Changed(l.size):
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--%s and --%s both set the %s memory limit: give one of them", l.size, l.name, strings.TrimSuffix(l.name, "-mib"))}
		case fs.Changed(l.size):
			v, err := parseBytes(l.sizeV)
			if err != nil {
				return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--%s: %w", l.size, err)}
			}
			if v == 0 {
				return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--%s %s: not a limit (leave the flag out for the default)", l.size, strings.TrimSpace(l.sizeV))}
			}
			limits[i] = v
		case fs.Changed(l.name):
			if l.v == 0 {
				return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--%s 0: not a limit (leave the flag out for the default)", l.name)}
			}
			if l.v > maxMiB {
				return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--%s %d: too large to be a number of bytes", l.name, l.v)}
			}
			limits[i] = l.v << 20
		}
	}
	var stopTimeout time.Duration
	if fs.Changed("stop-timeout") {
		if f.stopTimeout > maxSeconds {
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--stop-timeout %d: too large to be a duration (at most %d seconds)", f.stopTimeout, maxSeconds)}
		}
		stopTimeout = time.Duration(f.stopTimeout) * time.Second
		if f.stopTimeout == 0 {
			stopTimeout = service.NoGrace // as `stop -t 0` (and podman): SIGKILL right after SIGTERM
		}
	}
	env := make([]string, 0, len(f.env))
	for _, e := range f.env {
		if strings.Contains(e, "=") {
			env = append(env, e)
			continue
		}
		v, ok := os.LookupEnv(e)
		if !ok {
			return service.StartRequest{}, &usageError{cmd, fmt.Errorf("--env %s: not KEY=VALUE and %s is not set in this environment", e, e)}
		}
		env = append(env, e+"="+v)
	}
	return service.StartRequest{
		Name: name, Rootfs: rootfs, Command: command, Env: env, Hostname: f.hostname,
		SoftLimit: limits[0], HardLimit: limits[1], StopTimeout: stopTimeout, Tty: f.tty, Init: f.init,
		CapAdd: f.capAdd, CapDrop: f.capDrop, SecurityOpt: f.securityOpt, Network: f.network,
	}, nil
}

func (c *cli) newStartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "start NAME [flags] [ROOTFS] [--] CMD [ARGS...]",
		Short: "Create and start a container in the background",
		Long: `Create a container NAME running CMD and start it in the background; print its ID.

The root filesystem is --rootfs (or a directory given as the argument after NAME), used as is;
without one, the container runs on an overlay of the supervisor's base rootfs with its own
writable layer. Flags go before ROOTFS and CMD; everything from CMD on is the command line.
A -- before CMD is accepted too:
  jackfruit start web --hard-mib 128 -- /bin/httpd -f -p 8080

podman's spellings work too: --name NAME instead of the NAME argument (the arguments are then
[ROOTFS] [--] CMD, the first never taken for a name), and -m/--memory, --memory-reservation
for the hard and soft limits in podman's sizes (64m, 1g, 512k, bytes):
  jackfruit start --name web -m 128m -- /bin/httpd -f -p 8080

The container is confined as runc, crun and podman confine theirs by default: the OCI default
capabilities only, the default seccomp filter, /proc and /sys protected, only harmless devices
(docs/security.md). --cap-add, --cap-drop, --security-opt and --network change that.`,
		Example: `  jackfruit start hog ./rootfs /usr/bin/memory_hog
  jackfruit start web --rootfs /srv/web --env PORT=8080 -- /bin/httpd -f
  jackfruit start box --network none --cap-drop ALL --security-opt no-new-privileges -- /bin/sh -c 'sleep 60'
  jackfruit start --name web -m 64m --memory-reservation 40m -- /bin/sleep 100`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd, args)
			if err != nil {
				return helpOr(err)
			}
			cl, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			info, err := cl.Start(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, info.ID)
			if !info.LimitsEnforced && info.Message != "" {
				fmt.Fprintf(c.stderr, "Warning: %s\n", info.Message)
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// helpOr turns a successful --help into success.
func helpOr(err error) error {
	var h errHelpShown
	if errors.As(err, &h) {
		return h.err
	}
	return err
}

// errHelpShown ends a command after its help was printed on request.
type errHelpShown struct{ err error }

func (e errHelpShown) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return "help shown"
}

func (c *cli) newRunCmd() *cobra.Command {
	var f startFlags
	var rm, detach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "run NAME [flags] [ROOTFS] [--] CMD [ARGS...]",
		Short: "Start a container, show its output and exit with its exit code",
		Long: `Start a container like "start", copy its output to this terminal (stdout to stdout,
stderr to stderr) until it exits, and exit with its exit code: 128+N when killed by signal N
(137 when the memory monitor killed it at the hard limit). Signals sent to jackfruit run
(SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded to the container.

When the container cannot be started, the exit code follows podman: 127 when the command
does not exist in the rootfs, 126 when it is not executable, 125 for any other error.
As with start, --name NAME may replace the NAME argument and -m/--memory and
--memory-reservation take podman's sizes.`,
		Example: `  jackfruit run --rm t1 ./rootfs -- /bin/sh -c 'echo hello; exit 3'; echo $?
  jackfruit run --rm --name t1 -m 64m -- /bin/sh -c 'echo hello'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd, args)
			if err != nil {
				if err = helpOr(err); err == nil {
					return nil
				}
				return &exitError{code: 125, err: err}
			}
			if rm && detach {
				return &exitError{code: 125, err: &usageError{cmd, errors.New("--rm and --detach exclude each other")}}
			}
			if interactive && !req.Tty {
				return &exitError{code: 125, err: &usageError{cmd, errors.New("-i needs -t: a container's input is its terminal")}}
			}
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return &exitError{code: 125, err: &usageError{cmd, err}}
			}
			if req.Tty && !detach {
				return c.runTty(cmdContext(cmd), req, rm, interactive, keys)
			}
			return c.run(cmd.Context(), req, rm, detach)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the container as soon as it has exited (its state is not kept across a crash)")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "start in the background and print the ID (like start)")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "with -t: send this terminal's input to the container")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", defaultDetachKeys, "with -it: key sequence that detaches (comma-separated: a character or ctrl-X each; empty: never)")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// run implements `jackfruit run`.
func (c *cli) run(ctx context.Context, req service.StartRequest, rm, detach bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cl, err := c.dial(ctx)
	if err != nil {
		return &exitError{code: 125, err: err}
	}
	defer cl.Close()

	if detach {
		info, err := cl.Start(ctx, req)
		if err != nil {
			return startFailed(err)
		}
		fmt.Fprintln(c.stdout, info.ID)
		return nil
	}

	// Forward signals from the moment the container exists; before that, a signal only has
	// to stop the client (default behaviour).
	sigs := make(chan os.Signal, 4)
	defer signal.Stop(sigs)
	fwdCtx, stopFwd := context.WithCancel(ctx)
	defer stopFwd()
	started := false
	forward := func() {
		started = true
		// No "limits not enforced" warning here: stderr carries the container's own output.
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		go c.forwardSignals(fwdCtx, req.Name, sigs)
	}
	out := newLogWriter(c.stdout, c.stderr, false)
	// One call does it all: start, output, end and (--rm) removal.
	req.Remove = rm
	final, err := cl.Run(ctx, req, func(service.ContainerInfo) { forward() }, out.write)
	switch {
	case errors.Is(err, control.ErrNotImplemented):
		// A supervisor from before Run: the same in four calls (the connection is still
		// usable after an error reply).
		req.Remove = false
		if final, err = c.runCalls(ctx, cl, req, rm, forward, out); err != nil {
			return err
		}
	case err != nil && !started:
		return startFailed(err)
	case err != nil:
		return &exitError{code: 125, err: fmt.Errorf("running %q: %w", req.Name, err)}
	}
	if rm && strings.HasPrefix(final.Message, service.MsgNotRemoved) {
		fmt.Fprintf(c.stderr, "Error: removing %q: %s\n", req.Name, final.Message)
	}
	if code := exitCode(final); code != 0 {
		if final.State == service.StateOOMKill {
			fmt.Fprintf(c.stderr, "jackfruit: container %q was killed at its hard memory limit (%s)\n", final.Name, mib(final.HardLimit))
		}
		return &exitError{code: code}
	}
	return nil
}

// runCalls is `run` against a supervisor without the Run call: Start, Logs with follow,
// Wait and (rm) Remove.
func (c *cli) runCalls(ctx context.Context, cl *control.Client, req service.StartRequest, rm bool, forward func(), out *logWriter) (service.ContainerInfo, error) {
	if _, err := cl.Start(ctx, req); err != nil {
		return service.ContainerInfo{}, startFailed(err)
	}
	forward()
	if err := cl.Logs(ctx, req.Name, service.LogOptions{Follow: true}, out.write); err != nil {
		return service.ContainerInfo{}, &exitError{code: 125, err: fmt.Errorf("following the output of %q: %w", req.Name, err)}
	}
	final, err := cl.Wait(ctx, req.Name)
	if err != nil {
		return service.ContainerInfo{}, &exitError{code: 125, err: fmt.Errorf("waiting for %q: %w", req.Name, err)}
	}
	if rm {
		if err := cl.Remove(ctx, req.Name); err != nil {
			fmt.Fprintf(c.stderr, "Error: removing %q: %v\n", req.Name, err)
		}
	}
	return final, nil
}

// forwardSignals sends each signal jackfruit run receives to the container, on its own
// connection (the main one is busy following the logs).
func (c *cli) forwardSignals(ctx context.Context, name string, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			sig, ok := s.(syscall.Signal)
			if !ok {
				continue
			}
			cl, err := control.DialContext(ctx, c.socket)
			if err != nil {
				fmt.Fprintf(c.stderr, "Error: forwarding %s: %v\n", unix.SignalName(sig), err)
				continue
			}
			if err := cl.Kill(ctx, name, sig); err != nil && service.KindOf(err) != service.KindInvalidState {
				fmt.Fprintf(c.stderr, "Error: forwarding %s: %v\n", unix.SignalName(sig), err)
			}
			cl.Close()
		}
	}
}

// exitCode is the shell-style exit code of a container in a final state.
func exitCode(i service.ContainerInfo) int {
	switch i.State {
	case service.StateExited:
		if i.ExitCode < 0 || i.ExitCode > 255 {
			return 125 // the supervisor could not learn the code
		}
		return i.ExitCode
	case service.StateKilled, service.StateOOMKill:
		if i.ExitCode > 128 && i.ExitCode < 256 {
			return i.ExitCode
		}
		if n := unix.SignalNum(i.Signal); n != 0 {
			return 128 + int(n)
		}
		return 137
	}
	return 125
}

// runTty is `jackfruit run -t`: start the container on a terminal and attach to it from the
// start (the first output is replayed, so the first prompt is not lost).
func (c *cli) runTty(ctx context.Context, req service.StartRequest, rm, interactive bool, keys []byte) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return &exitError{code: 125, err: err}
	}
	defer cl.Close()
	if _, err := cl.Start(ctx, req); err != nil {
		return startFailed(err)
	}
	final, err := c.attachTerminal(ctx, cl, req.Name, true, interactive, keys)
	if err == nil && rm {
		if err := cl.Remove(ctx, req.Name); err != nil {
			fmt.Fprintf(c.stderr, "Error: removing %q: %v\n", req.Name, err)
		}
	}
	return c.attachResult(req.Name, final, err)
}

// startFailed is the exit a failed start or exec gets, as podman's: 127 when the command is
// not in the container, 126 when it cannot be executed, 125 for anything else.
func startFailed(err error) error {
	code := 125
	switch service.KindOf(err) {
	case service.KindCommandNotFound:
		code = 127
	case service.KindCommandNotExecutable:
		code = 126
	}
	return &exitError{code: code, err: err}
}
