// SPDX-License-Identifier: Apache-2.0

// Settling a container's final state: saved first, then shown, and never lost.

package supervisor

import (
	"sync"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// How hard the core tries to save a final state. The quick retries happen before the state
// is shown (a passing EMFILE should not even be visible); after them the state is shown with
// a background saver still trying, with backoff, until it is saved, the container removed,
// or shutdown has tried for shutdownSaveTimeout.
const (
	settleRetries       = 3
	saveRetryFirst      = 50 * time.Millisecond
	saveRetryMax        = 5 * time.Second
	shutdownSaveTimeout = 20 * time.Second // well inside jackfruit.service's TimeoutStopSec
)

// disk serialises what is written into a container's directory after it became final (its
// state.json) with Remove deleting that directory.
type disk struct {
	mu   sync.Mutex
	gone bool // the directory was removed: there is nothing to save any more
	// What the last saved running state said beyond the start (saveLocked, saveRunning), so
	// that a detaching supervisor writes only the containers where it changed.
	peak uint64
	soft bool
}

// saveFinal writes rec to the container's state.json unless the container was removed.
func (s *Supervisor) saveFinal(c *container, rec record) error {
	c.disk.mu.Lock()
	defer c.disk.mu.Unlock()
	if c.disk.gone {
		return nil
	}
	return save(c.dir, rec)
}

// saveRunning writes the state of a running container as it is now (soft limit exceeded,
// peak RSS) for a next supervisor; its state.json otherwise holds only what it was at start.
// With onlyChanged it writes nothing when neither changed since the last save. Never over a
// final state: a container that is settling or settled, or removed, is left alone (settle's
// saveFinal takes c.disk.mu too, so a final save always comes after this one), and neither is
// one whose start has not put it into the registry yet (create saves it itself, and an undone
// start removes its directory).
func (s *Supervisor) saveRunning(c *container, onlyChanged bool) {
	c.disk.mu.Lock()
	defer c.disk.mu.Unlock()
	s.mu.Lock()
	if c.disk.gone || c.settling || c.rec.State.Final() || s.containers[c.rec.Name] != c ||
		(onlyChanged && c.rec.PeakRSS == c.disk.peak && c.rec.SoftLimitExceeded == c.disk.soft) {
		s.mu.Unlock()
		return
	}
	rec := c.rec
	s.mu.Unlock()
	if err := save(c.dir, rec); err != nil {
		s.log.Warn("saving the state of a running container", "container", rec.Name, "error", err.Error())
		return
	}
	c.disk.peak, c.disk.soft = rec.PeakRSS, rec.SoftLimitExceeded
}

// settle makes rec, the container's final state, visible. It is saved first; then, in one
// step under s.mu, it replaces the registry's record, the exited event is published and
// Wait/Stop/logs -f are released. Whoever sees the container final (Get, List, Wait, the
// event stream and with it D-Bus) therefore sees a container the core is done with: a
// Remove cannot race the state file being written, and removed can never precede exited.
//
// A save that keeps failing (disk full, out of file descriptors) does not hold the state
// back for ever: after a few quick retries it is shown as it is, the failure is logged once,
// and a background saver keeps trying; an exit status the core knows is never replaced by
// the "unknown" a restarted supervisor would have to assume.
func (s *Supervisor) settle(c *container, rec record) {
	var err error
	// An AutoRemove container is removed right after this: its final state would be written
	// only to be deleted. Should the removal fail or the supervisor stop first, its state on
	// disk still says running, and the next supervisor settles and removes it.
	if !rec.AutoRemove {
		err = s.saveFinal(c, rec)
	}
	delay := saveRetryFirst
	for i := 0; err != nil && i < settleRetries; i++ {
		time.Sleep(delay)
		delay *= 2
		err = s.saveFinal(c, rec)
	}
	s.mu.Lock()
	c.rec = rec
	c.settling = false
	s.publish(service.EventExited, c, 0, 0)
	close(c.done)
	if err != nil {
		// Before the reaper is done, so Close's wait for the reapers orders this Add
		// before its wait for the savers.
		s.savers.Add(1)
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Error("cannot save the final state of a container; retrying until it is saved",
			"container", rec.Name, "state", string(rec.State), "exit_code", rec.ExitCode, "error", err.Error())
		go s.saveLater(c, rec, delay)
	}
}

// saveLater retries saving rec with exponential backoff. At shutdown (s.shutdown closed) it
// retries at the quick pace for shutdownSaveTimeout more and then gives up, logging the
// state that could not be saved so that it is at least in the journal.
func (s *Supervisor) saveLater(c *container, rec record, delay time.Duration) {
	defer s.savers.Done()
	shutdown := s.shutdown
	var deadline <-chan time.Time
	for attempt := settleRetries + 2; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-shutdown:
			t.Stop()
			shutdown, delay = nil, saveRetryFirst
			deadline = time.After(shutdownSaveTimeout)
		case <-deadline:
			t.Stop()
			s.log.Error("giving up saving the final state of a container at shutdown; a restarted supervisor will report its exit status as unknown",
				"container", rec.Name, "state", string(rec.State), "exit_code", rec.ExitCode, "signal", rec.Signal)
			return
		}
		err := s.saveFinal(c, rec)
		if err == nil {
			s.log.Info("saved the final state of a container after retrying", "container", rec.Name, "attempts", attempt)
			return
		}
		s.log.Debug("saving the final state of a container failed again", "container", rec.Name, "attempt", attempt, "error", err.Error())
		delay = min(delay*2, saveRetryMax)
	}
}
