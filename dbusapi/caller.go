// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// callerCacheMax bounds the cache; a bus with that many distinct recent callers just pays one
// extra round trip per caller after a reset.
const callerCacheMax = 4096

// callerCache maps unique bus names to credentials. The bus daemon never reuses a unique name
// and records a connection's credentials when it connects, so an entry stays correct for the
// bus' lifetime; caching saves a round trip to the daemon per call.
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
	c, err := credentials(ctx, conn, sender)
	if err != nil {
		// Never guess: without a uid the core cannot authorise, so the call is refused.
		return service.Caller{}, &dbus.Error{Name: ErrorPrefix + string(service.KindAccessDenied),
			Body: []any{fmt.Sprintf("cannot identify the caller %s: %v", sender, err)}}
	}
	s.callers.mu.Lock()
	if len(s.callers.m) >= callerCacheMax {
		clear(s.callers.m)
	}
	s.callers.m[sender] = c
	s.callers.mu.Unlock()
	return c, nil
}

// credentials asks the bus daemon who sender is (GetConnectionCredentials): the uid, the pid,
// and the groups the daemon recorded when the connection was made (UnixGroupIDs, dbus-daemon
// 1.12 and later, read from SO_PEERGROUPS). When the daemon does not say, the groups are read
// from /proc/PID/status, trusted only if the process is provably still the one that owns the
// connection; otherwise they stay unknown and the core grants no group rights.
func credentials(ctx context.Context, conn *dbus.Conn, sender string) (service.Caller, error) {
	var creds map[string]dbus.Variant
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds); err != nil {
		return service.Caller{}, fmt.Errorf("GetConnectionCredentials: %w", err)
	}
	uid, ok := creds["UnixUserID"].Value().(uint32)
	if !ok {
		return service.Caller{}, errors.New("the bus daemon did not give the caller's uid")
	}
	c := service.Caller{UID: uid}
	if pid, ok := creds["ProcessID"].Value().(uint32); ok {
		c.PID = int32(pid)
	}
	if gids, ok := creds["UnixGroupIDs"].Value().([]uint32); ok && len(gids) > 0 {
		// The daemon's list holds the supplementary groups and, depending on the version,
		// the primary one; in which order is not specified, so all of them count as groups.
		c.GID, c.Groups, c.GroupsKnown = gids[0], gids, true
		return c, nil
	}
	if c.PID > 0 {
		if gid, groups, err := procGroups(ctx, conn, sender, c.PID, uid); err == nil {
			c.GID, c.Groups, c.GroupsKnown = gid, groups, true
		}
	}
	return c, nil
}

// procGroups reads the groups of pid from /proc, race-free: the process's start time is read
// before and after, and the connection must still belong to pid afterwards, so a process
// that exited (and a pid reused meanwhile) is never taken for the caller.
func procGroups(ctx context.Context, conn *dbus.Conn, sender string, pid int32, uid uint32) (uint32, []uint32, error) {
	dir := "/proc/" + strconv.Itoa(int(pid))
	before, err := startTime(dir)
	if err != nil {
		return 0, nil, err
	}
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return 0, nil, err
	}
	after, err := startTime(dir)
	if err != nil || after != before {
		return 0, nil, errors.New("the process changed while its groups were read")
	}
	var again uint32
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, sender).Store(&again); err != nil || int32(again) != pid {
		return 0, nil, errors.New("the connection changed hands while its groups were read")
	}
	var gid uint32
	var groups []uint32
	gotUID, gotGID := false, false
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		switch k {
		case "Uid":
			// The real uid must be the connection's: a setuid exec since would not be.
			gotUID = len(f) > 0 && f[0] == strconv.FormatUint(uint64(uid), 10)
		case "Gid":
			if len(f) > 0 {
				n, err := strconv.ParseUint(f[0], 10, 32)
				gid, gotGID = uint32(n), err == nil
			}
		case "Groups":
			for _, g := range f {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return 0, nil, fmt.Errorf("%s/status: bad group %q", dir, g)
				}
				groups = append(groups, uint32(n))
			}
		}
	}
	if !gotUID || !gotGID {
		return 0, nil, fmt.Errorf("%s/status does not belong to uid %d", dir, uid)
	}
	return gid, groups, nil
}

// startTime is field 22 of /proc/PID/stat, the process's start time since boot.
func startTime(dir string) (string, error) {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("%s/stat: malformed", dir)
	}
	return f[19], nil
}
