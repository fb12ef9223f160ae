// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// asCLIEnv makes the test binary behave as the jackfruit binary (supervisor and client), so
// the tests run the real command tree, exit codes and all, without a separate build.
const asCLIEnv = "JACKFRUIT_TEST_AS_CLI"

func TestMain(m *testing.M) {
	// The supervisor re-executes this binary as each container's setup stage.
	runtime.Init()
	if os.Getenv(asCLIEnv) == "1" {
		os.Exit(execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// env is a supervisor running as a subprocess on a private socket and state directory.
type env struct {
	t      *testing.T
	self   string
	dir    string
	socket string
	rootfs string
	sup    *exec.Cmd
	supLog *testutil.SyncBuffer
	// exited is closed once the supervisor process has ended; exitErr is then its Wait error.
	exited  chan struct{}
	exitErr error
	args    []string // the supervisor's argv, for crash
}

func startSupervisor(t *testing.T) *env {
	t.Helper()
	return startSupervisorBus(t, "--no-dbus")
}

// startSupervisorBus starts the supervisor with busArgs (--no-dbus, or --dbus-address ADDR).
func startSupervisorBus(t *testing.T, busArgs ...string) *env {
	t.Helper()
	return startSupervisorOut(t, nil, busArgs...)
}

// startSupervisorOut starts the supervisor with its stdout and stderr going to out (nil:
// the env's log buffer).
func startSupervisorOut(t *testing.T, out io.Writer, busArgs ...string) *env {
	t.Helper()
	return startSupervisorWrapped(t, nil, out, busArgs...)
}

// startSupervisorWrapped starts the supervisor through wrap (a command such as prlimit that
// execs its arguments, so the pid stays the supervisor's), with extra flags.
func startSupervisorWrapped(t *testing.T, wrap []string, out io.Writer, busArgs ...string) *env {
	t.Helper()
	rootfs := testutil.Rootfs(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &env{t: t, self: self, dir: dir, socket: filepath.Join(dir, "jf.sock"), rootfs: rootfs, supLog: &testutil.SyncBuffer{}}
	args := append([]string{"supervisor", "--base-rootfs", rootfs, "--state-dir", filepath.Join(dir, "state"),
		"--run-dir", filepath.Join(dir, "run"), "--socket", e.socket, "--monitor-device", "none",
		"--admin-group", ""}, busArgs...)
	e.args = append(append(wrap[:len(wrap):len(wrap)], self), args...)
	if out == nil {
		out = e.supLog
	}
	e.run(out)
	t.Cleanup(func() {
		e.sup.Process.Signal(syscall.SIGTERM) // fails harmlessly when a test already ended it
		select {
		case <-e.exited:
			if e.exitErr != nil {
				t.Errorf("supervisor exited with %v; log:\n%s", e.exitErr, e.supLog)
			}
		case <-time.After(30 * time.Second):
			e.sup.Process.Kill()
			t.Errorf("supervisor did not stop on SIGTERM; log:\n%s", e.supLog)
		}
	})
	e.waitSocket()
	return e
}

// run starts the supervisor process: e.args is its argv (with a wrapper in front, if any).
func (e *env) run(out io.Writer) {
	e.sup = exec.Command(e.args[0], e.args[1:]...)
	e.sup.Env = append(os.Environ(), asCLIEnv+"=1")
	e.sup.Stdout, e.sup.Stderr = out, out
	if err := e.sup.Start(); err != nil {
		e.t.Fatal(err)
	}
	exited := make(chan struct{})
	e.exited = exited
	sup := e.sup
	go func() { e.exitErr = sup.Wait(); close(exited) }()
}

func (e *env) waitSocket() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", e.socket)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("supervisor socket did not appear: %v; log:\n%s", err, e.supLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crash kills the supervisor (SIGKILL) and starts a new one on the same directories.
func (e *env) crash() {
	e.t.Helper()
	e.sup.Process.Kill()
	<-e.exited
	e.run(e.supLog)
	e.waitSocket()
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// jf runs `jackfruit ARGS...` against the test supervisor.
func (e *env) jf(args ...string) result {
	e.t.Helper()
	return e.jfCtx(context.Background(), args...)
}

func (e *env) jfCtx(ctx context.Context, args ...string) result {
	e.t.Helper()
	cmd := exec.CommandContext(ctx, e.self, args...)
	cmd.Env = append(os.Environ(), asCLIEnv+"=1", control.SocketEnv+"="+e.socket)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("jackfruit %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.jf(args...)
	if r.code != 0 {
		e.t.Fatalf("jackfruit %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func (e *env) inspect(name string) control.Container {
	e.t.Helper()
	r := e.ok("inspect", name)
	var cs []control.Container
	if err := json.Unmarshal([]byte(r.stdout), &cs); err != nil || len(cs) != 1 {
		e.t.Fatalf("inspect %s: %v: %s", name, err, r)
	}
	return cs[0]
}

func (e *env) waitState(name, state string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The container may not exist yet (its start is in flight in another process).
		if r := e.jf("inspect", "--format", "{{.State}}", name); r.code == 0 && strings.TrimSpace(r.stdout) == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not reach state %s", name, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartPsLogsStopRm(t *testing.T) {
	e := startSupervisor(t)
	// The seed's form: NAME ROOTFS CMD, with the command's own options unquoted.
	r := e.ok("start", "web", e.rootfs, "/bin/sh", "-c", `i=0; while true; do echo "tick $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.2; done`)
	id := strings.TrimSpace(r.stdout)
	if len(id) != 64 {
		t.Fatalf("start printed %q, want a 64-hex ID", r.stdout)
	}
	if !strings.Contains(r.stderr, "not enforced") {
		t.Errorf("start without the monitor does not warn: %s", r)
	}
	// The overlay form with flags after NAME and --.
	e.ok("start", "quiet", "--soft-mib", "8", "--hard-mib", "16", "--hostname", "box", "-e", "GREETING=hi", "--stop-timeout", "1",
		"--", "/bin/sh", "-c", `echo "$GREETING from $(hostname)"; exec sleep 1000`)

	ps := e.ok("ps")
	lines := strings.Split(strings.TrimSpace(ps.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTAINER ID") {
		t.Fatalf("ps:\n%s", ps.stdout)
	}
	for _, want := range []string{id[:12], "web", "running", "40M/64M (not enforced)", "8M/16M (not enforced)", "Up "} {
		if !strings.Contains(ps.stdout, want) {
			t.Errorf("ps lacks %q:\n%s", want, ps.stdout)
		}
	}
	if q := e.ok("ps", "-q"); len(strings.Fields(q.stdout)) != 2 || !strings.Contains(q.stdout, id[:12]+"\n") {
		t.Errorf("ps -q: %s", q)
	}
	var list []control.Container
	if err := json.Unmarshal([]byte(e.ok("ps", "--format", "json").stdout), &list); err != nil || len(list) != 2 ||
		list[0].Name != "web" || list[0].ID != id || list[0].Pid <= 0 || list[0].LimitsEnforced {
		t.Fatalf("ps --format json: %v %+v", err, list)
	}
	if tm := e.ok("ps", "--format", "{{.Name}}:{{.State}}"); tm.stdout != "web:running\nquiet:running\n" {
		t.Errorf("ps --format template: %q", tm.stdout)
	}

	q := e.inspect("quiet")
	if q.Hostname != "box" || q.SoftLimit != 8<<20 || q.HardLimit != 16<<20 || !q.Overlay || q.StopTimeoutNs != int64(time.Second) {
		t.Errorf("inspect quiet: %+v", q)
	}
	// Its one line is in the log once the copier has read it.
	e.eventually(func(r result) bool { return r.code == 0 && r.stdout == "hi from box\n" }, "logs", "quiet")
	// web has printed a few lines (the checks below and logs -f want tick 3).
	e.eventually(func(r result) bool { return strings.Contains(r.stdout, "tick 3\n") }, "logs", "web")
	l := e.ok("logs", "web")
	if !strings.HasPrefix(l.stdout, "tick 0\ntick 1\n") || !strings.HasPrefix(l.stderr, "err 0\n") {
		t.Errorf("logs web: %s", l)
	}
	if l := e.ok("logs", "--tail", "1", "web"); strings.Count(l.stdout, "\n")+strings.Count(l.stderr, "\n") != 1 {
		t.Errorf("logs --tail 1: %s", l)
	}
	ts := e.ok("logs", "-t", "web")
	first, _, _ := strings.Cut(ts.stdout, "\n")
	stamp, text, _ := strings.Cut(first, " ")
	if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil || text != "tick 0" {
		t.Errorf("logs -t first line %q: %v", first, err)
	}
	if s := e.ok("logs", "--since", "1h", "web"); !strings.HasPrefix(s.stdout, "tick 0\n") {
		t.Errorf("logs --since 1h: %s", s)
	}
	if s := e.ok("logs", "--since", time.Now().Add(time.Hour).Format(time.RFC3339), "web"); s.stdout != "" {
		t.Errorf("logs --since future: %s", s)
	}

	// logs -f follows until the container stops.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follow := make(chan result, 1)
	// Whether the follower attaches before the stop or after it, it prints the whole log and
	// returns once web is final; no need to wait for it to attach.
	go func() { follow <- e.jfCtx(ctx, "logs", "-f", "web") }()
	start := time.Now()
	if s := e.ok("stop", "--time", "1", "web", "quiet"); s.stdout != "web\nquiet\n" {
		t.Errorf("stop: %s", s)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("stop --time 1 of two TERM-ignoring inits took %s", d)
	}
	f := <-follow
	if f.code != 0 || !strings.Contains(f.stdout, "tick 3\n") {
		t.Errorf("logs -f: %s", f)
	}
	w := e.inspect("web")
	if w.State != "killed" || w.Signal != "SIGKILL" || w.FinishedAt == "" {
		t.Errorf("after stop: %+v", w)
	}
	if ps := e.ok("ps"); strings.Count(ps.stdout, "\n") != 1 {
		t.Errorf("ps after stop lists exited containers:\n%s", ps.stdout)
	}
	if ps := e.ok("ps", "-a"); !strings.Contains(ps.stdout, "Killed (SIGKILL)") || strings.Count(ps.stdout, "\n") != 3 {
		t.Errorf("ps -a:\n%s", ps.stdout)
	}
	if r := e.ok("rm", "web", "quiet"); r.stdout != "web\nquiet\n" {
		t.Errorf("rm: %s", r)
	}
	if ps := e.ok("ps", "-a", "-q"); ps.stdout != "" {
		t.Errorf("ps -a after rm: %q", ps.stdout)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "state", "containers")); len(ents) != 0 {
		t.Errorf("state dir not empty after rm: %v", ents)
	}
}

func TestRunExitCodes(t *testing.T) {
	e := startSupervisor(t)
	cases := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"true", []string{"/bin/true"}, 0, "", ""},
		{"false", []string{"/bin/false"}, 1, "", ""},
		{"three", []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 3, "out\n", "err\n"},
		{"notexec", []string{"/etc/passwd"}, 126, "", "cannot be run"},
		{"notfound", []string{"/no/such/command"}, 127, "", "not found"},
		{"notfoundpath", []string{"nosuchcommand"}, 127, "", "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.jf(append([]string{"run", "--rm", "r-" + tc.name, e.rootfs}, tc.args...)...)
			if r.code != tc.code || r.stdout != tc.out || !strings.Contains(r.stderr, tc.err) {
				t.Fatalf("run %v: %s", tc.args, r)
			}
		})
	}
	// Killed by SIGKILL: 137, and --rm removes it anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- e.jfCtx(ctx, "run", "--rm", "victim", "--", "/bin/sleep", "1000") }()
	e.waitState("victim", "running")
	e.ok("kill", "victim")
	if r := <-done; r.code != 137 {
		t.Fatalf("run killed by SIGKILL: %s", r)
	}
	// A start error other than the command: 125.
	if r := e.jf("run", "bad/name", "/bin/true"); r.code != 125 || !strings.Contains(r.stderr, `"bad/name"`) {
		t.Fatalf("run bad name: %s", r)
	}
	if r := e.jf("run", "--rm", "-d", "x", "/bin/true"); r.code != 125 {
		t.Fatalf("run --rm -d: %s", r)
	}
	// --rm left nothing behind.
	if ps := e.ok("ps", "-a", "-q"); ps.stdout != "" {
		t.Fatalf("containers left after run --rm: %q", ps.stdout)
	}
	// Without --rm the container stays, exited with its code.
	if r := e.jf("run", "kept", "/bin/sh", "-c", "exit 7"); r.code != 7 {
		t.Fatalf("run kept: %s", r)
	}
	if c := e.inspect("kept"); c.State != "exited" || c.ExitCode != 7 {
		t.Fatalf("kept: %+v", c)
	}
	if w := e.ok("wait", "kept"); w.stdout != "7\n" {
		t.Fatalf("wait: %s", w)
	}
}

func TestRunBinaryAndLongLines(t *testing.T) {
	e := startSupervisor(t)
	// Bytes that are not UTF-8, a NUL, and a 1 MiB line (split into 16 KiB pieces by the
	// supervisor) must come out exactly as printed, through run and through logs.
	script := `printf 'a\000b\377\376c\n'; head -c 1048576 /dev/zero | tr '\000' x; echo; printf 'no newline at end'`
	want := "a\x00b\xff\xfec\n" + strings.Repeat("x", 1<<20) + "\n" + "no newline at end"
	r := e.jf("run", "bin", e.rootfs, "/bin/sh", "-c", script)
	if r.code != 0 || r.stdout != want {
		t.Fatalf("run output differs: exit %d, %d bytes (want %d), head %q, stderr %q", r.code, len(r.stdout), len(want), r.stdout[:min(40, len(r.stdout))], r.stderr)
	}
	if l := e.ok("logs", "bin"); l.stdout != want {
		t.Fatalf("logs output differs: %d bytes, want %d", len(l.stdout), len(want))
	}
	// A stream that ends without a newline gets none added, also when it is a long line
	// (pieces) on stderr, with --tail and with --timestamps (only line starts are stamped).
	long := strings.Repeat("y", 40000)
	r = e.jf("run", "nonl", "/bin/sh", "-c", `printf 'out1\nout2'; printf 'err1\n%s' "$(head -c 40000 /dev/zero | tr '\000' y)" >&2`)
	if r.code != 0 || r.stdout != "out1\nout2" || r.stderr != "err1\n"+long {
		t.Fatalf("run without final newline: exit %d, stdout %q, stderr %d bytes (want %d)", r.code, r.stdout, len(r.stderr), len(long)+5)
	}
	if l := e.ok("logs", "nonl"); l.stdout != "out1\nout2" || l.stderr != "err1\n"+long {
		t.Fatalf("logs without final newline: stdout %q, stderr %d bytes", l.stdout, len(l.stderr))
	}
	// (One stream only: which stream's last line ends last is up to the scheduler.)
	e.ok("run", "nonl2", "/bin/sh", "-c", `printf 'a\n'; head -c 40000 /dev/zero | tr '\000' y`)
	if l := e.ok("logs", "--tail", "1", "nonl2"); l.stdout != long {
		t.Fatalf("logs --tail 1: stdout %d bytes, %q…", len(l.stdout), l.stdout[:min(10, len(l.stdout))])
	}
	if l := e.ok("logs", "--tail", "0", "nonl"); l.stdout != "" || l.stderr != "" {
		t.Fatalf("logs --tail 0: %s", l)
	}
	l := e.ok("logs", "--timestamps", "nonl")
	if lines := strings.Split(l.stdout, "\n"); len(lines) != 2 || !strings.HasSuffix(lines[0], " out1") || !strings.HasSuffix(lines[1], " out2") {
		t.Fatalf("logs --timestamps: stdout %q", l.stdout)
	}
}

func TestBadInput(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "dup", "/bin/sleep", "1000")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"start"}, 1, "missing container NAME"},
		{[]string{"start", "x"}, 1, "no command given"},
		{[]string{"start", "bad/name", "/bin/true"}, 1, `container name "bad/name" contains '/'`},
		{[]string{"start", "dup", "/bin/true"}, 1, `container "dup" already exists`},
		{[]string{"start", "x", "--soft-mib", "100", "--hard-mib", "50", "/bin/true"}, 1, "soft"},
		{[]string{"start", "x", "--rootfs", "/nonexistent", "/bin/true"}, 1, "/nonexistent"},
		{[]string{"start", "x", "/bin/true", "--hard-mib", "5"}, 0, ""}, // flags after CMD belong to the command
		{[]string{"start", "y", e.rootfs, "--hard-mib", "5", "/bin/true"}, 1, "flags go before ROOTFS and CMD"},
		{[]string{"start", "--bogus", "x", "/bin/true"}, 1, "unknown flag: --bogus"},
		{[]string{"start", "z", "-e", "NOT_SET_ANYWHERE_42", "/bin/true"}, 1, "NOT_SET_ANYWHERE_42"},
		// 0 is not "the default": it is refused, whatever the other limit.
		{[]string{"start", "z", "--soft-mib", "0", "/bin/true"}, 1, "--soft-mib 0: not a limit"},
		{[]string{"start", "z", "--soft-mib", "0", "--hard-mib", "0", "/bin/true"}, 1, "--soft-mib 0: not a limit"},
		{[]string{"start", "z", "--hard-mib", "0", "/bin/true"}, 1, "--hard-mib 0: not a limit"},
		{[]string{"run", "z", "--hard-mib", "0", "/bin/true"}, 125, "--hard-mib 0: not a limit"},
		// Only given limits are sent: a clash with a default names the default as such.
		{[]string{"start", "z", "--soft-mib", "100", "/bin/true"}, 1, "soft memory limit 100 MiB exceeds hard memory limit 64 MiB (the default)"},
		// Ranges are the core's; the CLI only refuses what cannot be converted to bytes.
		{[]string{"start", "z", "--hard-mib", "2000000000", "/bin/true"}, 1, "hard memory limit 2000000000 MiB is out of range"},
		{[]string{"start", "z", "--hard-mib", "18446744073709551615", "/bin/true"}, 1, "--hard-mib 18446744073709551615: too large to be a number of bytes"},
		// The seed's form with the command forgotten: the directory is not taken for the command.
		{[]string{"start", "z", e.rootfs}, 1, "no command given after ROOTFS " + e.rootfs},
		{[]string{"start", "z", "--hard-mib", "100", e.rootfs}, 1, "no command given after ROOTFS"},
		{[]string{"logs", "nope"}, 1, `Error: no such container "nope"`},
		{[]string{"logs", "--tail", "0", "nope"}, 1, `Error: no such container "nope"`},
		{[]string{"stop", "nope"}, 1, `Error: no such container "nope"`},
		{[]string{"inspect", "nope"}, 1, `no such container "nope"`},
		{[]string{"rm", "dup"}, 1, "--force"},
		{[]string{"kill", "--signal", "BOGUS", "dup"}, 1, `invalid signal "BOGUS"`},
		{[]string{"logs", "--since", "yesterday", "dup"}, 1, `invalid --since "yesterday"`},
		{[]string{"ps", "--format", "{{.Nope"}, 1, "--format"},
		{[]string{"start", "z", "--cap-add", "NET_ADMIN,SYS_ADMINN", "/bin/true"}, 1, `container "z": cap-add: unknown capability "SYS_ADMINN"`},
		{[]string{"run", "z", "--cap-drop", "bogus", "/bin/true"}, 125, `cap-drop: unknown capability "bogus"`},
		{[]string{"start", "z", "--security-opt", "seccomp=/x.json", "/bin/true"}, 1, "custom seccomp profiles are not supported"},
		{[]string{"start", "z", "--security-opt", "nonsense", "/bin/true"}, 1, `unknown security option "nonsense"`},
		{[]string{"run", "z", "--network", "bridge", "/bin/true"}, 125, `unknown network mode "bridge" (known: host, none)`},
		{[]string{"ps", "extra"}, 1, "unknown command"},
		{[]string{"--socket", "/nonexistent/jf.sock", "ps"}, 1, "cannot connect to the jackfruit supervisor at /nonexistent/jf.sock"},
	}
	for _, tc := range cases {
		r := e.jf(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("jackfruit %s: want exit %d and %q in stderr; got %s", strings.Join(tc.args, " "), tc.code, tc.want, r)
		}
	}
	// Nothing was created by the refused starts.
	if ps := e.ok("ps", "-a", "--format", "{{.Name}}"); ps.stdout != "dup\nx\n" {
		t.Errorf("containers after bad input: %q", ps.stdout)
	}
	// Signals by name and number; rm -f stops first.
	e.ok("kill", "-s", "SIGTERM", "dup") // sleep as init ignores TERM from outside
	e.ok("kill", "-s", "9", "dup")
	e.waitState("dup", "killed")
	e.ok("start", "busy", "/bin/sleep", "1000")
	if r := e.ok("rm", "-f", "--time", "0", "busy", "dup", "x"); r.stdout != "busy\ndup\nx\n" {
		t.Errorf("rm -f: %s", r)
	}
}

// TestConfinementFlags: the CLI's confinement flags reach the container and inspect shows
// what it got.
func TestConfinementFlags(t *testing.T) {
	e := startSupervisor(t)
	r := e.ok("run", "--rm", "box", "--network", "none", "--cap-drop", "ALL", "--cap-add", "kill,cap_setuid",
		"--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined", "--", "/bin/sh", "-c", "grep -e ^CapEff -e ^NoNewPrivs -e ^Seccomp: /proc/self/status; ls /sys/class/net")
	if r.stdout != "CapEff:\t00000000000000a0\nNoNewPrivs:\t1\nSeccomp:\t0\nlo\n" {
		t.Errorf("run with confinement flags: %s", r)
	}
	e.ok("start", "plain", "/bin/true")
	c := e.inspect("plain")
	if strings.Join(c.Capabilities, ",") != "CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_FOWNER,CAP_FSETID,CAP_KILL,CAP_SETGID,CAP_SETUID,CAP_SETPCAP,CAP_NET_BIND_SERVICE,CAP_NET_RAW,CAP_SYS_CHROOT,CAP_MKNOD,CAP_AUDIT_WRITE,CAP_SETFCAP" ||
		c.Network != "host" || c.NoNewPrivileges || c.Seccomp != "default" {
		t.Errorf("inspect of a default container: %+v", c)
	}
}

func TestEventsStatusVersion(t *testing.T) {
	e := startSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.self, "events", "--format", "json")
	cmd.Env = append(os.Environ(), asCLIEnv+"=1", control.SocketEnv+"="+e.socket)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	events := make(chan control.Event, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev control.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("event line %q: %v", sc.Text(), err)
				return
			}
			events <- ev
		}
	}()
	// The subscription is in place once a probe container's events show up.
	subscribed := false
	for i := 0; !subscribed && i < 50; i++ {
		e.ok("run", "--rm", fmt.Sprintf("probe%d", i), "/bin/true")
	drain:
		for {
			select {
			case ev := <-events:
				subscribed = subscribed || strings.HasPrefix(ev.Container.Name, "probe")
			case <-time.After(200 * time.Millisecond):
				break drain
			}
		}
	}
	if !subscribed {
		t.Fatal("events never showed a probe container")
	}
	if r := e.jf("run", "--rm", "ev", "/bin/sh", "-c", "exit 4"); r.code != 4 {
		t.Fatalf("run ev: %s", r)
	}
	var types []string
	for ev := range events {
		if ev.Container.Name != "ev" {
			continue
		}
		types = append(types, ev.Type)
		if ev.Type == "exited" && ev.Container.ExitCode != 4 {
			t.Errorf("exited event: %+v", ev)
		}
		if ev.Type == "removed" {
			break
		}
	}
	if len(types) == 0 || types[0] != "started" || types[len(types)-1] != "removed" || !strings.Contains(strings.Join(types, ","), "exited") {
		t.Errorf("events of ev: %v", types)
	}
	cancel()

	st := e.ok("status")
	for _, want := range []string{"Memory monitor:", "NOT available: memory limits are not enforced: the kernel memory monitor is disabled by configuration\n",
		"Containers:", "0 (0 running)", e.rootfs} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	// The reason is given once, not the core's message inside a paraphrase of itself.
	if n := strings.Count(st.stdout, "not enforced"); n != 1 {
		t.Errorf("status says \"not enforced\" %d times:\n%s", n, st.stdout)
	}
	if v := e.ok("version"); !strings.Contains(v.stdout, "Client:") || strings.Contains(v.stdout, "unavailable") {
		t.Errorf("version: %s", v)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if r := execCapture(t, "completion", sh); r.code != 0 || !strings.Contains(r.stdout, "jackfruit") {
			t.Errorf("completion %s: exit %d", sh, r.code)
		}
	}
}

