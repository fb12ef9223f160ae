// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/supervisor"
)

// realEnv is the real supervisor (real namespaces, overlay, busybox rootfs) behind the D-Bus
// adapter on a private system-like bus.
type realEnv struct {
	*env
	rootfs string
	sup    *supervisor.Supervisor
}

func setupReal(t *testing.T, mod ...func(*supervisor.Config)) *realEnv {
	t.Helper()
	rootfs := testutil.Rootfs(t)
	dir := t.TempDir()
	cfg := supervisor.Config{
		StateDir:       filepath.Join(dir, "state"),
		RunDir:         filepath.Join(dir, "run"),
		BaseRootfs:     rootfs,
		MonitorDevice:  supervisor.MonitorDisabled,
		DisableJournal: true, // the journal side is tested in service/; keep the host journal clean
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	for _, f := range mod {
		f(&cfg)
	}
	sup, err := supervisor.New(cfg)
	if err != nil {
		t.Fatalf("supervisor.New: %v", err)
	}
	t.Cleanup(func() { sup.Close() })
	bus := testutil.StartDBus(t)
	srv := dbusapi.New(sup, testLogger(t))
	if err := srv.Attach(bus.Conn(t)); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	client := bus.Conn(t)
	return &realEnv{
		env:    &env{bus: bus, srv: srv, client: client, mgr: client.Object(dbusapi.BusName, dbusapi.ManagerPath)},
		rootfs: rootfs,
		sup:    sup,
	}
}

func (e *realEnv) prop(t *testing.T, path dbus.ObjectPath, name string) any {
	t.Helper()
	v, err := e.client.Object(dbusapi.BusName, path).GetProperty(dbusapi.ContainerInterface + "." + name)
	if err != nil {
		t.Fatalf("Get %s on %s: %v", name, path, err)
	}
	return v.Value()
}

// TestRealLifecycle drives real containers with busctl and gdbus, and checks the signals a
// watching client receives.
func TestRealLifecycle(t *testing.T) {
	e := setupReal(t)
	w := watchSignals(t, e.client)
	a := "--address=" + e.bus.Address

	// On the base rootfs overlay ("") and on a rootfs given as is.
	out := mustSucceed(t, run(t, nil, "busctl", a, "call", "--", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}",
		"hog", "", "4", "memory_hog", "--step-mib=4", "--max-mib=24", "--hold", "0", "0", "1", "hostname", "s", "hoggy"))
	if strings.TrimSpace(out) != `o "/io/jackfruit/Jackfruit1/container/hog"` {
		t.Fatalf("StartContainer printed %q", out)
	}
	hog := dbus.ObjectPath("/io/jackfruit/Jackfruit1/container/hog")
	s := w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerStarted")
	if s.Body[0] != "hog" || s.Body[1] != hog {
		t.Errorf("ContainerStarted %v", s.Body)
	}
	mustSucceed(t, run(t, nil, "gdbus", "call", "--address", e.bus.Address, "--dest", dest, "--object-path", mgrPath,
		"--method", mgrIf+".StartContainer", "short-lived", e.rootfs, "['/bin/sh', '-c', 'echo hi; exit 3']", "0", "0", "{}"))
	short := dbusapi.ContainerPath("short-lived")
	if short != "/io/jackfruit/Jackfruit1/container/short_2dlived" {
		t.Fatalf("path %s", short)
	}

	// The short-lived one exits with 3: PropertiesChanged, then ContainerExited.
	s = w.next(t, short, "org.freedesktop.DBus.Properties.PropertiesChanged")
	changed := s.Body[1].(map[string]dbus.Variant)
	if changed["State"].Value() != "exited" || changed["ExitCode"].Value() != int32(3) {
		t.Errorf("PropertiesChanged on exit: %v", changed)
	}
	s = w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	if fmt.Sprint(s.Body) != fmt.Sprintf("[short-lived %s exited 3]", short) {
		t.Errorf("ContainerExited %v", s.Body)
	}
	if fa := e.prop(t, short, "FinishedAt").(uint64); fa < e.prop(t, short, "StartedAt").(uint64) || time.Since(time.UnixMicro(int64(fa))) > time.Minute {
		t.Errorf("FinishedAt %d not a recent µs timestamp", fa)
	}

	// The hog is running with the host pid of its init, its hostname, and its memory visible live.
	pid := e.prop(t, hog, "Leader").(uint32)
	if pid == 0 {
		t.Fatal("Leader is 0 for a running container")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(int(pid))); err != nil {
		t.Errorf("Leader %d is not a host process: %v", pid, err)
	}
	if h := e.prop(t, hog, "Hostname"); h != "hoggy" {
		t.Errorf("Hostname %v", h)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, string(hog), ctIf, "MemoryRSS"))
		rss, _ := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(out), "t "), 10, 64)
		if rss >= 20<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MemoryRSS stayed at %d, memory_hog holds 24 MiB", rss)
		}
		time.Sleep(500 * time.Millisecond)
	}

	out = mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "ListContainers"))
	wantLines(t, out, fmt.Sprintf(`"hog" "running" %d "/io/jackfruit/Jackfruit1/container/hog"`, pid),
		`"short-lived" "exited" 0 "/io/jackfruit/Jackfruit1/container/short_2dlived"`)
	out = mustSucceed(t, run(t, nil, "busctl", a, "tree", dest))
	wantLines(t, out, "/io/jackfruit/Jackfruit1/container/hog", "/io/jackfruit/Jackfruit1/container/short_2dlived")

	// Stop over the container object: memory_hog ends on SIGTERM.
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, string(hog), ctIf, "Stop", "u", "5"))
	out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, string(hog), ctIf, "State", "ExitCode", "Leader"))
	t.Logf("after Stop: %s", out)
	if !strings.HasPrefix(out, `s "killed"`) && !strings.HasPrefix(out, `s "exited"`) || !strings.HasSuffix(out, "u 0\n") {
		t.Errorf("after Stop: %q", out)
	}
	s = w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	if s.Body[0] != "hog" {
		t.Errorf("ContainerExited %v", s.Body)
	}

	for _, name := range []string{"hog", "short-lived"} {
		mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "RemoveContainer", "s", name))
	}
	mustFail(t, run(t, nil, "busctl", a, "introspect", dest, string(hog)), `no such container "hog"`)
	out = mustSucceed(t, run(t, nil, "busctl", a, "get-property", dest, mgrPath, mgrIf, "ContainerCount", "MonitorAvailable"))
	if out != "u 0\nb false\n" {
		t.Errorf("manager properties %q", out)
	}
}

