// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// fakeWatcher is a memoryWatcher driven by the test: it records what the core asks and
// delivers the events the test emits. The module itself is tested in QEMU (test/kmod).
type fakeWatcher struct {
	mu        sync.Mutex
	next      watchHandle
	specs     map[watchHandle]watchSpec
	usage     map[watchHandle]memUsage
	unwatched []watchHandle
	usageAll  int // UsageAll calls
	usageOne  int // Usage calls
	failWatch error
	events    chan memEvent
	closed    chan struct{}
	closeOnce sync.Once
}

func newFakeWatcher() *fakeWatcher {
	return &fakeWatcher{
		next:   100, // handles unrelated to any pid
		specs:  map[watchHandle]watchSpec{},
		usage:  map[watchHandle]memUsage{},
		events: make(chan memEvent, 16),
		closed: make(chan struct{}),
	}
}

func (f *fakeWatcher) Watch(spec watchSpec) (watchHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWatch != nil {
		return 0, f.failWatch
	}
	f.next++
	f.specs[f.next] = spec
	f.usage[f.next] = memUsage{}
	return f.next, nil
}

func (f *fakeWatcher) Unwatch(h watchHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.specs[h]; !ok {
		return fmt.Errorf("unwatch %d: %w", h, os.ErrNotExist)
	}
	delete(f.specs, h)
	delete(f.usage, h)
	f.unwatched = append(f.unwatched, h)
	return nil
}

func (f *fakeWatcher) Usage(h watchHandle) (memUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usageOne++
	u, ok := f.usage[h]
	if !ok {
		return memUsage{}, fmt.Errorf("usage %d: %w", h, os.ErrNotExist)
	}
	return u, nil
}

func (f *fakeWatcher) UsageAll() (map[watchHandle]memUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usageAll++
	out := make(map[watchHandle]memUsage, len(f.usage))
	for h, u := range f.usage {
		out[h] = u
	}
	return out, nil
}

func (f *fakeWatcher) Next() (memEvent, error) {
	select {
	case ev := <-f.events:
		return ev, nil
	case <-f.closed:
		return memEvent{}, os.ErrClosed
	}
}

func (f *fakeWatcher) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeWatcher) set(h watchHandle, u memUsage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usage[h] = u
}

// handleOf returns the handle the core got for the container whose init is pid.
func (f *fakeWatcher) handleOf(t *testing.T, pid int) (watchHandle, watchSpec) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, s := range f.specs {
		if s.Proc.Pid == pid {
			return h, s
		}
	}
	t.Fatalf("pid %d is not watched", pid)
	return 0, watchSpec{}
}

func waitEvent(t *testing.T, events <-chan service.Event, typ service.EventType, name string) service.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == typ && ev.Container.Name == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for %s", typ, name)
		}
	}
}