// execCapture runs the CLI in-process (for verbs that need no supervisor).
func execCapture(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(args, strings.NewReader(""), &out, &errb)
	return result{out.String(), errb.String(), code}
}

func TestParseHelpers(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"KILL": 9, "SIGTERM": 15, "term": 15, "1": 1, "SIGUSR1": syscall.SIGUSR1} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v", in, got, err)
		}
	}
	// 65 is passed on: which numbers are signals is the core's rule (TestOneRuleEverywhere).
	for _, bad := range []string{"", "0", "FOO", "-9"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) accepted", bad)
		}
	}
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"2026-01-02T14:00:00Z": now.Add(-time.Hour),
		"1767362400":           time.Unix(1767362400, 0),
		"0":                    time.Unix(0, 0), // the epoch: everything, not "0 s ago"
	} {
		if got, err := parseLogTime("--since", in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseLogTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[uint64]string{0: "0B", 512: "512B", 40 << 20: "40M", 1536 << 10: "1.5M", 3 << 30: "3G"} {
		if got := humanSize(in); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestRunForwardsSignals(t *testing.T) {
	e := startSupervisor(t)
	cmd := exec.Command(e.self, "run", "--rm", "sig", "/bin/sh", "-c",
		`trap 'echo got INT; exit 5' INT; echo ready; while true; do sleep 0.1; done`)
	cmd.Env = append(os.Environ(), asCLIEnv+"=1", control.SocketEnv+"="+e.socket)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	if l, err := br.ReadString('\n'); err != nil || l != "ready\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := br.ReadString(0)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 || rest != "got INT\n" {
		t.Fatalf("run after SIGINT: %v, output %q", err, rest)
	}
}

// TestNonRootCaller runs the client as nobody: reading works, changing is refused with the
// core's message, and the CLI exits 1.
func TestNonRootCaller(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "owned", "/bin/sleep", "1000")
	// Let nobody reach the socket and run a copy of this binary.
	for d := filepath.Dir(e.socket); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(e.socket, 0o666)
	binDir, err := os.MkdirTemp("", "jf-cli-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	data, err := os.ReadFile(e.self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "jackfruit")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) result {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{asCLIEnv + "=1", control.SocketEnv + "=" + e.socket, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	if r := asNobody("ps", "--format", "{{.Name}}"); r.code != 0 || r.stdout != "owned\n" {
		t.Errorf("ps as nobody: %s", r)
	}
	if r := asNobody("logs", "owned"); r.code != 0 {
		t.Errorf("logs as nobody: %s", r)
	}
	for _, args := range [][]string{{"start", "x", "/bin/true"}, {"stop", "owned"}, {"kill", "owned"}, {"rm", "-f", "owned"}} {
		if r := asNobody(args...); r.code != 1 || !strings.Contains(r.stderr, "may not") || !strings.Contains(r.stderr, "uid 65534") {
			t.Errorf("%v as nobody: %s", args, r)
		}
	}
	if r := asNobody("run", "x", "/bin/true"); r.code != 125 {
		t.Errorf("run as nobody: %s", r)
	}
	if c := e.inspect("owned"); c.State != "running" {
		t.Errorf("refused calls changed the container: %+v", c)
	}
	e.ok("kill", "owned") // sleep as init ignores SIGTERM; spare the shutdown its 10 s timeout
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		info service.ContainerInfo
		want int
	}{
		{service.ContainerInfo{State: service.StateExited, ExitCode: 0}, 0},
		{service.ContainerInfo{State: service.StateExited, ExitCode: 42}, 42},
		{service.ContainerInfo{State: service.StateExited, ExitCode: -1}, 125}, // the core could not learn it
		{service.ContainerInfo{State: service.StateKilled, Signal: "SIGTERM", ExitCode: 143}, 143},
		{service.ContainerInfo{State: service.StateKilled, Signal: "SIGINT"}, 130},
		{service.ContainerInfo{State: service.StateOOMKill, Signal: "SIGKILL", ExitCode: 137}, 137},
		{service.ContainerInfo{State: service.StateOOMKill}, 137},
		{service.ContainerInfo{State: service.StateRunning}, 125},
	} {
		if got := exitCode(tc.info); got != tc.want {
			t.Errorf("exitCode(%s %d %s) = %d, want %d", tc.info.State, tc.info.ExitCode, tc.info.Signal, got, tc.want)
		}
	}
	now := time.Now()
	st := statusText(service.ContainerInfo{State: service.StateOOMKill, FinishedAt: now.Add(-5 * time.Second)}, now)
	if st != "Killed by memory limit 5 seconds ago" {
		t.Errorf("statusText OOM: %q", st)
	}
	if st := statusText(service.ContainerInfo{State: service.StateExited, FinishedAt: now.Add(-5 * time.Second)}, now); st != "Exited (0) 5 seconds ago" {
		t.Errorf("statusText exited: %q", st)
	}
}

