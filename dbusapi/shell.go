// SPDX-License-Identifier: Apache-2.0

package dbusapi

import (
	"os"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service"
)

// shellWatchInterval is how often an open shell checks that its caller is still on the bus.
const shellWatchInterval = 2 * time.Second

// openShell implements OpenContainerShell and Container.OpenShell, the equivalent of
// machined's OpenMachineShell: the command runs in the container on a new pty and the caller
// gets the master (h) and the command's host pid (u). The core authorises it as a write.
//
// godbus sends the reply after the handler returns and offers no hook after the send, so the
// master cannot be closed here; a copy is kept until the command exits, or until the caller
// leaves the bus, which then hangs up on the command (SIGHUP), as the control socket's Exec
// does when its client disconnects.
func (s *Server) openShell(conn *dbus.Conn, msg *dbus.Message, name, user string, command, env []string) (dbus.UnixFD, uint32, *dbus.Error) {
	caller, derr := s.callerOf(s.ctx, conn, msg)
	if derr != nil {
		return -1, 0, derr
	}
	p, err := s.m.Exec(s.ctx, caller, service.ExecRequest{Name: name, Command: command, Env: env, User: user, Tty: true})
	if err != nil {
		return -1, 0, coreError(err)
	}
	master := p.Pty()
	sender := header[string](msg, dbus.FieldSender)
	go s.watchShell(conn, sender, p, master)
	return dbus.UnixFD(master.Fd()), uint32(p.Pid()), nil
}

// watchShell keeps the master until the shell ends or its caller leaves the bus.
func (s *Server) watchShell(conn *dbus.Conn, sender string, p service.ExecProcess, master *os.File) {
	defer master.Close()
	done := make(chan struct{})
	go func() {
		_, _ = p.Wait(s.ctx)
		close(done)
	}()
	t := time.NewTicker(shellWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
			var has bool
			if err := conn.BusObject().CallWithContext(s.ctx, "org.freedesktop.DBus.NameHasOwner", 0, sender).Store(&has); err == nil && !has {
				_ = p.Signal(syscall.SIGHUP)
				return
			}
		}
	}
}
