// SPDX-License-Identifier: Apache-2.0

package control_test

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// TestExecPassesDescriptors: the client's descriptors reach the command (the fake writes to
// the stdout it was given), the exit code comes back, and a pty master travels the other way.
func TestExecPassesDescriptors(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	ctx := context.Background()
	if _, err := c.Start(ctx, startReq("box")); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	exit, err := c.Exec(ctx, service.ExecRequest{Name: "box", Command: []string{"exit", "3"}, Stdout: w},
		func(s control.ExecStarted) { pid = s.Pid })
	w.Close()
	if err != nil || exit.Code != 3 || pid == 0 {
		t.Fatalf("Exec: %v, exit %+v, pid %d", err, exit, pid)
	}
	out, _ := io.ReadAll(r)
	if string(out) != "exit 3\n" {
		t.Errorf("the command wrote %q to the passed stdout", out)
	}

	// With a tty, the first reply hands over the master; no descriptors go up.
	var master *os.File
	exit, err = c.Exec(ctx, service.ExecRequest{Name: "box", Command: []string{"hello", "pty"}, Tty: true},
		func(s control.ExecStarted) { master = s.Pty })
	if err != nil || exit.Code != 0 || master == nil {
		t.Fatalf("Exec tty: %v %+v %v", err, exit, master)
	}
	defer master.Close()
	buf := make([]byte, 64)
	n, _ := master.Read(buf)
	if got := strings.TrimSpace(string(buf[:n])); got != "hello pty" {
		t.Errorf("pty master read %q", got)
	}

	// The same connection still works after calls that carried descriptors.
	if _, err := c.Get(ctx, "box"); err != nil {
		t.Errorf("Get after Exec: %v", err)
	}
}

func TestExecErrors(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	ctx := context.Background()
	if _, err := c.Start(ctx, startReq("box")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  service.ExecRequest
		kind service.Kind
	}{
		{service.ExecRequest{Name: "nope", Command: []string{"x"}}, service.KindNoSuchContainer},
		{service.ExecRequest{Name: "box"}, service.KindInvalidArgument},
		{service.ExecRequest{Name: "box", Command: []string{"notfound"}}, service.KindCommandNotFound},
	} {
		if _, err := c.Exec(ctx, tc.req, nil); service.KindOf(err) != tc.kind {
			t.Errorf("%+v: %v, want %s", tc.req, err, tc.kind)
		}
	}
	// A raw call without descriptors or without more is refused by name.
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Exec","parameters":{"name":"box","command":["x"]},"more":true}` + "\x00")
	if rep := r.recv(); rep.Error != control.ErrInvalidParameter || rep.Parameters["parameter"] != "descriptors" {
		t.Errorf("Exec without descriptors: %+v", rep)
	}
	r.send(`{"method":"io.jackfruit.Jackfruit1.Exec","parameters":{"name":"box","command":["x"],"tty":true}}` + "\x00")
	if rep := r.recv(); rep.Error != control.ErrExpectedMore {
		t.Errorf("Exec without more: %+v", rep)
	}
}

// TestExecClientGoneHangsUp: a client that disconnects mid-session hangs up on the command.
func TestExecClientGoneHangsUp(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	if _, err := c.Start(context.Background(), startReq("box")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, service.ExecRequest{Name: "box", Command: []string{"hang"}},
			func(control.ExecStarted) { cancel() })
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Exec did not return after its context ended")
	}
	waitFor(t, "SIGHUP to the exec'd command", func() bool {
		s := f.m.ExecSignals()
		return len(s) == 1 && s[0] == syscall.SIGHUP
	})
}
