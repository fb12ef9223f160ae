// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/sdglue"
)

// The restore tests run supervisors as separate processes (this test binary in helper mode,
// TestRestoreHelperProcess) under a test NOTIFY_SOCKET with an fd store: the first one
// starts a container and keeps its pipes there, and is killed or detaches; the second is
// started with the stored descriptors as systemd would (LISTEN_FDS, LISTEN_FDNAMES) and
// must log what the container wrote meanwhile, in order, once.

const helperEnv = "JF_RESTORE_HELPER"

// TestRestoreHelperProcess is not a test: it is the supervisor process of the restore tests.
// It runs a Supervisor on the state directory in $JF_STATE, starts the container
// $JF_NAME running `sh -c "$JF_CMD"` when $JF_CMD is set, says READY=1, and then waits:
// SIGTERM detaches (leaves the containers for the next supervisor), SIGINT stops them.
func TestRestoreHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process of the restore tests")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	in, dropped := sdglue.Inherit()
	if len(dropped) > 0 || len(in.Sockets) > 0 {
		fmt.Fprintf(os.Stderr, "helper: unexpected descriptors: dropped %q, %d sockets\n", dropped, len(in.Sockets))
		os.Exit(3)
	}
	var names []string
	for n := range in.Stored {
		names = append(names, n)
	}
	s, err := New(Config{
		StateDir:      os.Getenv("JF_STATE"),
		RunDir:        os.Getenv("JF_RUN"),
		BaseRootfs:    os.Getenv("JF_ROOTFS"),
		MonitorDevice: MonitorDisabled,
		Logger:        logger,
		FDStore:       sdglue.NewFDStore(16, names, logger),
		Inherited:     in.Stored,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: New: %v\n", err)
		os.Exit(3)
	}
	if cmd := os.Getenv("JF_CMD"); cmd != "" {
		req := service.StartRequest{Name: os.Getenv("JF_NAME"), Command: []string{"sh", "-c", cmd}, Tty: os.Getenv("JF_TTY") != ""}
		if _, err := s.Start(context.Background(), root, req); err != nil {
			fmt.Fprintf(os.Stderr, "helper: Start: %v\n", err)
			os.Exit(3)
		}
	}
	sdglue.Ready("helper")
	if <-sigs == syscall.SIGTERM {
		s.Detach()
	} else {
		s.Close()
	}
	os.Exit(0)
}

type restoreEnv struct {
	ns                 *testutil.NotifySocket
	state, run, rootfs string
	name               string
	tty                bool // the container runs on a terminal (start -t)
	msgs               int  // notify messages seen so far
}

func newRestoreEnv(t *testing.T) *restoreEnv {
	rootfs := testutil.Rootfs(t)
	dir := t.TempDir()
	return &restoreEnv{
		ns:     testutil.NewNotifySocket(t),
		state:  filepath.Join(dir, "state"),
		run:    filepath.Join(dir, "run"),
		rootfs: rootfs,
		// Unique, so the journal query sees only this run's entries.
		name: fmt.Sprintf("restore-%d", time.Now().UnixNano()%1e9),
	}
}