// TestMemoryWatcherLifecycle runs real containers against a fake watcher: the core watches
// each init by its process (pidfd), samples all containers with one UsageAll call, turns a
// hard-limit event into killed-by-memory-limit, and unwatches by handle, never by pid.
func TestMemoryWatcherLifecycle(t *testing.T) {
	fw := newFakeWatcher()
	e := newEnv(t, func(c *Config) { c.watcher = fw })
	if st := e.s.Status(); !st.MonitorAvailable {
		t.Fatalf("status %+v: the watcher is not in use", st)
	}
	events, cancel := e.s.Subscribe()
	defer cancel()

	info, err := e.s.Start(context.Background(), root, service.StartRequest{Name: "hog", Command: []string{"sleep", "1000"}, SoftLimit: 8 << 20, HardLimit: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	h, spec := fw.handleOf(t, info.Pid)
	if spec.Name != "hog" || spec.Soft != 8<<20 || spec.Hard != 16<<20 || !info.LimitsEnforced {
		t.Errorf("watched %+v (enforced %v), want hog with 8 and 16 MiB", spec, info.LimitsEnforced)
	}
	if err := spec.Proc.WithPidfd(func(fd int) error { return nil }); err != nil {
		t.Errorf("the watcher gets no pidfd of the running init: %v", err)
	}

	// The sampler takes every container's RSS from one UsageAll call.
	fw.set(h, memUsage{RSS: 5 << 20})
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := e.s.Get(context.Background(), root, "hog")
		if got.RSS == 5<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RSS %d after sampling, want %d", got.RSS, 5<<20)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fw.mu.Lock()
	all, one := fw.usageAll, fw.usageOne
	fw.mu.Unlock()
	if all == 0 || one != 0 {
		t.Errorf("sampler made %d UsageAll and %d Usage calls, want only UsageAll", all, one)
	}

	fw.events <- memEvent{Kind: memSoft, Handle: h, RSS: 9 << 20, Limit: 8 << 20}
	if ev := waitEvent(t, events, service.EventSoftLimit, "hog"); ev.RSS != 9<<20 || !ev.Container.SoftLimitExceeded {
		t.Errorf("soft event %+v", ev)
	}
	// An event for a handle the core does not know (another container's, long gone) is
	// ignored.
	fw.events <- memEvent{Kind: memHard, Handle: h + 1000, RSS: 1, Limit: 1}

	// The watcher kills at the hard limit: HARD first, then the SIGKILL.
	fw.set(h, memUsage{RSS: 17 << 20, Killed: true})
	fw.events <- memEvent{Kind: memHard, Handle: h, RSS: 17 << 20, Limit: 16 << 20}
	waitEvent(t, events, service.EventHardLimit, "hog")
	if err := spec.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := e.wait(t, "hog"); got.State != service.StateOOMKill || got.RSS != 17<<20 {
		t.Errorf("after the watcher's kill: state %s rss %d, want %s with 17 MiB", got.State, got.RSS, service.StateOOMKill)
	}

	// A plain SIGKILL, which the watcher did not send, is not a memory kill.
	plain := e.start(t, "plain", "sleep", "1000")
	ph, _ := fw.handleOf(t, plain.Pid)
	if err := e.s.Kill(context.Background(), root, "plain", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := e.wait(t, "plain"); got.State != service.StateKilled {
		t.Errorf("plain SIGKILL: state %s, want %s", got.State, service.StateKilled)
	}
	fw.mu.Lock()
	unwatched := fmt.Sprint(fw.unwatched)
	fw.mu.Unlock()
	if want := fmt.Sprint([]watchHandle{h, ph}); unwatched != want {
		t.Errorf("unwatched %s, want the handles %s", unwatched, want)
	}

	// A container the watcher cannot take runs unenforced, and says why.
	fw.mu.Lock()
	fw.failWatch = fmt.Errorf("%w: test", errContainerGone)
	fw.mu.Unlock()
	gone := e.start(t, "quick", "true")
	if gone.LimitsEnforced || !strings.Contains(gone.Message, "not enforced") {
		t.Errorf("unwatched container: enforced %v, message %q", gone.LimitsEnforced, gone.Message)
	}
	e.wait(t, "quick")
}

// TestMonitorEvents feeds the core's handler the events the watcher's reader delivers and
// checks the state and event stream they produce, including the HARD-before-reap
// synchronisation.
func TestMonitorEvents(t *testing.T) {
	s := bareSupervisor()
	c := &container{done: make(chan struct{}), hard: make(chan struct{}), monExited: make(chan struct{}), registered: true, watch: 7}
	c.rec.Name, c.rec.State, c.rec.Pid = "hog", service.StateRunning, 4242
	s.containers["hog"] = c
	s.byWatch[7] = c
	events, cancel := s.Subscribe()
	defer cancel()

	s.handleMemoryEvent(memEvent{Kind: memSoft, Handle: 7, RSS: 42 << 20, Limit: 40 << 20})
	ev := <-events
	if ev.Type != service.EventSoftLimit || ev.RSS != 42<<20 || ev.Limit != 40<<20 || !ev.Container.SoftLimitExceeded {
		t.Errorf("soft event: %+v", ev)
	}
	if c.rec.PeakRSS != 42<<20 {
		t.Errorf("peak RSS %d", c.rec.PeakRSS)
	}
	// Events for handles the core does not know (already unwatched) are ignored; in
	// particular a handle equal to the container's pid means nothing.
	s.handleMemoryEvent(memEvent{Kind: memHard, Handle: 4242, RSS: 1, Limit: 1})
	select {
	case ev := <-events:
		t.Errorf("event for an unknown handle: %+v", ev)
	default:
	}

	// The reaper sees SIGKILL before the reader delivered HARD: it waits for the reader.
	got := make(chan bool)
	go func() { got <- s.killedByMonitorWait(c, time.Second) }()
	time.Sleep(50 * time.Millisecond)
	s.handleMemoryEvent(memEvent{Kind: memHard, Handle: 7, RSS: 65 << 20, Limit: 64 << 20})
	if !<-got {
		t.Error("HARD delivered while the reaper waited was not seen")
	}
	if ev := <-events; ev.Type != service.EventHardLimit || ev.Limit != 64<<20 {
		t.Errorf("hard event: %+v", ev)
	}
	// An EXITED event without HARD before it settles the question at once: not the monitor.
	c2 := &container{hard: make(chan struct{}), monExited: make(chan struct{}), registered: true, watch: 8}
	c2.rec.Name, c2.rec.Pid = "other", 4343
	s.byWatch[8] = c2
	s.handleMemoryEvent(memEvent{Kind: memExited, Handle: 8})
	t0 := time.Now()
	if s.killedByMonitorWait(c2, 5*time.Second) {
		t.Error("a plain SIGKILL was taken for a monitor kill")
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("EXITED did not end the wait (%v)", d)
	}
}

func TestModuleWatcherUnavailable(t *testing.T) {
	_, err := openModuleWatcher(t.TempDir() + "/container_monitor")
	if err == nil || !strings.Contains(err.Error(), "modprobe container_monitor") {
		t.Errorf("open of a missing device: %v, want the module's hint", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap ErrNotExist", err)
	}
}
