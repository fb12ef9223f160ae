// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
)

// busContainers lists the containers through the supervisor's D-Bus interface on a fresh
// connection; ok is false while the bus or the name is not there.
func busContainers(t *testing.T, bus *testutil.Bus) (names []string, ok bool) {
	t.Helper()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		return nil, false
	}
	defer conn.Close()
	var list []struct {
		Name, State string
		Pid         uint32
		Path        dbus.ObjectPath
	}
	call := conn.Object(dbusapi.BusName, dbusapi.ManagerPath).Call(dbusapi.ManagerInterface+".ListContainers", 0)
	if call.Err != nil || call.Store(&list) != nil {
		return nil, false
	}
	for _, c := range list {
		names = append(names, c.Name)
	}
	return names, true
}

// waitBusContainers waits until the D-Bus interface answers with want among the containers.
func waitBusContainers(t *testing.T, e *env, bus *testutil.Bus, want string, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		names, ok := busContainers(t, bus)
		if ok && strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the D-Bus interface did not list %q within 15 s (answered: %v, %v); supervisor log:\n%s", what, want, ok, names, e.supLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A restart of the dbus-daemon ends the supervisor's connection. The supervisor must come
// back on the new bus by itself, with a new server: methods answer, the registry is the
// current one, and signals flow again, also after a second restart.
func TestSupervisorReconnectsToDBus(t *testing.T) {
	testutil.Rootfs(t)
	bus := testutil.StartDBus(t)
	e := startSupervisorBus(t, "--dbus-address", bus.Address)
	e.ok("start", "before", "/bin/sleep", "1000")
	waitBusContainers(t, e, bus, "before", "at start")

	for round := 1; round <= 2; round++ {
		bus.Restart(t)
		waitBusContainers(t, e, bus, "before", "after a bus restart")

		// Signals come from the new server: a container started now is announced.
		conn := bus.Conn(t)
		if err := conn.AddMatchSignal(dbus.WithMatchInterface(dbusapi.ManagerInterface), dbus.WithMatchMember("ContainerStarted")); err != nil {
			t.Fatal(err)
		}
		sigs := make(chan *dbus.Signal, 16)
		conn.Signal(sigs)
		name := "after" + string(rune('0'+round))
		e.ok("start", name, "/bin/sleep", "1000")
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case s := <-sigs:
				if len(s.Body) > 0 && s.Body[0] == name {
					break wait
				}
			case <-timeout:
				t.Fatalf("round %d: no ContainerStarted signal for %s after the bus restart; supervisor log:\n%s", round, name, e.supLog)
			}
		}
		conn.Close()
	}

	log := e.supLog.String()
	t.Logf("supervisor log:\n%s", log)
	for phrase, want := range map[string]int{
		"lost the D-Bus connection; reconnecting": 2, // one warning per loss
		"D-Bus interface exported again":          2,
		"no D-Bus":                                0, // the bus was there at start
	} {
		if n := strings.Count(log, phrase); n != want {
			t.Errorf("supervisor log has %q %d times, want %d:\n%s", phrase, n, want, log)
		}
	}
	e.ok("stop", "-t", "0", "before", "after1", "after2")
}

// Without a bus the supervisor says so once while it keeps retrying in the background, and
// serves the socket all along.
func TestSupervisorWithoutBusWarnsOnce(t *testing.T) {
	testutil.Rootfs(t)
	e := startSupervisorBus(t, "--dbus-address", "unix:path="+t.TempDir()+"/no-bus", "--log-level", "debug")
	e.ok("run", "--rm", "probe", "/bin/true")
	// Retries happen at 0.25, 0.75 and 1.75 s: wait until at least two of them are logged.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.supLog.String(), "D-Bus still unreachable") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no retries logged:\n%s", e.supLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log := e.supLog.String()
	if n := strings.Count(log, "no D-Bus"); n != 1 {
		t.Errorf("\"no D-Bus\" said %d times, want once:\n%s", n, log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "D-Bus still unreachable") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("a retry logged above debug level: %s", line)
		}
	}
	// The cleanup checks that SIGTERM still ends the supervisor, with status 0.
}
