// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

func (c *cli) newExecCmd() *cobra.Command {
	var interactive, tty bool
	var env []string
	var workdir, user string
	cmd := &cobra.Command{
		Use:   "exec [flags] NAME [--] CMD [ARGS...]",
		Short: "Run a command inside a running container",
		Long: `Run CMD inside the running container NAME: in its namespaces, under its root, with its
environment (plus --env) and its confinement. The command's output goes straight to this
terminal; jackfruit exec exits with the command's exit code (128+N when signal N killed it;
127 when the command does not exist in the container, 126 when it cannot be executed, 125
for any other error).

With -t the command runs on a new terminal (pty) of the container, this terminal is put in
raw mode and its size follows this window; with -i this terminal's input is sent to the
command (without -i the command's stdin is /dev/null).`,
		Example: `  jackfruit exec -it web /bin/sh
  jackfruit exec web -- cat /etc/os-release
  jackfruit exec --user nobody -w /tmp web -- id`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "--" {
				return &exitError{code: 125, err: &usageError{cmd, errors.New("missing container NAME")}}
			}
			name, command := args[0], args[1:]
			if len(command) > 0 && command[0] == "--" {
				command = command[1:]
			}
			if len(command) == 0 {
				return &exitError{code: 125, err: &usageError{cmd, errors.New("no command given: jackfruit exec [flags] NAME [--] CMD [ARGS...]")}}
			}
			envs, err := expandEnv(env)
			if err != nil {
				return &exitError{code: 125, err: &usageError{cmd, err}}
			}
			req := service.ExecRequest{Name: name, Command: command, Env: envs, WorkDir: workdir, User: user, Tty: tty}
			return c.exec(cmd.Context(), req, interactive)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&interactive, "interactive", "i", false, "send this terminal's input to the command")
	fs.BoolVarP(&tty, "tty", "t", false, "run the command on a new terminal of the container")
	fs.StringArrayVarP(&env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: take it from this environment); repeatable")
	fs.StringVarP(&workdir, "workdir", "w", "", "working directory inside the container (default /)")
	fs.StringVarP(&user, "user", "u", "", "run as UID[:GID] or NAME[:GROUP] of the container's /etc/passwd (default root)")
	// Flags end at NAME, so the command's own flags need no --.
	fs.SetInterspersed(false)
	return cmd
}

// expandEnv turns --env entries into KEY=VALUE, taking bare keys from this environment.
func expandEnv(entries []string) ([]string, error) {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.Contains(e, "=") {
			out = append(out, e)
			continue
		}
		v, ok := os.LookupEnv(e)
		if !ok {
			return nil, fmt.Errorf("--env %s: not KEY=VALUE and %s is not set in this environment", e, e)
		}
		out = append(out, e+"="+v)
	}
	return out, nil
}

// exec implements `jackfruit exec`.
func (c *cli) exec(ctx context.Context, req service.ExecRequest, interactive bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cl, err := c.dial(ctx)
	if err != nil {
		return &exitError{code: 125, err: err}
	}
	defer cl.Close()
	var exit service.ExecExit
	if req.Tty {
		exit, err = c.execTty(ctx, cl, req, interactive)
	} else {
		exit, err = c.execPlain(ctx, cl, req, interactive)
	}
	if err != nil {
		return startFailed(err)
	}
	if exit.Code != 0 {
		return &exitError{code: exit.Code}
	}
	return nil
}

