// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// jfTerminal runs `jackfruit ARGS...` with its stdout on a real pty of the given width, as a
// user's terminal, and returns what appeared on the terminal (carriage returns removed).
func (e *env) jfTerminal(cols uint16, args ...string) string {
	e.t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		e.t.Fatalf("open pty: %v", err)
	}
	defer master.Close()
	// TIOCSWINSZ: what a terminal emulator sets and the program reads back with TIOCGWINSZ.
	if err := pty.Setsize(master, &pty.Winsize{Rows: 24, Cols: cols}); err != nil {
		e.t.Fatalf("set pty size: %v", err)
	}
	cmd := exec.Command(e.self, args...)
	cmd.Env = append(os.Environ(), asCLIEnv+"=1", control.SocketEnv+"="+e.socket)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = slave, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	slave.Close() // the child holds its own copy; reading ends (EIO) once it exits
	out := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(master)
		if err != nil && !errors.Is(err, syscall.EIO) {
			e.t.Errorf("read pty: %v", err)
		}
		out <- b
	}()
	if err := cmd.Wait(); err != nil {
		e.t.Fatalf("jackfruit %v on a %d-column terminal: %v; stderr: %s", args, cols, err, stderr.String())
	}
	select {
	case b := <-out:
		return strings.ReplaceAll(string(b), "\r", "")
	case <-time.After(10 * time.Second):
		e.t.Fatal("the pty was not closed after the command exited")
		return ""
	}
}

// TestPsFitsTerminal: on a terminal of 80 or 120 columns no line of `ps -a` is wider than
// the terminal; piped, and with --no-trunc, every column is there at full width.
func TestPsFitsTerminal(t *testing.T) {
	e := startSupervisor(t)
	longCmd := []string{"/bin/sh", "-c", "echo a command line long enough to need shortening; exit 3"}
	if r := e.jf(append([]string{"run", "finished", "--"}, longCmd...)...); r.code != 3 {
		t.Fatalf("run: %s", r)
	}
	e.ok("start", "sleeper", "--", "/bin/sleep", "1000")
	t.Cleanup(func() { e.jf("rm", "-f", "-t", "0", "sleeper") })

	piped := e.ok("ps", "-a").stdout
	for _, want := range []string{"CREATED", "STATUS", "PID", "RSS", "LIMITS (SOFT/HARD)", "Exited (3)", "Up ", "/bin/sh -c echo a command lin…"} {
		if !strings.Contains(piped, want) {
			t.Errorf("piped ps -a lacks %q:\n%s", want, piped)
		}
	}
	if w := maxLineWidth(piped); w <= 120 {
		t.Fatalf("the piped table is only %d columns: this test needs one wider than 120:\n%s", w, piped)
	}

	for _, cols := range []uint16{80, 120} {
		out := e.jfTerminal(cols, "ps", "-a")
		t.Logf("ps -a on %d columns:\n%s", cols, out)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTAINER ID") {
			t.Fatalf("%d columns: want a header and 2 rows:\n%s", cols, out)
		}
		if w := maxLineWidth(out); w > int(cols) {
			t.Errorf("%d columns: a line is %d wide:\n%s", cols, w, out)
		}
		// What identifies a container is never cut.
		for _, want := range []string{"finished", "sleeper", "exited", "running", "COMMAND", "/bin/sh"} {
			if !strings.Contains(out, want) {
				t.Errorf("%d columns: lacks %q:\n%s", cols, want, out)
			}
		}
	}
	// 120 columns keep STATUS (shortened at most); 80 do not have room for it.
	if out := e.jfTerminal(120, "ps", "-a"); !strings.Contains(out, "STATUS") || !strings.Contains(out, "Exited") {
		t.Errorf("120 columns dropped STATUS:\n%s", out)
	}

	full := e.jfTerminal(80, "ps", "-a", "--no-trunc")
	if !strings.Contains(full, strings.Join(longCmd, " ")) || !strings.Contains(full, "CREATED") {
		t.Errorf("--no-trunc on a terminal shortened the table:\n%s", full)
	}
}

func maxLineWidth(s string) int {
	w := 0
	for _, l := range strings.Split(s, "\n") {
		w = max(w, utf8.RuneCountInString(l))
	}
	return w
}

// TestFitColumns checks the order of the cuts on made-up rows, without a supervisor.
func TestFitColumns(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	infos := []service.ContainerInfo{{
		ID: strings.Repeat("ab", 32), Name: "hog", State: service.StateOOMKill,
		Command:   []string{"/usr/bin/memory_hog", "-step-mib=4", "-interval=200ms"},
		SoftLimit: 40 << 20, HardLimit: 64 << 20, LimitsEnforced: true,
		CreatedAt: now.Add(-3 * time.Minute), StartedAt: now.Add(-3 * time.Minute), FinishedAt: now.Add(-2 * time.Minute),
	}, {
		ID: strings.Repeat("cd", 32), Name: "web", State: service.StateRunning, Pid: 4242, RSS: 3 << 20,
		Command:   []string{"/bin/sh", "-c", "while true; do echo tick; sleep 1; done"},
		SoftLimit: 40 << 20, HardLimit: 128 << 20, LimitsEnforced: true,
		CreatedAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Minute),
	}}
	table := func(width int) string {
		var b bytes.Buffer
		if err := writeTable(&b, infos, now, false, width); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	natural := table(0)
	if w := maxLineWidth(natural); w < 150 {
		t.Fatalf("natural table only %d wide:\n%s", w, natural)
	}
	if table(1000) != natural {
		t.Errorf("a wide terminal changed the table:\n%s", table(1000))
	}
	for _, tc := range []struct {
		width        int
		want, absent []string
	}{
		// Short header and shortened COMMAND first; everything else still there.
		{150, []string{"SOFT/HARD", "CG MEM", "CREATED", "PID", "Killed by memory limit 2 minutes ago", "/bin/sh -c"}, []string{"LIMITS (SOFT/HARD)", "CGROUP MEM"}},
		// Then STATUS is shortened too, and CG MEM and CREATED go.
		{110, []string{"STATUS", "PID", "Killed by m"}, []string{"CREATED", "CG MEM"}},
		{80, []string{"CONTAINER ID", "NAME", "STATE", "killed-by-memory-limit", "RSS", "SOFT/HARD", "COMMAND"}, []string{"CREATED", "PID", "STATUS"}},
	} {
		out := table(tc.width)
		t.Logf("width %d:\n%s", tc.width, out)
		if w := maxLineWidth(out); w > tc.width {
			t.Errorf("width %d: a line is %d wide:\n%s", tc.width, w, out)
		}
		for _, s := range tc.want {
			if !strings.Contains(out, s) {
				t.Errorf("width %d: lacks %q:\n%s", tc.width, s, out)
			}
		}
		for _, s := range tc.absent {
			if strings.Contains(out, s) {
				t.Errorf("width %d: still has %q:\n%s", tc.width, s, out)
			}
		}
	}
	// Too narrow for anything: the narrowest table, never a panic or an empty one.
	if out := table(20); !strings.Contains(out, "hog") || !strings.Contains(out, "COMMAND") {
		t.Errorf("width 20:\n%s", out)
	}
}
