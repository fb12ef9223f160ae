// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
)

// env is one private system-like bus with a Server attached for a fake core.
type env struct {
	bus    *testutil.Bus
	fake   *fakeManager
	srv    *dbusapi.Server
	client *dbus.Conn
	mgr    dbus.BusObject
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the bus policy allows only root to own io.jackfruit.Jackfruit1, and clients are run as nobody")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func setup(t *testing.T) *env {
	t.Helper()
	requireRoot(t)
	bus := testutil.StartDBus(t)
	fake := newFake()
	srv := dbusapi.New(fake, testLogger(t))
	if err := srv.Attach(bus.Conn(t)); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	client := bus.Conn(t)
	return &env{bus: bus, fake: fake, srv: srv, client: client, mgr: client.Object(dbusapi.BusName, dbusapi.ManagerPath)}
}

func (e *env) start(t *testing.T, name string, opts map[string]dbus.Variant) dbus.ObjectPath {
	t.Helper()
	if opts == nil {
		opts = map[string]dbus.Variant{}
	}
	var path dbus.ObjectPath
	err := e.mgr.Call(dbusapi.ManagerInterface+".StartContainer", 0, name, "", []string{"/bin/sh", "-c", "sleep 100"}, uint64(0), uint64(0), opts).Store(&path)
	if err != nil {
		t.Fatalf("StartContainer(%s): %v", name, err)
	}
	return path
}

// wantError checks that err is the named D-Bus error and that its message contains want.
func wantError(t *testing.T, err error, name, want string) {
	t.Helper()
	var derr dbus.Error
	if !errors.As(err, &derr) {
		var p *dbus.Error
		if !errors.As(err, &p) {
			t.Fatalf("got %v (%T), want D-Bus error %s", err, err, name)
		}
		derr = *p
	}
	msg := fmt.Sprint(derr.Body...)
	if derr.Name != name || !strings.Contains(msg, want) {
		t.Fatalf("got error %s %q, want %s containing %q", derr.Name, msg, name, want)
	}
}

func TestManagerMethods(t *testing.T) {
	e := setup(t)
	opts := map[string]dbus.Variant{
		"hostname":         dbus.MakeVariant("box"),
		"env":              dbus.MakeVariant([]string{"A=1", "B=2"}),
		"stop_timeout_sec": dbus.MakeVariant(uint32(3)),
		"cap_add":          dbus.MakeVariant([]string{"NET_ADMIN"}),
		"cap_drop":         dbus.MakeVariant([]string{"chown"}),
		"security_opt":     dbus.MakeVariant([]string{"no-new-privileges"}),
		"network":          dbus.MakeVariant("none"),
	}
	path := e.start(t, "web-1", opts)
	if path != "/io/jackfruit/Jackfruit1/container/web_2d1" {
		t.Fatalf("StartContainer returned %s", path)
	}
	ci, _ := e.fake.Get(t.Context(), internalRoot, "web-1")
	if ci.Hostname != "box" || !reflect.DeepEqual(ci.Env, []string{"A=1", "B=2"}) || ci.StopTimeout != 3*time.Second ||
		!reflect.DeepEqual(ci.Capabilities, []string{"NET_ADMIN", "chown"}) || ci.Seccomp != "no-new-privileges" || ci.Network != "none" {
		t.Fatalf("options not applied: %+v", ci)
	}

	var got dbus.ObjectPath
	if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainer", 0, "web-1").Store(&got); err != nil || got != path {
		t.Fatalf("GetContainer = %s, %v", got, err)
	}

	var list []struct {
		Name, State string
		Pid         uint32
		Path        dbus.ObjectPath
	}
	if err := e.mgr.Call(dbusapi.ManagerInterface+".ListContainers", 0).Store(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "web-1" || list[0].State != "running" || list[0].Pid != uint32(ci.Pid) || list[0].Path != path {
		t.Fatalf("ListContainers = %+v", list)
	}

	if err := e.mgr.Call(dbusapi.ManagerInterface+".KillContainer", 0, "web-1", int32(9)).Err; err != nil {
		t.Fatal(err)
	}
	var exit int32
	if err := e.client.Object(dbusapi.BusName, path).StoreProperty(dbusapi.ContainerInterface+".ExitCode", &exit); err != nil || exit != 137 {
		t.Fatalf("ExitCode after SIGKILL = %d, %v; want 137", exit, err)
	}
	if err := e.mgr.Call(dbusapi.ManagerInterface+".RemoveContainer", 0, "web-1").Err; err != nil {
		t.Fatal(err)
	}
	err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainer", 0, "web-1").Err
	wantError(t, err, "io.jackfruit.Jackfruit1.Error.NoSuchContainer", `"web-1"`)

	e.start(t, "db", nil)
	if err := e.mgr.Call(dbusapi.ManagerInterface+".StopContainer", 0, "db", uint32(1)).Err; err != nil {
		t.Fatal(err)
	}
	var state string
	if err := e.client.Object(dbusapi.BusName, dbusapi.ContainerPath("db")).StoreProperty(dbusapi.ContainerInterface+".State", &state); err != nil || state != "killed" {
		t.Fatalf("State after StopContainer = %q, %v", state, err)
	}
}

