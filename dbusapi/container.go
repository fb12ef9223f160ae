// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// containerTarget resolves the object path a call was made on to a container name.
func containerTarget(msg *dbus.Message) (string, *dbus.Error) {
	path := header[dbus.ObjectPath](msg, dbus.FieldPath)
	name, ok := containerName(path)
	if !ok {
		return "", &dbus.Error{Name: errUnknownObject, Body: []any{fmt.Sprintf("no container object at %s", path)}}
	}
	return name, nil
}

// containerMethods implements io.jackfruit.Jackfruit1.Container for every path below
// ContainerPathPrefix; the core answers NoSuchContainer for names it does not know.
func (s *Server) containerMethods(conn *dbus.Conn) map[string]any {
	return map[string]any{
		"Stop": func(msg dbus.Message, timeoutSec uint32) *dbus.Error {
			if err := checkSignature(&msg, "u"); err != nil {
				return err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return err
			}
			return s.stop(conn, &msg, name, timeoutSec)
		},
		"Kill": func(msg dbus.Message, sig int32) *dbus.Error {
			if err := checkSignature(&msg, "i"); err != nil {
				return err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return err
			}
			return s.kill(conn, &msg, name, sig)
		},
		"OpenShell": func(msg dbus.Message, user string, command, env []string) (dbus.UnixFD, uint32, *dbus.Error) {
			if err := checkSignature(&msg, "sasas"); err != nil {
				return -1, 0, err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return -1, 0, err
			}
			return s.openShell(conn, &msg, name, user, command, env)
		},
		"Remove": func(msg dbus.Message) *dbus.Error {
			if err := checkSignature(&msg, ""); err != nil {
				return err
			}
			name, err := containerTarget(&msg)
			if err != nil {
				return err
			}
			return s.remove(conn, &msg, name)
		},
	}
}

// propertyMethods builds org.freedesktop.DBus.Properties for one interface whose values come
// from load, called afresh for every Get and GetAll so values such as MemoryRSS are current.
func propertyMethods(iface string, load func(msg *dbus.Message) (map[string]dbus.Variant, *dbus.Error)) map[string]any {
	// checkInterface tells whether iface is ours; standard interfaces have no properties.
	checkInterface := func(got string) (ours bool, err *dbus.Error) {
		switch got {
		case iface, "":
			return true, nil
		case propertiesInterface, introspectInterface, peerInterface:
			return false, nil
		}
		return false, &dbus.Error{Name: errUnknownInterface, Body: []any{fmt.Sprintf("object does not implement interface %q", got)}}
	}
	unknown := func(got, prop string) *dbus.Error {
		return &dbus.Error{Name: errUnknownProperty, Body: []any{fmt.Sprintf("unknown property %q on interface %q", prop, got)}}
	}
	return map[string]any{
		"Get": func(msg dbus.Message, ifaceName, prop string) (dbus.Variant, *dbus.Error) {
			if err := checkSignature(&msg, "ss"); err != nil {
				return dbus.Variant{}, err
			}
			ours, err := checkInterface(ifaceName)
			if err != nil {
				return dbus.Variant{}, err
			}
			if !ours {
				return dbus.Variant{}, unknown(ifaceName, prop)
			}
			props, err := load(&msg)
			if err != nil {
				return dbus.Variant{}, err
			}
			v, ok := props[prop]
			if !ok {
				return dbus.Variant{}, unknown(iface, prop)
			}
			return v, nil
		},
		"GetAll": func(msg dbus.Message, ifaceName string) (map[string]dbus.Variant, *dbus.Error) {
			if err := checkSignature(&msg, "s"); err != nil {
				return nil, err
			}
			ours, err := checkInterface(ifaceName)
			if err != nil {
				return nil, err
			}
			if !ours {
				return map[string]dbus.Variant{}, nil
			}
			return load(&msg)
		},
		"Set": func(msg dbus.Message, ifaceName, prop string, _ dbus.Variant) *dbus.Error {
			if err := checkSignature(&msg, "ssv"); err != nil {
				return err
			}
			ours, err := checkInterface(ifaceName)
			if err != nil {
				return err
			}
			if !ours {
				return unknown(ifaceName, prop)
			}
			props, err := load(&msg)
			if err != nil {
				return err
			}
			if _, ok := props[prop]; !ok {
				return unknown(iface, prop)
			}
			return &dbus.Error{Name: errPropertyReadOnly, Body: []any{fmt.Sprintf("property %q is read-only", prop)}}
		},
	}
}

func (s *Server) managerPropertyMethods() map[string]any {
	return propertyMethods(ManagerInterface, func(*dbus.Message) (map[string]dbus.Variant, *dbus.Error) {
		return managerProps(s.m.Status()), nil
	})
}

func (s *Server) containerPropertyMethods(conn *dbus.Conn) map[string]any {
	return propertyMethods(ContainerInterface, func(msg *dbus.Message) (map[string]dbus.Variant, *dbus.Error) {
		name, err := containerTarget(msg)
		if err != nil {
			return nil, err
		}
		ci, err := s.get(conn, msg, name)
		if err != nil {
			return nil, err
		}
		return containerProps(ci), nil
	})
}

// containerIntrospect serves both the container objects and their parent node, whose children
// are the containers that exist right now (busctl tree walks these).
func (s *Server) containerIntrospect(conn *dbus.Conn) func(msg dbus.Message) (string, *dbus.Error) {
	return func(msg dbus.Message) (string, *dbus.Error) {
		if header[dbus.ObjectPath](&msg, dbus.FieldPath) == ContainerPathPrefix {
			caller, derr := s.callerOf(s.ctx, conn, &msg)
			if derr != nil {
				return "", derr
			}
			list, err := s.m.List(s.ctx, caller, true)
			if err != nil {
				return "", coreError(err)
			}
			children := make([]string, 0, len(list))
			for _, ci := range list {
				children = append(children, EscapeLabel(ci.Name))
			}
			return parentXML(children), nil
		}
		name, derr := containerTarget(&msg)
		if derr != nil {
			return "", derr
		}
		if _, derr := s.get(conn, &msg, name); derr != nil {
			if derr.Name == ErrorPrefix+string(service.KindNoSuchContainer) {
				return "", &dbus.Error{Name: errUnknownObject, Body: derr.Body}
			}
			return "", derr
		}
		return ContainerXML, nil
	}
}
