// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"maps"
	"slices"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// listEntry is one element of ListContainers' a(ssuo).
type listEntry struct {
	Name  string
	State string
	Pid   uint32
	Path  dbus.ObjectPath
}

// managerMethods implements io.jackfruit.Jackfruit1.Manager. Every method takes the raw
// message to learn the sender and to check the exact signature.
func (s *Server) managerMethods(conn *dbus.Conn) map[string]any {
	return map[string]any{
		"StartContainer": func(msg dbus.Message, name, rootfs string, command []string, soft, hard uint64, opts map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
			if err := checkSignature(&msg, "ssastta{sv}"); err != nil {
				return "/", err
			}
			req := service.StartRequest{Name: name, Rootfs: rootfs, Command: command, SoftLimit: soft, HardLimit: hard}
			if err := parseStartOptions(opts, &req); err != nil {
				return "/", err
			}
			caller, derr := s.callerOf(s.ctx, conn, &msg)
			if derr != nil {
				return "/", derr
			}
			ci, err := s.m.Start(s.ctx, caller, req)
			if err != nil {
				return "/", coreError(err)
			}
			return ContainerPath(ci.Name), nil
		},
		"OpenContainerShell": func(msg dbus.Message, name, user string, command, env []string) (dbus.UnixFD, uint32, *dbus.Error) {
			if err := checkSignature(&msg, "ssasas"); err != nil {
				return -1, 0, err
			}
			return s.openShell(conn, &msg, name, user, command, env)
		},
		"StopContainer": func(msg dbus.Message, name string, timeoutSec uint32) *dbus.Error {
			if err := checkSignature(&msg, "su"); err != nil {
				return err
			}
			return s.stop(conn, &msg, name, timeoutSec)
		},
		"KillContainer": func(msg dbus.Message, name string, sig int32) *dbus.Error {
			if err := checkSignature(&msg, "si"); err != nil {
				return err
			}
			return s.kill(conn, &msg, name, sig)
		},
		"RemoveContainer": func(msg dbus.Message, name string) *dbus.Error {
			if err := checkSignature(&msg, "s"); err != nil {
				return err
			}
			return s.remove(conn, &msg, name)
		},
		"GetContainer": func(msg dbus.Message, name string) (dbus.ObjectPath, *dbus.Error) {
			if err := checkSignature(&msg, "s"); err != nil {
				return "/", err
			}
			ci, err := s.get(conn, &msg, name)
			if err != nil {
				return "/", err
			}
			return ContainerPath(ci.Name), nil
		},
		"ListContainers": func(msg dbus.Message) ([]listEntry, *dbus.Error) {
			if err := checkSignature(&msg, ""); err != nil {
				return nil, err
			}
			caller, derr := s.callerOf(s.ctx, conn, &msg)
			if derr != nil {
				return nil, derr
			}
			list, err := s.m.List(s.ctx, caller, true)
			if err != nil {
				return nil, coreError(err)
			}
			out := make([]listEntry, 0, len(list))
			for _, ci := range list {
				out = append(out, listEntry{ci.Name, string(ci.State), uint32(max(ci.Pid, 0)), ContainerPath(ci.Name)})
			}
			return out, nil
		},
	}
}

// parseStartOptions applies StartContainer's a{sv} options. Options are checked strictly,
// including the variant's type, so a typo never silently starts a container with defaults.
func parseStartOptions(opts map[string]dbus.Variant, req *service.StartRequest) *dbus.Error {
	for _, key := range slices.Sorted(maps.Keys(opts)) {
		v := opts[key]
		var ok bool
		switch key {
		case "hostname":
			req.Hostname, ok = v.Value().(string)
			if !ok {
				return invalidArgument("option %q must be a string (type s), not type %s", key, v.Signature())
			}
		case "env":
			req.Env, ok = v.Value().([]string)
			if !ok {
				return invalidArgument("option %q must be an array of KEY=VALUE strings (type as), not type %s", key, v.Signature())
			}
		case "stop_timeout_sec":
			var sec uint32
			sec, ok = v.Value().(uint32)
			if !ok {
				return invalidArgument("option %q must be seconds as uint32 (type u), not type %s", key, v.Signature())
			}
			req.StopTimeout = time.Duration(sec) * time.Second
		case "cap_add", "cap_drop", "security_opt":
			var list []string
			list, ok = v.Value().([]string)
			if !ok {
				return invalidArgument("option %q must be an array of strings (type as), not type %s", key, v.Signature())
			}
			switch key {
			case "cap_add":
				req.CapAdd = list
			case "cap_drop":
				req.CapDrop = list
			default:
				req.SecurityOpt = list
			}
		case "network":
			req.Network, ok = v.Value().(string)
			if !ok {
				return invalidArgument("option %q must be a string (type s), not type %s", key, v.Signature())
			}
		case "init", "remove":
			var on bool
			on, ok = v.Value().(bool)
			if !ok {
				return invalidArgument("option %q must be a boolean (type b), not type %s", key, v.Signature())
			}
			if key == "init" {
				req.Init = on
			} else {
				req.Remove = on
			}
		default:
			return invalidArgument("unknown option %q (known options: hostname s, env as, stop_timeout_sec u, cap_add as, cap_drop as, security_opt as, network s, init b, remove b)", key)
		}
	}
	return nil
}

// The operations below are shared by the manager's by-name methods and the container objects.

func (s *Server) stop(conn *dbus.Conn, msg *dbus.Message, name string, timeoutSec uint32) *dbus.Error {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return derr
	}
	if _, err := s.m.Stop(s.ctx, caller, name, time.Duration(timeoutSec)*time.Second); err != nil {
		return coreError(err)
	}
	return nil
}

func (s *Server) kill(conn *dbus.Conn, msg *dbus.Message, name string, sig int32) *dbus.Error {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return derr
	}
	if err := s.m.Kill(s.ctx, caller, name, syscall.Signal(sig)); err != nil {
		return coreError(err)
	}
	return nil
}

func (s *Server) remove(conn *dbus.Conn, msg *dbus.Message, name string) *dbus.Error {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return derr
	}
	if err := s.m.Remove(s.ctx, caller, name); err != nil {
		return coreError(err)
	}
	return nil
}

func (s *Server) get(conn *dbus.Conn, msg *dbus.Message, name string) (service.ContainerInfo, *dbus.Error) {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return service.ContainerInfo{}, derr
	}
	ci, err := s.m.Get(s.ctx, caller, name)
	if err != nil {
		return service.ContainerInfo{}, coreError(err)
	}
	return ci, nil
}