func TestErrors(t *testing.T) {
	e := setup(t)
	e.start(t, "hog", nil)
	call := func(method string, args ...any) error {
		return e.mgr.Call(dbusapi.ManagerInterface+"."+method, 0, args...).Err
	}
	noOpts := map[string]dbus.Variant{}
	cmd := []string{"/bin/true"}
	for _, tc := range []struct {
		what, errName, msg string
		err                error
	}{
		{"unknown container", "io.jackfruit.Jackfruit1.Error.NoSuchContainer", `"nope"`, call("StopContainer", "nope", uint32(0))},
		{"unknown container kill", "io.jackfruit.Jackfruit1.Error.NoSuchContainer", `"nope"`, call("KillContainer", "nope", int32(15))},
		{"unknown container remove", "io.jackfruit.Jackfruit1.Error.NoSuchContainer", `"nope"`, call("RemoveContainer", "nope")},
		{"invalid name", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `"../etc"`, call("StartContainer", "../etc", "", cmd, uint64(0), uint64(0), noOpts)},
		{"invalid name get", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `"a/b"`, call("GetContainer", "a/b")},
		{"empty name", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `""`, call("GetContainer", "")},
		{"duplicate", "io.jackfruit.Jackfruit1.Error.AlreadyExists", `"hog"`, call("StartContainer", "hog", "", cmd, uint64(0), uint64(0), noOpts)},
		{"remove running", "io.jackfruit.Jackfruit1.Error.InvalidState", "stop it first", call("RemoveContainer", "hog")},
		{"unknown option", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `unknown option "memory"`,
			call("StartContainer", "x", "", cmd, uint64(0), uint64(0), map[string]dbus.Variant{"memory": dbus.MakeVariant(uint64(1))})},
		{"option type", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `option "stop_timeout_sec" must be seconds as uint32 (type u), not type i`,
			call("StartContainer", "x", "", cmd, uint64(0), uint64(0), map[string]dbus.Variant{"stop_timeout_sec": dbus.MakeVariant(int32(5))})},
		{"option type env", "io.jackfruit.Jackfruit1.Error.InvalidArgument", `option "env" must be an array`,
			call("StartContainer", "x", "", cmd, uint64(0), uint64(0), map[string]dbus.Variant{"env": dbus.MakeVariant("A=1")})},
		{"wrong numeric type", "org.freedesktop.DBus.Error.InvalidArgs", "Invalid arguments 'si' to call io.jackfruit.Jackfruit1.Manager.StopContainer(), expecting 'su'.",
			call("StopContainer", "hog", int32(5))},
		{"wrong arg count", "org.freedesktop.DBus.Error.InvalidArgs", "", call("StartContainer", "hog")},
		{"wrong arg type", "org.freedesktop.DBus.Error.InvalidArgs", "", call("KillContainer", "hog", "TERM")},
		{"unknown method", "org.freedesktop.DBus.Error.UnknownMethod", "", call("Frobnicate")},
		{"bad signal", "io.jackfruit.Jackfruit1.Error.InvalidArgument", "invalid signal", call("KillContainer", "hog", int32(-3))},
	} {
		t.Run(tc.what, func(t *testing.T) { wantError(t, tc.err, tc.errName, tc.msg) })
	}
	// Nothing above changed the registry, and the server still answers.
	list, _ := e.fake.List(t.Context(), internalRoot, true)
	if len(list) != 1 || list[0].Name != "hog" || list[0].State != "running" {
		t.Fatalf("registry changed by refused calls: %+v", list)
	}
	if err := e.mgr.Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		t.Fatal(err)
	}
}

