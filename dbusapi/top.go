// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"maps"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// processEntry is one element of GetContainerProcesses' a(uuuussttas): a process as
// `jackfruit top` shows it.
type processEntry struct {
	Pid       uint32 // inside the container
	PPid      uint32 // inside the container; 0 when the parent is outside it
	HostPid   uint32
	UID       uint32
	User      string
	TTY       string
	ElapsedNs uint64
	CPUTimeNs uint64
	Args      []string
}

// statsEntry is GetContainerStats' (sssttttttbstuu): one sample of a container's resource use.
type statsEntry struct {
	Name           string
	ID             string
	State          string
	TimeUsec       uint64 // CLOCK_REALTIME µs, as systemd's timestamps
	RSS            uint64
	PeakRSS        uint64
	MemoryCurrent  uint64
	SoftLimit      uint64
	HardLimit      uint64
	LimitsEnforced bool
	EnforcedBy     string
	CPUTimeNs      uint64
	Tasks          uint32
	Processes      uint32
}

func processesToDBus(ps []service.Process) []processEntry {
	out := make([]processEntry, 0, len(ps))
	for _, p := range ps {
		out = append(out, processEntry{uint32(max(p.Pid, 0)), uint32(max(p.PPid, 0)), uint32(max(p.HostPid, 0)),
			p.UID, p.User, p.TTY, uint64(max(p.Elapsed, 0)), uint64(max(p.CPUTime, 0)), p.Args})
	}
	return out
}

func statsToDBus(s service.ContainerStats) statsEntry {
	return statsEntry{s.Name, s.ID, string(s.State), uint64(max(s.Time.UnixMicro(), 0)), s.RSS, s.PeakRSS, s.MemoryCurrent,
		s.SoftLimit, s.HardLimit, s.LimitsEnforced, s.EnforcedBy, uint64(max(s.CPUTime, 0)), uint32(max(s.Tasks, 0)), uint32(max(s.Processes, 0))}
}

// top and stats are reads, like GetContainer: everyone may call them.
func (s *Server) top(conn *dbus.Conn, msg *dbus.Message, name string) ([]processEntry, *dbus.Error) {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return nil, derr
	}
	ps, err := s.m.Top(s.ctx, caller, name)
	if err != nil {
		return nil, coreError(err)
	}
	return processesToDBus(ps), nil
}

func (s *Server) stats(conn *dbus.Conn, msg *dbus.Message, names []string) ([]statsEntry, *dbus.Error) {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return nil, derr
	}
	st, err := s.m.Stats(s.ctx, caller, names)
	if err != nil {
		return nil, coreError(err)
	}
	out := make([]statsEntry, 0, len(st))
	for _, x := range st {
		out = append(out, statsToDBus(x))
	}
	return out, nil
}

// withTopMethods adds the manager's process and stats methods to its method table.
func (s *Server) withTopMethods(conn *dbus.Conn, methods map[string]any) map[string]any {
	maps.Copy(methods, map[string]any{
		"GetContainerProcesses": func(msg dbus.Message, name string) ([]processEntry, *dbus.Error) {
			if err := checkSignature(&msg, "s"); err != nil {
				return nil, err
			}
			return s.top(conn, &msg, name)
		},
		"GetContainerStats": func(msg dbus.Message, names []string) ([]statsEntry, *dbus.Error) {
			if err := checkSignature(&msg, "as"); err != nil {
				return nil, err
			}
			return s.stats(conn, &msg, names)
		},
	})
	return methods
}

// withContainerTopMethods adds GetProcesses and GetStats to a container object's methods.
func (s *Server) withContainerTopMethods(conn *dbus.Conn, methods map[string]any) map[string]any {
	maps.Copy(methods, map[string]any{
		"GetProcesses": func(msg dbus.Message) ([]processEntry, *dbus.Error) {
			if err := checkSignature(&msg, ""); err != nil {
				return nil, err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return nil, err
			}
			return s.top(conn, &msg, name)
		},
		"GetStats": func(msg dbus.Message) (statsEntry, *dbus.Error) {
			if err := checkSignature(&msg, ""); err != nil {
				return statsEntry{}, err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return statsEntry{}, err
			}
			st, derr := s.stats(conn, &msg, []string{name})
			if derr != nil {
				return statsEntry{}, derr
			}
			return st[0], nil
		},
	})
	return methods
}
