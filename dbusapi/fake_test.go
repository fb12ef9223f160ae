// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

// fakeManager is an in-memory service.Manager with the core's rules that the adapter relies
// on (name validation, root-only writes, final-state checks, events). The tests against the
// real supervisor are in supervisor_test.go; this one lets the bus side be tested on its own,
// including transitions (soft limit, exit) that are slow or need the kernel module for real.
type fakeManager struct {
	mu     sync.Mutex
	seq    int
	byName map[string]*service.ContainerInfo
	subs   map[int]chan service.Event
	nsub   int
	// rss is returned live by Get, to prove MemoryRSS is not cached by the adapter.
	rss map[string]uint64
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func newFake() *fakeManager {
	return &fakeManager{byName: map[string]*service.ContainerInfo{}, subs: map[int]chan service.Event{}, rss: map[string]uint64{}}
}

func (f *fakeManager) publish(t service.EventType, ci service.ContainerInfo, rss, limit uint64) {
	ev := service.Event{Type: t, Time: time.Now(), Container: ci, RSS: rss, Limit: limit}
	for _, ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func authorise(c service.Caller) error {
	if c.UID != 0 {
		return service.Errorf(service.KindAccessDenied, "uid %d may not change containers (root or the admin group only)", c.UID)
	}
	return nil
}

func checkName(name string) error {
	if !validName.MatchString(name) || strings.Contains(name, "..") {
		return service.Errorf(service.KindInvalidArgument, "invalid container name %q: must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", name)
	}
	return nil
}

func (f *fakeManager) lookup(name string) (*service.ContainerInfo, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ci, ok := f.byName[name]
	if !ok {
		return nil, service.Errorf(service.KindNoSuchContainer, "no such container %q", name)
	}
	return ci, nil
}

func (f *fakeManager) Start(_ context.Context, c service.Caller, req service.StartRequest) (service.ContainerInfo, error) {
	if err := authorise(c); err != nil {
		return service.ContainerInfo{}, err
	}
	if err := checkName(req.Name); err != nil {
		return service.ContainerInfo{}, err
	}
	if len(req.Command) == 0 {
		return service.ContainerInfo{}, service.Errorf(service.KindInvalidArgument, "no command given")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byName[req.Name]; ok {
		return service.ContainerInfo{}, service.Errorf(service.KindAlreadyExists, "container %q already exists", req.Name)
	}
	f.seq++
	soft, hard := req.SoftLimit, req.HardLimit
	if soft == 0 {
		soft = service.DefaultSoftLimit
	}
	if hard == 0 {
		hard = service.DefaultHardLimit
	}
	host := req.Hostname
	if host == "" {
		host = req.Name
	}
	now := time.Now()
	ci := &service.ContainerInfo{
		Name: req.Name, ID: fmt.Sprintf("%064x", f.seq), State: service.StateRunning, Pid: 10000 + f.seq,
		Command: req.Command, Env: req.Env, Rootfs: req.Rootfs, Overlay: req.Rootfs == "", Hostname: host,
		SoftLimit: soft, HardLimit: hard, StopTimeout: req.StopTimeout, CreatedAt: now, StartedAt: now,
		// The real core resolves these; the fake echoes what the adapter passed on.
		Capabilities: append(append([]string{}, req.CapAdd...), req.CapDrop...), Seccomp: strings.Join(req.SecurityOpt, ","),
		Network: req.Network,
		// As the core shows a container whose cgroup enforces its limits.
		LimitsEnforced: true, EnforcedBy: service.EnforcedByCgroup, MemoryCurrent: 4 << 20,
		Cgroup: "/sys/fs/cgroup/jackfruit/containers/" + req.Name,
	}
	f.byName[req.Name] = ci
	f.publish(service.EventStarted, *ci, 0, 0)
	return *ci, nil
}

// finish moves a container to a final state, as the core does when its init dies.
func (f *fakeManager) finish(name string, state service.State, code int, sig syscall.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ci := f.byName[name]
	if ci == nil || ci.State.Final() {
		return
	}
	ci.State, ci.ExitCode, ci.Pid, ci.FinishedAt = state, code, 0, time.Now()
	if sig != 0 {
		ci.Signal = unix.SignalName(sig)
		ci.ExitCode = 128 + int(sig)
	}
	f.publish(service.EventExited, *ci, 0, 0)
}

// softLimit records a soft-limit warning as the core does for the monitor's SOFT event.
func (f *fakeManager) softLimit(name string, rss uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ci := f.byName[name]
	ci.SoftLimitExceeded = true
	f.publish(service.EventSoftLimit, *ci, rss, ci.SoftLimit)
}

// hardLimit reports the monitor's HARD event, which comes before the kill is seen.
func (f *fakeManager) hardLimit(name string, rss uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ci := f.byName[name]
	f.publish(service.EventHardLimit, *ci, rss, ci.HardLimit)
}

func (f *fakeManager) setRSS(name string, rss uint64) {
	f.mu.Lock()
	f.rss[name] = rss
	f.mu.Unlock()
}

func (f *fakeManager) Stop(_ context.Context, c service.Caller, name string, _ time.Duration) (service.ContainerInfo, error) {
	if err := authorise(c); err != nil {
		return service.ContainerInfo{}, err
	}
	f.mu.Lock()
	ci, err := f.lookup(name)
	f.mu.Unlock()
	if err != nil {
		return service.ContainerInfo{}, err
	}
	f.finish(name, service.StateKilled, 0, syscall.SIGTERM)
	f.mu.Lock()
	defer f.mu.Unlock()
	return *ci, nil
}

func (f *fakeManager) Kill(_ context.Context, c service.Caller, name string, sig syscall.Signal) error {
	if err := authorise(c); err != nil {
		return err
	}
	if sig <= 0 || sig > 64 {
		return service.Errorf(service.KindInvalidArgument, "invalid signal %d", sig)
	}
	f.mu.Lock()
	ci, err := f.lookup(name)
	if err == nil && ci.State.Final() {
		err = service.Errorf(service.KindInvalidState, "container %q is not running", name)
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.finish(name, service.StateKilled, 0, sig)
	return nil
}

func (f *fakeManager) Remove(_ context.Context, c service.Caller, name string) error {
	if err := authorise(c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ci, err := f.lookup(name)
	if err != nil {
		return err
	}
	if !ci.State.Final() {
		return service.Errorf(service.KindInvalidState, "container %q is %s; stop it first", name, ci.State)
	}
	delete(f.byName, name)
	f.publish(service.EventRemoved, *ci, 0, 0)
	return nil
}

func (f *fakeManager) Get(_ context.Context, _ service.Caller, name string) (service.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ci, err := f.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	out := *ci
	out.RSS = f.rss[name]
	return out, nil
}

func (f *fakeManager) List(_ context.Context, _ service.Caller, all bool) ([]service.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []service.ContainerInfo
	for _, ci := range f.byName {
		if all || !ci.State.Final() {
			out = append(out, *ci)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeManager) RunContainer(context.Context, service.Caller, service.StartRequest, func(service.ContainerInfo), func(service.LogLine) error) (service.ContainerInfo, error) {
	return service.ContainerInfo{}, service.Errorf(service.KindInternal, "RunContainer is not used by the D-Bus adapter")
}

func (f *fakeManager) Wait(context.Context, service.Caller, string) (service.ContainerInfo, error) {
	return service.ContainerInfo{}, service.Errorf(service.KindInternal, "Wait is not used by the D-Bus adapter")
}

func (f *fakeManager) Logs(context.Context, service.Caller, string, service.LogOptions, func(service.LogLine) error) error {
	return service.Errorf(service.KindInternal, "Logs is not used by the D-Bus adapter")
}

// Exec is not exercised through this fake: the D-Bus shell method is tested against the real
// supervisor (supervisor_test.go).
func (f *fakeManager) Exec(context.Context, service.Caller, service.ExecRequest) (service.ExecProcess, error) {
	return nil, service.Errorf(service.KindInternal, "the fake manager runs no commands")
}

func (f *fakeManager) Attach(context.Context, service.Caller, string, bool) (service.Attachment, error) {
	return service.Attachment{}, service.Errorf(service.KindInternal, "the fake manager has no terminals")
}

func (f *fakeManager) Subscribe() (<-chan service.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsub++
	id := f.nsub
	ch := make(chan service.Event, 1024)
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

func (f *fakeManager) Status() service.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return service.Status{Version: "1.2.3-test", BaseRootfs: "/var/lib/jackfruit/rootfs", MonitorAvailable: false, ContainerCount: len(f.byName)}
}

var internalRoot = service.Caller{UID: 0}

// Top is not exercised through this fake: the D-Bus method is tested against the real
// supervisor (supervisor_test.go).
func (f *fakeManager) Top(context.Context, service.Caller, string) ([]service.Process, error) {
	return nil, service.Errorf(service.KindInternal, "the fake manager runs no processes")
}

func (f *fakeManager) Stats(context.Context, service.Caller, []string) ([]service.ContainerStats, error) {
	return nil, service.Errorf(service.KindInternal, "the fake manager runs no processes")
}
