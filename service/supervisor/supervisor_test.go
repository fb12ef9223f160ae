// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

func TestMain(m *testing.M) {
	// The runtime re-executes this test binary as each container's setup stage.
	runtime.Init()
	os.Exit(testutil.RunInPrivateJournal(m))
}

var root = service.Caller{UID: 0}

type testEnv struct {
	cfg Config
	s   *Supervisor
}

func newEnv(t testing.TB, mod ...func(*Config)) *testEnv {
	t.Helper()
	rootfs := testutil.Rootfs(t)
	dir := t.TempDir()
	cfg := Config{
		StateDir:   filepath.Join(dir, "state"),
		RunDir:     filepath.Join(dir, "run"),
		BaseRootfs: rootfs,
		AdminGroup: "",
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	for _, f := range mod {
		f(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &testEnv{cfg: cfg, s: s}
}

func (e *testEnv) start(t testing.TB, name string, cmd ...string) service.ContainerInfo {
	t.Helper()
	info, err := e.s.Start(context.Background(), root, service.StartRequest{Name: name, Command: cmd})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return info
}

func (e *testEnv) wait(t testing.TB, name string) service.ContainerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := e.s.Wait(ctx, root, name)
	if err != nil {
		t.Fatalf("wait %s: %v", name, err)
	}
	return info
}

func (e *testEnv) logs(t testing.TB, name string, opts service.LogOptions) []service.LogLine {
	t.Helper()
	var out []service.LogLine
	err := e.s.Logs(context.Background(), root, name, opts, func(l service.LogLine) error {
		l.Data = append([]byte(nil), l.Data...)
		out = append(out, l)
		return nil
	})
	if err != nil {
		t.Fatalf("logs %s: %v", name, err)
	}
	return out
}

func stdoutText(lines []service.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		if l.Stream == service.Stdout {
			b.Write(l.Data)
			if !l.Partial {
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func TestLifecycleAndExitCodes(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		cmd   []string
		state service.State
		code  int
	}{
		{"ok", []string{"true"}, service.StateExited, 0},
		{"fail", []string{"sh", "-c", "exit 1"}, service.StateExited, 1},
		{"notexec", []string{"sh", "-c", "/etc/passwd"}, service.StateExited, 126},
		{"notfound", []string{"sh", "-c", "no-such-command"}, service.StateExited, 127},
	}
	for _, c := range cases {
		info := e.start(t, c.name, c.cmd...)
		if info.State != service.StateRunning || info.Pid <= 0 || len(info.ID) != 64 {
			t.Errorf("%s: after start got state %s pid %d id %q", c.name, info.State, info.Pid, info.ID)
		}
	}
	for _, c := range cases {
		info := e.wait(t, c.name)
		if info.State != c.state || info.ExitCode != c.code {
			t.Errorf("%s: got %s code %d, want %s code %d", c.name, info.State, info.ExitCode, c.state, c.code)
		}
		if info.Pid != 0 || info.FinishedAt.IsZero() || info.FinishedAt.Before(info.StartedAt) {
			t.Errorf("%s: final info inconsistent: %+v", c.name, info)
		}
		if st := e.s.Status(); !st.MonitorAvailable && (info.LimitsEnforced || !strings.Contains(info.Message, "not enforced")) {
			t.Errorf("%s: without the monitor: limits_enforced=%v message %q", c.name, info.LimitsEnforced, info.Message)
		}
	}

	// 137: killed by SIGKILL through Kill.
	e.start(t, "killme", "sleep", "1000")
	if err := e.s.Kill(context.Background(), root, "killme", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	info := e.wait(t, "killme")
	if info.State != service.StateKilled || info.ExitCode != 137 || info.Signal != "SIGKILL" {
		t.Errorf("killme: got %s code %d signal %q, want killed 137 SIGKILL", info.State, info.ExitCode, info.Signal)
	}
	if err := e.s.Kill(context.Background(), root, "killme", syscall.SIGTERM); service.KindOf(err) != service.KindInvalidState {
		t.Errorf("kill of an exited container: got %v, want InvalidState", err)
	}

	// Namespaces: pid 1 inside, hostname is the name, /proc shows only the container.
	e.start(t, "ns", "sh", "-c", `echo pid=$$; echo host=$(hostname); echo procs=$(ls -d /proc/[0-9]* | wc -l)`)
	e.wait(t, "ns")
	out := stdoutText(e.logs(t, "ns", service.LogOptions{}))
	for _, want := range []string{"pid=1\n", "host=ns\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("ns: output %q lacks %q", out, want)
		}
	}
	if m := regexp.MustCompile(`procs=(\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" || len(m[1]) > 1 {
		t.Errorf("ns: /proc of the container shows %v processes, want a handful", m)
	}

	list, err := e.s.List(context.Background(), root, true)
	if err != nil || len(list) != 6 {
		t.Fatalf("List(all): %d entries, %v", len(list), err)
	}
	for i := 1; i < len(list); i++ {
		if list[i].CreatedAt.Before(list[i-1].CreatedAt) {
			t.Errorf("List not sorted by creation: %s before %s", list[i-1].Name, list[i].Name)
		}
	}
	if running, _ := e.s.List(context.Background(), root, false); len(running) != 0 {
		t.Errorf("List(running) = %d entries, want 0", len(running))
	}
	for _, l := range list {
		if err := e.s.Remove(context.Background(), root, l.Name); err != nil {
			t.Errorf("remove %s: %v", l.Name, err)
		}
	}
	assertEmpty(t, e)
}

// assertEmpty checks that nothing of any container is left: registry, directories, mounts.
func assertEmpty(t testing.TB, e *testEnv) {
	t.Helper()
	if l, _ := e.s.List(context.Background(), root, true); len(l) != 0 {
		t.Errorf("registry not empty: %d containers", len(l))
	}
	for _, d := range []string{filepath.Join(e.cfg.StateDir, "containers"), filepath.Join(e.cfg.RunDir, "containers")} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Errorf("read %s: %v", d, err)
		}
		for _, ent := range ents {
			t.Errorf("left behind: %s", filepath.Join(d, ent.Name()))
		}
	}
	for _, d := range []string{e.cfg.StateDir, e.cfg.RunDir} {
		if mps, _ := mountPoints(d); len(mps) != 0 {
			t.Errorf("mounts left behind: %v", mps)
		}
	}
}

func TestValidationChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	odd := t.TempDir()
	if err := os.WriteFile(filepath.Join(odd, "notexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(odd, "afile")
	os.WriteFile(file, nil, 0o644)

	e.start(t, "dup", "sleep", "1000")
	before, _ := e.s.List(ctx, root, true)

	ok := service.StartRequest{Name: "x", Command: []string{"true"}}
	with := func(f func(r *service.StartRequest)) service.StartRequest {
		r := ok
		f(&r)
		return r
	}
	cases := []struct {
		what string
		req  service.StartRequest
		kind service.Kind
		msg  string // part of the message that names the problem
	}{
		{"empty name", with(func(r *service.StartRequest) { r.Name = "" }), service.KindInvalidArgument, "empty"},
		{"leading dash", with(func(r *service.StartRequest) { r.Name = "-x" }), service.KindInvalidArgument, `"-x"`},
		{"leading dot", with(func(r *service.StartRequest) { r.Name = ".x" }), service.KindInvalidArgument, `".x"`},
		{"slash", with(func(r *service.StartRequest) { r.Name = "a/b" }), service.KindInvalidArgument, "'/'"},
		{"dotdot", with(func(r *service.StartRequest) { r.Name = "a..b" }), service.KindInvalidArgument, "'..'"},
		{"too long", with(func(r *service.StartRequest) { r.Name = strings.Repeat("a", 64) }), service.KindInvalidArgument, "64 characters"},
		{"non-ascii", with(func(r *service.StartRequest) { r.Name = "caf\u00e9" }), service.KindInvalidArgument, "invalid"},
		{"space", with(func(r *service.StartRequest) { r.Name = "a b" }), service.KindInvalidArgument, "invalid"},
		{"duplicate", with(func(r *service.StartRequest) { r.Name = "dup" }), service.KindAlreadyExists, `"dup" already exists`},
		{"relative rootfs", with(func(r *service.StartRequest) { r.Rootfs = "rootfs" }), service.KindInvalidArgument, "not an absolute path"},
		{"missing rootfs", with(func(r *service.StartRequest) { r.Rootfs = "/nonexistent/rootfs" }), service.KindInvalidArgument, "does not exist"},
		{"file rootfs", with(func(r *service.StartRequest) { r.Rootfs = file }), service.KindInvalidArgument, "not a directory"},
		{"no command", with(func(r *service.StartRequest) { r.Command = nil }), service.KindInvalidArgument, "no command"},
		{"empty command", with(func(r *service.StartRequest) { r.Command = []string{""} }), service.KindInvalidArgument, "no command"},
		{"command not found", with(func(r *service.StartRequest) { r.Command = []string{"no-such-command"} }), service.KindCommandNotFound, "no-such-command"},
		{"absolute not found", with(func(r *service.StartRequest) { r.Command = []string{"/bin/nope"} }), service.KindCommandNotFound, "/bin/nope"},
		{"not executable", with(func(r *service.StartRequest) { r.Rootfs = odd; r.Command = []string{"/notexec"} }), service.KindCommandNotExecutable, "notexec"},
		{"soft > hard", with(func(r *service.StartRequest) { r.SoftLimit = 100 << 20; r.HardLimit = 50 << 20 }), service.KindInvalidArgument, "soft memory limit 100 MiB exceeds hard memory limit 50 MiB"},
		{"soft > default hard", with(func(r *service.StartRequest) { r.SoftLimit = 100 << 20 }), service.KindInvalidArgument, "exceeds hard memory limit 64 MiB (the default)"},
		{"host root as rootfs", with(func(r *service.StartRequest) { r.Rootfs = "/" }), service.KindInvalidArgument, "host's root directory"},
		{"host root via ..", with(func(r *service.StartRequest) { r.Rootfs = "/usr/.." }), service.KindInvalidArgument, "host's root directory"},
		{"soft too small", with(func(r *service.StartRequest) { r.SoftLimit = 1000 }), service.KindInvalidArgument, "out of range"},
		{"hard too big", with(func(r *service.StartRequest) { r.HardLimit = service.MaxLimit + 1 }), service.KindInvalidArgument, "out of range"},
		{"negative stop timeout", with(func(r *service.StartRequest) { r.StopTimeout = -time.Second }), service.KindInvalidArgument, "stop timeout"},
		{"huge stop timeout", with(func(r *service.StartRequest) { r.StopTimeout = 1000 * time.Hour }), service.KindInvalidArgument, "stop timeout"},
		{"env without =", with(func(r *service.StartRequest) { r.Env = []string{"NOEQUALS"} }), service.KindInvalidArgument, "NOEQUALS"},
		{"env empty key", with(func(r *service.StartRequest) { r.Env = []string{"=x"} }), service.KindInvalidArgument, "KEY=VALUE"},
		{"bad hostname", with(func(r *service.StartRequest) { r.Hostname = "bad host" }), service.KindInvalidArgument, "hostname"},
		{"NUL in argument", with(func(r *service.StartRequest) { r.Command = []string{"echo", "a\x00b"} }), service.KindInvalidArgument, "NUL"},
		{"unknown cap-add", with(func(r *service.StartRequest) { r.CapAdd = []string{"NET_ADMIN", "CAP_SYS_ADMINN"} }), service.KindInvalidArgument, `cap-add: unknown capability "CAP_SYS_ADMINN"`},
		{"unknown cap-drop", with(func(r *service.StartRequest) { r.CapDrop = []string{"bogus"} }), service.KindInvalidArgument, `cap-drop: unknown capability "bogus"`},
		{"cap added and dropped", with(func(r *service.StartRequest) { r.CapAdd = []string{"NET_ADMIN"}; r.CapDrop = []string{"net_admin"} }), service.KindInvalidArgument, "both added and dropped"},
		{"unknown network", with(func(r *service.StartRequest) { r.Network = "bridge" }), service.KindInvalidArgument, `unknown network mode "bridge" (known: host, none)`},
		{"unknown security-opt", with(func(r *service.StartRequest) { r.SecurityOpt = []string{"selinux=off"} }), service.KindInvalidArgument, `security option "selinux=off": unknown security option "selinux"`},
		{"seccomp profile", with(func(r *service.StartRequest) { r.SecurityOpt = []string{"seccomp=/etc/profile.json"} }), service.KindInvalidArgument, "custom seccomp profiles are not supported"},
		{"seccomp without value", with(func(r *service.StartRequest) { r.SecurityOpt = []string{"seccomp"} }), service.KindInvalidArgument, "seccomp needs a value"},
		{"bad no-new-privileges", with(func(r *service.StartRequest) { r.SecurityOpt = []string{"no-new-privileges=yes"} }), service.KindInvalidArgument, `no-new-privileges takes true or false, not "yes"`},
	}
	for _, c := range cases {
		_, err := e.s.Start(ctx, root, c.req)
		if err == nil {
			t.Errorf("%s: accepted", c.what)
			continue
		}
		var se *service.Error
		if !errors.As(err, &se) || se.Kind != c.kind || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v (kind %s), want kind %s mentioning %q", c.what, err, service.KindOf(err), c.kind, c.msg)
		}
	}
	after, _ := e.s.List(ctx, root, true)
	if len(after) != len(before) || after[0].ID != before[0].ID || after[0].State != service.StateRunning {
		t.Errorf("registry changed by refused starts: %+v", after)
	}
	ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "containers"))
	if len(ents) != 1 || ents[0].Name() != "dup" {
		t.Errorf("state dir changed by refused starts: %v", ents)
	}
	// Overlays are mounted inside the containers' own namespaces: nothing goes to the run dir.
	if ents, _ := os.ReadDir(filepath.Join(e.cfg.RunDir, "containers")); len(ents) != 0 {
		t.Errorf("run dir changed by refused starts: %v", ents)
	}

	// A rootfs the runtime cannot set up fails the start and leaves nothing behind either.
	if _, err := e.s.Start(ctx, root, service.StartRequest{Name: "norootfs", Rootfs: odd, Command: []string{"/notexec"}}); err == nil {
		t.Error("start with a broken rootfs accepted")
	}
	if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "containers")); len(ents) != 1 {
		t.Errorf("a failed start left a directory behind: %v", ents)
	}
	if l, _ := e.s.List(ctx, root, true); len(l) != 1 {
		t.Errorf("a failed start left a registry entry behind: %d containers", len(l))
	}
	e.s.Kill(ctx, root, "dup", syscall.SIGKILL)

	// Unknown and invalid names in the other verbs.
	if _, err := e.s.Get(ctx, root, "ghost"); service.KindOf(err) != service.KindNoSuchContainer || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("Get ghost: %v", err)
	}
	if _, err := e.s.Stop(ctx, root, "ghost", 0); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("Stop ghost: %v", err)
	}
	if err := e.s.Remove(ctx, root, "../etc"); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("Remove ../etc: %v", err)
	}
	if err := e.s.Kill(ctx, root, "dup", syscall.Signal(99)); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("Kill with signal 99: %v", err)
	}
	if err := e.s.Remove(ctx, root, "dup"); service.KindOf(err) != service.KindInvalidState {
		t.Errorf("Remove of a running container: %v", err)
	}
}

func TestAuthorisation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AdminGroup = "jackfruit-test-no-such-group" })
	ctx := context.Background()
	nobody := service.Caller{UID: 65534, GID: 65534, GroupsKnown: true}
	e.start(t, "a", "sleep", "1000")

	if _, err := e.s.Start(ctx, nobody, service.StartRequest{Name: "b", Command: []string{"true"}}); service.KindOf(err) != service.KindAccessDenied {
		t.Errorf("Start as nobody: %v", err)
	}
	if _, err := e.s.Stop(ctx, nobody, "a", time.Second); service.KindOf(err) != service.KindAccessDenied {
		t.Errorf("Stop as nobody: %v", err)
	}
	if err := e.s.Kill(ctx, nobody, "a", syscall.SIGKILL); service.KindOf(err) != service.KindAccessDenied {
		t.Errorf("Kill as nobody: %v", err)
	}
	if err := e.s.Remove(ctx, nobody, "a"); service.KindOf(err) != service.KindAccessDenied {
		t.Errorf("Remove as nobody: %v", err)
	}
	// Reads are for everyone.
	if info, err := e.s.Get(ctx, nobody, "a"); err != nil || info.State != service.StateRunning {
		t.Errorf("Get as nobody: %v %v", info.State, err)
	}
	if l, err := e.s.List(ctx, nobody, false); err != nil || len(l) != 1 {
		t.Errorf("List as nobody: %d %v", len(l), err)
	}
	if err := e.s.Logs(ctx, nobody, "a", service.LogOptions{}, func(service.LogLine) error { return nil }); err != nil {
		t.Errorf("Logs as nobody: %v", err)
	}
	if info, _ := e.s.Get(ctx, root, "a"); info.State != service.StateRunning {
		t.Errorf("refused calls changed the container: %s", info.State)
	}

	// Having the admin group allows writes: nobody's primary group is nogroup. What counts
	// is the group the caller's process has, not the group database: without it (or with its
	// groups unknown) nobody is refused.
	e.s.cfg.AdminGroup = "nogroup"
	for _, c := range []service.Caller{{UID: 65534, GID: 100, GroupsKnown: true}, {UID: 65534}} {
		if _, err := e.s.Stop(ctx, c, "a", 100*time.Millisecond); service.KindOf(err) != service.KindAccessDenied {
			t.Errorf("Stop by %+v without the admin group: %v", c, err)
		}
	}
	if _, err := e.s.Stop(ctx, service.Caller{UID: 65534, GID: 100, Groups: []uint32{65534}, GroupsKnown: true}, "a", 100*time.Millisecond); err != nil {
		t.Errorf("Stop by a process with the admin group as a supplementary group: %v", err)
	}
}

func TestStopEscalation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, "stubborn", "sh", "-c", `trap "" TERM; echo ready; sleep 1000`)
	e.start(t, "polite", "sh", "-c", `trap "echo bye; exit 3" TERM; echo ready; sleep 1000 & wait`)
	for _, n := range []string{"stubborn", "polite"} {
		waitOutput(t, e, n, "ready")
	}

	t0 := time.Now()
	info, err := e.s.Stop(ctx, root, "polite", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second || info.State != service.StateExited || info.ExitCode != 3 {
		t.Errorf("polite: stop took %v, ended %s code %d; want a prompt exit with code 3", d, info.State, info.ExitCode)
	}
	if out := stdoutText(e.logs(t, "polite", service.LogOptions{})); !strings.Contains(out, "bye\n") {
		t.Errorf("polite: output of the TERM handler lost: %q", out)
	}

	events, cancel := e.s.Subscribe()
	defer cancel()
	const timeout = 1500 * time.Millisecond
	t0 = time.Now()
	info, err = e.s.Stop(ctx, root, "stubborn", timeout)
	d := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if d < timeout || d > timeout+3*time.Second {
		t.Errorf("stubborn: stop took %v, want just over the %v timeout", d, timeout)
	}
	if info.State != service.StateKilled || info.Signal != "SIGKILL" || info.ExitCode != 137 {
		t.Errorf("stubborn: ended %s %s code %d, want killed SIGKILL 137", info.State, info.Signal, info.ExitCode)
	}
	// The stream shows stopping, then the exit.
	var seen []string
	for len(seen) < 2 {
		select {
		case ev := <-events:
			seen = append(seen, string(ev.Type)+":"+string(ev.Container.State))
		case <-time.After(5 * time.Second):
			t.Fatalf("events: got only %v", seen)
		}
	}
	if seen[0] != "changed:stopping" || seen[1] != "exited:killed" {
		t.Errorf("events %v, want [changed:stopping exited:killed]", seen)
	}
	t.Logf("TERM-ignoring container stopped after %v (timeout %v)", d.Round(time.Millisecond), timeout)
}

// waitOutput waits until the container printed want on a line of its own.
func waitOutput(t testing.TB, e *testEnv, name, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found := errors.New("found")
	err := e.s.Logs(ctx, root, name, service.LogOptions{Follow: true}, func(l service.LogLine) error {
		if string(l.Data) == want {
			return found
		}
		return nil
	})
	if err != found {
		t.Fatalf("%s never printed %q: %v", name, want, err)
	}
}

func TestConcurrentStarts(t *testing.T) {
	e := newEnv(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%02d", i)
			_, err := e.s.Start(context.Background(), root, service.StartRequest{Name: name, Command: []string{"sh", "-c", "echo hello from $(hostname); sleep 0.2"}})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	started := time.Since(t0)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range n {
		name := fmt.Sprintf("c%02d", i)
		info := e.wait(t, name)
		if info.State != service.StateExited || info.ExitCode != 0 {
			t.Errorf("%s: %s code %d", name, info.State, info.ExitCode)
		}
		if out := stdoutText(e.logs(t, name, service.LogOptions{})); out != "hello from "+name+"\n" {
			t.Errorf("%s: output %q", name, out)
		}
	}
	t.Logf("%d containers: all started in %v, all reaped after %v", n, started.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if zombies := countZombies(t); zombies != 0 {
		t.Errorf("%d zombie children", zombies)
	}
	if st := e.s.Status(); st.ContainerCount != n || st.RunningCount != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestLogsFollowAndContent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, "follow", "sh", "-c", "for i in 1 2 3 4; do echo line$i; sleep 0.3; done; echo oops >&2")
	t0 := time.Now()
	var got []string
	err := e.s.Logs(ctx, root, "follow", service.LogOptions{Follow: true}, func(l service.LogLine) error {
		got = append(got, string(l.Stream)+":"+string(l.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "stdout:line1 stdout:line2 stdout:line3 stdout:line4 stderr:oops"
	if strings.Join(got, " ") != want {
		t.Errorf("follow got %q, want %q", got, want)
	}
	if d := time.Since(t0); d < time.Second {
		t.Errorf("follow returned after %v, before the container could have finished", d)
	}
	if info, _ := e.s.Get(ctx, root, "follow"); !info.State.Final() {
		t.Errorf("follow ended while the container is %s", info.State)
	}
	if tail := e.logs(t, "follow", service.LogOptions{Tail: 2}); len(tail) != 2 || string(tail[0].Data) != "line4" {
		t.Errorf("tail 2: %v", tail)
	}

	// A 1 MiB line and binary bytes come back intact.
	e.start(t, "big", "sh", "-c", `head -c 1048576 /dev/zero | tr '\0' a; echo; printf '\000\001\377\376\n'; printf 'no newline at end'`)
	e.wait(t, "big")
	lines := e.logs(t, "big", service.LogOptions{})
	var joined [][]byte
	var cur []byte
	for _, l := range lines {
		cur = append(cur, l.Data...)
		if !l.Partial {
			joined = append(joined, cur)
			cur = nil
		}
	}
	if cur != nil {
		joined = append(joined, cur)
	}
	if len(joined) != 3 {
		t.Fatalf("big: %d lines (from %d pieces), want 3", len(joined), len(lines))
	}
	if len(joined[0]) != 1<<20 || bytes.Count(joined[0], []byte("a")) != 1<<20 {
		t.Errorf("big: 1 MiB line came back as %d bytes", len(joined[0]))
	}
	if !bytes.Equal(joined[1], []byte{0, 1, 0xff, 0xfe}) {
		t.Errorf("binary line came back as %q", joined[1])
	}
	if string(joined[2]) != "no newline at end" {
		t.Errorf("last line came back as %q", joined[2])
	}
}

func TestJournal(t *testing.T) {
	testutil.RequireJournal(t)
	e := newEnv(t)
	if !e.s.Status().JournalAvailable {
		t.Fatal("private journald runs but the supervisor did not connect")
	}
	info := e.start(t, "jtest", "sh", "-c", "echo hello-journal; echo err-journal >&2")
	e.wait(t, "jtest")
	// Matched by the full id: the journal outlives a test (go test -count=N reuses the name).
	entries := testutil.JournalEntries(t, "CONTAINER=jtest", "CONTAINER_ID_FULL="+info.ID)
	var out, errl, events int
	for _, en := range entries {
		if en["CONTAINER_NAME"] != "jtest" || en["CONTAINER_ID"] != info.ID[:12] || en["CONTAINER_ID_FULL"] != info.ID {
			t.Errorf("entry without the container fields: %q", en["MESSAGE"])
		}
		switch {
		case en["MESSAGE"] == "hello-journal" && en["PRIORITY"] == "6":
			out++
		case en["MESSAGE"] == "err-journal" && en["PRIORITY"] == "3":
			errl++
		case en["MESSAGE_ID"] != "":
			events++
		}
	}
	// The journal tells the story in order: started, the output, exited.
	if len(entries) >= 4 && (entries[0]["MESSAGE_ID"] == "" || entries[len(entries)-1]["MESSAGE_ID"] == "" ||
		!strings.Contains(entries[0]["MESSAGE"], "started") || !strings.Contains(entries[len(entries)-1]["MESSAGE"], "exited")) {
		t.Errorf("journal order: first %q, last %q; want the started event first and the exit last", entries[0]["MESSAGE"], entries[len(entries)-1]["MESSAGE"])
	}
	if out != 1 || errl != 1 || events < 2 {
		t.Errorf("journal: %d stdout, %d stderr, %d event entries; want 1, 1, >=2 (started, exited)", out, errl, events)
	}
}

func TestOverlayAndRemove(t *testing.T) {
	e := newEnv(t)
	base := e.cfg.BaseRootfs
	marker := "jackfruit-overlay-test-" + strconv.Itoa(os.Getpid())
	e.start(t, "writer", "sh", "-c", "echo x > /etc/"+marker+" && rm /bin/ls && ls /etc/"+marker)
	info := e.wait(t, "writer")
	if info.State != service.StateExited || info.ExitCode != 0 {
		t.Fatalf("writer: %s %d: %q", info.State, info.ExitCode, stdoutText(e.logs(t, "writer", service.LogOptions{})))
	}
	if !info.Overlay || info.Rootfs != base {
		t.Errorf("overlay=%v rootfs=%s", info.Overlay, info.Rootfs)
	}
	if _, err := os.Stat(filepath.Join(base, "etc", marker)); err == nil {
		t.Error("the container's write reached the base rootfs")
	}
	if _, err := os.Lstat(filepath.Join(base, "bin", "ls")); err != nil {
		t.Errorf("the container's delete reached the base rootfs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "writer", "upper", "etc", marker)); err != nil {
		t.Errorf("the write is not in the upper layer: %v", err)
	}
	if mps, _ := mountPoints(e.cfg.RunDir); len(mps) != 0 {
		t.Errorf("overlay still mounted after exit: %v", mps)
	}
	if err := e.s.Remove(context.Background(), root, "writer"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(context.Background(), root, "writer"); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("second remove: %v", err)
	}
	assertEmpty(t, e)
	// The name is free again.
	e.start(t, "writer", "true")
	e.wait(t, "writer")
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.start(t, "kept", "sh", "-c", "echo persisted; exit 4")
	e.wait(t, "kept")
	e.start(t, "running", "sh", "-c", `trap "exit 0" TERM; echo ready; sleep 1000 & wait`)
	waitOutput(t, e, "running", "ready") // TERM before the trap is set would be ignored by pid 1
	e.s.Close()                          // stops "running"
	if info, _ := e.s.Get(ctx, root, "running"); info.State != service.StateExited || info.FinishedAt.IsZero() {
		t.Errorf("Close left running in state %s", info.State)
	}
	if _, err := e.s.Start(ctx, root, service.StartRequest{Name: "late", Command: []string{"true"}}); service.KindOf(err) != service.KindInvalidState {
		t.Errorf("start after Close: %v", err)
	}

	// A container that was running when its supervisor died: its init is still alive.
	orphan := exec.Command("sleep", "1000")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { orphan.Wait(); close(reaped) }()
	st, err := procStartTime(orphan.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	odir := filepath.Join(e.cfg.StateDir, "containers", "orphan")
	os.Mkdir(odir, 0o700)
	rec := record{ContainerInfo: service.ContainerInfo{Name: "orphan", ID: strings.Repeat("ab", 32), State: service.StateRunning, Pid: orphan.Process.Pid, Command: []string{"sleep", "1000"}, CreatedAt: time.Now()}, InitStartTime: st, BootID: bootID()}
	if err := save(odir, rec); err != nil {
		t.Fatal(err)
	}
	// And one whose pid now belongs to another process (start time differs): left alone.
	bystander := exec.Command("sleep", "1000")
	bystander.Start()
	defer func() { bystander.Process.Kill(); bystander.Wait() }()
	rdir := filepath.Join(e.cfg.StateDir, "containers", "reused")
	os.Mkdir(rdir, 0o700)
	rec2 := record{ContainerInfo: service.ContainerInfo{Name: "reused", ID: strings.Repeat("cd", 32), State: service.StateRunning, Pid: bystander.Process.Pid, CreatedAt: time.Now()}, InitStartTime: 1, BootID: bootID()}
	save(rdir, rec2)
	// And the remains of a start that never completed.
	os.MkdirAll(filepath.Join(e.cfg.StateDir, "containers", "halfway", "upper"), 0o700)

	s2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// A second supervisor on the same state directory would kill the first one's containers.
	if s3, err := New(e.cfg); err == nil || !strings.Contains(err.Error(), "in use by another supervisor") {
		t.Errorf("second supervisor on the same state directory: %v", err)
		if s3 != nil {
			s3.Close()
		}
	}
	got, err := s2.Get(ctx, root, "kept")
	if err != nil || got.ID != first.ID || got.State != service.StateExited || got.ExitCode != 4 {
		t.Errorf("kept after restart: %+v %v", got, err)
	}
	var lines []string
	s2.Logs(ctx, root, "kept", service.LogOptions{Follow: true}, func(l service.LogLine) error {
		lines = append(lines, string(l.Data))
		return nil
	})
	if strings.Join(lines, ",") != "persisted" {
		t.Errorf("logs after restart: %q", lines)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Error("the orphaned init was not killed")
	}
	if o, err := s2.Get(ctx, root, "orphan"); err != nil || o.State != service.StateKilled || o.Message == "" {
		t.Errorf("orphan after restart: %+v %v", o, err)
	}
	if r, err := s2.Get(ctx, root, "reused"); err != nil || r.State != service.StateExited || r.ExitCode != -1 || r.Message == "" {
		t.Errorf("reused after restart: %+v %v", r, err)
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process that merely reused the pid was killed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "halfway")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("remains of an unfinished start not removed: %v", err)
	}
	if _, err := s2.Get(ctx, root, "halfway"); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("halfway: %v", err)
	}
}

func TestEventStreamSlowSubscriber(t *testing.T) {
	e := newEnv(t)
	slow, cancelSlow := e.s.Subscribe() // never read: must not stall the core
	defer cancelSlow()
	_ = slow
	events, cancel := e.s.Subscribe()
	defer cancel()
	const n = 30
	for i := range n {
		name := fmt.Sprintf("e%d", i)
		e.start(t, name, "true")
		e.wait(t, name)
		if err := e.s.Remove(context.Background(), root, name); err != nil {
			t.Fatal(err)
		}
	}
	counts := map[service.EventType]int{}
	for len(events) > 0 {
		ev := <-events
		counts[ev.Type]++
	}
	if counts[service.EventStarted] != n || counts[service.EventExited] != n || counts[service.EventRemoved] != n {
		t.Errorf("events: %v", counts)
	}
	cancel()
	cancel() // idempotent
}

// countZombies counts this process's children that exited but were not reaped.
func countZombies(t testing.TB) int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] == "Z" && f[1] == self {
			n++
		}
	}
	return n
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func countMounts() int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return bytes.Count(b, []byte("\n"))
}

func TestChurnLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("churn of 200 containers skipped in -short mode")
	}
	e := newEnv(t)
	ctx := context.Background()
	// Warm up once so lazily created things (journal connection, pollers) exist before counting.
	e.start(t, "warm", "true")
	e.wait(t, "warm")
	e.s.Remove(ctx, root, "warm")
	time.Sleep(100 * time.Millisecond)
	fds, mounts, gor := countFDs(), countMounts(), goruntime.NumGoroutine()

	const cycles = 200
	t0 := time.Now()
	for i := range cycles {
		name := fmt.Sprintf("churn%d", i)
		e.start(t, name, "sh", "-c", `trap "exit 0" TERM; echo up; sleep 1000 & wait`)
		waitOutput(t, e, name, "up")
		info, err := e.s.Stop(ctx, root, name, 5*time.Second)
		if err != nil || !info.State.Final() {
			t.Fatalf("cycle %d: stop: %v %s", i, err, info.State)
		}
		if err := e.s.Remove(ctx, root, name); err != nil {
			t.Fatalf("cycle %d: remove: %v", i, err)
		}
	}
	elapsed := time.Since(t0)
	// Goroutines of finished containers may take a moment to return.
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > gor && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fds2, mounts2, gor2, z := countFDs(), countMounts(), goruntime.NumGoroutine(), countZombies(t)
	t.Logf("%d start/stop/remove cycles in %v (%v each): fds %d->%d, mounts %d->%d, goroutines %d->%d, zombies %d",
		cycles, elapsed.Round(time.Millisecond), (elapsed / cycles).Round(time.Millisecond), fds, fds2, mounts, mounts2, gor, gor2, z)
	if fds2 > fds || mounts2 != mounts || gor2 > gor || z != 0 {
		t.Errorf("leak after %d cycles: fds %d->%d, mounts %d->%d, goroutines %d->%d, zombies %d", cycles, fds, fds2, mounts, mounts2, gor, gor2, z)
	}
	assertEmpty(t, e)
}

func TestDegradedWithoutJournalAndMonitor(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DisableJournal = true
		c.MonitorDevice = filepath.Join(t.TempDir(), "no-such-device")
	})
	st := e.s.Status()
	if st.JournalAvailable || st.MonitorAvailable || !strings.Contains(st.MonitorMessage, "not enforced") || !strings.Contains(st.MonitorMessage, "no-such-device") {
		t.Errorf("status %+v; want neither journal nor monitor, and a message naming the device", st)
	}
	e.start(t, "plain", "sh", "-c", "echo still logged")
	info := e.wait(t, "plain")
	if info.LimitsEnforced || info.Message == "" {
		t.Errorf("limits_enforced=%v message %q", info.LimitsEnforced, info.Message)
	}
	if out := stdoutText(e.logs(t, "plain", service.LogOptions{})); out != "still logged\n" {
		t.Errorf("log file without journald: %q", out)
	}
}
