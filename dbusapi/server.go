// SPDX-License-Identifier: Apache-2.0

// Package dbusapi exposes the supervisor core (service.Manager) on the D-Bus system bus as
// io.jackfruit.Jackfruit1, in the style of systemd-machined's org.freedesktop.machine1.
//
// The adapter is deliberately thin: it decodes bus messages, identifies the caller through the
// bus daemon (GetConnectionUnixUser) and calls the same Manager as the control socket, which
// validates and authorises. Container objects are not registered one by one: a single subtree
// handler under ContainerPathPrefix resolves each call against the core's registry, so an
// object exists on the bus exactly as long as the container exists in the core, with no second
// copy of the registry to drift. Signals and PropertiesChanged come from the core's event stream.
package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// Names fixed by the public contract (docs/dbus.md); other programs depend on them.
const (
	BusName             = "io.jackfruit.Jackfruit1"
	ManagerPath         = dbus.ObjectPath("/io/jackfruit/Jackfruit1")
	ContainerPathPrefix = "/io/jackfruit/Jackfruit1/container"
	ManagerInterface    = "io.jackfruit.Jackfruit1.Manager"
	ContainerInterface  = "io.jackfruit.Jackfruit1.Container"
	// ErrorPrefix + service.Kind names every error the adapter returns for a core error.
	ErrorPrefix = "io.jackfruit.Jackfruit1.Error."

	propertiesInterface   = "org.freedesktop.DBus.Properties"
	introspectInterface   = "org.freedesktop.DBus.Introspectable"
	peerInterface         = "org.freedesktop.DBus.Peer"
	errInvalidArgs        = "org.freedesktop.DBus.Error.InvalidArgs"
	errUnknownObject      = "org.freedesktop.DBus.Error.UnknownObject"
	errUnknownInterface   = "org.freedesktop.DBus.Error.UnknownInterface"
	errUnknownProperty    = "org.freedesktop.DBus.Error.UnknownProperty"
	errPropertyReadOnly   = "org.freedesktop.DBus.Error.PropertyReadOnly"
	errDBusFailed         = "org.freedesktop.DBus.Error.Failed"
	containerRootRelative = "container"
)

// Server serves one service.Manager on one bus connection.
type Server struct {
	m   service.Manager
	log *slog.Logger

	ctx    context.Context // ends on Close, so blocked calls (Stop) give up
	cancel context.CancelFunc

	callers callerCache

	mu          sync.Mutex
	conn        *dbus.Conn
	unsubscribe func()
	quit        chan struct{} // closed to end the event loop
	done        chan struct{} // closed when the event loop has returned
	closed      bool

	// Last values sent in PropertiesChanged; only the event loop touches them after Attach.
	lastContainer map[string]map[string]dbus.Variant
	lastManager   map[string]dbus.Variant
	// emitFailing is set while signals cannot be sent (reported once); event loop only.
	emitFailing bool
}

// New returns a Server for m; nothing happens on the bus until Attach.
func New(m service.Manager, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{m: m, log: logger, ctx: ctx, cancel: cancel, callers: callerCache{m: map[string]service.Caller{}}}
}

// internalCaller is the adapter itself reading the registry for signal bookkeeping.
var internalCaller = service.Caller{UID: 0}

// Attach exports the manager and container objects on conn, starts emitting signals from the
// core's event stream and finally requests BusName. The name comes last so that no client can
// reach the name before every object answers. It fails, undoing everything, when the name is
// owned by another connection (or the bus policy refuses it).
func (s *Server) Attach(conn *dbus.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dbusapi: server is closed")
	}
	if s.conn != nil {
		return errors.New("dbusapi: server is already attached to a bus connection")
	}
	events, unsubscribe := s.m.Subscribe()
	// The baseline is read after subscribing, so a change racing with Attach is either in the
	// baseline or still in the channel; at worst it produces an empty diff.
	list, err := s.m.List(s.ctx, internalCaller, true)
	if err != nil {
		unsubscribe()
		return fmt.Errorf("dbusapi: listing containers: %w", err)
	}
	s.lastContainer = make(map[string]map[string]dbus.Variant, len(list))
	for _, ci := range list {
		s.lastContainer[ci.Name] = pick(containerProps(ci), containerEmitted)
	}
	s.lastManager = pick(managerProps(s.m.Status()), managerEmitted)

	// Unique names are unique per bus only: a cache from an earlier connection must go.
	s.callers.mu.Lock()
	clear(s.callers.m)
	s.callers.mu.Unlock()

	s.conn = conn
	if err := s.export(conn); err != nil {
		s.unexport(conn)
		s.conn = nil
		unsubscribe()
		return err
	}
	s.unsubscribe = unsubscribe
	s.quit, s.done = make(chan struct{}), make(chan struct{})
	s.emitFailing = false
	go s.loop(conn, events, s.quit, s.done)

	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err == nil && reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		err = fmt.Errorf("the name is already owned by another connection (reply %d)", reply)
	}
	if err != nil {
		s.detachLocked()
		return fmt.Errorf("dbusapi: requesting bus name %s: %w", BusName, err)
	}
	s.log.Debug("D-Bus interface ready", "name", BusName, "path", ManagerPath)
	return nil
}

// Close stops signal emission, removes the objects and releases the name. The connection
// itself belongs to the caller and stays open. Calls in flight get their context cancelled.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	conn := s.conn
	s.detachLocked()
	if conn != nil {
		if _, err := conn.ReleaseName(BusName); err != nil && !errors.Is(err, dbus.ErrClosed) {
			return fmt.Errorf("dbusapi: releasing bus name %s: %w", BusName, err)
		}
	}
	return nil
}

func (s *Server) detachLocked() {
	if s.conn == nil {
		return
	}
	close(s.quit)
	s.unsubscribe()
	<-s.done
	s.unexport(s.conn)
	s.conn = nil
}

// export registers the handlers: the manager object at ManagerPath and one subtree handler
// for all container objects.
func (s *Server) export(conn *dbus.Conn) error {
	exports := []struct {
		subtree bool
		path    dbus.ObjectPath
		iface   string
		table   map[string]any
	}{
		{false, ManagerPath, ManagerInterface, s.withTopMethods(conn, s.managerMethods(conn))},
		{false, ManagerPath, propertiesInterface, s.managerPropertyMethods()},
		{false, ManagerPath, introspectInterface, map[string]any{"Introspect": s.managerIntrospect}},
		{true, ContainerPathPrefix, ContainerInterface, s.withContainerTopMethods(conn, s.containerMethods(conn))},
		{true, ContainerPathPrefix, propertiesInterface, s.containerPropertyMethods(conn)},
		{true, ContainerPathPrefix, introspectInterface, map[string]any{"Introspect": s.containerIntrospect(conn)}},
	}
	for _, e := range exports {
		var err error
		if e.subtree {
			err = conn.ExportSubtreeMethodTable(e.table, e.path, e.iface)
		} else {
			err = conn.ExportMethodTable(e.table, e.path, e.iface)
		}
		if err != nil {
			return fmt.Errorf("dbusapi: exporting %s on %s: %w", e.iface, e.path, err)
		}
	}
	return nil
}

func (s *Server) unexport(conn *dbus.Conn) {
	for _, iface := range []string{ManagerInterface, propertiesInterface, introspectInterface} {
		_ = conn.ExportMethodTable(nil, ManagerPath, iface)
	}
	for _, iface := range []string{ContainerInterface, propertiesInterface, introspectInterface} {
		_ = conn.ExportSubtreeMethodTable(nil, ContainerPathPrefix, iface)
	}
}