func TestStopSeveralAtOnce(t *testing.T) {
	e := startSupervisor(t)
	// sleep as init ignores SIGTERM, so only the SIGKILL after the timeout ends these; the
	// trap makes "polite" exit on SIGTERM at once.
	for _, n := range []string{"deaf1", "deaf2", "deaf3"} {
		e.ok("start", n, "/bin/sleep", "1000")
	}
	e.ok("start", "polite", "/bin/sh", "-c", `trap "exit 0" TERM; echo trapped; while :; do sleep 0.1; done`)
	for _, n := range []string{"deaf1", "deaf2", "deaf3", "polite"} {
		e.waitState(n, "running")
	}
	// A SIGTERM before the trap is set would be ignored (pid 1 without a handler).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.ok("logs", "polite").stdout, "trapped"); {
		if time.Now().After(deadline) {
			t.Fatal("polite never set its trap")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Names are printed in argument order although polite stops first.
	if r := e.ok("stop", "-t", "2", "deaf1", "polite", "deaf2", "deaf3"); r.stdout != "deaf1\npolite\ndeaf2\ndeaf3\n" {
		t.Fatalf("stop: %s", r)
	}
	// One after the other, each deaf container would be killed 2 s after the previous one
	// finished (4 s between the first and the last); at the same time, all within a moment.
	var first, last time.Time
	for _, n := range []string{"deaf1", "deaf2", "deaf3"} {
		c := e.inspect(n)
		if c.State != "killed" || c.FinishedAt == "" {
			t.Fatalf("%s after stop: %+v", n, c)
		}
		f, err := time.Parse(time.RFC3339Nano, c.FinishedAt)
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() || f.Before(first) {
			first = f
		}
		if f.After(last) {
			last = f
		}
	}
	if spread := last.Sub(first); spread >= 2*time.Second {
		t.Errorf("the containers were stopped one after the other: finish times %v apart", spread)
	}
	if c := e.inspect("polite"); c.State != "exited" || c.ExitCode != 0 {
		t.Errorf("polite after stop: %+v", c)
	}
	// An error for one name leaves the others stopped, in order, and exit code 1.
	e.ok("start", "again", "/bin/sleep", "1000")
	r := e.jf("stop", "-t", "0", "nope", "again")
	if r.code != 1 || r.stdout != "again\n" || !strings.Contains(r.stderr, `no such container "nope"`) {
		t.Errorf("stop with a bad name: %s", r)
	}
}

// Flags left out are left to the core's defaults; --stop-timeout 0 means no grace period, as
// stop -t 0 does, not "the default".
func TestStartDefaultsAndStopTimeoutZero(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "d", "/bin/sleep", "1000")
	e.ok("start", "k", "--stop-timeout", "0", "/bin/sleep", "1000")
	d, k := e.inspect("d"), e.inspect("k")
	if d.SoftLimit != service.DefaultSoftLimit || d.HardLimit != service.DefaultHardLimit || d.StopTimeoutNs != int64(service.DefaultStopTimeout) {
		t.Errorf("defaults: %+v", d)
	}
	// A hard limit alone below the default soft limit: the core lowers the default soft
	// limit, which it can only do when the CLI leaves the soft limit out.
	e.ok("start", "h", "--hard-mib", "32", "/bin/true")
	if h := e.inspect("h"); h.HardLimit != 32<<20 || h.SoftLimit > h.HardLimit {
		t.Errorf("--hard-mib 32 alone: soft %d, hard %d", h.SoftLimit, h.HardLimit)
	}
	if k.StopTimeoutNs != 0 {
		t.Errorf("--stop-timeout 0 gave stop_timeout_ns %d, want 0 (no grace, not a 1 ns stand-in)", k.StopTimeoutNs)
	}
	// sleep as init ignores SIGTERM: only the immediate SIGKILL ends it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r := e.jfCtx(ctx, "stop", "k"); r.code != 0 {
		t.Fatalf("stop k: %s", r)
	}
	if c := e.inspect("k"); c.State != "killed" || c.Signal != "SIGKILL" {
		t.Errorf("k after stop: %+v", c)
	}
	e.ok("stop", "-t", "0", "d")
}

