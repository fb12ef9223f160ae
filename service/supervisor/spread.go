// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// fsTopdirFlag is FS_TOPDIR_FL of linux/fs.h (chattr +T), which x/sys/unix does not name.
const fsTopdirFlag = 0x00020000

// spreadSubdirs marks dir, the parent of every container's directory, as the top of a
// directory hierarchy for ext2/3/4's Orlov allocator (chattr +T): each new container
// directory is then placed in a block group of its own choosing, with its files beside it,
// instead of all of them in dir's group.
//
// Why it matters: an ext4 without a journal does not reuse an inode freed in the last one to
// five minutes, and finds a free one by walking its group's free inodes from the start, past
// every recently freed one. With every container's dozen inodes (its files, the overlay's
// upper and work directories and overlayfs's own work files) in one group, each new inode
// walked past all those freed by containers removed in the last minutes: 100 `run --rm` at
// once cost 11 ms per container instead of 6 (docs/bench.md). Spread over the groups, a walk
// meets only the few its own group freed. A journaled ext4 skips the walk and loses nothing.
//
// Filesystems without the flag (tmpfs, xfs, btrfs) say so and are left as they are.
func spreadSubdirs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		if unsupportedFlags(err) {
			return nil
		}
		return fmt.Errorf("read the inode flags of %s: %w", dir, err)
	}
	if flags&fsTopdirFlag != 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFlag)); err != nil {
		if unsupportedFlags(err) {
			return nil
		}
		return fmt.Errorf("set the top-directory flag (chattr +T) on %s: %w", dir, err)
	}
	return nil
}

// unsupportedFlags reports the errors of a filesystem that has no such inode flags (ENOTTY:
// no FS_IOC_*FLAGS at all; EOPNOTSUPP, EINVAL: not this flag).
func unsupportedFlags(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}
