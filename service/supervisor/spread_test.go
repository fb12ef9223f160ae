// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func inodeFlags(t *testing.T, dir string) uint32 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("FS_IOC_GETFLAGS %s: %v", dir, err)
	}
	return flags
}

// The supervisor marks its containers directory for the Orlov allocator where the filesystem
// has the flag (ext2/3/4), and leaves other filesystems alone without an error.
func TestSpreadSubdirs(t *testing.T) {
	e := newEnv(t)
	var st unix.Statfs_t
	if err := unix.Statfs(e.cfg.StateDir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.EXT4_SUPER_MAGIC {
		if f := inodeFlags(t, e.s.containersDir()); f&fsTopdirFlag == 0 {
			t.Errorf("containers directory flags %#x: no FS_TOPDIR_FL on an ext4 state directory", f)
		}
		// A container's own directory is not a top directory: its files stay beside it.
		e.start(t, "spread", "true")
		e.wait(t, "spread")
		if f := inodeFlags(t, filepath.Join(e.s.containersDir(), "spread")); f&fsTopdirFlag != 0 {
			t.Errorf("a container's directory inherited FS_TOPDIR_FL (%#x)", f)
		}
		// Idempotent: a restarted supervisor finds the flag set.
		if err := spreadSubdirs(e.s.containersDir()); err != nil {
			t.Errorf("second spreadSubdirs: %v", err)
		}
	} else {
		t.Logf("state directory on filesystem %#x, not ext4: only the quiet refusal is checked", st.Type)
	}

	// tmpfs has no inode flags: no error, nothing changed.
	shm, err := os.MkdirTemp("/dev/shm", "jf-spread-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.Remove(shm)
	if err := spreadSubdirs(shm); err != nil {
		t.Errorf("spreadSubdirs on tmpfs: %v", err)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if err := spreadSubdirs(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("spreadSubdirs on a missing directory: %v, want an error naming it", err)
	}
}
