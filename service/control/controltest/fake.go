// SPDX-License-Identifier: Apache-2.0

// Package controltest provides an in-memory service.Manager for testing the control socket and
// its clients without namespaces or a kernel module. It follows the Manager contract (errors
// kinds, final states, Logs follow semantics) closely enough for protocol tests; it is not a
// container runtime.
package controltest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

type container struct {
	info    service.ContainerInfo
	lines   []service.LogLine
	changed chan struct{} // closed and replaced on every new line or state change
}

// Manager is a fake service.Manager. Commands are not run; a container stays running until
// Stop, Kill or Exit. Special commands: "notfound" fails with CommandNotFound, "noexec" with
// CommandNotExecutable.
type Manager struct {
	mu          sync.Mutex
	ctrs        map[string]*container
	subs        map[chan service.Event]struct{}
	callers     []service.Caller
	cancelled   int // calls that ended because their context was cancelled
	nextPid     int
	execSignals []syscall.Signal
	FailWith    map[string]error // Get(name) returns this error, for error-mapping tests
}

var _ service.Manager = (*Manager)(nil)

// New returns an empty fake.
func New() *Manager {
	return &Manager{ctrs: map[string]*container{}, subs: map[chan service.Event]struct{}{},
		nextPid: 1000, FailWith: map[string]error{}}
}

// Callers returns every caller seen so far, in order.
func (m *Manager) Callers() []service.Caller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.callers)
}

// Cancelled returns how many blocking calls (Wait, Logs follow) ended by context cancellation.
func (m *Manager) Cancelled() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cancelled
}

func (m *Manager) seen(c service.Caller) {
	m.mu.Lock()
	m.callers = append(m.callers, c)
	m.mu.Unlock()
}

// Print appends a line to a container's log, as if it printed it.
func (m *Manager) Print(name string, s service.Stream, data []byte, partial bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[name]
	c.lines = append(c.lines, service.LogLine{Time: time.Now(), Stream: s, Data: slices.Clone(data), Partial: partial})
	m.notifyLocked(c)
}

// PrintLine appends l to a container's log as is (e.g. a last line without newline).
func (m *Manager) PrintLine(name string, l service.LogLine) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[name]
	l.Data = slices.Clone(l.Data)
	c.lines = append(c.lines, l)
	m.notifyLocked(c)
}

// Exit puts a running container into a final state with the given code, or killed by sig.
func (m *Manager) Exit(name string, code int, sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exitLocked(m.ctrs[name], code, sig)
}

func (m *Manager) exitLocked(c *container, code int, sig syscall.Signal) {
	if c.info.State.Final() {
		return
	}
	c.info.Pid = 0
	c.info.FinishedAt = time.Now()
	switch {
	case sig != 0:
		c.info.State = service.StateKilled
		c.info.Signal = unix.SignalName(sig)
		c.info.ExitCode = 128 + int(sig)
	default:
		c.info.State = service.StateExited
		c.info.ExitCode = code
	}
	m.notifyLocked(c)
	m.emitLocked(service.Event{Type: service.EventExited, Time: time.Now(), Container: c.info})
}

