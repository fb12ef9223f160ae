// SPDX-License-Identifier: Apache-2.0

// Package testutil holds what the host tests of several packages share: the test rootfs, a
// private systemd-journald (journald.go) and a private system-like dbus-daemon (dbus.go).
package testutil

import (
	"bytes"
	"os"
	"sync"
	"testing"
)

// RootfsEnv names the environment variable that points the tests at `make rootfs`'s output.
const RootfsEnv = "JACKFRUIT_TEST_ROOTFS"

// Rootfs returns the busybox test rootfs that `make rootfs` builds. It skips the test, saying
// why, when not running as root (containers need namespaces and mounts) or when the rootfs
// was not given; `make test-host` always gives it.
func Rootfs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers use namespaces and mounts")
	}
	p := os.Getenv(RootfsEnv)
	if p == "" {
		t.Skip(RootfsEnv + " is not set; run `make rootfs` and point it at build/rootfs (make test-host does)")
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
