// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// stacksMentioning lists the goroutines whose stacks mention f.
func stacksMentioning(f string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:goruntime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, f) {
			out = append(out, g)
		}
	}
	return out
}

// Close waits for the TERM→KILL escalations of stops in progress, including one whose
// caller gave up waiting: when it returns, none is left.
func TestCloseAwaitsStopEscalations(t *testing.T) {
	e := newEnv(t)
	// sleep as pid 1 ignores SIGTERM: the stop below waits for its timeout of an hour.
	if _, err := e.s.Start(context.Background(), root, service.StartRequest{Name: "stubborn", Command: []string{"sleep", "1000"}, StopTimeout: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.s.Stop(ctx, root, "stubborn", time.Hour); err == nil {
		t.Fatal("the stop ended within 100 ms although its container ignores SIGTERM")
	}
	if len(stacksMentioning("supervisor.(*Supervisor).stop.func")) == 0 {
		t.Fatal("no escalation running for the abandoned stop")
	}
	e.s.Close() // stops with the container's own 300 ms: SIGKILL
	if left := stacksMentioning("supervisor.(*Supervisor).stop.func"); len(left) > 0 {
		t.Fatalf("%d stop escalations still running after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// Start, Kill and Remove honour their context: a caller that has given up changes nothing.
func TestCallsHonourTheirContext(t *testing.T) {
	e := newEnv(t)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.s.Start(gone, root, service.StartRequest{Name: "late", Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("Start with an ended context: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "late")); !os.IsNotExist(err) {
		t.Errorf("Start with an ended context left its directory: %v", err)
	}
	e.start(t, "live", "sleep", "1000")
	if err := e.s.Kill(gone, root, "live", syscall.SIGKILL); err == nil {
		t.Error("Kill with an ended context succeeded")
	}
	if info, _ := e.s.Get(context.Background(), root, "live"); info.State != service.StateRunning {
		t.Errorf("Kill with an ended context changed the container: %s", info.State)
	}
	if err := e.s.Kill(context.Background(), root, "live", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "live")
	if err := e.s.Remove(gone, root, "live"); err == nil {
		t.Error("Remove with an ended context succeeded")
	}
	if _, err := e.s.Get(context.Background(), root, "live"); err != nil {
		t.Errorf("Remove with an ended context removed the container: %v", err)
	}
}