// execPlain runs the command with this process's own descriptors (or pipes to the cli's
// writers when they are not files, as in tests).
func (c *cli) execPlain(ctx context.Context, cl *control.Client, req service.ExecRequest, interactive bool) (service.ExecExit, error) {
	var wg sync.WaitGroup
	var closers []io.Closer
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	asFile := func(w io.Writer) (*os.File, error) {
		if f, ok := w.(*os.File); ok {
			return f, nil
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		closers = append(closers, pw)
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(w, r); r.Close() }()
		return pw, nil
	}
	var err error
	if req.Stdout, err = asFile(c.stdout); err != nil {
		return service.ExecExit{}, err
	}
	if req.Stderr, err = asFile(c.stderr); err != nil {
		return service.ExecExit{}, err
	}
	if interactive {
		f, ok := c.stdin.(*os.File)
		if !ok {
			r, pw, err := os.Pipe()
			if err != nil {
				return service.ExecExit{}, err
			}
			closers = append(closers, r)
			go func() { _, _ = io.Copy(pw, c.stdin); pw.Close() }()
			f = r
		}
		req.Stdin = f
	}
	// Signals to jackfruit exec go to the command, as for jackfruit run.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var pid int
	exit, err := cl.Exec(ctx, req, func(s control.ExecStarted) {
		pid = s.Pid
		go forwardToPid(ctx, pid, sigs)
	})
	// Our copies of the pipes' write ends go; the command's went with it.
	for _, cl := range closers {
		cl.Close()
	}
	closers = nil
	wg.Wait()
	return exit, err
}

// forwardToPid sends signals to the exec'd command. The client may not be allowed to signal
// it (another user, the supervisor's pid namespace), so failures are silent: the command ends
// anyway when the client goes away (SIGHUP).
func forwardToPid(ctx context.Context, pid int, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				_ = unix.Kill(pid, sig)
			}
		}
	}
}

// execTty runs the command on a pty: raw mode here, our window size there, output copied
// from the master until the command is gone.
func (c *cli) execTty(ctx context.Context, cl *control.Client, req service.ExecRequest, interactive bool) (service.ExecExit, error) {
	in, _ := c.stdin.(*os.File)
	out, _ := c.stdout.(*os.File)
	var t *terminal
	if interactive && in != nil && term.IsTerminal(int(in.Fd())) {
		var err error
		if t, err = makeRaw(in); err != nil {
			return service.ExecExit{}, err
		}
		defer t.restore()
	}
	copied := make(chan struct{})
	var master *os.File
	exit, err := cl.Exec(ctx, req, func(s control.ExecStarted) {
		m, err := pollable(s.Pty)
		if err != nil {
			close(copied)
			return
		}
		master = m
		sizeFrom := out
		if in != nil && term.IsTerminal(int(in.Fd())) {
			sizeFrom = in
		}
		if sizeFrom != nil {
			go followWindowSize(ctx, sizeFrom, master)
		}
		if interactive {
			go func() { _, _ = io.Copy(master, c.stdin) }()
		}
		go func() {
			defer close(copied)
			_, _ = io.Copy(c.stdout, master) // ends with EIO once the slave is closed everywhere
		}()
	})
	if master != nil {
		// Output the command wrote just before it exited may still be in the pty; a process
		// it left behind may keep the pty open, so stop after a moment of silence.
		_ = master.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		<-copied
		master.Close()
	}
	return exit, err
}

// pollable returns f as a non-blocking *os.File, so reads honour deadlines.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

// followWindowSize copies the size of the terminal from to the pty master now and on every
// SIGWINCH until ctx ends.
func followWindowSize(ctx context.Context, from, master *os.File) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	for {
		if ws, err := unix.IoctlGetWinsize(int(from.Fd()), unix.TIOCGWINSZ); err == nil {
			_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
		}
		select {
		case <-ctx.Done():
			return
		case <-winch:
		}
	}
}

// terminal is a terminal in raw mode, restored by restore (also when a signal ends us).
type terminal struct {
	f     *os.File
	state *term.State
	once  sync.Once
	stop  chan struct{}
}

func makeRaw(f *os.File) (*terminal, error) {
	st, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("putting the terminal in raw mode: %w", err)
	}
	t := &terminal{f: f, state: st, stop: make(chan struct{})}
	// In raw mode ^C is a byte for the container, but kill(1) still reaches us: leave the
	// terminal usable before dying.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGINT)
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			t.restore()
			n := 128
			if sig, ok := s.(syscall.Signal); ok {
				n += int(sig)
			}
			os.Exit(n)
		case <-t.stop:
		}
	}()
	return t, nil
}

func (t *terminal) restore() {
	t.once.Do(func() {
		_ = term.Restore(int(t.f.Fd()), t.state)
		close(t.stop)
	})
}