func (m *Manager) notifyLocked(c *container) {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (m *Manager) emitLocked(ev service.Event) {
	for ch := range m.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (m *Manager) lookup(name string) (*container, error) {
	if err, ok := m.FailWith[name]; ok {
		return nil, err
	}
	c, ok := m.ctrs[name]
	if !ok {
		return nil, service.Errorf(service.KindNoSuchContainer, "no such container %q", name)
	}
	return c, nil
}

// Start implements service.Manager.
func (m *Manager) Start(_ context.Context, caller service.Caller, req service.StartRequest) (service.ContainerInfo, error) {
	m.seen(caller)
	if caller.UID != 0 {
		return service.ContainerInfo{}, service.Errorf(service.KindAccessDenied, "uid %d may not start containers", caller.UID)
	}
	if req.Name == "" || strings.ContainsAny(req.Name, "/ ") {
		return service.ContainerInfo{}, service.Errorf(service.KindInvalidArgument, "invalid container name %q", req.Name)
	}
	if len(req.Command) == 0 {
		return service.ContainerInfo{}, service.Errorf(service.KindInvalidArgument, "no command given")
	}
	switch req.Command[0] {
	case "notfound":
		return service.ContainerInfo{}, service.Errorf(service.KindCommandNotFound, "command %q not found in rootfs", req.Command[0])
	case "noexec":
		return service.ContainerInfo{}, service.Errorf(service.KindCommandNotExecutable, "command %q is not executable", req.Command[0])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ctrs[req.Name]; ok {
		return service.ContainerInfo{}, service.Errorf(service.KindAlreadyExists, "container %q already exists", req.Name)
	}
	soft, hard := req.SoftLimit, req.HardLimit
	if soft == 0 {
		soft = service.DefaultSoftLimit
	}
	if hard == 0 {
		hard = service.DefaultHardLimit
	}
	st := req.StopTimeout
	if st == 0 {
		st = service.DefaultStopTimeout
	}
	sum := sha256.Sum256([]byte(req.Name + time.Now().String()))
	m.nextPid++
	now := time.Now()
	host := req.Hostname
	if host == "" {
		host = req.Name
	}
	c := &container{changed: make(chan struct{}), info: service.ContainerInfo{
		Name: req.Name, ID: hex.EncodeToString(sum[:]), State: service.StateRunning, Pid: m.nextPid,
		Command: req.Command, Env: req.Env, Rootfs: req.Rootfs, Overlay: req.Rootfs == "", Hostname: host,
		SoftLimit: soft, HardLimit: hard, StopTimeout: st, CreatedAt: now, StartedAt: now, RSS: 1 << 20, PeakRSS: 2 << 20,
		// The real core resolves the confinement; the fake echoes what came over the wire so
		// tests can see every field travel both ways.
		Capabilities: append(append([]string{}, req.CapAdd...), req.CapDrop...), Seccomp: strings.Join(req.SecurityOpt, ","),
		NoNewPrivileges: len(req.SecurityOpt) > 0, Network: req.Network,
	}}
	m.ctrs[req.Name] = c
	m.emitLocked(service.Event{Type: service.EventStarted, Time: now, Container: c.info})
	return c.info, nil
}

// Stop implements service.Manager.
// RunContainer is Start, Logs with Follow and Wait, then Remove when req.Remove is set.
func (m *Manager) RunContainer(ctx context.Context, caller service.Caller, req service.StartRequest, started func(service.ContainerInfo), fn func(service.LogLine) error) (service.ContainerInfo, error) {
	info, err := m.Start(ctx, caller, req)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	started(info)
	if err := m.Logs(ctx, caller, req.Name, service.LogOptions{Follow: true}, fn); err != nil {
		return service.ContainerInfo{}, err
	}
	info, err = m.Wait(ctx, caller, req.Name)
	if err != nil || !req.Remove {
		return info, err
	}
	if err := m.Remove(ctx, caller, req.Name); err != nil {
		info.Message = service.MsgNotRemoved + ": " + err.Error()
	}
	return info, nil
}

func (m *Manager) Stop(_ context.Context, caller service.Caller, name string, _ time.Duration) (service.ContainerInfo, error) {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	m.exitLocked(c, 0, syscall.SIGTERM)
	return c.info, nil
}

// Kill implements service.Manager.
func (m *Manager) Kill(_ context.Context, caller service.Caller, name string, sig syscall.Signal) error {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.lookup(name)
	if err != nil {
		return err
	}
	if c.info.State.Final() {
		return service.Errorf(service.KindInvalidState, "container %q is not running", name)
	}
	m.exitLocked(c, 0, sig)
	return nil
}

// Remove implements service.Manager.
func (m *Manager) Remove(_ context.Context, caller service.Caller, name string) error {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.lookup(name)
	if err != nil {
		return err
	}
	if !c.info.State.Final() {
		return service.Errorf(service.KindInvalidState, "container %q is running; stop it first", name)
	}
	delete(m.ctrs, name)
	m.emitLocked(service.Event{Type: service.EventRemoved, Time: time.Now(), Container: c.info})
	return nil
}

// Get implements service.Manager.
func (m *Manager) Get(_ context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	return c.info, nil
}

// List implements service.Manager.
func (m *Manager) List(_ context.Context, caller service.Caller, all bool) ([]service.ContainerInfo, error) {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []service.ContainerInfo
	for _, c := range m.ctrs {
		if all || !c.info.State.Final() {
			out = append(out, c.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Wait implements service.Manager.
func (m *Manager) Wait(ctx context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	m.seen(caller)
	for {
		m.mu.Lock()
		c, err := m.lookup(name)
		if err != nil {
			m.mu.Unlock()
			return service.ContainerInfo{}, err
		}
		info, ch := c.info, c.changed
		m.mu.Unlock()
		if info.State.Final() {
			return info, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			m.mu.Lock()
			m.cancelled++
			m.mu.Unlock()
			return service.ContainerInfo{}, ctx.Err()
		}
	}
}

// Logs implements service.Manager.
func (m *Manager) Logs(ctx context.Context, caller service.Caller, name string, opts service.LogOptions, fn func(service.LogLine) error) error {
	m.seen(caller)
	m.mu.Lock()
	c, err := m.lookup(name)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	var sel []int
	for i, l := range c.lines {
		if (opts.Since.IsZero() || !l.Time.Before(opts.Since)) && (opts.Until.IsZero() || l.Time.Before(opts.Until)) {
			sel = append(sel, i)
		}
	}
	if opts.Tail > 0 && len(sel) > opts.Tail {
		sel = sel[len(sel)-opts.Tail:]
	}
	next := len(c.lines)
	lines := make([]service.LogLine, 0, len(sel))
	for _, i := range sel {
		lines = append(lines, c.lines[i])
	}
	m.mu.Unlock()
	for _, l := range lines {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	untilC, stop := opts.UntilReached()
	defer stop()
	ended := false
	for {
		m.mu.Lock()
		newLines := slices.Clone(c.lines[next:])
		next = len(c.lines)
		final, ch := c.info.State.Final(), c.changed
		m.mu.Unlock()
		for _, l := range newLines {
			if !opts.Until.IsZero() && !l.Time.Before(opts.Until) {
				continue
			}
			if err := fn(l); err != nil {
				return err
			}
		}
		if final || ended {
			return nil
		}
		select {
		case <-ch:
		case <-untilC:
			ended = true
		case <-ctx.Done():
			m.mu.Lock()
			m.cancelled++
			m.mu.Unlock()
			return ctx.Err()
		}
	}
}

// Subscribe implements service.Manager.
func (m *Manager) Subscribe() (<-chan service.Event, func()) {
	ch := make(chan service.Event, 64)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		})
	}
}

// Subscribers returns how many subscriptions are active.
func (m *Manager) Subscribers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs)
}

// Status implements service.Manager.
func (m *Manager) Status() service.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	run := 0
	for _, c := range m.ctrs {
		if !c.info.State.Final() {
			run++
		}
	}
	return service.Status{Version: service.Version, BaseRootfs: "/var/lib/jackfruit/rootfs",
		MonitorMessage: "fake manager: no kernel monitor", JournalAvailable: false,
		ContainerCount: len(m.ctrs), RunningCount: run}
}

// Exec implements service.Manager without running anything: the "command" writes its
// arguments joined by spaces and a newline to its stdout (or pty) and exits 0; "exit N"
// exits N; "hang" runs until signalled and ends with 128+signal. ExecSignals records the
// signals execs received.
func (m *Manager) Exec(_ context.Context, caller service.Caller, req service.ExecRequest) (service.ExecProcess, error) {
	m.seen(caller)
	if caller.UID != 0 {
		return nil, service.Errorf(service.KindAccessDenied, "uid %d may not run commands in containers", caller.UID)
	}
	if len(req.Command) == 0 {
		return nil, service.Errorf(service.KindInvalidArgument, "no command given")
	}
	m.mu.Lock()
	c, err := m.lookup(req.Name)
	if err == nil && c.info.State != service.StateRunning {
		err = service.Errorf(service.KindInvalidState, "container %q is not running", req.Name)
	}
	m.nextPid++
	pid := m.nextPid
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if req.Command[0] == "notfound" {
		return nil, service.Errorf(service.KindCommandNotFound, "command %q not found", req.Command[0])
	}
	e := &fakeExec{m: m, pid: pid, sig: make(chan syscall.Signal, 1)}
	out := req.Stdout
	if req.Tty {
		mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, service.Errorf(service.KindInternal, "fake pty: %v", err)
		}
		if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
			unix.Close(mfd)
			return nil, service.Errorf(service.KindInternal, "fake pty: %v", err)
		}
		sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			unix.Close(mfd)
			return nil, service.Errorf(service.KindInternal, "fake pty: %v", errno)
		}
		e.pty = os.NewFile(uintptr(mfd), "fake-pty-master")
		out = os.NewFile(sfd, "fake-pty-slave")
		defer out.Close()
	}
	if out != nil {
		if _, err := out.WriteString(strings.Join(req.Command, " ") + "\n"); err != nil {
			return nil, service.Errorf(service.KindInternal, "fake exec: %v", err)
		}
	}
	switch {
	case req.Command[0] == "exit" && len(req.Command) == 2:
		code, _ := strconv.Atoi(req.Command[1])
		e.sig <- 0
		e.code = code
	case req.Command[0] == "hang":
	default:
		e.sig <- 0
	}
	return e, nil
}

