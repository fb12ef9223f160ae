// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// execOutput runs cmd in the container through the core and returns its stdout and exit.
func execOutput(t *testing.T, e *testEnv, req service.ExecRequest) (string, service.ExecExit, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	req.Stdout = w
	p, err := e.s.Exec(context.Background(), root, req)
	w.Close()
	if err != nil {
		return "", service.ExecExit{}, err
	}
	out, _ := io.ReadAll(r)
	exit, err := p.Wait(context.Background())
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return string(out), exit, nil
}

func TestExec(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.s.Start(ctx, root, service.StartRequest{Name: "box", Command: []string{"sleep", "1000"}, Env: []string{"GREETING=hi"}}); err != nil {
		t.Fatal(err)
	}
	out, exit, err := execOutput(t, e, service.ExecRequest{Name: "box", Command: []string{"sh", "-c", "echo $GREETING $(hostname); exit 4"}})
	if err != nil || exit.Code != 4 || out != "hi box\n" {
		t.Fatalf("exec: %q %+v %v", out, exit, err)
	}
	for _, c := range []struct {
		req  service.ExecRequest
		kind service.Kind
	}{
		{service.ExecRequest{Name: "nope", Command: []string{"true"}}, service.KindNoSuchContainer},
		{service.ExecRequest{Name: "box"}, service.KindInvalidArgument},
		{service.ExecRequest{Name: "box", Command: []string{"true"}, User: "nosuchuser"}, service.KindInvalidArgument},
		{service.ExecRequest{Name: "box", Command: []string{"true"}, WorkDir: "relative"}, service.KindInvalidArgument},
		{service.ExecRequest{Name: "box", Command: []string{"nosuchcommand"}}, service.KindCommandNotFound},
		{service.ExecRequest{Name: "box", Command: []string{"/etc/passwd"}}, service.KindCommandNotExecutable},
	} {
		if _, _, err := execOutput(t, e, c.req); service.KindOf(err) != c.kind {
			t.Errorf("%+v: %v, want %s", c.req, err, c.kind)
		}
	}
	if _, err := e.s.Exec(ctx, service.Caller{UID: 65534}, service.ExecRequest{Name: "box", Command: []string{"true"}}); service.KindOf(err) != service.KindAccessDenied {
		t.Errorf("exec by an ordinary user: %v", err)
	}

	// A hung-up command ends with SIGHUP and is reaped: no zombie, no descriptor left.
	fds := countFDs()
	p, err := e.s.Exec(ctx, root, service.ExecRequest{Name: "box", Command: []string{"sleep", "1000"}, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Pty().Close()
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if exit, err := p.Wait(wctx); err != nil || exit.Signal != "SIGHUP" {
		t.Errorf("hung-up exec: %+v %v", exit, err)
	}
	if n := countZombies(t); n != 0 {
		t.Errorf("%d zombies after exec", n)
	}
	if n := countFDs(); n > fds {
		t.Errorf("%d descriptors after exec, %d before", n, fds)
	}

	// Stopping the container ends what runs in it.
	p, err = e.s.Exec(ctx, root, service.ExecRequest{Name: "box", Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Stop(ctx, root, "box", time.Second); err != nil {
		t.Fatal(err)
	}
	if exit, err := p.Wait(wctx); err != nil || exit.Signal != "SIGKILL" {
		t.Errorf("exec after its container stopped: %+v %v", exit, err)
	}
	if _, _, err := execOutput(t, e, service.ExecRequest{Name: "box", Command: []string{"true"}}); service.KindOf(err) != service.KindInvalidState || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec into a stopped container: %v", err)
	}
}

// TestAttach: a terminal container's output reaches an attached client and the log alike,
// input typed into the master reaches the container, and detaching leaves it running.
func TestAttach(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.s.Start(ctx, root, service.StartRequest{Name: "term", Command: []string{"sh"}, Tty: true}); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.s.Get(ctx, root, "term"); !info.Tty {
		t.Error("Tty not recorded")
	}
	a, err := e.s.Attach(ctx, root, "term", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Input.WriteString("echo typed-$((40+2))\n"); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "typed-42") {
		_ = a.Output.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := a.Output.Read(buf)
		if err != nil {
			t.Fatalf("attached output %q: %v", got.String(), err)
		}
		got.Write(buf[:n])
	}
	a.Detach()
	a.Output.Close()
	// Detached: the container goes on; a second attachment ends it.
	b, err := e.s.Attach(ctx, root, "term", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Input.WriteString("exit 5\n"); err != nil {
		t.Fatal(err)
	}
	b.Input.Close()
	a.Input.Close()
	if out, err := io.ReadAll(b.Output); err != nil {
		t.Errorf("output after exit: %q %v", out, err)
	}
	info := e.wait(t, "term")
	if info.State != service.StateExited || info.ExitCode != 5 {
		t.Errorf("final %s %d", info.State, info.ExitCode)
	}
	if out := stdoutText(e.logs(t, "term", service.LogOptions{})); !strings.Contains(out, "typed-42") {
		t.Errorf("log lacks the terminal's output: %q", out)
	}
	if _, err := e.s.Attach(ctx, root, "term", false); service.KindOf(err) != service.KindInvalidState {
		t.Errorf("attach to an exited container: %v", err)
	}
	e.start(t, "plain", "sleep", "1000")
	if _, err := e.s.Attach(ctx, root, "plain", false); service.KindOf(err) != service.KindInvalidState || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("attach to a container without a terminal: %v", err)
	}
}

// TestInitStop: with Init, a command that as PID 1 would shrug SIGTERM off (sleep) stops on
// Stop at once instead of after the SIGKILL timeout; a missing init binary is a clear error.
func TestInitStop(t *testing.T) {
	if _, err := os.Stat(DefaultInitBinary); err != nil {
		t.Skip("tini is not installed (test/deps.sh installs it)")
	}
	e := newEnv(t)
	ctx := context.Background()
	info, err := e.s.Start(ctx, root, service.StartRequest{Name: "i", Command: []string{"sleep", "1000"}, Init: true, StopTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A signal that reaches tini before it has blocked signals (its first instructions) is
	// lost, as with docker --init: stop once the command runs under it.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", info.Pid, info.Pid)); len(strings.TrimSpace(string(b))) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	info, err = e.s.Stop(ctx, root, "i", 0)
	if err != nil || !info.Init || time.Since(t0) > 10*time.Second {
		t.Errorf("stop with --init: %+v %v after %v", info.State, err, time.Since(t0))
	}
	e2 := newEnv(t, func(c *Config) { c.InitBinary = "/nonexistent/tini" })
	if _, err := e2.s.Start(ctx, root, service.StartRequest{Name: "j", Command: []string{"true"}, Init: true}); service.KindOf(err) != service.KindInvalidArgument || !strings.Contains(err.Error(), "tini") {
		t.Errorf("--init without the binary: %v", err)
	}
}
