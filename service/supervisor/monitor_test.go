// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackfruit/jackfruit/service"
)

func bareSupervisor() *Supervisor {
	return &Supervisor{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		events:     newBroker(),
		containers: map[string]*container{},
		byWatch:    map[watchHandle]*container{},
	}
}

// The module queues a REGISTERED event (with the RSS) the moment a pid is registered, so the
// reader may update a container's record while its start is still persisting it. Run with
// -race: the start's snapshot for state.json must be taken under the lock.
func TestMonitorEventDuringStartPersist(t *testing.T) {
	s := bareSupervisor()
	dir := filepath.Join(t.TempDir(), "hog")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &container{dir: dir, hard: make(chan struct{}), monExited: make(chan struct{}), watch: 1}
	c.rec.Name, c.rec.State, c.rec.Pid = "hog", service.StateRunning, 4242
	s.byWatch[1] = c // as register does under watchMu
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			s.handleMemoryEvent(memEvent{Kind: memWatched, Handle: 1, RSS: uint64(i+1) << 20})
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
