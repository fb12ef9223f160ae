// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
)

// dpkgFrontendLock is the lock apt-get and dpkg hold while they work.
const dpkgFrontendLock = "/var/lib/dpkg/lock-frontend"

// holdDpkgLock takes the dpkg frontend lock the way apt and dpkg do (an fcntl write lock on
// the whole file, not flock(2), which they would not see), waiting up to a minute for a
// real package manager to finish first. The returned function releases it.
func holdDpkgLock(t *testing.T) func() {
	t.Helper()
	f, err := os.OpenFile(dpkgFrontendLock, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatalf("open %s: %v", dpkgFrontendLock, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	deadline := time.Now().Add(time.Minute)
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			t.Fatalf("lock %s: %v", dpkgFrontendLock, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			t.Skipf("a package manager has held %s for over a minute; not competing with it", dpkgFrontendLock)
		}
		time.Sleep(time.Second)
	}
	var once sync.Once
	release := func() { once.Do(func() { f.Close() }) } // closing drops the fcntl lock
	t.Cleanup(release)
	return release
}

// lockedBuffer collects a command's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// depsCmd is test/deps.sh from the repository root, with Go's usual home on PATH (as
// test/demo.sh adds it).
func depsCmd(t *testing.T, extraEnv ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "test", "deps.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/local/go/bin")
	cmd.Env = append(cmd.Env, extraEnv...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

func depsPrerequisites(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: takes the dpkg lock")
	}
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("not a dpkg system")
	}
	// With packages missing deps.sh would install them (minutes, network): that is
	// `make deps`' job, not this test's.
	cmd, out := depsCmd(t, "DEPS_LOCK_TIMEOUT=120")
	cmd.Args = append(cmd.Args, "--check")
	if err := cmd.Run(); err != nil {
		t.Skipf("test/deps.sh --check: %v: %s (run make deps)", err, out)
	}
}

// TestDepsWaitsForDpkgLock: `make deps` while another package manager holds the dpkg lock
// says that it waits, for whom, and succeeds once the lock is released, instead of failing
// at once with "Could not get lock".
func TestDepsWaitsForDpkgLock(t *testing.T) {
	depsPrerequisites(t)
	release := holdDpkgLock(t)
	cmd, out := depsCmd(t)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	want := fmt.Sprintf("%s is held by PID %d", dpkgFrontendLock, os.Getpid())
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), want) {
		select {
		case err := <-done:
			t.Fatalf("deps.sh ended (%v) while the dpkg lock was held, without waiting for it:\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("deps.sh did not say it waits for the lock (want %q):\n%s", want, out)
		}
	}
	// Still waiting a moment later: it is not racing past the lock.
	select {
	case err := <-done:
		t.Fatalf("deps.sh ended (%v) while the dpkg lock was still held:\n%s", err, out)
	case <-time.After(2 * time.Second):
	}
	held := time.Since(start)
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("deps.sh failed after the lock was released: %v\n%s", err, out)
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("deps.sh did not finish within 2 minutes of the lock's release:\n%s", out)
	}
	if !strings.Contains(out.String(), "the package manager is free") {
		t.Errorf("deps.sh did not say the wait ended:\n%s", out)
	}
	t.Logf("deps.sh waited with the lock held for %s, finished %s after its release:\n%s",
		held.Round(time.Millisecond), (time.Since(start) - held).Round(time.Millisecond), out)
}

// TestDepsLockTimeout: a lock held past DEPS_LOCK_TIMEOUT fails with a message naming the
// lock and its holder.
func TestDepsLockTimeout(t *testing.T) {
	depsPrerequisites(t)
	holdDpkgLock(t)
	cmd, out := depsCmd(t, "DEPS_LOCK_TIMEOUT=2")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("deps.sh with the lock held past its timeout: %v, want exit 1:\n%s", err, out)
	}
	want := fmt.Sprintf("FAIL: %s still held by PID %d after 2s", dpkgFrontendLock, os.Getpid())
	if !strings.Contains(out.String(), want) {
		t.Errorf("want %q in:\n%s", want, out)
	}
}