// SIGHUP (the terminal of a hand-started supervisor closing) is an orderly shutdown like
// SIGTERM: containers are stopped, not left running without a supervisor.
func TestSupervisorSIGHUPStopsContainers(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "hup", "--stop-timeout", "1", "/bin/sleep", "1000")
	e.waitState("hup", "running")
	pid := e.inspect("hup").Pid
	if pid <= 0 {
		t.Fatalf("hup has no pid")
	}
	if err := e.sup.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("supervisor still running 30 s after SIGHUP; log:\n%s", e.supLog)
	}
	if e.exitErr != nil {
		t.Fatalf("supervisor ended by SIGHUP with %v (want an orderly exit, status 0); log:\n%s", e.exitErr, e.supLog)
	}
	if !strings.Contains(e.supLog.String(), "shutting down") {
		t.Errorf("no orderly shutdown logged:\n%s", e.supLog)
	}
	// The container's init is gone (not reparented and still running).
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), "sleep") {
		t.Errorf("container process %d (%q) survived the supervisor", pid, b)
	}
}

// A supervisor whose stderr reader went away (`jackfruit supervisor 2>&1 | tee`, tee killed)
// loses log lines but keeps running: SIGPIPE does not end it.
func TestSupervisorSurvivesBrokenStderr(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	e := startSupervisorOut(t, w, "--no-dbus")
	w.Close()
	r.Close() // from now on every log write hits a broken pipe
	// Starting and stopping containers makes the supervisor log.
	e.ok("run", "--rm", "p1", "/bin/true")
	e.ok("run", "--rm", "p2", "/bin/true")
	if r := e.ok("ps", "-a", "--format", "{{.Name}}"); r.stdout != "" {
		t.Errorf("ps after runs: %s", r)
	}
	select {
	case <-e.exited:
		t.Fatalf("supervisor died: %v", e.exitErr)
	default:
	}
	// The cleanup's SIGTERM must still end it with status 0.
}

