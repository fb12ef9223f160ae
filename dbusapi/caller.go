// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"context"
	"fmt"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// callerCacheMax bounds the cache; a bus with that many distinct recent callers just pays one
// extra round trip per caller after a reset.
const callerCacheMax = 4096

// callerCache maps unique bus names to credentials. The bus daemon never reuses a unique name
// and a connection cannot change its uid, so an entry stays correct for the bus' lifetime;
// caching saves a round trip to the daemon per call.
type callerCache struct {
	mu sync.Mutex
	m  map[string]service.Caller
}

// callerOf identifies the sender of msg through the bus daemon. The sender header is set by
// the daemon itself, so it cannot be forged by the client.
func (s *Server) callerOf(ctx context.Context, conn *dbus.Conn, msg *dbus.Message) (service.Caller, *dbus.Error) {
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	if sender == "" {
		return service.Caller{}, &dbus.Error{Name: ErrorPrefix + string(service.KindAccessDenied),
			Body: []any{"cannot identify the caller: the message has no sender"}}
	}
	s.callers.mu.Lock()
	c, ok := s.callers.m[sender]
	s.callers.mu.Unlock()
	if ok {
		return c, nil
	}
	bus := conn.BusObject()
	var uid uint32
	if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, sender).Store(&uid); err != nil {
		// Never guess: without a uid the core cannot authorise, so the call is refused.
		return service.Caller{}, &dbus.Error{Name: ErrorPrefix + string(service.KindAccessDenied),
			Body: []any{fmt.Sprintf("cannot identify the caller %s: GetConnectionUnixUser: %v", sender, err)}}
	}
	c = service.Caller{UID: uid}
	// The pid is informational (logs); a failure to get it does not matter.
	var pid uint32
	if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, sender).Store(&pid); err == nil {
		c.PID = int32(pid)
	}
	s.callers.mu.Lock()
	if len(s.callers.m) >= callerCacheMax {
		clear(s.callers.m)
	}
	s.callers.m[sender] = c
	s.callers.mu.Unlock()
	return c, nil
}
