// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackfruit/jackfruit/service"
)

// Two supervisors with their own state directories but one run directory (both left at the
// default /run/jackfruit, say) and a container name in common: the second start is refused
// with a message naming the cause, and the first container's overlay is left alone.
func TestSharedRunDirNameClash(t *testing.T) {
	a := newEnv(t)
	cfg := a.cfg
	cfg.StateDir = filepath.Join(t.TempDir(), "state-b")
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	a.start(t, "hog", "sleep", "1000")
	_, err = b.Start(context.Background(), root, service.StartRequest{Name: "hog", Command: []string{"true"}})
	if service.KindOf(err) != service.KindAlreadyExists || !strings.Contains(err.Error(), "--run-dir") {
		t.Fatalf("second supervisor's start: %v (kind %s); want AlreadyExists pointing at --run-dir", err, service.KindOf(err))
	}
	if ents, _ := os.ReadDir(filepath.Join(cfg.StateDir, "containers")); len(ents) != 0 {
		t.Errorf("refused start left %v in the second state directory", ents)
	}
	merged := a.s.mergedDir("hog")
	if mps, _ := mountPoints(merged); len(mps) != 1 {
		t.Errorf("first supervisor's overlay at %s: mounts %v, want exactly its own", merged, mps)
	}
	if info, _ := a.s.Get(context.Background(), root, "hog"); info.State != service.StateRunning {
		t.Errorf("first container is %s", info.State)
	}
	a.s.Kill(context.Background(), root, "hog", syscall.SIGKILL)
	a.wait(t, "hog")
	// Other names work side by side.
	if _, err := b.Start(context.Background(), root, service.StartRequest{Name: "other", Command: []string{"true"}}); err != nil {
		t.Errorf("start of another name on the second supervisor: %v", err)
	}
}
