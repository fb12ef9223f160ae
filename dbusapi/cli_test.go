// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
)

// run runs a command-line client as a user would type it and logs the transcript.
func run(t *testing.T, cred *syscall.Credential, name string, args ...string) testutil.Result {
	t.Helper()
	r := testutil.Command(t, cred, name, args...)
	who := "#"
	if cred != nil {
		who = "$"
	}
	t.Logf("%s %s %s\n%s%s(err=%v)", who, name, strings.Join(args, " "), r.Stdout, r.Stderr, r.Err)
	return r
}

const (
	dest    = "io.jackfruit.Jackfruit1"
	mgrPath = "/io/jackfruit/Jackfruit1"
	mgrIf   = "io.jackfruit.Jackfruit1.Manager"
	ctIf    = "io.jackfruit.Jackfruit1.Container"
)

func mustSucceed(t *testing.T, r testutil.Result) string {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("command failed: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func mustFail(t *testing.T, r testutil.Result, want string) {
	t.Helper()
	if r.Err == nil || !strings.Contains(r.Stdout+r.Stderr, want) {
		t.Fatalf("want failure mentioning %q, got err=%v\n%s%s", want, r.Err, r.Stdout, r.Stderr)
	}
}

// wantLines checks that out contains each line, comparing runs of blanks as one blank
// (busctl sizes its columns to the widest entry).
func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	squash := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	var norm []string
	for _, l := range strings.Split(out, "\n") {
		norm = append(norm, squash(l))
	}
	joined := strings.Join(norm, "\n")
	for _, l := range lines {
		if !strings.Contains(joined, squash(l)) {
			t.Errorf("output lacks %q:\n%s", l, out)
		}
	}
}

// TestBusctl drives the interface with busctl exactly as an administrator would on the system
// bus (with --address pointing at the private bus instead of --system).
func TestBusctl(t *testing.T) {
	e := setup(t)
	a := "--address=" + e.bus.Address
	out := mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}",
		"web-1", "", "2", "/bin/sleep", "1000", "0", "0", "2", "hostname", "s", "box", "env", "as", "1", "A=1"))
	if strings.TrimSpace(out) != `o "/io/jackfruit/Jackfruit1/container/web_2d1"` {
		t.Errorf("StartContainer printed %q", out)
	}
	// Arguments starting with a dash need getopt's "--" before the positional arguments.
	mustSucceed(t, run(t, nil, "busctl", a, "call", "--", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}",
		"db", "/srv/rootfs", "3", "/bin/sh", "-c", "sleep 100", "41943040", "67108864", "1", "stop_timeout_sec", "u", "5"))

	out = mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "ListContainers"))
	ci1, _ := e.fake.Get(t.Context(), internalRoot, "web-1")
	ci2, _ := e.fake.Get(t.Context(), internalRoot, "db")
	want := fmt.Sprintf(`a(ssuo) 2 "web-1" "running" %d "/io/jackfruit/Jackfruit1/container/web_2d1" "db" "running" %d "/io/jackfruit/Jackfruit1/container/db"`, ci1.Pid, ci2.Pid)
	if strings.TrimSpace(out) != want {
		t.Errorf("ListContainers printed\n%s\nwant\n%s", out, want)
	}

	out = mustSucceed(t, run(t, nil, "busctl", a, "introspect", dest, mgrPath))
	wantLines(t, out,
		".StartContainer                     method    ssastta{sv} o",
		".ListContainers                     method    -           a(ssuo)",
		".ContainerCount                     property  u           2                           emits-change",
		".ContainerExited                    signal    sosi",
		".MemoryLimitExceeded                signal    sostt")
	out = mustSucceed(t, run(t, nil, "busctl", a, "introspect", dest, "/io/jackfruit/Jackfruit1/container/web_2d1", ctIf))
	wantLines(t, out,
		`.Command                            property  as        2 "/bin/sleep" "1000"`,
		`.Hostname                           property  s         "box"                                    const`,
		`.State                              property  s         "running"                                emits-change`,
		`.MemoryRSS                          property  t         0                                        -`,
		".Kill                               method    i         -")
	out = mustSucceed(t, run(t, nil, "busctl", a, "tree", dest))
	wantLines(t, out, "/io/jackfruit/Jackfruit1/container/db", "/io/jackfruit/Jackfruit1/container/web_2d1")

	out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, "/io/jackfruit/Jackfruit1/container/db", ctIf, "SoftLimit", "HardLimit", "Rootfs"))
	if out != "t 41943040\nt 67108864\ns \"/srv/rootfs\"\n" {
		t.Errorf("get-property printed %q", out)
	}
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, "/io/jackfruit/Jackfruit1/container/db", ctIf, "Stop", "u", "1"))
	out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, "/io/jackfruit/Jackfruit1/container/db", ctIf, "State", "ExitCode"))
	if out != "s \"killed\"\ni 143\n" {
		t.Errorf("after Stop: %q", out)
	}
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "RemoveContainer", "s", "db"))

	mustFail(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "GetContainer", "s", "nope"), `no such container "nope"`)
	mustFail(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "StopContainer", "s", "web-1"), "Invalid type / number of args")
	mustFail(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "KillContainer", "su", "web-1", "9"),
		"Invalid arguments 'su' to call io.jackfruit.Jackfruit1.Manager.KillContainer(), expecting 'si'.")
	mustFail(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}",
		"x", "", "1", "/bin/true", "0", "0", "1", "memory", "t", "1"), `unknown option "memory"`)
	mustFail(t, run(t, nil, "busctl", a, "set-property", dest, mgrPath, mgrIf, "Version", "s", "9"), "read-only")
	// The server survived all of that.
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "KillContainer", "si", "web-1", "9"))
	out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, "/io/jackfruit/Jackfruit1/container/web_2d1", ctIf, "State", "ExitCode", "Leader"))
	if out != "s \"killed\"\ni 137\nu 0\n" {
		t.Errorf("after KillContainer 9: %q", out)
	}
}

