// SPDX-License-Identifier: Apache-2.0

// Package sdunit runs each container as a systemd unit of its own (a transient service,
// jackfruit-NAME.service in jackfruit.slice) and registers it with systemd-machined, over the
// system bus.
//
// The unit's first process is the spawn stage (runtime.SpawnMain, served by the setup-stage
// binary jackfruit-init and by the jackfruit CLI): it clones the container's setup stage
// exactly as the supervisor would, and exits. systemd then adopts the
// setup stage (later the container's init) as the service's main process (Type=forking) and,
// being its parent, records how it ends (ExecMainCode/ExecMainStatus), whether a supervisor
// runs at that moment or not; RemainAfterExit=yes keeps that record until the supervisor has
// read it and stops the unit. docs/design.md has the whole lifecycle.
package sdunit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/machine1"
	godbus "github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/service/runtime"
)

// Slice is where every container unit goes (units/jackfruit.slice).
const Slice = "jackfruit.slice"

// UnitName is the unit of container name.
func UnitName(name string) string { return "jackfruit-" + name + ".service" }

// cgroupMount is where systemd mounts the unified hierarchy.
const cgroupMount = "/sys/fs/cgroup"

// Booted reports whether systemd is the init system (sd_booted): only then is there a
// manager to run units.
func Booted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// Manager starts and stops container units. It is safe for concurrent use.
type Manager struct {
	binary string // what systemd runs as the spawn stage: jackfruit-init, or the jackfruit CLI
	log    *slog.Logger

	mu      sync.Mutex
	conn    *sddbus.Conn
	raw     *godbus.Conn // conn's method connection, for what go-systemd does not wrap
	machine *machine1.Conn
}

// Connect connects to systemd on the system bus. binary is the executable that the units run
// as their spawn stage (`binary spawn NAME NETWORK`): the setup-stage binary jackfruit-init
// when there is one, which starts faster, else the jackfruit CLI; both serve the verb.
func Connect(ctx context.Context, binary string, logger *slog.Logger) (*Manager, error) {
	if !filepath.IsAbs(binary) {
		return nil, fmt.Errorf("jackfruit binary %q: not an absolute path", binary)
	}
	m := &Manager{binary: binary, log: logger}
	if _, err := m.bus(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// bus returns the connection to systemd, connecting again if the bus went away (a restart of
// dbus-daemon).
func (m *Manager) bus(ctx context.Context) (*sddbus.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil && m.conn.Connected() {
		return m.conn, nil
	}
	if m.conn != nil {
		m.conn.Close()
		m.conn, m.raw = nil, nil
	}
	var first *godbus.Conn
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		// The connection outlives ctx, which bounds only the handshake: it is kept for
		// every later start, exit and removal (a connection per call cost two connects,
		// Hello and AddMatch, on each of the three, about 60 ms each in the e2e guest), and
		// the units' Ref (Launch) holds only while the connection that took it lives.
		c, err := godbus.SystemBusPrivate()
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		err = c.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Getuid()))})
		if err == nil {
			err = c.Hello()
		}
		if !stop() {
			err = fmt.Errorf("connecting to the system bus: %w", context.Cause(ctx))
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		if first == nil {
			first = c
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd on the system bus: %w", err)
	}
	m.conn, m.raw = conn, first
	return conn, nil
}

// Close drops the bus connections. Units keep running.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	if m.machine != nil {
		m.machine.Close()
		m.machine = nil
	}
}

// Spec is what a container's unit needs besides the hardening every unit gets.
type Spec struct {
	Name string // container name
	// StopTimeout is how long a stop by systemd (systemctl stop, machinectl terminate) waits
	// after SIGTERM before SIGKILL, as jackfruit stop does.
	StopTimeout time.Duration
	// MemoryMax, when not 0, is the unit's MemoryMax=: the hard limit the cgroup enforces
	// when the kernel monitor is absent, set by systemd before the first process runs.
	MemoryMax uint64
	// Started, when set, is called with the unit's cgroup directory once its main process
	// (the setup stage, still waiting for its config) is known, before Launch returns: the
	// user's command runs only after it; an error fails the start.
	Started func(cgroupDir string) error
}