func TestContainerObject(t *testing.T) {
	e := setup(t)
	path := e.start(t, "9lives", map[string]dbus.Variant{"hostname": dbus.MakeVariant("cat")})
	if path != "/io/jackfruit/Jackfruit1/container/_39lives" {
		t.Fatalf("path %s", path)
	}
	obj := e.client.Object(dbusapi.BusName, path)
	e.fake.setRSS("9lives", 12345)

	var all map[string]dbus.Variant
	if err := obj.Call("org.freedesktop.DBus.Properties.GetAll", 0, dbusapi.ContainerInterface).Store(&all); err != nil {
		t.Fatal(err)
	}
	ci, _ := e.fake.Get(t.Context(), internalRoot, "9lives")
	want := map[string]any{
		"Name": "9lives", "Id": ci.ID, "State": "running", "Leader": uint32(ci.Pid), "ExitCode": int32(0),
		"Command": []string{"/bin/sh", "-c", "sleep 100"}, "Rootfs": "", "Hostname": "cat",
		"SoftLimit": uint64(40 << 20), "HardLimit": uint64(64 << 20), "MemoryRSS": uint64(12345),
		"SoftLimitExceeded": false, "StartedAt": uint64(ci.StartedAt.UnixMicro()), "FinishedAt": uint64(0),
		"Capabilities": []string{}, "Seccomp": "", "NoNewPrivileges": false, "Network": "",
		"MemoryCurrent": uint64(4 << 20), "ControlGroup": "/sys/fs/cgroup/jackfruit/containers/9lives",
		"MemoryLimitsEnforcedBy": "cgroup",
	}
	if len(all) != len(want) {
		t.Errorf("GetAll returned %d properties, want %d: %v", len(all), len(want), all)
	}
	for k, v := range want {
		if !reflect.DeepEqual(all[k].Value(), v) {
			t.Errorf("property %s = %#v, want %#v", k, all[k].Value(), v)
		}
	}
	// MemoryRSS is read from the core on every Get, not cached.
	e.fake.setRSS("9lives", 777)
	var rss uint64
	if err := obj.StoreProperty(dbusapi.ContainerInterface+".MemoryRSS", &rss); err != nil || rss != 777 {
		t.Fatalf("MemoryRSS = %d, %v; want 777", rss, err)
	}
	wantError(t, obj.SetProperty(dbusapi.ContainerInterface+".State", dbus.MakeVariant("exited")), "org.freedesktop.DBus.Error.PropertyReadOnly", "State")
	_, err := obj.GetProperty(dbusapi.ContainerInterface + ".Nope")
	wantError(t, err, "org.freedesktop.DBus.Error.UnknownProperty", "Nope")
	_, err = obj.GetProperty("org.example.Other.Nope")
	wantError(t, err, "org.freedesktop.DBus.Error.UnknownInterface", "org.example.Other")

	if err := obj.Call(dbusapi.ContainerInterface+".Kill", 0, int32(15)).Err; err != nil {
		t.Fatal(err)
	}
	var code int32
	if err := obj.StoreProperty(dbusapi.ContainerInterface+".ExitCode", &code); err != nil || code != 143 {
		t.Fatalf("ExitCode after SIGTERM = %d, %v", code, err)
	}
	if err := obj.Call(dbusapi.ContainerInterface+".Remove", 0).Err; err != nil {
		t.Fatal(err)
	}
	_, err = obj.GetProperty(dbusapi.ContainerInterface + ".State")
	wantError(t, err, "io.jackfruit.Jackfruit1.Error.NoSuchContainer", "9lives")
	err = obj.Call(dbusapi.ContainerInterface+".Stop", 0, uint32(0)).Err
	wantError(t, err, "io.jackfruit.Jackfruit1.Error.NoSuchContainer", "9lives")
	err = e.client.Object(dbusapi.BusName, path).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Err
	wantError(t, err, "org.freedesktop.DBus.Error.UnknownObject", "9lives")

	// A path that is not the canonical escape of any name is no object at all.
	err = e.client.Object(dbusapi.BusName, dbusapi.ContainerPathPrefix+"/_zz").Call(dbusapi.ContainerInterface+".Remove", 0).Err
	wantError(t, err, "org.freedesktop.DBus.Error.UnknownObject", "_zz")

	e.start(t, "db", nil)
	if err := e.client.Object(dbusapi.BusName, dbusapi.ContainerPath("db")).Call(dbusapi.ContainerInterface+".Stop", 0, uint32(2)).Err; err != nil {
		t.Fatal(err)
	}
}

