// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// privateMountsEnv marks the child RunInPrivateMounts re-executes.
const privateMountsEnv = "JACKFRUIT_TEST_PRIVATE_MOUNTS"

// RunInPrivateMounts runs m's tests in a new mount namespace whose mounts are all private,
// so that what a test mounts (Cgroup2) never reaches the host, even when the test dies. Call
// it from TestMain: os.Exit(testutil.RunInPrivateMounts(m)). Without root the tests run in
// the original process (and Cgroup2 skips). RunInPrivateJournal gives the same namespace.
func RunInPrivateMounts(m *testing.M) int {
	if os.Getenv(privateMountsEnv) == "child" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: making mounts private: %v\n", err)
			return 1
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testutil: cannot find the test binary to re-execute: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), privateMountsEnv+"=child")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "testutil: cannot re-execute the tests in a private mount namespace: %v\n", err)
		return 1
	}
	return 0
}

// rootMountPrivate reports whether this process's "/" propagates no mount events to (or from)
// another namespace: no "shared:" tag on its mountinfo line.
func rootMountPrivate() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == "/" {
			opt, _, _ := strings.Cut(strings.Join(f[6:], " "), " - ")
			return !strings.Contains(opt, "shared:")
		}
	}
	return false
}

// Cgroup2 gives a test a cgroup v2 hierarchy and a fresh, empty cgroup of its own in it: it
// returns the mount (/sys/fs/cgroup on a cgroup2-only host; elsewhere, on a hybrid host, a
// cgroup2 mounted on a temporary directory of the test's private mount namespace) and the
// test's group, which is removed at the end of the test, with whatever is left in it
// killed. The test process itself stays where it is. The group has the memory, pids and cpu
// controllers where the hierarchy has them (cgroup.controllers); on a hybrid host, such as
// this project's build host, they are on v1 and absent.
func Cgroup2(t testing.TB) (mount, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mount = "/sys/fs/cgroup"
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil || int64(st.Type) != unix.CGROUP2_SUPER_MAGIC {
		if !rootMountPrivate() {
			t.Skip("the host has no pure cgroup2 mount and the test is not in a private mount namespace to mount one (TestMain must use testutil.RunInPrivateMounts or RunInPrivateJournal)")
		}
		mount = t.TempDir()
		if err := unix.Mount("cgroup2", mount, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			t.Fatalf("mounting cgroup2 on %s: %v", mount, err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(mount, unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", mount, err)
			}
		})
	}
	// The root may hand out controllers while it holds processes: where the hierarchy has
	// memory, pids and cpu (a QEMU guest with a pure cgroup2), the test's group gets them.
	// On a hybrid host they are on v1 and not offered here.
	if b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers")); err == nil {
		for _, c := range []string{"memory", "pids", "cpu"} {
			if strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+c+" ") {
				_ = os.WriteFile(filepath.Join(mount, "cgroup.subtree_control"), []byte("+"+c), 0)
			}
		}
	}
	dir, err := os.MkdirTemp(mount, "jackfruit-test-")
	if err != nil {
		t.Fatalf("creating a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := removeCgroup(dir); err != nil {
			t.Errorf("removing test cgroup: %v", err)
		}
	})
	return mount, dir
}

// removeCgroup kills what is left below dir and removes it, deepest first.
func removeCgroup(dir string) error {
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
