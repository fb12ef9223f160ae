// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

// Properties that announce changes (EmitsChangedSignal=true in the XML); the others are
// constant, or, for MemoryRSS, MemoryCurrent and ControlGroup, read fresh from the core on
// every Get.
var (
	containerEmitted = []string{"State", "Leader", "ExitCode", "SoftLimitExceeded", "StartedAt", "FinishedAt"}
	managerEmitted   = []string{"MonitorAvailable", "ContainerCount"}
)

func managerProps(st service.Status) map[string]dbus.Variant {
	return map[string]dbus.Variant{
		"Version":          dbus.MakeVariant(st.Version),
		"MonitorAvailable": dbus.MakeVariant(st.MonitorAvailable),
		"MemoryEnforcer":   dbus.MakeVariant(st.MemoryEnforcer),
		"BaseRootfs":       dbus.MakeVariant(st.BaseRootfs),
		"ContainerCount":   dbus.MakeVariant(uint32(max(st.ContainerCount, 0))),
	}
}

func containerProps(ci service.ContainerInfo) map[string]dbus.Variant {
	cmd := ci.Command
	if cmd == nil {
		cmd = []string{}
	}
	caps := ci.Capabilities
	if caps == nil {
		caps = []string{}
	}
	return map[string]dbus.Variant{
		"Name":                   dbus.MakeVariant(ci.Name),
		"Id":                     dbus.MakeVariant(ci.ID),
		"State":                  dbus.MakeVariant(string(ci.State)),
		"Leader":                 dbus.MakeVariant(uint32(max(ci.Pid, 0))),
		"ExitCode":               dbus.MakeVariant(exitCode(ci)),
		"Command":                dbus.MakeVariant(cmd),
		"Rootfs":                 dbus.MakeVariant(ci.Rootfs),
		"Hostname":               dbus.MakeVariant(ci.Hostname),
		"SoftLimit":              dbus.MakeVariant(ci.SoftLimit),
		"HardLimit":              dbus.MakeVariant(ci.HardLimit),
		"MemoryRSS":              dbus.MakeVariant(ci.RSS),
		"MemoryCurrent":          dbus.MakeVariant(ci.MemoryCurrent),
		"ControlGroup":           dbus.MakeVariant(ci.Cgroup),
		"MemoryLimitsEnforcedBy": dbus.MakeVariant(ci.EnforcedBy),
		"SoftLimitExceeded":      dbus.MakeVariant(ci.SoftLimitExceeded),
		"StartedAt":              dbus.MakeVariant(usec(ci.StartedAt)),
		"FinishedAt":             dbus.MakeVariant(usec(ci.FinishedAt)),
		"Capabilities":           dbus.MakeVariant(caps),
		"Seccomp":                dbus.MakeVariant(ci.Seccomp),
		"NoNewPrivileges":        dbus.MakeVariant(ci.NoNewPrivileges),
		"Network":                dbus.MakeVariant(ci.Network),
	}
}

// exitCode is the shell's view of how the container ended, as the CLI reports it: the exit
// status for exited, 128+signal for killed states (137 for a hard-limit kill), 0 before the end.
func exitCode(ci service.ContainerInfo) int32 {
	switch ci.State {
	case service.StateKilled, service.StateOOMKill:
		if ci.Signal != "" {
			if sig := unix.SignalNum(ci.Signal); sig != 0 {
				return 128 + int32(sig)
			}
		}
		if ci.ExitCode != 0 {
			return int32(ci.ExitCode)
		}
		if ci.State == service.StateOOMKill {
			return 128 + int32(unix.SIGKILL)
		}
		return 0
	case service.StateExited:
		return int32(ci.ExitCode)
	}
	return 0
}

// usec is t in microseconds since the epoch, systemd's convention for timestamps on the bus;
// 0 means "not yet".
func usec(t time.Time) uint64 {
	if t.IsZero() || t.UnixMicro() < 0 {
		return 0
	}
	return uint64(t.UnixMicro())
}
