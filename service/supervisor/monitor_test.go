// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/monitor"
)

// TestMonitorEvents feeds the core's handler the events the kernel monitor's reader delivers
// (the device itself is exercised by the QEMU and full-system tests) and checks the state and
// event stream they produce, including the HARD-before-reap synchronisation.
func TestMonitorEvents(t *testing.T) {
	s := &Supervisor{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		events:     newBroker(),
		containers: map[string]*container{},
		byPid:      map[int]*container{},
	}
	c := &container{done: make(chan struct{}), hard: make(chan struct{}), monExited: make(chan struct{}), registered: true}
	c.rec.Name, c.rec.State, c.rec.Pid = "hog", service.StateRunning, 4242
	s.containers["hog"] = c
	s.byPid[4242] = c
	events, cancel := s.Subscribe()
	defer cancel()

	s.handleMonitorEvent(monitor.Event{Type: monitor.EventSoft, Pid: 4242, RSS: 42 << 20, Limit: 40 << 20})
	ev := <-events
	if ev.Type != service.EventSoftLimit || ev.RSS != 42<<20 || ev.Limit != 40<<20 || !ev.Container.SoftLimitExceeded {
		t.Errorf("soft event: %+v", ev)
	}
	if c.rec.PeakRSS != 42<<20 {
		t.Errorf("peak RSS %d", c.rec.PeakRSS)
	}
	// Events for pids the core does not know (another supervisor's, or already gone) are ignored.
	s.handleMonitorEvent(monitor.Event{Type: monitor.EventHard, Pid: 1, RSS: 1, Limit: 1})
	select {
	case ev := <-events:
		t.Errorf("event for an unknown pid: %+v", ev)
	default:
	}

	// The reaper sees SIGKILL before the reader delivered HARD: it waits for the reader.
	got := make(chan bool)
	go func() { got <- s.killedByMonitorWait(c, time.Second) }()
	time.Sleep(50 * time.Millisecond)
	s.handleMonitorEvent(monitor.Event{Type: monitor.EventHard, Pid: 4242, RSS: 65 << 20, Limit: 64 << 20})
	if !<-got {
		t.Error("HARD delivered while the reaper waited was not seen")
	}
	if ev := <-events; ev.Type != service.EventHardLimit || ev.Limit != 64<<20 {
		t.Errorf("hard event: %+v", ev)
	}
	// An EXITED event without HARD before it settles the question at once: not the monitor.
	c2 := &container{hard: make(chan struct{}), monExited: make(chan struct{}), registered: true}
	c2.rec.Name, c2.rec.Pid = "other", 4343
	s.byPid[4343] = c2
	s.handleMonitorEvent(monitor.Event{Type: monitor.EventExited, Pid: 4343})
	t0 := time.Now()
	if s.killedByMonitorWait(c2, 5*time.Second) {
		t.Error("a plain SIGKILL was taken for a monitor kill")
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("EXITED did not end the wait (%v)", d)
	}
}

// The module queues a REGISTERED event (with the RSS) the moment a pid is registered, so the
// reader may update a container's record while its start is still persisting it. Run with
// -race: the start's snapshot for state.json must be taken under the lock.
func TestMonitorEventDuringStartPersist(t *testing.T) {
	s := &Supervisor{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		events:     newBroker(),
		containers: map[string]*container{},
		byPid:      map[int]*container{},
	}
	dir := filepath.Join(t.TempDir(), "hog")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &container{dir: dir, hard: make(chan struct{}), monExited: make(chan struct{})}
	c.rec.Name, c.rec.State, c.rec.Pid = "hog", service.StateRunning, 4242
	s.byPid[4242] = c // as register does before its ioctl
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			s.handleMonitorEvent(monitor.Event{Type: monitor.EventRegistered, Pid: 4242, RSS: uint64(i+1) << 20})
		}
	}()
	for i := 0; i < 50; i++ {
		if err := s.saveLocked(c); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	rec, err := load(c.dir)
	if err != nil || rec.Name != "hog" {
		t.Fatalf("persisted record: %+v, %v", rec, err)
	}
}
