// SPDX-License-Identifier: Apache-2.0

// The end of a container: reaping its init, deciding its final state, persisting it.

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// saveLocked persists a snapshot of c.rec taken under s.mu: once a container is known to the
// monitor's reader by its pid, the reader may write c.rec at any moment.
func (s *Supervisor) saveLocked(c *container) error {
	// Under c.disk.mu, as saveRunning: of two saves the later one writes the later snapshot.
	c.disk.mu.Lock()
	defer c.disk.mu.Unlock()
	s.mu.Lock()
	rec := c.rec
	s.mu.Unlock()
	if err := save(c.dir, rec); err != nil {
		return err
	}
	c.disk.peak, c.disk.soft = rec.PeakRSS, rec.SoftLimitExceeded
	return nil
}

func (s *Supervisor) unregister(c *container) {
	if !c.registered {
		return
	}
	// By handle, never by pid: the init may be reaped and its number given to another
	// container's init already.
	if err := s.mem.Unwatch(c.watch); err != nil {
		s.log.Debug("unregister from kernel monitor", "container", c.rec.Name, "error", err.Error())
	}
	s.watchMu.Lock()
	if s.byWatch[c.watch] == c {
		delete(s.byWatch, c.watch)
	}
	s.watchMu.Unlock()
	s.mu.Lock()
	c.registered = false
	s.mu.Unlock()
}

// reap waits for the container's init, drains its output, settles the final state, tears
// down the overlay and monitor registration, persists, and only then announces the exit.
func (s *Supervisor) reap(c *container) {
	defer s.reapers.Done()
	s.mu.Lock()
	g := c.cg
	s.mu.Unlock()
	if g != nil {
		c.proc.OnExit(func() {
			if ev, err := g.MemoryEvents(); err == nil && ev.LimitKilled() {
				c.cgLimitKilled.Store(true)
			}
		})
	}
	exit, werr := c.proc.Wait()
	c.copies.Wait()
	s.mu.Lock()
	if s.detaching {
		// The copiers let go of the pipes before the end of the output: the next
		// supervisor drains them and settles the container.
		s.mu.Unlock()
		return
	}
	s.finishing.Add(1) // Detach waits for a container that is being settled
	s.mu.Unlock()
	defer s.finishing.Done()
	if err := c.clog.Close(); err != nil {
		s.log.Warn("closing container log", "container", c.rec.Name, "error", err.Error())
	}
	finished := time.Now()

	state, code, sig, msg := service.StateExited, exit.Code, "", ""
	switch {
	case werr != nil:
		code = -1
		msg = fmt.Sprintf("waiting for the container's init failed: %v", werr)
		s.log.Error("wait for container", "container", c.rec.Name, "error", werr.Error())
	case exit.Signal != 0:
		state, code, sig = service.StateKilled, 128+int(exit.Signal), signalName(exit.Signal)
		if exit.Signal == syscall.SIGKILL && c.registered && s.killedByMonitor(c) {
			state = service.StateOOMKill
		}
	}
	// The module's RSS is its last sample before the death; a cgroup's memory.current is
	// only what is left after it, so the sampler's last value stays.
	var rss uint64
	if c.registered {
		if u, err := s.mem.Usage(c.watch); err == nil {
			rss = u.RSS
		}
	}
	if state == service.StateOOMKill {
		// The watcher's own event may still be on its way (or, for a cgroup, the poll not
		// yet have seen the kill): hard-limit precedes exited whoever noticed first.
		s.mu.Lock()
		limit := c.rec.HardLimit
		s.mu.Unlock()
		usage := rss
		if usage == 0 && c.cg != nil {
			usage = killedAt(c.cg, limit)
		}
		s.mu.Lock()
		s.hardLimitLocked(c, usage, limit)
		s.mu.Unlock()
	}
	s.unregister(c)
	s.mu.Lock()
	merged := c.rec.MergedDir
	s.mu.Unlock()
	if merged != "" {
		if err := s.teardownOverlay(merged); err != nil {
			s.log.Error("tearing down overlay", "container", c.rec.Name, "error", err.Error())
		}
	}

	s.mu.Lock()
	// From here the container is settling: the final state exists only in rec until it is
	// saved and published (settle), and stop, kill and the sampler leave c.rec alone.
	c.settling = true
	rec := c.rec
	s.mu.Unlock()
	rec.State, rec.ExitCode, rec.Signal = state, code, sig
	rec.Pid = 0
	rec.FinishedAt = finished
	if rss > 0 {
		rec.RSS = rss
		rec.PeakRSS = max(rec.PeakRSS, rss)
	}
	if c.cg != nil && s.ownsCgroup(rec.Cgroup) {
		// Read (memory.events) and done with: the processes are gone, only the directory
		// is left.
		if err := c.cg.Remove(); err != nil {
			s.log.Warn("removing the cgroup of an ended container; retried when it is removed", "container", rec.Name, "error", err.Error())
		} else {
			rec.Cgroup = ""
		}
	}
	switch {
	case state == service.StateOOMKill && rec.EnforcedBy == service.EnforcedByCgroup:
		rec.Message = "killed at the hard limit by its cgroup's memory.max (an OOM kill of the whole container)"
	case state == service.StateOOMKill:
		rec.Message = "killed by the kernel memory monitor at the hard limit"
	case msg != "":
		rec.Message = msg
	}
	if c.unit != nil {
		// systemd has given its record of the exit (Wait) and the cgroup has been read;
		// the unit holds only leftovers now, and must go before the name is free again.
		if err := c.unit.Remove(); err != nil {
			s.log.Error("removing the unit of an ended container", "container", rec.Name, "unit", c.unit.Name(), "error", err.Error())
		} else {
			rec.Cgroup = "" // gone with the unit
		}
	}
	s.settle(c, rec)
	// Drained to EOF and recorded: the next supervisor needs nothing of it any more.
	s.dropPipes(rec.Name, rec.Tty)
	if rec.AutoRemove {
		s.autoRemove(c)
	}
}

