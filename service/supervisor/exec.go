// SPDX-License-Identifier: Apache-2.0

// Running commands inside running containers (exec).

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// Exec starts req.Command inside the running container req.Name. The kernel monitor counts
// the command's memory with the container's, as it lives in the container's PID namespace.
func (s *Supervisor) Exec(ctx context.Context, caller service.Caller, req service.ExecRequest) (service.ExecProcess, error) {
	if err := s.authorise(caller, "run commands in containers"); err != nil {
		return nil, err
	}
	if err := validateExec(req); err != nil {
		return nil, err
	}
	c, err := s.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	state, env := c.rec.State, append([]string(nil), c.rec.Env...)
	s.mu.Unlock()
	if state != service.StateRunning || c.proc == nil {
		if state == service.StateRunning {
			return nil, service.Errorf(service.KindInvalidState, "container %q was started by an earlier supervisor; commands cannot be run in it", req.Name)
		}
		return nil, service.Errorf(service.KindInvalidState, "container %q is not running (%s)", req.Name, state)
	}
	spec := runtime.ExecSpec{Args: req.Command, Env: req.Env, ContainerEnv: env, Dir: req.WorkDir, User: req.User,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Tty: req.Tty}
	var master *os.File
	if req.Tty {
		m, slave, err := c.proc.OpenPty()
		if err != nil {
			return nil, execError(req.Name, err)
		}
		defer slave.Close() // the command holds its own copies
		master = m
		spec.Stdin, spec.Stdout, spec.Stderr = slave, slave, slave
	}
	p, err := c.proc.Exec(spec)
	if err != nil {
		if master != nil {
			master.Close()
		}
		return nil, execError(req.Name, err)
	}
	s.log.Debug("exec", "container", req.Name, "pid", p.Pid, "command", strings.Join(req.Command, " "), "uid", caller.UID)
	e := &execProcess{p: p, pty: master, cpu: &c.cpu, done: make(chan struct{})}
	go e.reap()
	return e, nil
}

func validateExec(req service.ExecRequest) error {
	if len(req.Command) == 0 || req.Command[0] == "" {
		return invalid("no command given to run in container %q", req.Name)
	}
	for i, a := range req.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("command argument %d contains a NUL byte", i)
		}
	}
	for _, e := range req.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || !validEnvKey(k) || strings.IndexByte(e, 0) >= 0 {
			return invalid("environment entry %q is not KEY=VALUE", e)
		}
	}
	if req.WorkDir != "" && !strings.HasPrefix(req.WorkDir, "/") {
		return invalid("working directory %q is not an absolute path", req.WorkDir)
	}
	if req.Tty && (req.Stdin != nil || req.Stdout != nil || req.Stderr != nil) {
		return invalid("a command on a terminal takes no stdin, stdout or stderr descriptors")
	}
	return nil
}

// execError maps runtime errors to the core's kinds.
func execError(name string, err error) error {
	msg := fmt.Sprintf("exec in container %q", name)
	switch {
	case errors.Is(err, runtime.ErrCommandNotFound):
		return &service.Error{Kind: service.KindCommandNotFound, Msg: msg, Err: err}
	case errors.Is(err, runtime.ErrCommandNotExecutable):
		return &service.Error{Kind: service.KindCommandNotExecutable, Msg: msg, Err: err}
	case errors.Is(err, runtime.ErrBadUser), errors.Is(err, runtime.ErrBadDir):
		return &service.Error{Kind: service.KindInvalidArgument, Msg: msg, Err: err}
	case errors.Is(err, runtime.ErrNotRunning):
		return service.Errorf(service.KindInvalidState, "container %q is not running (it has just exited)", name)
	}
	return internal(err, "exec in container %q", name)
}

// execProcess is the core's handle on an exec'd command. A goroutine reaps it as soon as it
// exits, whoever waits, so an abandoned exec never leaves a zombie.
type execProcess struct {
	p    *runtime.Process
	pty  *os.File
	cpu  *cpuAccount // of its container, which is told the command's CPU time at its end
	done chan struct{}
	exit service.ExecExit
	err  error
}

func (e *execProcess) reap() {
	x, err := e.p.Wait()
	if err == nil {
		e.cpu.exited(e.p.Pid, x.CPUTime)
	}
	e.exit, e.err = service.ExecExit{Code: x.Code}, err
	if x.Signaled() {
		e.exit.Signal = signalName(x.Signal)
	}
	close(e.done)
}

func (e *execProcess) Pid() int      { return e.p.Pid }
func (e *execProcess) Pty() *os.File { return e.pty }

func (e *execProcess) Signal(sig syscall.Signal) error {
	if err := e.p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (e *execProcess) Wait(ctx context.Context) (service.ExecExit, error) {
	select {
	case <-e.done:
		if e.err != nil {
			return service.ExecExit{}, internal(e.err, "waiting for exec'd pid %d", e.p.Pid)
		}
		return e.exit, nil
	case <-ctx.Done():
		return service.ExecExit{}, ctx.Err()
	}
}