// Unit is one container's unit. It implements runtime.Launcher.
type Unit struct {
	m    *Manager
	name string // container
	unit string
	spec Spec
	// ours is set once this Unit created the unit (or adopted it): only then does Remove
	// touch it, never a unit of the same name that is somebody else's.
	ours bool
}

var _ runtime.Launcher = (*Unit)(nil)

// Unit returns the unit of container spec.Name; Launch creates it.
func (m *Manager) Unit(spec Spec) *Unit {
	return &Unit{m: m, name: spec.Name, unit: UnitName(spec.Name), spec: spec}
}

// Existing returns the unit of container name that an earlier supervisor started, to take
// over or remove.
func (m *Manager) Existing(name string) *Unit {
	return &Unit{m: m, name: name, unit: UnitName(name), spec: Spec{Name: name}, ours: true}
}

// Name is the unit's name.
func (u *Unit) Name() string { return u.unit }

// startTimeout bounds the start job: the spawn stage only clones and exits.
const startTimeout = 30 * time.Second

// Launch starts the unit, whose spawn stage runs runtime.SpawnSetup(args) with boot as its
// stdin, and returns the pid of the setup stage, the unit's main process. The spawn stage's
// own stdout and stderr go to the journal (journalctl -u jackfruit-NAME.service).
func (u *Unit) Launch(args []string, boot *os.File) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := u.m.bus(ctx)
	if err != nil {
		return 0, err
	}
	props, err := hardeningProperties()
	if err != nil {
		return 0, fmt.Errorf("unit %s: %w", u.unit, err)
	}
	stop := u.spec.StopTimeout
	if stop <= 0 {
		stop = 10 * time.Second
	}
	props = append(props,
		sddbus.PropDescription("jackfruit container "+u.name),
		sddbus.PropSlice(Slice),
		// The spawn stage forks the setup stage and exits; systemd takes the one process
		// left in the unit, now its own child, as the main process (GuessMainPID, the
		// default) and records its exit status.
		sddbus.PropType("forking"),
		sddbus.PropRemainAfterExit(true),
		sddbus.PropExecStart(append([]string{u.m.binary, runtime.SpawnVerb}, args...), true),
		prop("StandardInputFileDescriptor", godbus.UnixFD(boot.Fd())),
		prop("StandardOutput", "journal"),
		prop("StandardError", "journal"),
		// A stop from outside (systemctl stop, machinectl terminate) is jackfruit stop:
		// SIGTERM to the init, SIGKILL to everything left after the stop timeout.
		prop("KillMode", "mixed"),
		prop("TimeoutStopUSec", uint64(stop/time.Microsecond)),
		// The container's own accounting, shown by systemctl status and systemd-cgtop.
		prop("MemoryAccounting", true),
		prop("TasksAccounting", true),
		prop("CPUAccounting", true),
		// What the container's processes do with their cgroup is theirs; systemd leaves
		// the subtree alone (the supervisor reads and sets the unit's own group's files).
		prop("Delegate", true),
		// No automatic restart: a container that ends is over, as docker's default.
		prop("Restart", "no"),
		// Every way the init can end is a "success" for systemd: the unit then stays
		// active (exited) rather than failed until the supervisor has collected it, so
		// systemctl --failed stays clean. ExecMainCode/ExecMainStatus are the true ones.
		prop("SuccessExitStatus", successExitStatus()),
		// An OOM kill at the cgroup's limit (no kernel monitor) must not make systemd stop
		// the unit at once (OOMPolicy=stop, the default), removing the cgroup and its
		// memory.events before the supervisor has seen that the limit ended the container.
		// memory.oom.group ends the whole container anyway.
		prop("OOMPolicy", "continue"),
	)
	if u.spec.MemoryMax != 0 {
		props = append(props, prop("MemoryMax", u.spec.MemoryMax))
	}
	ch := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, u.unit, "fail", props, ch); err != nil {
		return 0, u.startError(err)
	}
	var result string
	select {
	case result = <-ch:
	case <-ctx.Done():
		return 0, fmt.Errorf("unit %s: start did not finish within %v", u.unit, startTimeout)
	}
	u.ours = true
	// From here on the unit exists: keep it loaded (a unit stopped from outside must not be
	// collected before its exit status is read), and leave nothing of a failed start.
	u.ref(ctx)
	if result != "done" {
		why := u.failure(ctx)
		u.Remove()
		return 0, fmt.Errorf("unit %s: start job %s%s", u.unit, result, why)
	}
	names := []string{"MainPID"}
	if u.spec.Started != nil {
		names = append(names, "ControlGroup")
	}
	p, err := u.serviceProps(ctx, names...)
	pid, _ := p["MainPID"].(uint32)
	if err != nil || pid == 0 {
		why := u.failure(ctx)
		u.Remove()
		if err == nil {
			err = fmt.Errorf("no main process (the setup stage ended at once?)%s", why)
		}
		return 0, fmt.Errorf("unit %s: %w", u.unit, err)
	}
	if u.spec.Started != nil {
		cg, _ := p["ControlGroup"].(string)
		err := fmt.Errorf("no cgroup (not running)")
		if cg != "" {
			err = u.spec.Started(filepath.Join(cgroupMount, cg))
		}
		if err != nil {
			u.Remove()
			return 0, fmt.Errorf("unit %s: %w", u.unit, err)
		}
	}
	return int(pid), nil
}

