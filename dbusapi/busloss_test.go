// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

// When the bus goes away under a running supervisor, the adapter says so once, not once per
// signal it can no longer send: the supervisor's log must stay readable while the control
// socket carries on.
func TestLostBusWarnsOnce(t *testing.T) {
	requireRoot(t)
	e := setup(t)
	var logs testutil.SyncBuffer
	srv := dbusapi.New(e.fake, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	// A second server for the same core on a connection of its own, which the test then
	// closes as a dying bus would. (The setup's server keeps the bus name.)
	conn := e.bus.Conn(t)
	if err := srv.Attach(conn); err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second Attach: %v; want the name to be refused", err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Attach(conn); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer srv.Close()
	e.start(t, "web", nil) // through the bus, while it works
	conn.Close()

	for i := 0; i < 5; i++ {
		e.fake.Start(t.Context(), service.Caller{}, service.StartRequest{Name: "c" + string(rune('a'+i)), Command: []string{"true"}})
		e.fake.finish("c"+string(rune('a'+i)), service.StateExited, 0, 0)
	}
	e.fake.finish("web", service.StateKilled, 0, syscall.SIGKILL)
	// The event loop has worked through every event once it has tried the last signal: the
	// ContainerExited of web, the sixth (each failed emit after the warning is a debug line).
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "signal=io.jackfruit.Jackfruit1.Manager.ContainerExited") < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the event loop did not try all six ContainerExited signals:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "lost the D-Bus connection") {
		t.Errorf("want exactly one warning about the lost bus, got %d:\n%s", n, out)
	}
}