// ExecSignals returns the signals sent to execs so far.
func (m *Manager) ExecSignals() []syscall.Signal {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.execSignals)
}

type fakeExec struct {
	m    *Manager
	pid  int
	pty  *os.File
	code int
	sig  chan syscall.Signal // 0: exited by itself
}

func (e *fakeExec) Pid() int      { return e.pid }
func (e *fakeExec) Pty() *os.File { return e.pty }

func (e *fakeExec) Signal(sig syscall.Signal) error {
	e.m.mu.Lock()
	e.m.execSignals = append(e.m.execSignals, sig)
	e.m.mu.Unlock()
	select {
	case e.sig <- sig:
	default:
	}
	return nil
}

func (e *fakeExec) Wait(ctx context.Context) (service.ExecExit, error) {
	select {
	case s := <-e.sig:
		e.sig <- s // later Waits see the same end
		if s != 0 {
			return service.ExecExit{Code: 128 + int(s), Signal: unix.SignalName(s)}, nil
		}
		return service.ExecExit{Code: e.code}, nil
	case <-ctx.Done():
		return service.ExecExit{}, ctx.Err()
	}
}

// Attach implements service.Manager: the output is a pipe on which the fake writes
// "attached NAME\n" and then EOF; the input is a pty master whose slave nobody reads.
func (m *Manager) Attach(_ context.Context, caller service.Caller, name string, _ bool) (service.Attachment, error) {
	m.seen(caller)
	m.mu.Lock()
	_, err := m.lookup(name)
	m.mu.Unlock()
	if err != nil {
		return service.Attachment{}, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return service.Attachment{}, service.Errorf(service.KindInternal, "fake attach: %v", err)
	}
	_, _ = w.WriteString("attached " + name + "\n")
	w.Close()
	in, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		r.Close()
		return service.Attachment{}, service.Errorf(service.KindInternal, "fake attach: %v", err)
	}
	return service.Attachment{Output: r, Input: in, Detach: func() {}}, nil
}

