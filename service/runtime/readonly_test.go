// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadOnlyTree: readOnlyTree makes a tree of mounts read-only, submounts included, in the
// calling mount namespace only: the same mounts seen from the host stay writable.
func TestReadOnlyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })

	// In a mount namespace of its own, on a thread that is never given back to Go.
	type outcome struct {
		top, below error
		err        error
	}
	done := make(chan outcome)
	go func() {
		goruntime.LockOSThread()
		var o outcome
		defer func() { done <- o }()
		if o.err = unix.Unshare(unix.CLONE_NEWNS); o.err != nil {
			return
		}
		if o.err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); o.err != nil {
			return
		}
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			o.err = err
			return
		}
		defer unix.Close(fd)
		if o.err = readOnlyTree(fd); o.err != nil {
			return
		}
		o.top = os.WriteFile(filepath.Join(dir, "inside"), nil, 0o644)
		o.below = os.WriteFile(filepath.Join(sub, "inside"), nil, 0o644)
	}()
	o := <-done
	if o.err != nil {
		t.Fatalf("in a namespace of its own: %v", o.err)
	}
	if !errors.Is(o.top, unix.EROFS) || !errors.Is(o.below, unix.EROFS) {
		t.Fatalf("writes after readOnlyTree: top %v, submount %v; want EROFS for both", o.top, o.below)
	}
	for _, d := range []string{dir, sub} {
		if err := os.WriteFile(filepath.Join(d, "outside"), nil, 0o644); err != nil {
			t.Errorf("the host's mount %s became read-only too: %v", d, err)
		}
	}
}