// ownsCgroup reports whether dir is a container cgroup this supervisor made (and so
// removes); a unit's cgroup is systemd's to remove.
func (s *Supervisor) ownsCgroup(dir string) bool {
	return dir != "" && s.cfg.Cgroups != nil && s.cfg.Cgroups.Contains(dir)
}

// removeCgroup removes the cgroup a record names when this supervisor made it, killing
// whatever is left in it; the record forgets it once it is gone.
func (s *Supervisor) removeCgroup(rec *record) error {
	if !s.ownsCgroup(rec.Cgroup) {
		return nil
	}
	g, err := cgroup.Open(rec.Cgroup)
	if errors.Is(err, os.ErrNotExist) {
		rec.Cgroup = ""
		return nil
	}
	if err == nil {
		err = g.Remove()
	}
	if err != nil {
		return err
	}
	rec.Cgroup = ""
	return nil
}

// killedByMonitor decides whether an init that died of SIGKILL was killed by the monitor.
// The module queues the HARD event before it sends SIGKILL, so the event is readable by now,
// but the reader goroutine may not have consumed it yet: ask the module directly, and wait
// briefly for the reader to catch up when the module cannot say.
func (s *Supervisor) killedByMonitor(c *container) bool {
	if c.cgLimitKilled.Load() {
		return true
	}
	select {
	case <-c.hard:
		return true
	default:
	}
	wait := time.Second
	if u, err := s.mem.Usage(c.watch); err == nil {
		if u.Killed {
			return true
		}
		wait = 50 * time.Millisecond
	}
	return s.killedByMonitorWait(c, wait)
}

// killedByMonitorWait waits up to wait for the reader to deliver a HARD event for c.
func (s *Supervisor) killedByMonitorWait(c *container, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.hard:
		return true
	case <-c.monExited:
		// The exit is queued after any HARD event; the reader has passed it.
		select {
		case <-c.hard:
			return true
		default:
			return false
		}
	case <-t.C:
		return false
	}
}

// teardownOverlay unmounts a container's merged rootfs and removes the mount point.
func (s *Supervisor) teardownOverlay(merged string) error {
	mps, err := mountPoints(merged)
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	// Deepest first, in case something was mounted inside the merged tree.
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		if err := runtime.Unmount(mp); err != nil {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	if err := os.Remove(merged); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if s.cfg.RunDir != "" && filepath.Dir(filepath.Dir(merged)) == filepath.Join(s.cfg.RunDir, "containers") {
		if err := os.Remove(filepath.Dir(merged)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
