// SPDX-License-Identifier: Apache-2.0

// Background consumers: the journal writer, the kernel monitor reader and the RSS sampler.

package supervisor

import (
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/monitor"
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

// monitorReader turns the kernel monitor's events into container state and core events.
func (s *Supervisor) monitorReader() {
	defer s.bg.Done()
	warned := false
	for {
		ev, err := s.mon.ReadEvent()
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
		s.handleMonitorEvent(ev)
	}
}

func (s *Supervisor) handleMonitorEvent(ev monitor.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.byPid[ev.Pid]
	if c == nil {
		return
	}
	if ev.RSS > 0 {
		c.rec.RSS = ev.RSS
		c.rec.PeakRSS = max(c.rec.PeakRSS, ev.RSS)
	}
	switch ev.Type {
	case monitor.EventSoft:
		c.rec.SoftLimitExceeded = true
		s.log.Warn("container exceeded its soft memory limit", "container", c.rec.Name, "rss", ev.RSS, "limit", ev.Limit)
		s.publish(service.EventSoftLimit, c, ev.RSS, ev.Limit)
	case monitor.EventHard:
		c.hardOnce.Do(func() { close(c.hard) })
		s.log.Warn("container reached its hard memory limit and is killed", "container", c.rec.Name, "rss", ev.RSS, "limit", ev.Limit)
		s.publish(service.EventHardLimit, c, ev.RSS, ev.Limit)
	case monitor.EventExited:
		c.exitOnce.Do(func() { close(c.monExited) })
	}
}

// sampler refreshes RSS and peak RSS of running containers for ps and inspect.
func (s *Supervisor) sampler() {
	defer s.bg.Done()
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-t.C:
		case <-s.kick:
		}
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
			continue
		}
		var rss map[int]uint64
		if s.mon != nil {
			rss = make(map[int]uint64, len(pids))
			for _, pid := range pids {
				// A container the module refused has no entry; Query then fails harmlessly.
				if e, err := s.mon.Query(pid); err == nil {
					rss[pid] = e.RSS
				}
			}
		} else {
			rss = procRSS(pids)
		}
		s.mu.Lock()
		for pid, v := range rss {
			c := byPid[pid]
			if c.rec.Pid == pid && !c.rec.State.Final() && v > 0 {
				c.rec.RSS = v
				c.rec.PeakRSS = max(c.rec.PeakRSS, v)
			}
		}
		s.mu.Unlock()
	}
}
