// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrAlreadyMounted is returned by MountOverlay when target is already a mount point.
var ErrAlreadyMounted = errors.New("already a mount point")

// MountOverlay mounts an overlay filesystem on target with lower as the read-only base and
// upper/work as the writable layer, so writes never reach lower. upper, work and target are
// created when missing; upper and work must be on the same filesystem, and that filesystem
// must support overlay upper layers (ext4, xfs, btrfs or tmpfs; not another overlay).
func MountOverlay(lower, upper, work, target string) error {
	paths := map[string]*string{"lower": &lower, "upper": &upper, "work": &work, "target": &target}
	for _, what := range []string{"lower", "upper", "work", "target"} {
		p := paths[what]
		if *p == "" {
			return fmt.Errorf("overlay: no %s directory given", what)
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("overlay %s %q: %w", what, *p, err)
		}
		// The mount options are a comma-separated list with ':' separating lower layers;
		// rather than rely on escaping that differs across kernels, refuse such paths.
		if strings.ContainsAny(abs, ",:\\\n") {
			return fmt.Errorf("overlay %s %q: path must not contain ',', ':', '\\' or a newline", what, abs)
		}
		*p = abs
	}
	if fi, err := os.Stat(lower); err != nil {
		return fmt.Errorf("overlay lower: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("overlay lower %s is not a directory", lower)
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{upper, 0o755}, {work, 0o700}, {target, 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return fmt.Errorf("overlay target: %w", err)
	}
	if mounted {
		return fmt.Errorf("overlay target %s: %w", target, ErrAlreadyMounted)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay: paths too long for the mount options (%d bytes)", len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting overlay on %s (lower %s, upper %s, work %s): %w (dmesg may say more)", target, lower, upper, work, err)
	}
	return nil
}

// Unmount detaches every filesystem mounted on target. It is lazy (MNT_DETACH), so a
// container still using the mount keeps it until it exits, and idempotent: a target that is
// not (or no longer) a mount point, or does not exist, is not an error.
func Unmount(target string) error {
	if target == "" {
		return errors.New("unmount: no target given")
	}
	// Mounts can be stacked on one directory; peel them all off. The bound only guards
	// against a loop if something keeps mounting on target concurrently.
	for i := 0; i < 1000; i++ {
		err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 1000 unmounts", target)
}

// isMountPoint reports whether p is the root of a mount.
func isMountPoint(p string) (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx)
	if err != nil {
		return false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	// Kernels before 5.8 do not report STATX_ATTR_MOUNT_ROOT: compare with the parent's
	// device, which misses only bind mounts within one filesystem.
	var parent unix.Stat_t
	if err := unix.Stat(filepath.Dir(p), &parent); err != nil {
		return false, err
	}
	return uint64(parent.Dev) != unix.Mkdev(stx.Dev_major, stx.Dev_minor), nil
}
