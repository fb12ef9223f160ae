// SPDX-License-Identifier: Apache-2.0

// Package testutil holds what the host tests of several packages share: the test rootfs, a
// private systemd-journald (journald.go) and a private system-like dbus-daemon (dbus.go).
package testutil

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// RootfsEnv names the environment variable that points the tests at `make rootfs`'s output.
const RootfsEnv = "JACKFRUIT_TEST_ROOTFS"

// Rootfs returns the busybox test rootfs that `make rootfs` builds.
//
// `make test-host` (and so `make test`) always sets JACKFRUIT_TEST_ROOTFS, and then nothing
// is skipped: running without root or with a directory that is not the test rootfs fails the
// test, naming the problem. Only a hand-run `go test` without the variable skips, saying how
// to run the test.
func Rootfs(t testing.TB) string {
	t.Helper()
	p := os.Getenv(RootfsEnv)
	if p == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root (containers use namespaces and mounts) and " + RootfsEnv + "=build/rootfs from `make rootfs`")
		}
		t.Skip(RootfsEnv + " is not set; run `make rootfs` and point it at build/rootfs (make test-host does)")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s is set, so this test must run, but it needs root: containers use namespaces and mounts (running as uid %d)", RootfsEnv, os.Geteuid())
	}
	if _, err := os.Stat(filepath.Join(p, "bin", "busybox")); err != nil {
		t.Fatalf("%s=%s is not the test rootfs (run `make rootfs`): %v", RootfsEnv, p, err)
	}
	return p
}

// SyncBuffer collects a daemon's output while a test reads it: writes and String may race.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *SyncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *SyncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
