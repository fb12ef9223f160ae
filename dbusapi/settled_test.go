// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/service"
)

// A bus client that removes a container the moment its State property reads final: the
// removal succeeds every time, ContainerExited was already sent, and the adapter keeps no
// ghost of the removed container (a ghost makes the next container of the same name look
// like a change of the old one: a PropertiesChanged right after ContainerStarted).
func TestRemoveAsSoonAsFinalOverDBus(t *testing.T) {
	e := setupReal(t)
	w := watchSignals(t, e.client)
	path := dbusapi.ContainerPath("loop")
	const n = 30
	for i := 0; i < n; i++ {
		var p dbus.ObjectPath
		if err := e.mgr.Call(dbusapi.ManagerInterface+".StartContainer", 0, "loop", e.rootfs, []string{"true"}, uint64(0), uint64(0), map[string]dbus.Variant{}).Store(&p); err != nil {
			t.Fatalf("try %d: StartContainer: %v", i, err)
		}
		obj := e.client.Object(dbusapi.BusName, path)
		for deadline := time.Now().Add(20 * time.Second); ; {
			v, err := obj.GetProperty(dbusapi.ContainerInterface + ".State")
			if err != nil {
				t.Fatalf("try %d: State: %v", i, err)
			}
			if v.Value() == "exited" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("try %d: container still %v", i, v.Value())
			}
		}
		if err := e.mgr.Call(dbusapi.ManagerInterface+".RemoveContainer", 0, "loop").Err; err != nil {
			t.Fatalf("try %d: RemoveContainer as soon as State read exited: %v", i, err)
		}
	}
	// The signals of each round, in order: ContainerStarted, PropertiesChanged to exited,
	// ContainerExited; nothing else.
	for i := 0; i < n; i++ {
		for _, want := range []string{"ContainerStarted", "PropertiesChanged", "ContainerExited"} {
			var s *dbus.Signal
			for s == nil {
				select {
				case s = <-w.ch:
					if s.Path != path && s.Path != dbusapi.ManagerPath || s.Path == dbusapi.ManagerPath && s.Name == "org.freedesktop.DBus.Properties.PropertiesChanged" {
						s = nil // the manager's own properties (counts) change too
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: no %s signal", i, want)
				}
			}
			if got := s.Name[len(s.Name)-len(want):]; got != want {
				t.Fatalf("round %d: got %s %v, want %s", i, s.Name, s.Body, want)
			}
			if want == "PropertiesChanged" {
				if st := s.Body[1].(map[string]dbus.Variant)["State"]; st.Value() != "exited" {
					t.Fatalf("round %d: PropertiesChanged %v, want State exited (a ghost of the removed container?)", i, s.Body[1])
				}
			}
		}
	}
}

// The core alone decides about signals: 99 is its InvalidArgument (as on the socket), and 0
// (no signal chosen) is its default, SIGKILL.
func TestKillRulesAreTheCores(t *testing.T) {
	e := setupReal(t)
	if err := e.mgr.Call(dbusapi.ManagerInterface+".StartContainer", 0, "k", e.rootfs, []string{"sleep", "1000"}, uint64(0), uint64(0), map[string]dbus.Variant{}).Err; err != nil {
		t.Fatal(err)
	}
	err := e.mgr.Call(dbusapi.ManagerInterface+".KillContainer", 0, "k", int32(99)).Err
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != dbusapi.ErrorPrefix+"InvalidArgument" {
		t.Errorf("KillContainer 99: %v, want %sInvalidArgument", err, dbusapi.ErrorPrefix)
	}
	if err := e.mgr.Call(dbusapi.ManagerInterface+".KillContainer", 0, "k", int32(0)).Err; err != nil {
		t.Fatalf("KillContainer 0: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if info, err := e.sup.Wait(ctx, service.Caller{}, "k"); err != nil || info.Signal != "SIGKILL" {
		t.Errorf("after KillContainer 0: %+v %v, want SIGKILL", info, err)
	}
}