// events goes on across a crash of the supervisor: it reconnects and prints the new
// supervisor's events, with a note on stderr. (A restart by systemd ends the stream with
// "restarting", which the client takes the same way; see TestEventsEndOnRestart in
// service/control.)
func TestEventsReconnectAfterRestart(t *testing.T) {
	e := startSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.self, "events", "--format", "json")
	cmd.Env = append(os.Environ(), asCLIEnv+"=1", control.SocketEnv+"="+e.socket)
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	names := make(chan string, 100)
	go func() {
		defer close(names)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev control.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				names <- ev.Container.Name
			}
		}
	}()
	// seen runs probe containers until one of their events comes through.
	seen := func(prefix string) bool {
		for i := 0; i < 50; i++ {
			e.ok("run", "--rm", fmt.Sprintf("%s%d", prefix, i), "/bin/true")
			for {
				select {
				case n, ok := <-names:
					if !ok {
						return false // events ended
					}
					if strings.HasPrefix(n, prefix) {
						return true
					}
					continue
				case <-time.After(200 * time.Millisecond):
				}
				break
			}
		}
		return false
	}
	if !seen("before") {
		t.Fatalf("events never showed a container; events stderr:\n%s", stderr)
	}
	e.crash()
	if !seen("after") {
		t.Fatalf("no events after the restart; events stderr:\n%s", stderr)
	}
	if s := stderr.String(); !strings.Contains(s, "reconnecting") || !strings.Contains(s, "reconnected") {
		t.Errorf("events stderr: %q", s)
	}
}