func TestManagerProperties(t *testing.T) {
	e := setup(t)
	e.start(t, "a", nil)
	var all map[string]dbus.Variant
	if err := e.mgr.Call("org.freedesktop.DBus.Properties.GetAll", 0, dbusapi.ManagerInterface).Store(&all); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"Version": "1.2.3-test", "MonitorAvailable": false, "MemoryEnforcer": "", "BaseRootfs": "/var/lib/jackfruit/rootfs", "ContainerCount": uint32(1)}
	if len(all) != len(want) {
		t.Errorf("GetAll = %v", all)
	}
	for k, v := range want {
		if !reflect.DeepEqual(all[k].Value(), v) {
			t.Errorf("%s = %#v, want %#v", k, all[k].Value(), v)
		}
	}
}

// signalWaiter collects the jackfruit signals a client receives.
type signalWaiter struct {
	ch chan *dbus.Signal
}

func watchSignals(t *testing.T, conn *dbus.Conn) *signalWaiter {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(dbusapi.BusName)); err != nil {
		t.Fatal(err)
	}
	w := &signalWaiter{ch: make(chan *dbus.Signal, 256)}
	conn.Signal(w.ch)
	return w
}

// next returns the next signal named name (interface.member) on path, skipping others.
func (w *signalWaiter) next(t *testing.T, path dbus.ObjectPath, name string) *dbus.Signal {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-w.ch:
			if s.Path == path && s.Name == name {
				return s
			}
		case <-timeout:
			t.Fatalf("no %s signal on %s within 10s", name, path)
		}
	}
}

func TestSignals(t *testing.T) {
	e := setup(t)
	w := watchSignals(t, e.client)
	path := e.start(t, "hog", nil)

	s := w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerStarted")
	if !reflect.DeepEqual(s.Body, []any{"hog", path}) {
		t.Errorf("ContainerStarted body %v", s.Body)
	}
	s = w.next(t, dbusapi.ManagerPath, "org.freedesktop.DBus.Properties.PropertiesChanged")
	if s.Body[0] != dbusapi.ManagerInterface || !reflect.DeepEqual(s.Body[1], map[string]dbus.Variant{"ContainerCount": dbus.MakeVariant(uint32(1))}) {
		t.Errorf("manager PropertiesChanged body %v", s.Body)
	}

	e.fake.softLimit("hog", 42598400)
	s = w.next(t, path, "org.freedesktop.DBus.Properties.PropertiesChanged")
	if s.Body[0] != dbusapi.ContainerInterface || !reflect.DeepEqual(s.Body[1], map[string]dbus.Variant{"SoftLimitExceeded": dbus.MakeVariant(true)}) {
		t.Errorf("PropertiesChanged after soft limit: %v", s.Body)
	}
	s = w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".MemoryLimitExceeded")
	if !reflect.DeepEqual(s.Body, []any{"hog", path, "soft", uint64(42598400), uint64(40 << 20)}) {
		t.Errorf("MemoryLimitExceeded body %v", s.Body)
	}

	e.fake.finish("hog", "exited", 3, 0)
	s = w.next(t, path, "org.freedesktop.DBus.Properties.PropertiesChanged")
	changed := s.Body[1].(map[string]dbus.Variant)
	if changed["State"].Value() != "exited" || changed["ExitCode"].Value() != int32(3) || changed["Leader"].Value() != uint32(0) || changed["FinishedAt"].Value().(uint64) == 0 {
		t.Errorf("PropertiesChanged after exit: %v", changed)
	}
	if _, ok := changed["SoftLimitExceeded"]; ok {
		t.Errorf("unchanged SoftLimitExceeded announced again: %v", changed)
	}
	s = w.next(t, dbusapi.ManagerPath, dbusapi.ManagerInterface+".ContainerExited")
	if !reflect.DeepEqual(s.Body, []any{"hog", path, "exited", int32(3)}) {
		t.Errorf("ContainerExited body %v", s.Body)
	}

	if err := e.mgr.Call(dbusapi.ManagerInterface+".RemoveContainer", 0, "hog").Err; err != nil {
		t.Fatal(err)
	}
	s = w.next(t, dbusapi.ManagerPath, "org.freedesktop.DBus.Properties.PropertiesChanged")
	if !reflect.DeepEqual(s.Body[1], map[string]dbus.Variant{"ContainerCount": dbus.MakeVariant(uint32(0))}) {
		t.Errorf("manager PropertiesChanged after remove: %v", s.Body)
	}
}

