// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

// A client that removes a container the moment it looks final must never race the core
// still settling it: no "directory not empty" from a state file being written, and the
// stream says exited before removed, every time.
func TestRemoveAsSoonAsFinal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	events, cancel := e.s.Subscribe()
	defer cancel()
	const n = 40
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("rf%d", i)
		e.start(t, name, "true")
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := e.s.Get(ctx, root, name)
			if err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			if info.State.Final() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not end", name)
			}
			// A busy poll on purpose: the point is to look as early as possible.
		}
		if err := e.s.Remove(ctx, root, name); err != nil {
			t.Fatalf("try %d: remove %s as soon as it looked final: %v", i, name, err)
		}
	}
	// Every container's events, in order: started, exited, removed.
	seen := map[string][]service.EventType{}
	timeout := time.After(10 * time.Second)
	for removed := 0; removed < n; {
		select {
		case ev := <-events:
			seen[ev.Container.Name] = append(seen[ev.Container.Name], ev.Type)
			if ev.Type == service.EventRemoved {
				removed++
			}
		case <-timeout:
			t.Fatalf("only %d removed events arrived", removed)
		}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("rf%d", i)
		got := fmt.Sprint(seen[name])
		if want := fmt.Sprint([]service.EventType{service.EventStarted, service.EventExited, service.EventRemoved}); got != want {
			t.Errorf("%s: events %s, want %s", name, got, want)
		}
	}
}

// readOnly bind-mounts dir read-only over itself, so that saving state.json fails with
// EROFS as it would on a full or broken disk; the returned function lifts it.
func readOnly(t *testing.T, dir string) func() {
	t.Helper()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	var once sync.Once
	lift := func() {
		once.Do(func() {
			if err := unix.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(lift)
	return lift
}

// startTrapTerm starts a container that exits 7 on SIGTERM: an exit status only the reaper
// knows. It returns once the trap is set (pid 1 ignores a SIGTERM it has no handler for).
func (e *testEnv) startTrapTerm(t *testing.T, name string) {
	t.Helper()
	e.start(t, name, "sh", "-c", `trap "exit 7" TERM; echo ready; sleep 1000 & wait`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errReady := errors.New("ready")
	err := e.s.Logs(ctx, root, name, service.LogOptions{Follow: true}, func(l service.LogLine) error {
		if string(l.Data) == "ready" {
			return errReady
		}
		return nil
	})
	if err != errReady {
		t.Fatalf("%s never said ready: %v", name, err)
	}
}

// The state directory refuses writes when the container exits: the exit status is shown
// all the same, the failure is logged once, the save is retried until the directory takes
// it, and a restarted supervisor reads the real status rather than "exit status unknown".
func TestExitStatusSurvivesFailedSave(t *testing.T) {
	var logbuf testutil.SyncBuffer
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logbuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	ctx := context.Background()
	e.startTrapTerm(t, "ro")
	dir := filepath.Join(e.cfg.StateDir, "containers", "ro")
	lift := readOnly(t, dir)
	if err := e.s.Kill(ctx, root, "ro", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	info := e.wait(t, "ro")
	if info.State != service.StateExited || info.ExitCode != 7 {
		t.Fatalf("after a failed save: %s %d, want exited 7", info.State, info.ExitCode)
	}
	if rec, err := load(dir); err != nil || rec.State != service.StateRunning {
		t.Fatalf("state.json should still say running while the directory is read-only: %v %v", rec.State, err)
	}
	// Several retries fail meanwhile; the log says so once.
	time.Sleep(time.Second)
	if n := strings.Count(logbuf.String(), "cannot save the final state"); n != 1 {
		t.Errorf("the failed save is reported %d times, want once:\n%s", n, logbuf.String())
	}
	lift()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rec, err := load(dir); err == nil && rec.State == service.StateExited && rec.ExitCode == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the final state was not saved after the directory became writable again")
		}
	}
	// The note follows the rename that the loop above saw.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logbuf.String(), "saved the final state of a container after retrying"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no note that the retry succeeded:\n%s", logbuf.String())
			break
		}
	}
	e.s.Close()
	s2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if info, err := s2.Get(ctx, root, "ro"); err != nil || info.State != service.StateExited || info.ExitCode != 7 || strings.Contains(info.Message, "supervisor stopped") {
		t.Errorf("after a restart: %+v %v; want exited 7, not a recovered guess", info, err)
	}
}

// The directory is still read-only when the supervisor shuts down: Close keeps retrying, and
// when the directory recovers during shutdown the real status reaches the disk.
func TestExitStatusSavedAtShutdown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.startTrapTerm(t, "ro")
	dir := filepath.Join(e.cfg.StateDir, "containers", "ro")
	lift := readOnly(t, dir)
	if err := e.s.Kill(ctx, root, "ro", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "ro")
	closed := make(chan struct{})
	go func() {
		e.s.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned with a final state not saved")
	case <-time.After(500 * time.Millisecond):
	}
	lift()
	select {
	case <-closed:
	case <-time.After(shutdownSaveTimeout):
		t.Fatal("Close did not return after the directory became writable")
	}
	if rec, err := load(dir); err != nil || rec.State != service.StateExited || rec.ExitCode != 7 {
		t.Errorf("state.json after shutdown: %s %d %v, want exited 7", rec.State, rec.ExitCode, err)
	}
}
