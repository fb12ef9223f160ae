// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/service"
)

// Reconnect delays of busLink: the first retry comes quickly (a restarted dbus-daemon is back
// within a second), later ones back off so that a machine without a bus costs next to nothing.
const (
	busRetryMin = 250 * time.Millisecond
	busRetryMax = 30 * time.Second
)

// busLink keeps the supervisor exported on D-Bus for as long as it runs. The bus may be
// absent at start (initramfs, the supervisor started before dbus.service) or go away later
// (`systemctl restart dbus`, which ends every connection): each time, the link connects
// afresh with backoff and exports a new dbusapi.Server on the new connection. A Server is
// never reused: its bookkeeping (signal baselines, caller cache) belongs to one connection.
//
// Only the first failure and each loss are warnings; retries are debug messages, so a
// supervisor without a bus says so once, as the brief asks.
type busLink struct {
	address  string // empty: the system bus
	m        service.Manager
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	firstTry chan struct{} // closed after the first attempt, whatever its outcome
}

// firstAttachWait bounds how long startBusLink waits for the first attempt.
const firstAttachWait = 10 * time.Second

// startBusLink starts the link and returns once its first attempt has succeeded or failed,
// so that after READY=1 the bus name is there whenever the bus is; a bus that hangs delays
// start-up by firstAttachWait at most. Retries continue in the background.
func startBusLink(address string, m service.Manager, logger *slog.Logger) *busLink {
	l := newBusLink(address, m, logger)
	go l.run()
	select {
	case <-l.firstTry:
	case <-time.After(firstAttachWait):
		logger.Warn("D-Bus is slow to answer; going on without waiting for it", "bus", l.what())
	}
	return l
}

func newBusLink(address string, m service.Manager, logger *slog.Logger) *busLink {
	ctx, cancel := context.WithCancel(context.Background())
	return &busLink{address: address, m: m, log: logger, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), firstTry: make(chan struct{})}
}

// connect opens a new private connection to the bus; ending ctx closes it.
func (l *busLink) connect(ctx context.Context) (*dbus.Conn, error) {
	if l.address != "" {
		return dbus.Connect(l.address, dbus.WithContext(ctx))
	}
	return dbus.ConnectSystemBus(dbus.WithContext(ctx))
}

// what names the bus in log messages.
func (l *busLink) what() string {
	if l.address == "" {
		return "the system bus"
	}
	return l.address
}

// run is the link's only goroutine: attach, wait for the connection to end, repeat.
func (l *busLink) run() {
	defer close(l.done)
	first := true
	tried := func() {
		if first {
			first = false
			close(l.firstTry)
		}
	}
	defer tried() // Close during the first attempt
	delay := busRetryMin
	everAttached, warned := false, false
	for {
		conn, srv, connected, err := l.attach()
		if l.ctx.Err() != nil {
			return // closed while connecting; attach cleaned up
		}
		if err != nil {
			switch {
			case !warned && !connected:
				// The words "no D-Bus" are what operators (and tests) look for, once.
				l.log.Warn("no D-Bus: the D-Bus interface is disabled until the bus can be reached (retrying in the background); the control socket still serves",
					"bus", l.what(), "error", err.Error())
				warned = true
			case !warned:
				// E.g. another supervisor owns the name, or the bus policy refuses it.
				l.log.Warn("cannot export the D-Bus interface (retrying in the background); the control socket still serves",
					"bus", l.what(), "error", err.Error())
				warned = true
			default:
				l.log.Debug("D-Bus still unreachable", "bus", l.what(), "error", err.Error(), "next_retry", delay.String())
			}
			tried()
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
				return
			}
			delay = min(2*delay, busRetryMax)
			continue
		}
		if everAttached {
			l.log.Info("D-Bus interface exported again", "bus", l.what(), "name", dbusapi.BusName)
		} else {
			l.log.Info("D-Bus interface exported", "bus", l.what(), "name", dbusapi.BusName)
		}
		everAttached, delay = true, busRetryMin
		tried()
		select {
		case <-conn.Context().Done():
			// The bus hung up (dbus-daemon restarted or died): the server's objects and name
			// went with the connection; a new connection needs a new server.
			// This is the one warning per loss; failed retries until the bus is back are
			// debug messages.
			l.log.Warn("lost the D-Bus connection; reconnecting in the background (the control socket still serves)", "bus", l.what())
			warned = true
			l.detach(srv, conn)
		case <-l.ctx.Done():
			l.detach(srv, conn)
			return
		}
	}
}

// attach connects and exports a new server on the new connection, undoing both on failure
// and when Close is called meanwhile. connected reports whether the bus was reached.
func (l *busLink) attach() (conn *dbus.Conn, srv *dbusapi.Server, connected bool, err error) {
	// Close must be able to interrupt a connect that hangs (a wedged bus never answering the
	// handshake), but an established connection must outlive Close's start long enough for
	// the server to release the name in an orderly way: so the connection gets a context of
	// its own, tied to the link's only while connecting.
	cctx, ccancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(l.ctx, ccancel)
	conn, err = l.connect(cctx)
	if err == nil {
		connected = true
		srv = dbusapi.New(l.m, l.log)
		err = srv.Attach(conn)
	}
	if !stop() || err != nil {
		if srv != nil {
			srv.Close()
		}
		if conn != nil {
			conn.Close()
		}
		ccancel()
		if err == nil {
			err = l.ctx.Err()
		}
		return nil, nil, connected, err
	}
	return conn, srv, true, nil
}

// detach closes a server and its connection. On a dead connection releasing the name
// fails; that is expected and only worth a debug message.
func (l *busLink) detach(srv *dbusapi.Server, conn *dbus.Conn) {
	if err := srv.Close(); err != nil {
		l.log.Debug("closing the D-Bus server", "error", err.Error())
	}
	conn.Close()
}

// Close unexports the interface, releases the name, closes the connection and stops
// reconnecting. It returns once the link's goroutine has ended.
func (l *busLink) Close() {
	l.cancel()
	<-l.done
}
