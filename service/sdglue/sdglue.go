// SPDX-License-Identifier: Apache-2.0

// Package sdglue is the supervisor's small interface to systemd: the listening socket (from
// socket activation or bound by hand), sd_notify state changes, watchdog pings and the fd
// store that carries descriptors across a restart.
//
// Everything here degrades to a no-op outside systemd, so the supervisor runs the same way
// from a unit, from a shell or from an initramfs.
package sdglue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/jackfruit/jackfruit/service/control"
)

// Listen returns the control socket listener, binding path itself (see
// Inherited.Listen); it is for callers that were not started by a service manager.
func Listen(path, group string) (net.Listener, error) {
	return bind(path, group)
}

// Listen returns the control socket listener. When systemd passed sockets (LISTEN_FDS) the
// first UNIX stream socket is used and activated is true; path and group are then systemd's
// business (ListenStream=, SocketMode=, SocketGroup=). Otherwise Listen binds path itself:
// it creates the parent directory, replaces a stale socket file only when nobody answers on
// it, and makes the socket mode 0660 owned by group (when that group exists). Either way
// in.Sockets is consumed.
func (in *Inherited) Listen(path, group string) (l net.Listener, activated bool, err error) {
	socks := in.Sockets
	in.Sockets = nil
	var picked net.Listener
	for _, f := range socks {
		cand, err := net.FileListener(f) // a duplicate; f itself is closed below
		f.Close()
		if err != nil {
			continue // not a socket we can use as a listener (e.g. a datagram socket)
		}
		if picked == nil && cand.Addr().Network() == "unix" {
			picked = cand
			continue
		}
		// Sockets we do not use must not stay open: systemd would think we still serve them.
		cand.Close()
	}
	if picked != nil {
		return picked, true, nil
	}
	if len(socks) > 0 {
		return nil, false, errors.New("socket activation passed no UNIX stream socket")
	}
	l, err = bind(path, group)
	return l, false, err
}

func bind(path, group string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("no socket path given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	ul, err := control.ListenUnix(path, 0o660)
	if err != nil {
		return nil, err
	}
	// Close removes the socket file again, as a socket unit would on stop.
	ul.SetUnlinkOnClose(true)
	if group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			if err := os.Chown(path, 0, gid); err != nil {
				ul.Close()
				return nil, fmt.Errorf("chgrp socket %s to %s: %w", path, group, err)
			}
		}
	}
	return ul, nil
}

// Notify sends one sd_notify message ("READY=1", "STATUS=...", ...). It reports whether
// a notification socket was there; outside systemd it does nothing.
func Notify(state string) (bool, error) {
	return daemon.SdNotify(false, state)
}

// Ready tells systemd the service is up, with an initial status line.
func Ready(status string) error {
	_, err := Notify("READY=1\nSTATUS=" + status)
	return err
}

// Status updates the status line systemctl status shows.
func Status(status string) error {
	_, err := Notify("STATUS=" + status)
	return err
}

// Stopping tells systemd the service is shutting down.
func Stopping(status string) error {
	_, err := Notify("STOPPING=1\nSTATUS=" + status)
	return err
}

// Watchdog pings systemd's watchdog at half the interval it asked for (WATCHDOG_USEC) until
// ctx ends. alive is asked before each ping so that a stuck core stops the pings and
// systemd restarts the service; nil means always alive. It returns at once when no watchdog
// is configured.
func Watchdog(ctx context.Context, alive func() bool) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if alive == nil || alive() {
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				return fmt.Errorf("watchdog ping: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