// TestGdbus does the same with GLib's gdbus, which also shows the D-Bus error names.
func TestGdbus(t *testing.T) {
	e := setup(t)
	a := e.bus.Address
	call := func(cred *syscall.Credential, path, method string, args ...string) testutil.Result {
		return run(t, cred, "gdbus", append([]string{"call", "--address", a, "--dest", dest, "--object-path", path, "--method", method}, args...)...)
	}
	out := mustSucceed(t, call(nil, mgrPath, mgrIf+".StartContainer", "hog", "", "['/bin/sleep', '1000']", "0", "0", "{'hostname': <'hoggy'>}"))
	if strings.TrimSpace(out) != "(objectpath '/io/jackfruit/Jackfruit1/container/hog',)" {
		t.Errorf("StartContainer printed %q", out)
	}
	ci, _ := e.fake.Get(t.Context(), internalRoot, "hog")
	out = mustSucceed(t, call(nil, mgrPath, mgrIf+".ListContainers"))
	if want := fmt.Sprintf("([('hog', 'running', uint32 %d, objectpath '/io/jackfruit/Jackfruit1/container/hog')],)", ci.Pid); strings.TrimSpace(out) != want {
		t.Errorf("ListContainers printed %q, want %q", out, want)
	}
	out = mustSucceed(t, call(nil, "/io/jackfruit/Jackfruit1/container/hog", "org.freedesktop.DBus.Properties.Get", ctIf, "Hostname"))
	if strings.TrimSpace(out) != "(<'hoggy'>,)" {
		t.Errorf("Get Hostname printed %q", out)
	}
	out = mustSucceed(t, run(t, nil, "gdbus", "introspect", "--address", a, "--dest", dest, "--object-path", mgrPath))
	wantLines(t, out, "StartContainer(in  s name,", "readonly u ContainerCount = 1;", "node container {")

	mustFail(t, call(nil, mgrPath, mgrIf+".KillContainer", "nope", "15"), "GDBus.Error:io.jackfruit.Jackfruit1.Error.NoSuchContainer: no such container \"nope\"")
	mustFail(t, call(nil, mgrPath, mgrIf+".GetContainer", "../x"), "GDBus.Error:io.jackfruit.Jackfruit1.Error.InvalidArgument: invalid container name")
	mustFail(t, call(nil, mgrPath, mgrIf+".StartContainer", "x", "", "['/bin/true']", "0", "0", "{'env': <'A=1'>}"),
		`GDBus.Error:io.jackfruit.Jackfruit1.Error.InvalidArgument: option "env" must be an array of KEY=VALUE strings (type as), not type s`)
	mustSucceed(t, call(nil, "/io/jackfruit/Jackfruit1/container/hog", ctIf+".Kill", "15"))
	mustSucceed(t, call(nil, "/io/jackfruit/Jackfruit1/container/hog", ctIf+".Remove"))
}

