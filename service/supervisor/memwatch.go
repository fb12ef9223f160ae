// SPDX-License-Identifier: Apache-2.0

// Memory watching: what the core needs from whatever enforces container memory limits,
// behind one small interface. The container_monitor kernel module implements it
// (moduleWatcher), and where the module is absent the containers' cgroups (cgroupWatcher).

package supervisor

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/monitor"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// watchHandle names one watched container for the watcher that returned it. Handles are
// never reused by a watcher, so a handle kept after a container ended can never address
// another container (a pid number could).
type watchHandle uint64

// watchSpec is what a watcher is told about a container it should watch.
type watchSpec struct {
	Name       string
	Proc       *runtime.Process // the init; its pidfd names it even after its pid is reused
	Cgroup     *cgroup.Group    // the container's cgroup; nil when it has none
	Soft, Hard uint64           // bytes; Soft 0 means no soft limit
	// SoftWarned: the soft limit was crossed, and warned about, before this watch (by a
	// previous supervisor): no second warning for the same crossing.
	SoftWarned bool
}

// memUsage is a watcher's latest measurement of one container.
type memUsage struct {
	RSS     uint64 // bytes, over every process of the container (the module)
	Current uint64 // bytes, the cgroup's memory.current (the cgroup watcher)
	Killed  bool   // the watcher killed the container at its hard limit
}

// memEventKind tells what a watcher reports.
type memEventKind int

const (
	memWatched memEventKind = iota + 1 // watching began; RSS is the first measurement
	memSoft                            // crossed the soft limit (once per crossing)
	memHard                            // crossed the hard limit and is being killed
	memExited                          // the init is gone; reported after any memHard
)

// memEvent is one report of a watcher.
type memEvent struct {
	Kind    memEventKind
	Handle  watchHandle
	RSS     uint64 // the module's RSS at the time of the event (0 when unknown)
	Current uint64 // the cgroup's memory.current (memory.peak for memHard) at that time
	Limit   uint64 // the limit crossed
}

// usage is the value that crossed the limit, whichever watcher measured it.
func (ev memEvent) usage() uint64 {
	if ev.RSS > 0 {
		return ev.RSS
	}
	return ev.Current
}

// memoryWatcher measures containers and enforces their limits. Implementations are safe
// for concurrent use; Next is called by one reader goroutine.
//
// The contract the core relies on: a memHard event for a container is delivered before
// its memExited event, and is available (Usage().Killed) by the time its init is reaped.
type memoryWatcher interface {
	// Watch starts watching a container. A container whose init already exited gives an
	// error wrapping errContainerGone.
	Watch(spec watchSpec) (watchHandle, error)
	// Unwatch stops watching without touching the container.
	Unwatch(h watchHandle) error
	// Usage is the latest measurement of one container.
	Usage(h watchHandle) (memUsage, error)
	// UsageAll measures every watched container at once (the sampler's one call a second).
	UsageAll() (map[watchHandle]memUsage, error)
	// Next blocks until the next event; after Close it returns an error.
	Next() (memEvent, error)
	// Close ends Next and lets go of the watcher's resources.
	Close() error
}

// errContainerGone means the container's init exited before it could be watched.
var errContainerGone = errors.New("the container's init has already exited")

// moduleWatcher is the container_monitor kernel module. Its open file owns the
// registrations: closing it (Close, or the supervisor's death) drops them.
type moduleWatcher struct {
	c *monitor.Client
}

var _ memoryWatcher = (*moduleWatcher)(nil)

// openModuleWatcher opens the module's device; errors name the device and the remedy.
func openModuleWatcher(device string) (*moduleWatcher, error) {
	c, err := monitor.Open(device)
	if err != nil {
		return nil, err
	}
	return &moduleWatcher{c: c}, nil
}

func (m *moduleWatcher) Watch(spec watchSpec) (watchHandle, error) {
	var id uint64
	err := spec.Proc.WithPidfd(func(pidfd int) error {
		var err error
		id, err = m.c.Register(pidfd, spec.Name, spec.Soft, spec.Hard)
		return err
	})
	if err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrProcessDone) {
			return 0, fmt.Errorf("%w: %w", errContainerGone, err)
		}
		return 0, err
	}
	return watchHandle(id), nil
}

func (m *moduleWatcher) Unwatch(h watchHandle) error { return m.c.Unregister(uint64(h)) }

func (m *moduleWatcher) Usage(h watchHandle) (memUsage, error) {
	e, err := m.c.Query(uint64(h))
	if err != nil {
		return memUsage{}, err
	}
	return memUsage{RSS: e.RSS, Killed: e.Killed}, nil
}

func (m *moduleWatcher) UsageAll() (map[watchHandle]memUsage, error) {
	es, err := m.c.QueryAll()
	if err != nil {
		return nil, err
	}
	out := make(map[watchHandle]memUsage, len(es))
	for _, e := range es {
		out[watchHandle(e.ID)] = memUsage{RSS: e.RSS, Killed: e.Killed}
	}
	return out, nil
}

func (m *moduleWatcher) Next() (memEvent, error) {
	for {
		ev, err := m.c.ReadEvent()
		if err != nil {
			return memEvent{}, err
		}
		if me, ok := memEventOf(ev); ok {
			return me, nil
		}
	}
}

// memEventOf translates a module event; false for a type this supervisor does not know
// (nothing to act on).
func memEventOf(ev monitor.Event) (memEvent, bool) {
	var k memEventKind
	switch ev.Type {
	case monitor.EventRegistered:
		k = memWatched
	case monitor.EventSoft:
		k = memSoft
	case monitor.EventHard:
		k = memHard
	case monitor.EventExited:
		k = memExited
	default:
		return memEvent{}, false
	}
	return memEvent{Kind: k, Handle: watchHandle(ev.ID), RSS: ev.RSS, Limit: ev.Limit}, true
}

// Queued returns the events the module has queued already, without waiting for more: what
// happened to the containers while no supervisor read the kept monitor file.
func (m *moduleWatcher) Queued() ([]memEvent, error) {
	var out []memEvent
	for {
		ready := false
		err := withFD(m.c.File(), func(fd int) error {
			for {
				n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
				if err == unix.EINTR {
					continue
				}
				ready = n > 0
				return err
			}
		})
		if err != nil || !ready {
			return out, err
		}
		ev, err := m.c.ReadEvent()
		if err != nil {
			return out, err
		}
		if me, ok := memEventOf(ev); ok {
			out = append(out, me)
		}
	}
}

func (m *moduleWatcher) Close() error { return m.c.Close() }
