// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/jackfruit/jackfruit/service"
)

type (
	execIn struct {
		Name    string   `json:"name"`
		Command []string `json:"command"`
		Env     []string `json:"env,omitempty"`
		WorkDir string   `json:"workdir,omitempty"`
		User    string   `json:"user,omitempty"`
		Tty     bool     `json:"tty,omitempty"`
	}
	execOut struct {
		Pid      int    `json:"pid"`
		ExitCode *int   `json:"exit_code,omitempty"`
		Signal   string `json:"signal,omitempty"`
	}
)

// exec serves Exec: the first reply (continues) carries the pid and, with tty, the pty
// master; the final reply the exit. A client that goes away ends the command with SIGHUP,
// as a hung-up terminal would; the core reaps it whatever happens.
func (cn *conn) exec(c *call) {
	var in execIn
	if err := decodeParams(c.req.Parameters, &in); err != nil {
		c.failErr(err)
		return
	}
	if !c.req.More {
		c.fail(ErrExpectedMore, errorParams{Message: "Exec streams its exit after the pid; call it with \"more\": true"})
		return
	}
	req := service.ExecRequest{Name: in.Name, Command: in.Command, Env: in.Env, WorkDir: in.WorkDir, User: in.User, Tty: in.Tty}
	want := 3
	if in.Tty {
		want = 0
	}
	if len(c.fds) != want {
		c.failErr(&paramError{param: "descriptors", msg: fmt.Sprintf(
			"Exec without tty takes exactly 3 descriptors (stdin, stdout, stderr) and with tty none; the call carried %d", len(c.fds))})
		return
	}
	if !in.Tty {
		req.Stdin, req.Stdout, req.Stderr = c.fds[0], c.fds[1], c.fds[2]
	}
	p, err := cn.s.m.Exec(c.ctx, cn.caller, req)
	// The command holds its own copies of the client's descriptors.
	closeFiles(c.fds)
	c.fds = nil
	if err != nil {
		c.failErr(err)
		return
	}
	var pty []*os.File
	if m := p.Pty(); m != nil {
		pty = []*os.File{m}
	}
	ok := c.streamFds(execOut{Pid: p.Pid()}, pty)
	// Once sent, the client holds the master; ours must go, or the pty would never hang up
	// when the client does.
	closeFiles(pty)
	if !ok {
		_ = p.Signal(syscall.SIGHUP)
		return
	}
	exit, err := p.Wait(c.ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			// The client went away (or the supervisor is shutting down): hang up on it.
			_ = p.Signal(syscall.SIGHUP)
			return
		}
		c.failErr(err)
		return
	}
	c.reply(execOut{Pid: p.Pid(), ExitCode: &exit.Code, Signal: exit.Signal})
}

// streamFds sends a non-final reply carrying files.
func (c *call) streamFds(params any, files []*os.File) bool {
	if c.req.Oneway || c.failed {
		return !c.failed
	}
	if !c.cn.writeReplyFds(reply{Parameters: params, Continues: true}, files) {
		c.failed = true
	}
	return !c.failed
}

// ExecStarted is what Client.Exec reports once the command runs.
type ExecStarted struct {
	Pid int
	Pty *os.File // the pty master with tty; the caller owns it
}