// TestRealInitAndRemove: the init and remove options, podman's --init and --rm over the bus.
func TestRealInitAndRemove(t *testing.T) {
	e := setupReal(t)
	w := watchSignals(t, e.client)
	g := func(method string, args ...string) testutil.Result {
		return run(t, nil, "gdbus", append([]string{"call", "--address", e.bus.Address, "--dest", dest, "--object-path", mgrPath, "--method", mgrIf + "." + method}, args...)...)
	}
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'remove': <'yes'>}"), `option "remove" must be a boolean (type b), not type s`)
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'init': <1>}"), `option "init" must be a boolean (type b), not type i`)

	if _, err := os.Stat(supervisor.DefaultInitBinary); err == nil {
		mustSucceed(t, g("StartContainer", "tiny", "", "['/bin/sleep', '1000']", "0", "0", "{'init': <true>}"))
		leader := e.prop(t, dbusapi.ContainerPath("tiny"), "Leader").(uint32)
		// The init is exec'd as /dev/init in the container; sleep is its child.
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", leader)); strings.TrimSpace(string(comm)) != "init" {
			t.Errorf("with init, the container's PID 1 is %q", comm)
		}
		if ci, err := e.sup.Get(t.Context(), internalRoot, "tiny"); err != nil || !ci.Init {
			t.Errorf("with init: %+v %v", ci, err)
		}
		mustSucceed(t, g("KillContainer", "tiny", "9"))
		w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	} else {
		t.Log("tini is not installed (test/deps.sh installs it): the init option is checked for its type only")
	}

	mustSucceed(t, g("StartContainer", "once", "", "['/bin/sh', '-c', 'exit 3']", "0", "0", "{'remove': <true>}"))
	s := w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	if fmt.Sprint(s.Body) != "[once /io/jackfruit/Jackfruit1/container/once exited 3]" {
		t.Errorf("ContainerExited %v", s.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := g("GetContainer", "once")
		if r.Err != nil && strings.Contains(r.Stderr, "io.jackfruit.Jackfruit1.Error.NoSuchContainer") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a container started with remove is still there 10 s after it exited: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRealKillAndErrors: kill codes and the core's refusals, named as on the socket.
func TestRealKillAndErrors(t *testing.T) {
	e := setupReal(t)
	w := watchSignals(t, e.client)
	g := func(method string, args ...string) testutil.Result {
		return run(t, nil, "gdbus", append([]string{"call", "--address", e.bus.Address, "--dest", dest, "--object-path", mgrPath, "--method", mgrIf + "." + method}, args...)...)
	}
	mustSucceed(t, g("StartContainer", "sleeper", "", "['/bin/sleep', '1000']", "0", "0", "{'stop_timeout_sec': <uint32 2>}"))
	mustFail(t, g("StartContainer", "sleeper", "", "['/bin/sleep', '1000']", "0", "0", "{}"), "io.jackfruit.Jackfruit1.Error.AlreadyExists")
	mustFail(t, g("StartContainer", "x", "", "['/no/such/cmd']", "0", "0", "{}"), "io.jackfruit.Jackfruit1.Error.CommandNotFound")
	mustFail(t, g("StartContainer", "x", "/no/such/rootfs", "['/bin/true']", "0", "0", "{}"), "io.jackfruit.Jackfruit1.Error.InvalidArgument")
	mustFail(t, g("StartContainer", "bad/name", "", "['/bin/true']", "0", "0", "{}"), "io.jackfruit.Jackfruit1.Error.InvalidArgument")
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "uint64 99999999", "uint64 1048576", "{}"), "io.jackfruit.Jackfruit1.Error.InvalidArgument")
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'colour': <'red'>}"), `unknown option "colour"`)
	// The confinement options: the core names the bad value; nothing is created.
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'cap_add': <['NET_ADMIN', 'BOGUS']>}"), `io.jackfruit.Jackfruit1.Error.InvalidArgument: container "x": cap-add: unknown capability "BOGUS"`)
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'network': <'bridge'>}"), `unknown network mode "bridge"`)
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'security_opt': <['seccomp']>}"), `seccomp needs a value`)
	mustFail(t, g("StartContainer", "x", "", "['/bin/true']", "0", "0", "{'cap_drop': <'ALL'>}"), `option "cap_drop" must be an array of strings (type as)`)
	mustFail(t, g("KillContainer", "nope", "9"), `io.jackfruit.Jackfruit1.Error.NoSuchContainer`)
	mustFail(t, g("KillContainer", "sleeper", "999"), "io.jackfruit.Jackfruit1.Error.InvalidArgument")
	mustFail(t, g("RemoveContainer", "sleeper"), "io.jackfruit.Jackfruit1.Error.InvalidState")

	mustSucceed(t, g("KillContainer", "sleeper", "9"))
	s := w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	if fmt.Sprint(s.Body) != "[sleeper /io/jackfruit/Jackfruit1/container/sleeper killed 137]" {
		t.Errorf("ContainerExited %v", s.Body)
	}
	if c := e.prop(t, "/io/jackfruit/Jackfruit1/container/sleeper", "ExitCode"); c != int32(137) {
		t.Errorf("ExitCode %v", c)
	}
	list, err := e.sup.List(t.Context(), internalRoot, true)
	if err != nil || len(list) != 1 {
		t.Fatalf("refused calls changed the registry: %v %v", list, err)
	}
}

