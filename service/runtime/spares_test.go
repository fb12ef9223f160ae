// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newSpares(t *testing.T) *Spares {
	t.Helper()
	s, err := NewSpares(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		assertNoChildren(t)
	})
	return s
}

// parkedPid waits until a spare for network is parked and returns its pid.
func parkedPid(t *testing.T, s *Spares, network Network) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		sp := s.parked[network]
		s.mu.Unlock()
		if sp != nil {
			return sp.p.Pid
		}
	}
	t.Fatalf("no spare for network %q parked within 10s", network)
	return 0
}

// gone reports whether pid no longer exists (a reaped spare).
func gone(pid int) bool {
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// TestSparesServeStarts: the second start is served by the spare the first one left, and the
// container it makes is like a cold one's (PID 1, its hostname, namespaces of its own); a
// container of another network mode does not take it.
func TestSparesServeStarts(t *testing.T) {
	rootfs := testRootfs(t)
	s := newSpares(t)
	spec := sh(rootfs, "echo $$; hostname; readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid")
	spec.Spares = s
	spec.Hostname = "cold"
	first := run(t, spec)
	spare := parkedPid(t, s, NetworkHost)
	if got := strings.Join(strings.Fields(cmdline(t, spare)), " "); got != initArg0+" "+spareArg {
		t.Errorf("spare's command line = %q", got)
	}

	spec.Hostname = "warm"
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != spare {
		t.Errorf("start did not use the parked spare: pid %d, spare %d", p.Pid, spare)
	}
	warm := finish(t, p)
	if warm.exit.Code != 0 {
		t.Fatalf("warm start: %v, stderr %q", warm.exit, warm.stderr)
	}
	f, w := strings.Fields(first.stdout), strings.Fields(warm.stdout)
	if len(f) != 4 || len(w) != 4 || f[0] != "1" || w[0] != "1" || f[1] != "cold" || w[1] != "warm" {
		t.Fatalf("cold start printed %q, warm start %q", first.stdout, warm.stdout)
	}
	for i, ns := range []string{"mnt", "pid"} {
		// Not compared with the first container's: it is gone, and the kernel reuses a
		// freed namespace's inode number.
		if host, _ := os.Readlink("/proc/self/ns/" + ns); w[2+i] == host {
			t.Errorf("the warm start's %s namespace is the host's", ns)
		}
	}

	// A host-network spare is parked again; a --network none container must not take it.
	hostSpare := parkedPid(t, s, NetworkHost)
	spec.Args = []string{"/bin/sh", "-c", "ls /sys/class/net"}
	sec, err := DefaultSecurity()
	if err != nil {
		t.Fatal(err)
	}
	sec.Network = NetworkNone
	spec.Security = &sec
	p, err = Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid == hostSpare {
		t.Fatal("a --network none container took the host-network spare")
	}
	if r := finish(t, p); strings.TrimSpace(r.stdout) != "lo" {
		t.Errorf("--network none container sees interfaces %q", r.stdout)
	}
	parkedPid(t, s, NetworkNone)
}

// cmdline returns the command line of pid. Right after clone returns, the child may still be
// inside execve, where the new image's arguments are not set up yet and read as "".
func cmdline(t *testing.T, pid int) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 || time.Now().After(deadline) {
			return strings.ReplaceAll(string(b), "\x00", " ")
		}
	}
}

// TestSparesDiscardedOnMountChange: a spare holds a copy of our mounts from when it was
// cloned; after a mount it must not be used.
func TestSparesDiscardedOnMountChange(t *testing.T) {
	rootfs := testRootfs(t)
	s := newSpares(t)
	spec := sh(rootfs, "true")
	spec.Spares = s
	run(t, spec)
	spare := parkedPid(t, s, NetworkHost)

	dir := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })

	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid == spare {
		t.Errorf("a spare cloned before a mount was used after it (gen %d)", s.gen)
	}
	finish(t, p)
	if !gone(spare) {
		t.Errorf("the stale spare %d is still there", spare)
	}
	// The next one, cloned after the mount, is good again.
	next := parkedPid(t, s, NetworkHost)
	if p, err = Start(spec); err != nil {
		t.Fatal(err)
	} else if p.Pid != next {
		t.Errorf("the fresh spare %d was not used (pid %d)", next, p.Pid)
	}
	finish(t, p)
}

// TestSparesExpire: an unused spare is gone after maxAge.
func TestSparesExpire(t *testing.T) {
	rootfs := testRootfs(t)
	s := newSpares(t)
	s.maxAge = 300 * time.Millisecond
	spec := sh(rootfs, "true")
	spec.Spares = s
	run(t, spec)
	spare := parkedPid(t, s, NetworkHost)
	for deadline := time.Now().Add(5 * time.Second); !gone(spare); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("spare %d still there 5s after its %v", spare, s.maxAge)
		}
	}
	s.mu.Lock()
	n := len(s.parked)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d spares parked after expiry", n)
	}
}

// TestSparesDeadSpare: a spare killed from outside is not handed a container; the start is
// a cold one and succeeds.
func TestSparesDeadSpare(t *testing.T) {
	rootfs := testRootfs(t)
	s := newSpares(t)
	spec := sh(rootfs, "echo ok")
	spec.Spares = s
	run(t, spec)
	spare := parkedPid(t, s, NetworkHost)
	if err := unix.Kill(spare, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until it is reaped the pid stays, so wait for the pidfd to say it exited.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, spare, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err == nil && info.Signo != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed spare did not exit")
		}
	}
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("start after the spare died: %v", err)
	}
	if p.Pid == spare {
		t.Error("the dead spare was used")
	}
	if r := finish(t, p); r.stdout != "ok\n" || r.exit.Code != 0 {
		t.Errorf("start after the spare died: %v, %q", r.exit, r.stdout)
	}
}

// TestSparesSetupFailure: a setup that fails in a spare is reported like a cold one's, and
// the next start still works.
func TestSparesSetupFailure(t *testing.T) {
	rootfs := testRootfs(t)
	s := newSpares(t)
	spec := sh(rootfs, "true")
	spec.Spares = s
	run(t, spec)
	parkedPid(t, s, NetworkHost)
	bad := spec
	bad.Overlay = &Overlay{Lower: filepath.Join(t.TempDir(), "missing"), Upper: t.TempDir(), Work: t.TempDir()}
	bad.Rootfs = t.TempDir()
	if _, err := Start(bad); err == nil || !strings.Contains(err.Error(), "setup failed") {
		t.Fatalf("start with a missing lower layer: %v, want a setup failure", err)
	}
	run(t, spec)
}
