// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// Close (SIGTERM of the daemon) while starts are in flight: when Close returns, every start
// has either produced a container that is now final and persisted, or been undone. Nothing
// is left mounted, running or half-created for the next supervisor to find.
func TestCloseDuringStarts(t *testing.T) {
	e := newEnv(t)
	const n = 16
	var wg sync.WaitGroup
	type result struct {
		info service.ContainerInfo
		err  error
	}
	results := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			info, err := e.s.Start(context.Background(), root, service.StartRequest{
				Name: fmt.Sprintf("cs%d", i), Command: []string{"sleep", "1000"}, StopTimeout: time.Second,
			})
			results[i] = result{info, err}
		}(i)
	}
	// Shut down once a few are running, while the others are still on their way.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if l, _ := e.s.List(context.Background(), root, false); len(l) >= 3 {
			break
		}
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	// Checked before the Start goroutines are collected: Close itself must have waited.
	for _, dir := range []string{e.cfg.StateDir, e.cfg.RunDir} {
		if mps, err := mountPoints(dir); err != nil || len(mps) > 0 {
			t.Errorf("mounts left under %s after Close: %v %v", dir, mps, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "containers"))
	for _, en := range ents {
		rec, err := load(filepath.Join(e.cfg.StateDir, "containers", en.Name()))
		if err != nil {
			t.Errorf("container directory %s left without a readable state.json: %v", en.Name(), err)
		} else if !rec.State.Final() {
			t.Errorf("container %s persisted as %s after Close", rec.Name, rec.State)
		}
	}
	wg.Wait()
	started := 0
	for i, r := range results {
		switch {
		case r.err == nil:
			started++
			if err := syscall.Kill(r.info.Pid, 0); err != syscall.ESRCH {
				t.Errorf("cs%d: init %d still exists after Close (%v)", i, r.info.Pid, err)
			}
		case service.KindOf(r.err) != service.KindInvalidState:
			t.Errorf("cs%d: start failed with %v (kind %s); want success or InvalidState (shutting down)", i, r.err, service.KindOf(r.err))
		}
	}
	t.Logf("%d of %d starts completed before the shutdown", started, n)
}