// successExitStatus is SuccessExitStatus= (D-Bus (aiai)) listing every exit code and every
// signal.
func successExitStatus() struct{ Codes, Signals []int32 } {
	var v struct{ Codes, Signals []int32 }
	for i := int32(1); i <= 255; i++ {
		v.Codes = append(v.Codes, i)
	}
	for i := int32(1); i <= 64; i++ {
		v.Signals = append(v.Signals, i)
	}
	return v
}

func prop(name string, v any) sddbus.Property {
	return sddbus.Property{Name: name, Value: godbus.MakeVariant(v)}
}

// startError explains a StartTransientUnit that systemd refused.
func (u *Unit) startError(err error) error {
	var de godbus.Error
	if errors.As(err, &de) {
		switch de.Name {
		case "org.freedesktop.systemd1.UnitExists":
			return fmt.Errorf("systemd already has a unit %s (left over, or not jackfruit's): stop it or pick another container name: %w", u.unit, err)
		case "org.freedesktop.DBus.Error.InvalidArgs":
			return fmt.Errorf("systemd refused the unit %s: %w", u.unit, err)
		case "org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired":
			return fmt.Errorf("systemd does not let this process start the unit %s: %w", u.unit, err)
		}
	}
	return fmt.Errorf("starting unit %s: %w", u.unit, err)
}

// failure is what systemd says about a unit whose start failed, for the error message.
func (u *Unit) failure(ctx context.Context) string {
	conn, err := u.m.bus(ctx)
	if err != nil {
		return ""
	}
	p, err := conn.GetUnitTypePropertiesContext(ctx, u.unit, "Service")
	if err != nil {
		return ""
	}
	res, _ := p["Result"].(string)
	code, _ := p["ExecMainCode"].(int32)
	status, _ := p["ExecMainStatus"].(int32)
	if res == "" || res == "success" {
		return ""
	}
	return fmt.Sprintf(" (result %s, spawn stage %s; journalctl -u %s says more)", res, describe(code, status), u.unit)
}

func describe(code, status int32) string {
	switch code {
	case cldExited:
		return fmt.Sprintf("exited with %d", status)
	case cldKilled, cldDumped:
		return "killed by " + syscall.Signal(status).String()
	}
	return "did not run"
}