// supervisor starts a helper supervisor; inherit passes the fd store as systemd would.
func (e *restoreEnv) supervisor(t *testing.T, inherit bool, cmd string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	env := []string{
		helperEnv + "=1",
		// The helper shares this process's private journald; it must not start its own.
		"JACKFRUIT_TEST_PRIVATE_JOURNAL=inherited",
		"JF_STATE=" + e.state, "JF_RUN=" + e.run, "JF_ROOTFS=" + e.rootfs,
		"JF_NAME=" + e.name, "JF_CMD=" + cmd,
	}
	if e.tty {
		env = append(env, "JF_TTY=1")
	}
	args := []string{"-test.run=^TestRestoreHelperProcess$", "-test.v"}
	var c *exec.Cmd
	if inherit {
		c = e.ns.Command(env, os.Args[0], args...)
	} else {
		c = exec.Command(os.Args[0], args...)
		c.Env = append(append(os.Environ(), env...), "NOTIFY_SOCKET="+e.ns.Path)
	}
	out := &testutil.SyncBuffer{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	_, e.msgs = e.ns.WaitFor(t, "READY=1", e.msgs)
	return c, out
}

func (e *restoreEnv) record(t *testing.T) record {
	t.Helper()
	rec, err := load(filepath.Join(e.state, "containers", e.name))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func (e *restoreEnv) logLines(t *testing.T) []string {
	t.Helper()
	var out []string
	err := logs.ReadFile(context.Background(), filepath.Join(e.state, "containers", e.name, "container.log"), service.LogOptions{}, func(l service.LogLine) error {
		out = append(out, string(l.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitGone waits until pid has exited (gone, or a zombie nobody reaps). The orphaned init
// of a killed helper supervisor becomes this process's child when this process is a child
// subreaper (runtime.Exec makes it one); it is reaped here then.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			if f := strings.Fields(string(b[i+2:])); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d still running", pid)
}

func numbered(n int) []string {
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, "line "+strconv.Itoa(i))
	}
	return want
}

// A supervisor killed (SIGKILL) while its container prints: the lines written while no
// supervisor ran are in the kept pipe and reach the log and the journal once the next one
// starts, after the earlier ones, each once.
func TestRestoreDrainsOutputWrittenWhileDown(t *testing.T) {
	e := newRestoreEnv(t)
	const n = 60
	sup1, out1 := e.supervisor(t, false, `i=1; while [ $i -le 60 ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done`)
	if got := e.ns.StoredNames(); strings.Join(got, " ") != e.name+".stderr "+e.name+".stdout" {
		t.Fatalf("fd store holds %q\n%s", got, out1)
	}
	pid := e.record(t).Pid
	deadline := time.Now().Add(30 * time.Second)
	for len(e.logLines(t)) < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	sup1.Process.Kill()
	sup1.Wait()
	before := len(e.logLines(t))
	waitGone(t, pid)
	if before >= n {
		t.Fatalf("the container finished before the supervisor was killed (%d lines)", before)
	}

	sup2, out2 := e.supervisor(t, true, "")
	if got := e.logLines(t); strings.Join(got, "|") != strings.Join(numbered(n), "|") {
		t.Errorf("log after the restart (%d lines logged before the kill): %q\nfirst supervisor:\n%s\nsecond supervisor:\n%s", before, got, out1, out2)
	}
	rec := e.record(t)
	if !rec.State.Final() || rec.ExitCode != -1 || !strings.Contains(rec.Message, "exit status is unknown") {
		t.Errorf("record after the restart: %s code %d %q", rec.State, rec.ExitCode, rec.Message)
	}
	if got := e.ns.StoredNames(); len(got) != 0 {
		t.Errorf("fd store still holds %q", got)
	}
	if testutil.JournalUnavailable() == "" {
		testutil.JournalSync()
		var got []string
		for _, ent := range testutil.JournalEntries(t, "CONTAINER="+e.name) {
			if ent["MESSAGE_ID"] == "" { // output lines, not lifecycle events
				got = append(got, ent["MESSAGE"])
			}
		}
		if strings.Join(got, "|") != strings.Join(numbered(n), "|") {
			t.Errorf("journal after the restart: %q", got)
		}
	}
	sup2.Process.Signal(syscall.SIGINT)
	sup2.Wait()
}

// A supervisor that detaches (a restart) while its container is in the middle of a line:
// the part it read is saved and the next supervisor logs the whole line once.
func TestRestoreCarriesUnfinishedLineAcrossDetach(t *testing.T) {
	e := newRestoreEnv(t)
	sup1, out1 := e.supervisor(t, false, `printf 'a\nb\npart'; sleep 2; printf 'ial\nc\n'`)
	pid := e.record(t).Pid
	deadline := time.Now().Add(30 * time.Second)
	for len(e.logLines(t)) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the copier has read "part" by now
	sup1.Process.Signal(syscall.SIGTERM)
	if err := sup1.Wait(); err != nil {
		t.Fatalf("detaching supervisor: %v\n%s", err, out1)
	}
	if b, err := os.ReadFile(carryFile(filepath.Join(e.state, "containers", e.name), service.Stdout)); string(b) != "part" {
		t.Fatalf("unfinished line saved: %q %v\n%s", b, err, out1)
	}
	if rec := e.record(t); rec.State != service.StateRunning {
		t.Fatalf("record after detaching: %s", rec.State)
	}
	if got := e.ns.StoredNames(); len(got) != 2 {
		t.Fatalf("fd store after detaching holds %q", got)
	}
	waitGone(t, pid)

	sup2, out2 := e.supervisor(t, true, "")
	if got := e.logLines(t); strings.Join(got, "|") != "a|b|partial|c" {
		t.Errorf("log after the restart: %q\n%s", got, out2)
	}
	if got := e.ns.StoredNames(); len(got) != 0 {
		t.Errorf("fd store still holds %q", got)
	}
	if b, err := json.Marshal(e.record(t)); err == nil && !strings.Contains(string(b), `"state":"exited"`) {
		t.Errorf("record: %s", b)
	}
	sup2.Process.Signal(syscall.SIGINT)
	sup2.Wait()
}

// A supervisor that detaches (a restart) from a container on a terminal: the terminal's
// master is in the fd store, so the container sees no hangup when the supervisor exits and
// prints on, and the next supervisor logs what it printed meanwhile (here, in manual mode,
// by draining the terminal once the container has ended).
func TestRestoreKeepsTerminal(t *testing.T) {
	e := newRestoreEnv(t)
	e.tty = true
	sup1, out1 := e.supervisor(t, false, `echo a; sleep 2; echo b`)
	pid := e.record(t).Pid
	deadline := time.Now().Add(30 * time.Second)
	for len(e.logLines(t)) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.ns.StoredNames(); !slices.Contains(got, e.name+".tty") {
		t.Fatalf("fd store holds %q, no terminal\n%s", got, out1)
	}
	sup1.Process.Signal(syscall.SIGTERM)
	if err := sup1.Wait(); err != nil {
		t.Fatalf("detaching supervisor: %v\n%s", err, out1)
	}
	waitGone(t, pid)

	sup2, out2 := e.supervisor(t, true, "")
	var got []string
	for _, l := range e.logLines(t) {
		got = append(got, strings.TrimRight(l, "\r"))
	}
	if strings.Join(got, "|") != "a|b" {
		t.Errorf("log after the restart: %q (b missing: the container got a hangup)\nfirst supervisor:\n%s\nsecond supervisor:\n%s", got, out1, out2)
	}
	if got := e.ns.StoredNames(); len(got) != 0 {
		t.Errorf("fd store still holds %q", got)
	}
	sup2.Process.Signal(syscall.SIGINT)
	sup2.Wait()
}

// A supervisor that detaches saves what it knows of a running container beyond its start
// (here the peak RSS the sampler measured; the soft-limit flag likewise), so that the next
// supervisor's inspect still shows it.
func TestDetachSavesRunningState(t *testing.T) {
	e := newRestoreEnv(t)
	sup1, out1 := e.supervisor(t, false, `sleep 3`)
	pid := e.record(t).Pid
	if rss := e.record(t).PeakRSS; rss != 0 {
		t.Fatalf("state.json at start already has a peak RSS (%d): the test shows nothing", rss)
	}
	time.Sleep(1500 * time.Millisecond) // the sampler measures once a second
	sup1.Process.Signal(syscall.SIGTERM)
	if err := sup1.Wait(); err != nil {
		t.Fatalf("detaching supervisor: %v\n%s", err, out1)
	}
	rec := e.record(t)
	if rec.State != service.StateRunning || rec.PeakRSS == 0 {
		t.Errorf("state.json after detaching: %s, peak RSS %d\n%s", rec.State, rec.PeakRSS, out1)
	}
	waitGone(t, pid)
}
