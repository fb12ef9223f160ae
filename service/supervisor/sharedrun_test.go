// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// Two supervisors with their own state directories but one run directory (both left at the
// default /run/jackfruit, say) and a container name in common: each container's overlay is
// mounted in its own mount namespace only (runtime.Overlay), so both run side by side, each
// on its own writable layer, and nothing is mounted in the supervisors' namespace.
func TestSharedRunDirSameName(t *testing.T) {
	a := newEnv(t)
	cfg := a.cfg
	cfg.StateDir = filepath.Join(t.TempDir(), "state-b")
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()

	a.start(t, "hog", "sh", "-c", "echo a > /mark; sleep 1000")
	if _, err := b.Start(ctx, root, service.StartRequest{Name: "hog", Command: []string{"sh", "-c", "echo b > /mark; sleep 1000"}}); err != nil {
		t.Fatalf("second supervisor's start of the same name: %v", err)
	}
	for _, mps := range [][]string{must(mountPoints(a.cfg.RunDir)), must(mountPoints(a.cfg.StateDir)), must(mountPoints(cfg.StateDir))} {
		if len(mps) != 0 {
			t.Errorf("mounts in the supervisors' namespace: %v", mps)
		}
	}
	// Start returns once sh runs, not once it has written: wait for both marks before the kill
	// (under load the kill came first).
	deadline := time.Now().Add(10 * time.Second)
	for _, dir := range []string{a.cfg.StateDir, cfg.StateDir} {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(dir, "containers", "hog", "upper", "mark")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, s := range []*Supervisor{a.s, b} {
		if err := s.Kill(ctx, root, "hog", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if info, err := s.Wait(ctx, root, "hog"); err != nil || info.State != service.StateKilled {
			t.Errorf("hog: %+v %v", info, err)
		}
	}
	for dir, want := range map[string]string{a.cfg.StateDir: "a\n", cfg.StateDir: "b\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, "containers", "hog", "upper", "mark")); err != nil || string(got) != want {
			t.Errorf("%s: the container's write: %q %v, want %q", dir, got, err, want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