// Top implements service.Manager: a running container has one process, its command as
// pid 1, with the fake's host pid.
func (m *Manager) Top(_ context.Context, caller service.Caller, name string) ([]service.Process, error) {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if c.info.State.Final() {
		return nil, service.Errorf(service.KindInvalidState, "container %q is not running (%s)", name, c.info.State)
	}
	return []service.Process{{Pid: 1, HostPid: c.info.Pid, User: "root", TTY: "?",
		Elapsed: time.Since(c.info.StartedAt), Args: slices.Clone(c.info.Command)}}, nil
}

// Stats implements service.Manager: memory as Get shows it, one task, no CPU time.
func (m *Manager) Stats(_ context.Context, caller service.Caller, names []string) ([]service.ContainerStats, error) {
	m.seen(caller)
	m.mu.Lock()
	defer m.mu.Unlock()
	var cs []*container
	if len(names) == 0 {
		for _, c := range m.ctrs {
			if !c.info.State.Final() {
				cs = append(cs, c)
			}
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].info.Name < cs[j].info.Name })
	}
	for _, n := range names {
		c, err := m.lookup(n)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	out := make([]service.ContainerStats, 0, len(cs))
	for _, c := range cs {
		i := c.info
		st := service.ContainerStats{Name: i.Name, ID: i.ID, State: i.State, Time: time.Now(),
			SoftLimit: i.SoftLimit, HardLimit: i.HardLimit, LimitsEnforced: i.LimitsEnforced, EnforcedBy: i.EnforcedBy}
		if !i.State.Final() {
			st.RSS, st.PeakRSS, st.MemoryCurrent, st.Tasks, st.Processes = i.RSS, i.PeakRSS, i.MemoryCurrent, 1, 1
		}
		out = append(out, st)
	}
	return out, nil
}
