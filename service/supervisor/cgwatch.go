// SPDX-License-Identifier: Apache-2.0

// Memory limits enforced by cgroup v2 where the kernel module is absent: the hard limit is
// the container's memory.max (with memory.oom.group, so an OOM kill ends the whole
// container as the module's SIGKILL of the init does), the soft limit a warning when
// memory.current crosses it. Nothing throttles: the soft limit only warns, as the module's.

package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackfruit/jackfruit/service/cgroup"
)

// cgroupPollInterval is how often the one poller of all cgroup-enforced containers reads
// memory.current (soft limit) and memory.events (hard-limit kills). The kernel enforces
// memory.max by itself; the poll only makes the warnings timely, and a kill is decided from
// a fresh read when the init is reaped (Usage), never from the poll.
const cgroupPollInterval = 250 * time.Millisecond

// oomSettle bounds how long Usage waits for an OOM kill in progress to be counted: the
// group's own limit was hit (memory.events oom) but the kill is not counted yet, which
// happens when the init itself is the OOM killer's victim (it is signalled just before
// oom_kill is incremented).
const oomSettle = 100 * time.Millisecond

// cgroupWatcher implements memoryWatcher with the containers' cgroups.
type cgroupWatcher struct {
	mu      sync.Mutex
	last    watchHandle
	watched map[watchHandle]*cgWatch
	queue   []memEvent    // events not yet taken by Next
	ready   chan struct{} // signalled (buffer 1) when queue becomes non-empty
	stop    chan struct{}
	closed  bool
	done    sync.WaitGroup
}

// cgWatch is one watched container.
type cgWatch struct {
	g          *cgroup.Group
	soft, hard uint64
	overSoft   bool // warned for the current crossing; cleared when usage falls below soft
	hardSeen   bool // memHard reported
}

var _ memoryWatcher = (*cgroupWatcher)(nil)

func newCgroupWatcher() *cgroupWatcher {
	w := &cgroupWatcher{
		watched: make(map[watchHandle]*cgWatch),
		ready:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	w.done.Add(1)
	go w.poll()
	return w
}

// Watch sets the container's hard limit on its cgroup (create set it already, before the
// init was born; this makes a failure visible) and starts watching. A cgroup outlives its
// processes, so a container that is over already is still watched: its memory.events tell
// how it ended.
func (w *cgroupWatcher) Watch(spec watchSpec) (watchHandle, error) {
	if spec.Cgroup == nil {
		return 0, errors.New("the container has no cgroup")
	}
	if err := spec.Cgroup.SetMemoryLimit(spec.Hard); err != nil {
		return 0, fmt.Errorf("setting memory.max: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("the cgroup watcher is closed")
	}
	w.last++
	// overSoft from a previous supervisor's warning: the first check clears it if usage has
	// fallen below the limit since, and the next crossing is warned about again.
	w.watched[w.last] = &cgWatch{g: spec.Cgroup, soft: spec.Soft, hard: spec.Hard, overSoft: spec.SoftWarned}
	return w.last, nil
}

func (w *cgroupWatcher) Unwatch(h watchHandle) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[h]; !ok {
		return fmt.Errorf("cgroup watch %d: not watched", h)
	}
	delete(w.watched, h)
	return nil
}

func (w *cgroupWatcher) get(h watchHandle) (*cgWatch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cw, ok := w.watched[h]
	if !ok {
		return nil, fmt.Errorf("cgroup watch %d: not watched", h)
	}
	return cw, nil
}

// Usage reads the group afresh: memory.current, and whether its limit killed it.
func (w *cgroupWatcher) Usage(h watchHandle) (memUsage, error) {
	cw, err := w.get(h)
	if err != nil {
		return memUsage{}, err
	}
	ev, err := cw.g.MemoryEvents()
	if err != nil {
		return memUsage{}, err
	}
	if ev.OOM > 0 && !ev.LimitKilled() {
		deadline := time.Now().Add(oomSettle)
		for time.Now().Before(deadline) && err == nil && !ev.LimitKilled() {
			time.Sleep(10 * time.Millisecond)
			ev, err = cw.g.MemoryEvents()
		}
		if err != nil {
			return memUsage{}, err
		}
	}
	cur, err := cw.g.MemoryCurrent()
	if err != nil {
		return memUsage{}, err
	}
	return memUsage{Current: cur, Killed: ev.LimitKilled()}, nil
}

func (w *cgroupWatcher) UsageAll() (map[watchHandle]memUsage, error) {
	w.mu.Lock()
	all := make(map[watchHandle]*cgroup.Group, len(w.watched))
	for h, cw := range w.watched {
		all[h] = cw.g
	}
	w.mu.Unlock()
	out := make(map[watchHandle]memUsage, len(all))
	for h, g := range all {
		if cur, err := g.MemoryCurrent(); err == nil {
			out[h] = memUsage{Current: cur}
		}
	}
	return out, nil
}

// Next returns the next soft or hard limit event.
func (w *cgroupWatcher) Next() (memEvent, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			ev := w.queue[0]
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return ev, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return memEvent{}, errors.New("the cgroup watcher is closed")
		}
		select {
		case <-w.ready:
		case <-w.stop:
		}
	}
}

func (w *cgroupWatcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.stop)
	w.mu.Unlock()
	w.done.Wait()
	return nil
}

// poll is the one ticker of all cgroup-enforced containers: a goroutine each would cost a
// stack per container for work that is a few reads a second.
func (w *cgroupWatcher) poll() {
	defer w.done.Done()
	t := time.NewTicker(cgroupPollInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		hs := make([]watchHandle, 0, len(w.watched))
		cws := make([]*cgWatch, 0, len(w.watched))
		for h, cw := range w.watched {
			hs = append(hs, h)
			cws = append(cws, cw)
		}
		w.mu.Unlock()
		// The reads happen without the lock; only this goroutine writes overSoft/hardSeen.
		var evs []memEvent
		for i, cw := range cws {
			evs = append(evs, cw.check(hs[i])...)
		}
		if len(evs) > 0 {
			w.mu.Lock()
			w.queue = append(w.queue, evs...)
			w.mu.Unlock()
			select {
			case w.ready <- struct{}{}:
			default:
			}
		}
	}
}

// check reads one group and returns the events it owes: memSoft once per crossing of the
// soft limit, memHard once when its limit killed it.
func (cw *cgWatch) check(h watchHandle) []memEvent {
	cur, err := cw.g.MemoryCurrent()
	if err != nil {
		return nil // gone with its container; the reaper settles it
	}
	var out []memEvent
	if cw.soft > 0 {
		switch {
		case cur >= cw.soft && !cw.overSoft:
			cw.overSoft = true
			out = append(out, memEvent{Kind: memSoft, Handle: h, Current: cur, Limit: cw.soft})
		case cur < cw.soft:
			cw.overSoft = false
		}
	}
	if !cw.hardSeen {
		if ev, err := cw.g.MemoryEvents(); err == nil && ev.LimitKilled() {
			cw.hardSeen = true
			out = append(out, memEvent{Kind: memHard, Handle: h, Current: killedAt(cw.g, cw.hard), Limit: cw.hard})
		}
	}
	return out
}

// killedAt is the usage at which a group's limit killed it: memory.peak where the kernel has
// it (by then memory.current has dropped with the killed processes), else the limit itself.
func killedAt(g *cgroup.Group, limit uint64) uint64 {
	if peak, err := g.MemoryPeak(); err == nil && peak > 0 {
		return peak
	}
	return limit
}
