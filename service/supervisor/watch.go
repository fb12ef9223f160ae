// SPDX-License-Identifier: Apache-2.0

// Background consumers: the journal writer, the kernel monitor reader and the RSS sampler.

package supervisor

import (
	"strconv"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/logs"
)

// journalWriter records every lifecycle and memory event in journald with the container's
// fields. It has a deep buffer of its own: a lost journal entry is worse than memory.
func (s *Supervisor) journalWriter(ch <-chan service.Event) {
	defer s.bg.Done()
	warned := false
	for ev := range ch {
		if ev.Type == service.EventStarted {
			continue // written by create, ahead of the container's first line
		}
		f := logs.Fields{Name: ev.Container.Name, ID: ev.Container.ID}
		if err := s.journal.Event(f, ev); err != nil && !warned {
			warned = true
			s.log.Warn("writing events to journald failed; later failures are not reported", "error", err.Error())
		}
	}
}

// memoryReader turns the memory watcher's events into container state and core events.
func (s *Supervisor) memoryReader() {
	defer s.bg.Done()
	warned := false
	for {
		ev, err := s.mem.Next()
		if err != nil {
			select {
			case <-s.stopBg:
				return
			default:
			}
			if !warned {
				warned = true
				s.log.Warn("reading kernel monitor events failed; retrying", "error", err.Error())
			}
			select {
			case <-s.stopBg:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.handleMemoryEvent(ev)
	}
}

func (s *Supervisor) handleMemoryEvent(ev memEvent) {
	s.watchMu.Lock()
	c := s.byWatch[ev.Handle]
	s.watchMu.Unlock()
	if c == nil {
		return // unwatched meanwhile
	}
	s.mu.Lock()
	persist := false
	defer func() {
		s.mu.Unlock()
		if persist {
			s.saveRunning(c, false)
		}
	}()
	if ev.RSS > 0 {
		c.rec.RSS = ev.RSS
		c.rec.PeakRSS = max(c.rec.PeakRSS, ev.RSS)
	}
	if ev.Current > 0 && ev.Kind != memHard { // memHard carries memory.peak
		c.rec.MemoryCurrent = ev.Current
	}
	switch ev.Kind {
	case memSoft:
		// Saved at once: inspect after a supervisor's crash still says so, and the next
		// supervisor does not warn again for the same crossing.
		persist = !c.rec.SoftLimitExceeded
		c.rec.SoftLimitExceeded = true
		s.log.Warn("container exceeded its soft memory limit", "container", c.rec.Name, "rss", ev.usage(), "limit", ev.Limit, "enforced_by", c.rec.EnforcedBy)
		s.publish(service.EventSoftLimit, c, ev.usage(), ev.Limit)
	case memHard:
		s.hardLimitLocked(c, ev.usage(), ev.Limit)
	case memExited:
		c.exitOnce.Do(func() { close(c.monExited) })
	}
}

// hardLimitLocked records that c was killed at its hard limit and publishes hard-limit, once
// whoever learns it first (the watcher's event or the reaper's own query). The caller holds
// s.mu.
func (s *Supervisor) hardLimitLocked(c *container, usage, limit uint64) {
	c.hardOnce.Do(func() {
		close(c.hard)
		s.log.Warn("container reached its hard memory limit and is killed", "container", c.rec.Name, "rss", usage, "limit", limit, "enforced_by", c.rec.EnforcedBy)
		s.publish(service.EventHardLimit, c, usage, limit)
	})
}

// sampler refreshes RSS and peak RSS of running containers for ps and inspect: with a
// memory watcher one UsageAll call a second for all containers, without one from /proc.
func (s *Supervisor) sampler() {
	defer s.bg.Done()
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		kicked := false
		select {
		case <-s.stopBg:
			return
		case <-t.C:
		case <-s.kick:
			kicked = true
		}
		switch {
		case s.memBy == service.EnforcedByModule:
			s.sampleWatched()
		case kicked:
			s.sampleNew()
		default:
			s.sampleProc()
		}
		if !kicked { // every container's memory.current: the next tick's, not each start's
			s.sampleCgroups()
		}
	}
}

// sampleCgroups refreshes memory.current of every running container that has a cgroup with
// the memory controller.
func (s *Supervisor) sampleCgroups() {
	if s.cfg.Cgroups == nil || !s.cfg.Cgroups.Has("memory") {
		return
	}
	s.mu.Lock()
	groups := make(map[*container]*cgroup.Group)
	for _, c := range s.containers {
		if c.cg != nil && !c.rec.State.Final() && !c.settling {
			groups[c] = c.cg
		}
	}
	s.mu.Unlock()
	cur := make(map[*container]uint64, len(groups))
	for c, g := range groups {
		if v, err := g.MemoryCurrent(); err == nil {
			cur[c] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, v := range cur {
		if !c.rec.State.Final() && !c.settling {
			c.rec.MemoryCurrent = v
		}
	}
}

// sampleNew gives containers that have no RSS yet (just started: the kick after a start) the
// RSS of their init, until the next full round counts their other processes too. A full
// round walks all of /proc, which after every start would cost each start time and garbage
// in proportion to every process on the host.
func (s *Supervisor) sampleNew() {
	s.mu.Lock()
	fresh := make(map[int]*container)
	for _, c := range s.containers {
		if !c.rec.State.Final() && c.rec.Pid > 0 && c.rec.RSS == 0 {
			fresh[c.rec.Pid] = c
		}
	}
	s.mu.Unlock()
	for pid, c := range fresh {
		v := vmRSS("/proc/" + strconv.Itoa(pid) + "/status")
		s.mu.Lock()
		if v > 0 && c.rec.Pid == pid && !c.rec.State.Final() && c.rec.RSS == 0 {
			c.rec.RSS = v
			c.rec.PeakRSS = max(c.rec.PeakRSS, v)
		}
		s.mu.Unlock()
	}
}

// sampleWatched takes the RSS of every watched container from the watcher's last
// measurement. A container the watcher refused has no entry and keeps its last value.
func (s *Supervisor) sampleWatched() {
	usage, err := s.mem.UsageAll()
	if err != nil {
		s.log.Debug("sampling memory from the kernel monitor", "error", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if !c.registered || c.rec.State.Final() {
			continue
		}
		if u, ok := usage[c.watch]; ok && u.RSS > 0 {
			c.rec.RSS = u.RSS
			c.rec.PeakRSS = max(c.rec.PeakRSS, u.RSS)
		}
	}
}

// sampleProc measures running containers from /proc when no watcher is there.
func (s *Supervisor) sampleProc() {
	s.mu.Lock()
	var pids []int
	byPid := make(map[int]*container)
	for _, c := range s.containers {
		if !c.rec.State.Final() && c.rec.Pid > 0 {
			pids = append(pids, c.rec.Pid)
			byPid[c.rec.Pid] = c
		}
	}
	s.mu.Unlock()
	if len(pids) == 0 {
		return
	}
	rss := procRSS(pids)
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, v := range rss {
		c := byPid[pid]
		if c.rec.Pid == pid && !c.rec.State.Final() && v > 0 {
			c.rec.RSS = v
			c.rec.PeakRSS = max(c.rec.PeakRSS, v)
		}
	}
}