// ref keeps the unit loaded while this process is connected (Unit.Ref): a unit stopped by
// systemctl stop or machinectl terminate would otherwise be collected at once, with the
// exit status of its main process. The call is sent and not waited for: systemd handles a
// connection's calls in order, so the reference holds before any later call of ours reaches
// it, and waiting cost a round trip (≈ 6 ms of the e2e guest's time) on every start.
func (u *Unit) ref(ctx context.Context) {
	obj, err := u.object()
	if err != nil {
		return
	}
	c := obj.GoWithContext(ctx, "org.freedesktop.systemd1.Unit.Ref", 0, make(chan *godbus.Call, 1))
	go func() {
		if <-c.Done; c.Err != nil {
			u.m.log.Debug("unit Ref", "unit", u.unit, "error", c.Err.Error())
		}
	}()
}

func (u *Unit) call(ctx context.Context, method string) error {
	obj, err := u.object()
	if err != nil {
		return err
	}
	err = obj.CallWithContext(ctx, "org.freedesktop.systemd1.Unit."+method, 0).Err
	if err != nil {
		u.m.log.Debug("unit "+method, "unit", u.unit, "error", err.Error())
	}
	return err
}

// MainPID is the unit's main process (0: none, or not yet).
func (u *Unit) MainPID(ctx context.Context) (int, error) {
	conn, err := u.m.bus(ctx)
	if err != nil {
		return 0, err
	}
	p, err := conn.GetServicePropertyContext(ctx, u.unit, "MainPID")
	if err != nil {
		return 0, fmt.Errorf("unit %s: reading MainPID: %w", u.unit, err)
	}
	pid, _ := p.Value.Value().(uint32)
	return int(pid), nil
}

// si_code values of SIGCHLD as systemd reports them in ExecMainCode.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// exitWait bounds how long Exit waits for systemd to record an exit the caller has seen
// already (a pidfd polls readable before the parent reaps).
const exitWait = 30 * time.Second

// Exit returns how the unit's main process pid ended, as systemd, its parent, recorded it.
func (u *Unit) Exit(pid int) (runtime.Exit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), exitWait)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		ex, done, err := u.exit(ctx, pid)
		if done || err != nil {
			return ex, err
		}
		select {
		case <-ctx.Done():
			return runtime.Exit{}, fmt.Errorf("unit %s: systemd did not record the exit of pid %d within %v", u.unit, pid, exitWait)
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// ErrUnitGone means the unit no longer exists: it was stopped and collected while no
// supervisor held it, and its record of the exit with it.
var ErrUnitGone = errors.New("the unit is gone")

func (u *Unit) exit(ctx context.Context, pid int) (runtime.Exit, bool, error) {
	ex, _, done, err := u.Recorded(ctx, pid)
	if err != nil && !errors.Is(err, ErrUnitGone) {
		return runtime.Exit{}, false, nil // the bus may come back; retry until ctx ends
	}
	return ex, done || err != nil, err
}

// Recorded returns how the unit's main process pid ended and when, and true, if systemd
// has recorded its exit; false while it runs (or systemd has not reaped it yet).
func (u *Unit) Recorded(ctx context.Context, pid int) (runtime.Exit, time.Time, bool, error) {
	conn, err := u.m.bus(ctx)
	if err != nil {
		return runtime.Exit{}, time.Time{}, false, err
	}
	// The record first: when it is there (the usual case) one batch answers; only without
	// it does the unit's load state tell "not yet" from "gone".
	p, err := u.serviceProps(ctx, "ExecMainPID", "ExecMainExitTimestampMonotonic", "ExecMainExitTimestamp", "ExecMainCode", "ExecMainStatus")
	epid, _ := p["ExecMainPID"].(uint32)
	exited, _ := p["ExecMainExitTimestampMonotonic"].(uint64)
	if err != nil || int(epid) != pid || exited == 0 {
		if load, lerr := conn.GetUnitPropertyContext(ctx, u.unit, "LoadState"); lerr == nil {
			if s, _ := load.Value.Value().(string); s == "not-found" {
				return runtime.Exit{}, time.Time{}, false, fmt.Errorf("unit %s: %w (stopped and collected while no supervisor watched it): the exit status of pid %d is unknown", u.unit, ErrUnitGone, pid)
			}
		}
		if err != nil {
			return runtime.Exit{}, time.Time{}, false, fmt.Errorf("unit %s: %w", u.unit, err)
		}
		return runtime.Exit{}, time.Time{}, false, nil
	}
	at := time.Time{}
	if usec, _ := p["ExecMainExitTimestamp"].(uint64); usec != 0 {
		at = time.UnixMicro(int64(usec))
	}
	code, _ := p["ExecMainCode"].(int32)
	status, _ := p["ExecMainStatus"].(int32)
	switch code {
	case cldExited:
		return runtime.Exit{Code: int(status)}, at, true, nil
	case cldKilled, cldDumped:
		sig := syscall.Signal(status)
		return runtime.Exit{Code: 128 + int(sig), Signal: sig, CoreDumped: code == cldDumped}, at, true, nil
	}
	return runtime.Exit{}, at, true, fmt.Errorf("unit %s: unexpected ExecMainCode %d for pid %d", u.unit, code, pid)
}

// serviceProps reads the named properties of the unit's Service interface with one Get
// each, all sent before the first answer is read. systemd answers a connection's calls in
// order, so a property read after another reflects what was true when the earlier one was
// read or later: read ExecMainExitTimestampMonotonic before the rest of the exit record, and
// a nonzero timestamp means the rest is final. GetAll of the interface would be one call,
// but marshalling its two hundred-odd properties took ≈ 18 ms of the e2e guest's time, the
// batch of five ≈ 2 ms. A property that could not be read is absent from the map; the first
// error is returned with whatever was read.
func (u *Unit) serviceProps(ctx context.Context, names ...string) (map[string]any, error) {
	if _, err := u.m.bus(ctx); err != nil {
		return nil, err
	}
	obj, err := u.object()
	if err != nil {
		return nil, err
	}
	calls := make([]*godbus.Call, len(names))
	for i, n := range names {
		calls[i] = obj.GoWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, make(chan *godbus.Call, 1), "org.freedesktop.systemd1.Service", n)
	}
	out := make(map[string]any, len(names))
	var first error
	for i, c := range calls {
		<-c.Done // a canceled ctx ends the call with its error
		var v godbus.Variant
		err := c.Err
		if err == nil {
			err = c.Store(&v)
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("reading %s: %w", names[i], err)
			}
			continue
		}
		out[names[i]] = v.Value()
	}
	return out, first
}