// TestRealConfinement: the confinement options of StartContainer reach the container, and its
// properties show what it got.
func TestRealConfinement(t *testing.T) {
	e := setupReal(t)
	out := mustSucceed(t, run(t, nil, "gdbus", "call", "--address", e.bus.Address, "--dest", dest, "--object-path", mgrPath,
		"--method", mgrIf+".StartContainer", "boxed", "", "['/bin/sh', '-c', 'grep -e ^CapEff -e ^NoNewPrivs -e ^Seccomp: /proc/self/status; ls /sys/class/net']", "0", "0",
		"{'cap_drop': <['ALL']>, 'cap_add': <['cap_kill', 'SETUID']>, 'security_opt': <['no-new-privileges']>, 'network': <'none'>}"))
	path := dbusapi.ContainerPath("boxed")
	if strings.TrimSpace(out) != "(objectpath '"+string(path)+"',)" {
		t.Fatalf("StartContainer printed %q", out)
	}
	for name, want := range map[string]any{
		"Capabilities":    []string{"CAP_KILL", "CAP_SETUID"},
		"NoNewPrivileges": true,
		"Network":         "none",
		"Seccomp":         "default",
	} {
		if got := e.prop(t, path, name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if _, err := e.sup.Wait(t.Context(), internalRoot, "boxed"); err != nil {
		t.Fatal(err)
	}
	var lines []string
	e.sup.Logs(t.Context(), internalRoot, "boxed", service.LogOptions{}, func(l service.LogLine) error {
		lines = append(lines, string(l.Data))
		return nil
	})
	if got := strings.Join(lines, "|"); got != "CapEff:\t00000000000000a0|NoNewPrivs:\t1|Seccomp:\t2|lo" {
		t.Errorf("the container saw %q", got)
	}
}

// TestRealUnprivileged: nobody may read but not write; with the admin group configured, a
// member may write, exactly as on the control socket.
func TestRealUnprivileged(t *testing.T) {
	nobody := testutil.Nobody(t)
	e := setupReal(t)
	a := "--address=" + e.bus.Address
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}", "sleeper", "", "2", "/bin/sleep", "1000", "0", "0", "0"))
	mustSucceed(t, run(t, nobody, "busctl", a, "call", dest, mgrPath, mgrIf, "ListContainers"))
	mustSucceed(t, run(t, nobody, "busctl", a, "get-property", dest, "/io/jackfruit/Jackfruit1/container/sleeper", ctIf, "State", "MemoryRSS"))
	mustSucceed(t, run(t, nobody, "busctl", a, "introspect", dest, "/io/jackfruit/Jackfruit1/container/sleeper"))
	mustFail(t, run(t, nobody, "busctl", a, "call", dest, mgrPath, mgrIf, "KillContainer", "si", "sleeper", "9"), "uid 65534")
	mustFail(t, run(t, nobody, "gdbus", "call", "--address", e.bus.Address, "--dest", dest, "--object-path", mgrPath,
		"--method", mgrIf+".StopContainer", "sleeper", "0"), "GDBus.Error:io.jackfruit.Jackfruit1.Error.AccessDenied")
	if st := e.prop(t, "/io/jackfruit/Jackfruit1/container/sleeper", "State"); st != "running" {
		t.Fatalf("State %v after refused writes", st)
	}
	// sleep as pid 1 ignores SIGTERM; don't make cleanup wait for the stop timeout.
	mustSucceed(t, run(t, nil, "busctl", a, "call", dest, mgrPath, mgrIf, "KillContainer", "si", "sleeper", "9"))

	// nobody's primary group is the admin group here.
	grp := groupName(t, nobody.Gid)
	e2 := setupReal(t, func(c *supervisor.Config) { c.AdminGroup = grp })
	a2 := "--address=" + e2.bus.Address
	mustSucceed(t, run(t, nobody, "busctl", a2, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}", "mine", "", "2", "/bin/sleep", "1000", "0", "0", "0"))
	mustSucceed(t, run(t, nobody, "busctl", a2, "call", dest, mgrPath, mgrIf, "StopContainer", "su", "mine", "1"))
	mustSucceed(t, run(t, nobody, "busctl", a2, "call", dest, mgrPath, mgrIf, "RemoveContainer", "s", "mine"))
}

func groupName(t *testing.T, gid uint32) string {
	t.Helper()
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[2] == strconv.Itoa(int(gid)) {
			return f[0]
		}
	}
	t.Fatalf("no group with gid %d", gid)
	return ""
}

// TestRealConcurrent starts 20 containers at once over the bus and reads them with 500
// concurrent calls from 20 connections while they run.
func TestRealConcurrent(t *testing.T) {
	e := setupReal(t)
	var wg sync.WaitGroup
	errs := make(chan error, 600)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.mgr.Call(dbusapi.ManagerInterface+".StartContainer", 0, fmt.Sprintf("c%02d", i), "", []string{"/bin/sleep", "1000"},
				uint64(0), uint64(0), map[string]dbus.Variant{}).Err
		}()
	}
	wg.Wait()
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for c := range 20 {
		conn := e.bus.Conn(t)
		for i := range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("c%02d", (c+i)%20)
				switch i % 3 {
				case 0:
					var list []any
					errs <- conn.Object(dbusapi.BusName, dbusapi.ManagerPath).Call(dbusapi.ManagerInterface+".ListContainers", 0).Store(&list)
				case 1:
					var all map[string]dbus.Variant
					errs <- conn.Object(dbusapi.BusName, dbusapi.ContainerPath(name)).Call("org.freedesktop.DBus.Properties.GetAll", 0, dbusapi.ContainerInterface).Store(&all)
				case 2:
					var rss uint64
					errs <- conn.Object(dbusapi.BusName, dbusapi.ContainerPath(name)).StoreProperty(dbusapi.ContainerInterface+".MemoryRSS", &rss)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i := range 20 {
		if err := e.mgr.CallWithContext(ctx, dbusapi.ManagerInterface+".KillContainer", 0, fmt.Sprintf("c%02d", i), int32(9)).Err; err != nil {
			t.Error(err)
		}
	}
}