// Exec runs a command in a running container. Without req.Tty, req.Stdin, Stdout and Stderr
// are passed to it (nil: /dev/null); with it, started receives the pty master. started is
// called once the command runs; Exec returns its exit once it has ended, or when ctx ends
// (the supervisor then hangs up on the command).
func (c *Client) Exec(ctx context.Context, req service.ExecRequest, started func(ExecStarted)) (service.ExecExit, error) {
	var files []*os.File
	if !req.Tty {
		files = []*os.File{req.Stdin, req.Stdout, req.Stderr}
		for i, f := range files {
			if f == nil {
				null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
				if err != nil {
					return service.ExecExit{}, err
				}
				defer null.Close()
				files[i] = null
			}
		}
	}
	in := execIn{Name: req.Name, Command: req.Command, Env: req.Env, WorkDir: req.WorkDir, User: req.User, Tty: req.Tty}
	var exit service.ExecExit
	first := true
	err := c.callFds(ctx, InterfaceName+".Exec", in, files, true, func(raw json.RawMessage, fds []*os.File) error {
		var out execOut
		if err := json.Unmarshal(raw, &out); err != nil {
			closeFiles(fds)
			return fmt.Errorf("malformed Exec reply: %w", err)
		}
		if first {
			first = false
			st := ExecStarted{Pid: out.Pid}
			if req.Tty {
				if len(fds) != 1 {
					closeFiles(fds)
					return fmt.Errorf("the supervisor's Exec reply carried %d descriptors, want the pty master", len(fds))
				}
				st.Pty = fds[0]
			} else {
				closeFiles(fds)
			}
			if started != nil {
				started(st)
			} else if st.Pty != nil {
				st.Pty.Close()
			}
			return nil
		}
		closeFiles(fds)
		if out.ExitCode == nil {
			return fmt.Errorf("the supervisor's final Exec reply has no exit_code")
		}
		exit = service.ExecExit{Code: *out.ExitCode, Signal: out.Signal}
		return nil
	})
	return exit, err
}

type (
	attachIn struct {
		Name   string `json:"name"`
		Replay bool   `json:"replay,omitempty"`
	}
	attachOut struct {
		Container *Container `json:"container,omitempty"`
	}
)

// attach serves Attach: the first reply (continues) carries two descriptors, the output
// stream's read end and the pty master for input and resizing; the final reply comes once
// the container has ended and its output is drained.
func (cn *conn) attach(c *call) {
	var in attachIn
	if err := decodeParams(c.req.Parameters, &in); err != nil {
		c.failErr(err)
		return
	}
	if !c.req.More {
		c.fail(ErrExpectedMore, errorParams{Message: "Attach streams; call it with \"more\": true"})
		return
	}
	a, err := cn.s.m.Attach(c.ctx, cn.caller, in.Name, in.Replay)
	if err != nil {
		c.failErr(err)
		return
	}
	defer a.Detach()
	ok := c.streamFds(attachOut{}, []*os.File{a.Output, a.Input})
	a.Output.Close()
	a.Input.Close()
	if !ok {
		return
	}
	info, err := cn.s.m.Wait(c.ctx, cn.caller, in.Name)
	if err != nil {
		if c.ctx.Err() == nil {
			c.failErr(err)
		}
		return
	}
	w := containerToWire(info)
	c.reply(attachOut{Container: &w})
}

// Attached is what Client.Attach hands over once attached.
type Attached struct {
	Output *os.File // the container's terminal output; EOF when it has ended
	Input  *os.File // the pty master: write input, resize with TIOCSWINSZ; never read it
}

// Attach connects to the terminal of a container started with a tty. attached is called
// once connected (it owns the files); Attach returns the container once it has ended, or
// when ctx ends (the container goes on).
func (c *Client) Attach(ctx context.Context, name string, replay bool, attached func(Attached)) (service.ContainerInfo, error) {
	var info service.ContainerInfo
	first := true
	err := c.callFds(ctx, InterfaceName+".Attach", attachIn{Name: name, Replay: replay}, nil, true, func(raw json.RawMessage, fds []*os.File) error {
		var out attachOut
		if err := json.Unmarshal(raw, &out); err != nil {
			closeFiles(fds)
			return fmt.Errorf("malformed Attach reply: %w", err)
		}
		if first {
			first = false
			if len(fds) != 2 {
				closeFiles(fds)
				return fmt.Errorf("the supervisor's Attach reply carried %d descriptors, want 2", len(fds))
			}
			if attached != nil {
				attached(Attached{Output: fds[0], Input: fds[1]})
			} else {
				closeFiles(fds)
			}
			return nil
		}
		closeFiles(fds)
		if out.Container == nil {
			return fmt.Errorf("the supervisor's final Attach reply has no container")
		}
		var err error
		info, err = containerFromWire(*out.Container)
		return err
	})
	return info, err
}
