// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"errors"
	"maps"
	"reflect"
	"slices"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// loop turns the core's event stream into signals until stop is closed or the stream ends.
func (s *Server) loop(conn *dbus.Conn, events <-chan service.Event, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			s.handleEvent(conn, ev)
		}
	}
}

func (s *Server) handleEvent(conn *dbus.Conn, ev service.Event) {
	ci := ev.Container
	path := ContainerPath(ci.Name)
	switch ev.Type {
	case service.EventStarted:
		s.emit(conn, ManagerPath, ManagerInterface+".ContainerStarted", ci.Name, path)
		s.containerChanged(conn, ci)
	case service.EventExited:
		// Properties first: a client reacting to ContainerExited by reading them, or waiting
		// for State to change, sees a story in the same order as the core's.
		s.containerChanged(conn, ci)
		s.emit(conn, ManagerPath, ManagerInterface+".ContainerExited", ci.Name, path, string(ci.State), exitCode(ci))
	case service.EventSoftLimit, service.EventHardLimit:
		kind := "soft"
		if ev.Type == service.EventHardLimit {
			kind = "hard"
		}
		s.containerChanged(conn, ci)
		s.emit(conn, ManagerPath, ManagerInterface+".MemoryLimitExceeded", ci.Name, path, kind, ev.RSS, ev.Limit)
	case service.EventRemoved:
		delete(s.lastContainer, ci.Name)
	default:
		s.containerChanged(conn, ci)
	}
	s.managerChanged(conn)
}

// containerChanged emits PropertiesChanged for the container's change-signalling properties
// that differ from what was last emitted.
func (s *Server) containerChanged(conn *dbus.Conn, ci service.ContainerInfo) {
	now := pick(containerProps(ci), containerEmitted)
	prev, known := s.lastContainer[ci.Name]
	s.lastContainer[ci.Name] = now
	if !known {
		// A container first seen now was created after Attach: everything "changed" from
		// not existing, but PropertiesChanged on a fresh object would only be noise.
		return
	}
	if changed := diff(prev, now); len(changed) > 0 {
		s.emit(conn, ContainerPath(ci.Name), propertiesInterface+".PropertiesChanged", ContainerInterface, changed, []string{})
	}
}

func (s *Server) managerChanged(conn *dbus.Conn) {
	now := pick(managerProps(s.m.Status()), managerEmitted)
	changed := diff(s.lastManager, now)
	s.lastManager = now
	if len(changed) > 0 {
		s.emit(conn, ManagerPath, propertiesInterface+".PropertiesChanged", ManagerInterface, changed, []string{})
	}
}

// emit sends one signal. Failures are reported once per outage, not once per signal: when
// the bus goes away (dbus-daemon restarted or killed) every later event would fail the same
// way and bury the supervisor's log, while the control socket goes on serving.
func (s *Server) emit(conn *dbus.Conn, path dbus.ObjectPath, name string, values ...any) {
	err := conn.Emit(path, name, values...)
	switch {
	case err == nil:
		if s.emitFailing {
			s.emitFailing = false
			s.log.Info("D-Bus signals are sent again")
		}
	case s.emitFailing:
		s.log.Debug("cannot emit D-Bus signal", "signal", name, "path", path, "err", err)
	case errors.Is(err, dbus.ErrClosed):
		s.emitFailing = true
		s.log.Warn("lost the D-Bus connection: no more D-Bus signals or calls; the control socket still serves", "err", err)
	default:
		s.emitFailing = true
		s.log.Warn("cannot emit D-Bus signals; further failures are not reported until one succeeds", "signal", name, "path", path, "err", err)
	}
}

// pick returns the subset of props named in names.
func pick(props map[string]dbus.Variant, names []string) map[string]dbus.Variant {
	out := make(map[string]dbus.Variant, len(names))
	for _, n := range names {
		out[n] = props[n]
	}
	return out
}

// diff returns the entries of now whose value differs from prev.
func diff(prev, now map[string]dbus.Variant) map[string]dbus.Variant {
	out := map[string]dbus.Variant{}
	for _, k := range slices.Sorted(maps.Keys(now)) {
		p, ok := prev[k]
		if !ok || p.Signature() != now[k].Signature() || !reflect.DeepEqual(p.Value(), now[k].Value()) {
			out[k] = now[k]
		}
	}
	return out
}