// TestUnprivilegedClient runs the clients as uid nobody: reads work, writes are refused by
// the supervisor with AccessDenied, owning the name is refused by the bus policy.
func TestUnprivilegedClient(t *testing.T) {
	e := setup(t)
	e.start(t, "hog", nil)
	nobody := testutil.Nobody(t)
	a := "--address=" + e.bus.Address
	gcall := func(path, method string, args ...string) testutil.Result {
		return run(t, nobody, "gdbus", append([]string{"call", "--address", e.bus.Address, "--dest", dest, "--object-path", path, "--method", method}, args...)...)
	}
	hog := "/io/jackfruit/Jackfruit1/container/hog"

	// Reads.
	mustSucceed(t, run(t, nobody, "busctl", a, "call", dest, mgrPath, mgrIf, "ListContainers"))
	mustSucceed(t, run(t, nobody, "busctl", a, "call", dest, mgrPath, mgrIf, "GetContainer", "s", "hog"))
	out := mustSucceed(t, run(t, nobody, "busctl", a, "get-property", dest, hog, ctIf, "State"))
	if out != "s \"running\"\n" {
		t.Errorf("State as nobody: %q", out)
	}
	mustSucceed(t, run(t, nobody, "busctl", a, "introspect", dest, hog))
	mustSucceed(t, run(t, nobody, "busctl", a, "tree", dest))
	mustSucceed(t, gcall(mgrPath, "org.freedesktop.DBus.Properties.GetAll", mgrIf))

	// Writes reach the supervisor, which refuses them by uid.
	denied := "GDBus.Error:io.jackfruit.Jackfruit1.Error.AccessDenied: uid 65534 may not change containers"
	mustFail(t, gcall(mgrPath, mgrIf+".StartContainer", "x", "", "['/bin/true']", "0", "0", "{}"), denied)
	mustFail(t, gcall(mgrPath, mgrIf+".StopContainer", "hog", "0"), denied)
	mustFail(t, gcall(mgrPath, mgrIf+".KillContainer", "hog", "9"), denied)
	mustFail(t, gcall(mgrPath, mgrIf+".RemoveContainer", "hog"), denied)
	mustFail(t, gcall(hog, ctIf+".Stop", "0"), denied)
	mustFail(t, gcall(hog, ctIf+".Kill", "9"), denied)
	mustFail(t, gcall(hog, ctIf+".Remove"), denied)
	mustFail(t, run(t, nobody, "busctl", a, "call", dest, mgrPath, mgrIf, "KillContainer", "si", "hog", "9"), "uid 65534 may not change containers")
	// Properties.Set is closed by the bus policy itself.
	mustFail(t, gcall(mgrPath, "org.freedesktop.DBus.Properties.Set", mgrIf, "Version", "<'x'>"), "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied")

	// Only root may own the name.
	mustFail(t, run(t, nobody, "busctl", a, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
		"RequestName", "su", "io.jackfruit.Jackfruit1", "4"), "Access denied")

	ci, _ := e.fake.Get(t.Context(), internalRoot, "hog")
	if ci.State != "running" {
		t.Fatalf("container changed by refused calls: %s", ci.State)
	}
}

// TestGdbusMonitor watches the signals as a user would, unprivileged, with gdbus monitor.
func TestGdbusMonitor(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, "gdbus", "monitor", "--address", e.bus.Address, "--dest", dest)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: testutil.Nobody(t)}
	var buf testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &buf, "Monitoring signals")
	// gdbus prints its banner before the bus has its match rule: signals sent at once can be
	// missed. Start throw-away containers until gdbus shows one, so the rule is in place.
	warm := 0
	for ; ; warm++ {
		if warm == 50 {
			t.Fatalf("gdbus monitor showed none of 50 ContainerStarted signals:\n%s", buf.String())
		}
		name := fmt.Sprintf("warmup%d", warm)
		e.start(t, name, nil)
		if seen(&buf, "ContainerStarted ('"+name+"'", time.Second) {
			warm++
			break
		}
	}
	path := e.start(t, "hog", nil)
	e.fake.softLimit("hog", 50<<20)
	e.fake.hardLimit("hog", 70<<20)
	e.fake.finish("hog", "killed-by-memory-limit", 0, syscall.SIGKILL)
	waitFor(t, &buf, ".ContainerExited")
	cancel()
	_ = cmd.Wait()
	out := buf.String()
	t.Logf("$ gdbus monitor --address %s --dest %s\n%s", e.bus.Address, dest, out)
	wantLines(t, out,
		fmt.Sprintf("/io/jackfruit/Jackfruit1: io.jackfruit.Jackfruit1.Manager.ContainerStarted ('hog', objectpath '%s')", path),
		fmt.Sprintf("/io/jackfruit/Jackfruit1: org.freedesktop.DBus.Properties.PropertiesChanged ('io.jackfruit.Jackfruit1.Manager', {'ContainerCount': <uint32 %d>}, @as [])", warm+1),
		"/io/jackfruit/Jackfruit1/container/hog: org.freedesktop.DBus.Properties.PropertiesChanged ('io.jackfruit.Jackfruit1.Container', {'SoftLimitExceeded': <true>}, @as [])",
		"io.jackfruit.Jackfruit1.Manager.MemoryLimitExceeded ('hog', objectpath '/io/jackfruit/Jackfruit1/container/hog', 'soft', uint64 52428800, uint64 41943040)",
		"io.jackfruit.Jackfruit1.Manager.MemoryLimitExceeded ('hog', objectpath '/io/jackfruit/Jackfruit1/container/hog', 'hard', uint64 73400320, uint64 67108864)",
		"'State': <'killed-by-memory-limit'>",
		"'ExitCode': <137>",
		"io.jackfruit.Jackfruit1.Manager.ContainerExited ('hog', objectpath '/io/jackfruit/Jackfruit1/container/hog', 'killed-by-memory-limit', 137)")
}

// seen reports whether s shows up in buf within d.
func seen(buf *testutil.SyncBuffer, s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); !strings.Contains(buf.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, buf *testutil.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 10s in:\n%s", s, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
