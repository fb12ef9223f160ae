// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenPty allocates a pseudo-terminal in the container's own devpts instance (its
// /dev/pts/ptmx, reached through the init's root), so that inside the container the slave is
// a real /dev/pts/N: `tty` names it and ttyname(3) works, which a pty of the host's devpts
// cannot give (its node does not exist in the container's /dev/pts). The master is for the
// host side (the supervisor or a client), the slave for the exec'd command's stdio.
//
// The path is resolved with openat2(RESOLVE_IN_ROOT), so symlinks the container planted
// cannot lead outside its root, and the result must be the ptmx device (5:2), so a FIFO or
// other file put in its place cannot block or fool the caller.
func (p *Process) OpenPty() (master, slave *os.File, err error) {
	pidfd, root, err := p.entry()
	if err != nil {
		return nil, nil, err
	}
	pidfd.Close()
	defer root.Close()
	mfd, err := unix.Openat2(int(root.Fd()), "dev/pts/ptmx", &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the container's /dev/pts/ptmx: %w", err)
	}
	m := os.NewFile(uintptr(mfd), "pty-master")
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("stat of the container's /dev/pts/ptmx: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(uint64(st.Rdev)) != 5 || unix.Minor(uint64(st.Rdev)) != 2 {
		m.Close()
		return nil, nil, fmt.Errorf("the container's /dev/pts/ptmx is not the pty multiplexer")
	}
	if err := unix.SetNonblock(mfd, false); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty master: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlocking the pty: %w", err)
	}
	// TIOCGPTPEER opens the slave from the master, without a path the container controls.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		m.Close()
		return nil, nil, fmt.Errorf("opening the pty's slave: %w", errno)
	}
	return m, os.NewFile(sfd, "pty-slave"), nil
}
