// SPDX-License-Identifier: Apache-2.0

package control

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

// peerCred returns the connecting process's identity as the kernel recorded it at connect
// time: uid, gid and pid (SO_PEERCRED) and its supplementary groups (SO_PEERGROUPS, Linux
// 4.13). Both are the credentials of the connect() call, so no race with the process
// changing or exiting afterwards, and no trust in the group database: a process that dropped
// a group before connecting does not have it here.
func peerCred(c net.Conn) (service.Caller, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return service.Caller{}, fmt.Errorf("connection type %T has no peer credentials", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return service.Caller{}, err
	}
	var cred *unix.Ucred
	var groups []uint32
	var credErr, groupsErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, groupsErr = peerGroups(int(fd))
	}); err != nil {
		return service.Caller{}, err
	}
	if credErr != nil {
		return service.Caller{}, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	caller := service.Caller{UID: cred.Uid, PID: cred.Pid, GID: cred.Gid}
	if groupsErr == nil {
		caller.Groups, caller.GroupsKnown = groups, true
	}
	// Without the groups the caller keeps what its uid allows (root, reads); the core never
	// guesses group rights.
	return caller, nil
}

// peerGroups reads SO_PEERGROUPS, growing the buffer when the kernel says it is too small.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4], nil
		case errors.Is(errno, unix.ERANGE) && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
	}
}
