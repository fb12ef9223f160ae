// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// coreError names a core error io.jackfruit.Jackfruit1.Error.<Kind>, keeping the core's human
// message, so D-Bus clients see the same kinds as the CLI.
func coreError(err error) *dbus.Error {
	return &dbus.Error{Name: ErrorPrefix + string(service.KindOf(err)), Body: []any{err.Error()}}
}

func invalidArgument(format string, args ...any) *dbus.Error {
	return coreError(service.Errorf(service.KindInvalidArgument, format, args...))
}

func header[T any](msg *dbus.Message, f dbus.HeaderField) T {
	v, _ := msg.Headers[f].Value().(T)
	return v
}

// checkSignature refuses a call whose body signature is not exactly want. godbus converts
// numeric types on decode (an "i" would silently become a "u"), so the signature is checked
// as sd-bus does, with sd-bus' wording.
func checkSignature(msg *dbus.Message, want string) *dbus.Error {
	got := header[dbus.Signature](msg, dbus.FieldSignature).String()
	if got == want {
		return nil
	}
	return &dbus.Error{Name: errInvalidArgs, Body: []any{fmt.Sprintf("Invalid arguments '%s' to call %s.%s(), expecting '%s'.",
		got, header[string](msg, dbus.FieldInterface), header[string](msg, dbus.FieldMember), want)}}
}