// object is the unit on the manager's method connection. Its object path follows from the
// unit's name (sd_bus_path_encode), as go-systemd's own property reads use it: no GetUnit
// round trip first.
func (u *Unit) object() (godbus.BusObject, error) {
	u.m.mu.Lock()
	raw := u.m.raw
	u.m.mu.Unlock()
	if raw == nil {
		return nil, errors.New("not connected")
	}
	return raw.Object("org.freedesktop.systemd1", godbus.ObjectPath("/org/freedesktop/systemd1/unit/"+sddbus.PathBusEscape(u.unit))), nil
}

// stopWait bounds Remove's stop job; the container is over by then, so only leftover
// processes of a broken container (SIGKILLed at the stop timeout) can make it slow.
const stopWait = 2 * time.Minute

// Remove stops the unit (once the container has ended, only leftovers remain), forgets a
// failure (reset-failed) and lets systemd collect it. A unit that is gone already is fine.
func (u *Unit) Remove() error {
	if !u.ours {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	conn, err := u.m.bus(ctx)
	if err != nil {
		return err
	}
	ch := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, u.unit, "replace", ch); err != nil {
		if !isNoSuchUnit(err) {
			return fmt.Errorf("stopping unit %s: %w", u.unit, err)
		}
	} else {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("stopping unit %s: not done within %v", u.unit, stopWait)
		}
	}
	if err := conn.ResetFailedUnitContext(ctx, u.unit); err != nil && !isNoSuchUnit(err) && !isNotFailed(err) {
		u.m.log.Debug("reset-failed", "unit", u.unit, "error", err.Error())
	}
	_ = u.call(ctx, "Unref")
	return nil
}

func isNoSuchUnit(err error) bool {
	var de godbus.Error
	return errors.As(err, &de) && (de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.systemd1.LoadFailed")
}

func isNotFailed(err error) bool {
	return strings.Contains(err.Error(), "not failed")
}
