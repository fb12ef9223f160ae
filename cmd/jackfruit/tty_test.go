// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tmux drives a real terminal: a private tmux server with one window running a shell whose
// `jf` function is this test binary acting as the CLI against e's supervisor.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T, e *env) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (test/deps.sh installs it)")
	}
	tm := &tmux{t: t, socket: filepath.Join(t.TempDir(), "tmux.sock")}
	rc := filepath.Join(t.TempDir(), "rc")
	script := fmt.Sprintf("PS1='host$ '\njf() { env %s=1 JACKFRUIT_SOCKET=%s %s \"$@\"; }\n", asCLIEnv, e.socket, e.self)
	if err := os.WriteFile(rc, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	tm.run("new-session", "-d", "-x", "100", "-y", "30", "-s", "t", "bash --noprofile --rcfile "+rc+" -i")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", tm.socket, "kill-server").Run() })
	tm.waitFor("host$")
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// keys sends tmux key names (Enter, C-c, ...) or literal text.
func (tm *tmux) keys(keys ...string) {
	tm.t.Helper()
	tm.run(append([]string{"send-keys", "-t", "t"}, keys...)...)
}

// line types text and Enter.
func (tm *tmux) line(text string) {
	tm.t.Helper()
	tm.run("send-keys", "-t", "t", "-l", text)
	tm.keys("Enter")
}

// screen is what the pane shows now.
func (tm *tmux) screen() string { tm.t.Helper(); return tm.run("capture-pane", "-p", "-t", "t") }

// all is the whole pane, history included, so counts of a string in it only ever grow.
func (tm *tmux) all() string {
	tm.t.Helper()
	return tm.run("capture-pane", "-p", "-S", "-", "-t", "t")
}

// waitForCount waits until the pane's whole history shows want n times.
func (tm *tmux) waitForCount(want string, n int) {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(tm.all(), want) < n {
		if time.Now().After(deadline) {
			tm.t.Fatalf("the terminal never showed %q %d times:\n%s", want, n, tm.all())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitShell waits until the host shell is the pane's foreground process again (or, with
// shell false, until it no longer is): text typed while a client is still running (or not yet
// started) would go to the wrong reader. Fixed sleeps made this test flaky under load.
func (tm *tmux) waitShell(shell bool) {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cmd := strings.TrimSpace(tm.run("display-message", "-p", "-t", "t", "#{pane_current_command}"))
		if (cmd == "bash") == shell {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the pane's foreground process is still %q (want the shell: %v):\n%s", cmd, shell, tm.screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor waits until the screen shows want (count times), failing with the screen.
func (tm *tmux) waitFor(want string, count ...int) string {
	tm.t.Helper()
	n := 1
	if len(count) > 0 {
		n = count[0]
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := tm.screen()
		if strings.Count(s, want) >= n {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the terminal never showed %q (x%d):\n%s", want, n, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTerminalRunAttach drives run -it, exec -it and attach through tmux: typing, window
// size, ^C to the foreground process, detaching, re-attaching, exit codes and the terminal's
// settings restored afterwards.
func TestTerminalRunAttach(t *testing.T) {
	e := startSupervisor(t)
	tm := newTmux(t, e)
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before"), filepath.Join(dir, "after")

	tm.line("stty -g > " + before + "; jf run -it box -- /bin/sh")
	tm.waitFor("/ #") // capture-pane drops trailing blanks
	tm.line("echo in-$(hostname); stty size")
	tm.waitFor("in-box")
	tm.waitFor("30 100")
	tm.run("resize-window", "-t", "t", "-x", "70", "-y", "25")
	tm.line("stty size")
	tm.waitFor("25 70")
	tm.line("sleep 1000")
	time.Sleep(300 * time.Millisecond)
	tm.keys("C-c")
	tm.line("echo after-$((6*7))")
	tm.waitFor("after-42")
	tm.keys("C-p", "C-q")
	tm.waitFor("Detached from box")

	// exec -it a second shell in the same container while it runs detached.
	prompts := strings.Count(tm.all(), "/ #")
	tm.line("jf exec -it box sh")
	tm.waitForCount("/ #", prompts+1)
	tm.line("echo exec-pid-$$; exit 6")
	tm.waitFor("exec-pid-")
	tm.waitShell(true)
	tm.line("echo exec-rc=$?")
	tm.waitFor("exec-rc=6")

	tm.line("jf attach --detach-keys ctrl-x,x box")
	tm.waitShell(false)
	tm.line("echo re-attached")
	tm.waitFor("re-attached\n")
	tm.line("echo $((2*3))-done")
	tm.waitFor("6-done")
	tm.line("exit 4")
	tm.waitShell(true)
	// The marker is quoted apart so that the typed line itself does not show it.
	tm.line("echo rc=$?; stty -g > " + after + "; cmp " + before + " " + after + " && echo terminal-re''stored")
	s := tm.waitFor("terminal-restored")
	if !strings.Contains(s, "rc=4") {
		t.Errorf("attach did not exit with the container's code 4:\n%s", s)
	}
	// The container's terminal output is in its log too.
	if r := e.jf("logs", "box"); r.code != 0 || !strings.Contains(r.stdout, "in-box") || !strings.Contains(r.stdout, "re-attached") {
		t.Errorf("logs of the terminal container: %s", r)
	}

	// Bad input: malformed detach keys, -i without -t, attach to a container without a tty.
	tm.line("jf attach --detach-keys ctrl-1 box; echo rc=$?")
	tm.waitFor("rc=125")
	if !strings.Contains(tm.screen(), `invalid detach keys "ctrl-1"`) {
		t.Errorf("malformed detach keys not named:\n%s", tm.screen())
	}
}

// TestExecPlainCLI: exec without a terminal passes the exit code and output through, and
// refuses bad input with the documented codes.
func TestExecPlainCLI(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "box", "--", "sleep", "1000")
	if r := e.jf("exec", "box", "--", "sh", "-c", "echo out-$(hostname); echo err >&2; exit 9"); r.code != 9 || r.stdout != "out-box\n" || r.stderr != "err\n" {
		t.Errorf("exec: %s", r)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"exec", "nope", "true"}, 125, `no such container "nope"`},
		{[]string{"exec", "box"}, 125, "no command given"},
		{[]string{"exec", "box", "nosuchcommand"}, 127, "not found"},
		{[]string{"exec", "box", "/etc/passwd"}, 126, "cannot be run"},
		{[]string{"exec", "-u", "nosuchuser", "box", "true"}, 125, `user "nosuchuser"`},
		{[]string{"attach", "box"}, 125, "has no terminal"},
		{[]string{"run", "-i", "x", "--", "true"}, 125, "-i needs -t"},
	} {
		r := e.jf(c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("jackfruit %v: %s; want exit %d and %q", c.args, r, c.code, c.msg)
		}
	}
	e.ok("stop", "-t", "0", "box")
	if r := e.jf("exec", "box", "true"); r.code != 125 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("exec into a stopped container: %s", r)
	}
}
