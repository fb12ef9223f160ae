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
	if err := absOverlayPaths(&lower, &upper, &work, &target); err != nil {
		return err
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
	return mountOverlay(Overlay{Lower: lower, Upper: upper, Work: work}, target)
}

// Overlay is a container root that the setup stage mounts itself (Spec.Overlay): an overlay
// of Lower (never written) with the writable layer Upper (and Work, on the same filesystem),
// mounted on Spec.Rootfs inside the container's own mount namespace only. Nothing is mounted
// in the caller's namespace, so there is nothing to unmount there: the mount goes away with
// the container's last process, and concurrent starts do not each copy everyone else's
// overlay into their new mount namespace (which makes every start cost more the more
// containers run).
type Overlay struct {
	Lower string `json:"lower"`
	Upper string `json:"upper"`
	Work  string `json:"work"`
	// Volatile skips every sync of the writable layer (overlayfs "volatile", Linux 5.10+;
	// ignored by older kernels): for a container whose layer is deleted when it ends, where
	// the sync at unmount (~1 ms on ext4) buys nothing. A container's fsync then does not
	// reach the disk either.
	Volatile bool `json:"volatile,omitempty"`
}

// absOverlayPaths makes the paths absolute and refuses those the mount options cannot carry.
func absOverlayPaths(paths ...*string) error {
	for i, p := range paths {
		what := []string{"lower", "upper", "work", "target"}[i]
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
	return nil
}

// mountOverlay mounts o on target; the paths are absolute and checked (absOverlayPaths).
func mountOverlay(o Overlay, target string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", o.Lower, o.Upper, o.Work)
	if len(opts)+len(",volatile") >= os.Getpagesize() {
		return fmt.Errorf("overlay: paths too long for the mount options (%d bytes)", len(opts))
	}
	if o.Volatile {
		err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts+",volatile")
		if err == nil || !errors.Is(err, unix.EINVAL) {
			if err != nil {
				return fmt.Errorf("mounting overlay on %s (lower %s, upper %s, work %s): %w (dmesg may say more)", target, o.Lower, o.Upper, o.Work, err)
			}
			return nil
		}
		// EINVAL: a kernel before 5.10 without "volatile"; mount it the ordinary way.
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting overlay on %s (lower %s, upper %s, work %s): %w (dmesg may say more)", target, o.Lower, o.Upper, o.Work, err)
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