// TestConcurrentCalls makes 500 calls at once from 20 connections (the system bus allows 128
// pending replies per connection, so one connection could not have 500 outstanding).
func TestConcurrentCalls(t *testing.T) {
	e := setup(t)
	for i := range 5 {
		e.start(t, fmt.Sprintf("c%d", i), nil)
	}
	const conns, perConn = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, conns*perConn)
	for c := range conns {
		conn := e.bus.Conn(t)
		for i := range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("c%d", (c+i)%5)
				var err error
				switch i % 4 {
				case 0:
					var list []any
					err = conn.Object(dbusapi.BusName, dbusapi.ManagerPath).Call(dbusapi.ManagerInterface+".ListContainers", 0).Store(&list)
				case 1:
					var p dbus.ObjectPath
					err = conn.Object(dbusapi.BusName, dbusapi.ManagerPath).Call(dbusapi.ManagerInterface+".GetContainer", 0, name).Store(&p)
				case 2:
					var st string
					err = conn.Object(dbusapi.BusName, dbusapi.ContainerPath(name)).StoreProperty(dbusapi.ContainerInterface+".State", &st)
				case 3:
					var xml string
					err = conn.Object(dbusapi.BusName, dbusapi.ContainerPath(name)).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml)
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if err != nil {
			t.Error(err)
		}
	}
	if n != conns*perConn {
		t.Fatalf("%d calls completed, want %d", n, conns*perConn)
	}
}

func TestNameAlreadyOwned(t *testing.T) {
	e := setup(t)
	second := dbusapi.New(e.fake, testLogger(t))
	conn := e.bus.Conn(t)
	err := second.Attach(conn)
	if err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second Attach: %v, want an error saying the name is owned", err)
	}
	// The failed Attach left no subscription behind.
	e.fake.mu.Lock()
	subs := len(e.fake.subs)
	e.fake.mu.Unlock()
	if subs != 1 {
		t.Errorf("%d event subscriptions after a failed Attach, want 1", subs)
	}
	// And the first server still answers.
	if err := e.mgr.Call(dbusapi.ManagerInterface+".ListContainers", 0).Err; err != nil {
		t.Fatal(err)
	}
}

func TestCloseReleasesName(t *testing.T) {
	e := setup(t)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	var has bool
	if err := e.client.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, dbusapi.BusName).Store(&has); err != nil || has {
		t.Fatalf("NameHasOwner after Close = %v, %v", has, err)
	}
	// A new server can take over on a new connection.
	srv := dbusapi.New(e.fake, testLogger(t))
	if err := srv.Attach(e.bus.Conn(t)); err != nil {
		t.Fatal(err)
	}
	srv.Close()
}
