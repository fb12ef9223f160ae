// SPDX-License-Identifier: Apache-2.0

// Starting a container: validation, the undo stack, registration with the monitor.

package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/sdunit"
)

// Start validates req, prepares the rootfs and starts the container. Nothing of a failed
// start is left behind: no directory, mount, registry entry or monitor registration.
func (s *Supervisor) Start(ctx context.Context, caller service.Caller, req service.StartRequest) (service.ContainerInfo, error) {
	return s.start(ctx, caller, req, nil)
}

// start is Start; on success it also sets *out (when out is not nil) to the new container.
func (s *Supervisor) start(ctx context.Context, caller service.Caller, req service.StartRequest, out **container) (service.ContainerInfo, error) {
	if err := s.authorise(caller, "start containers"); err != nil {
		return service.ContainerInfo{}, err
	}
	if err := gaveUp(ctx, "start container %q", req.Name); err != nil {
		return service.ContainerInfo{}, err
	}
	r, err := validate(req, s.cfg.BaseRootfs)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	if r.Init {
		if fi, err := os.Stat(s.cfg.InitBinary); err != nil || !fi.Mode().IsRegular() {
			return service.ContainerInfo{}, &service.Error{Kind: service.KindInvalidArgument,
				Msg: fmt.Sprintf("container %q: --init needs the static init %s (Debian package tini)", r.Name, s.cfg.InitBinary), Err: err}
		}
	}
	if err := s.compileFilters(&r.security, r.seccomp); err != nil {
		return service.ContainerInfo{}, internal(err, "start container %q", r.Name)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return service.ContainerInfo{}, service.Errorf(service.KindInvalidState, "the supervisor is shutting down; container %q was not started", r.Name)
	}
	if _, ok := s.containers[r.Name]; ok || s.starting[r.Name] {
		s.mu.Unlock()
		return service.ContainerInfo{}, service.Errorf(service.KindAlreadyExists, "container %q already exists", r.Name)
	}
	s.starting[r.Name] = true
	s.starts.Add(1) // under s.mu with closing false: never races with Close's Wait
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.starting, r.Name)
		s.mu.Unlock()
		s.starts.Done()
	}()
	return s.create(ctx, r, out)
}

// create makes the container. A caller that gives up (ctx) before the process is started
// gets its start undone; once the process runs, the start completes: the container then
// exists and is the caller's to stop, as with any start whose reply was lost.
func (s *Supervisor) create(ctx context.Context, r request, out **container) (service.ContainerInfo, error) {
	var undo []func()
	fail := func(err error) (service.ContainerInfo, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return service.ContainerInfo{}, err
	}
	dir := filepath.Join(s.containersDir(), r.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(service.Errorf(service.KindAlreadyExists, "container %q is unknown but its directory %s exists; remove that directory or choose another name", r.Name, dir))
		}
		return fail(internal(err, "create directory for container %q", r.Name))
	}
	undo = append(undo, func() { s.removeUnmounted(dir) })
	id, err := newID()
	if err != nil {
		return fail(internal(err, "start container %q", r.Name))
	}

	rootfs := r.Rootfs
	var overlay *runtime.Overlay
	if r.overlay {
		// The setup stage mounts the overlay inside the container's own mount namespace
		// (runtime.Overlay): nothing is mounted here, so there is nothing for the supervisor
		// to unmount, and the mount goes when the container's last process does. It mounts it
		// over the base itself, which it covers there only, rather than on an empty directory
		// of the container's: every inode created on the state directory's filesystem costs
		// (docs/bench.md, "100 at once on the build machine's disk").
		upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), r.lower
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return fail(internal(err, "prepare overlay for container %q", r.Name))
			}
		}
		// A container removed when it ends needs no sync of its layer (runtime.Overlay).
		overlay = &runtime.Overlay{Lower: r.lower, Upper: upper, Work: work, Volatile: r.Remove}
		rootfs = target
	}

	var cg *cgroup.Group
	var cgDir *os.File
	// In unit mode the container's cgroup is its unit's (below).
	if s.cfg.Cgroups != nil && s.cfg.Units == nil {
		if cg, err = s.cfg.Cgroups.Create(r.Name); err != nil {
			return fail(internal(err, "create the cgroup of container %q", r.Name))
		}
		undo = append(undo, func() {
			if err := cg.Remove(); err != nil {
				s.log.Error("removing the cgroup after a failed start", "container", r.Name, "error", err.Error())
			}
		})
		if s.memBy == service.EnforcedByCgroup {
			// Before the init is born: the container never runs without its limit.
			if err := cg.SetMemoryLimit(r.HardLimit); err != nil {
				return fail(internal(err, "set the memory limit of container %q", r.Name))
			}
		}
		if cgDir, err = cg.OpenDir(); err != nil {
			return fail(internal(err, "start container %q", r.Name))
		}
		defer cgDir.Close()
	}

	logPath := filepath.Join(dir, "container.log")
	fields := logs.Fields{Name: r.Name, ID: id}
	clog, err := logs.OpenContainerLog(logPath, s.cfg.LogMaxBytes, fields, s.journal)
	if err != nil {
		return fail(internal(err, "open log of container %q", r.Name))
	}
	clog.SetLogger(s.log)
	if r.Remove {
		clog.SetTransient()
	}
	undo = append(undo, func() { clog.Close() })

	if err := gaveUp(ctx, "start container %q", r.Name); err != nil {
		return fail(err)
	}
	initBinary := ""
	if r.Init {
		initBinary = s.cfg.InitBinary
	}
	spec := runtime.Spec{Name: r.Name, Hostname: r.Hostname, Rootfs: rootfs, Args: r.Command, Env: r.Env, Tty: r.Tty, Init: initBinary, Security: &r.security, Cgroup: cgDir, Stage: s.stage, Overlay: overlay}
	var unit *sdunit.Unit
	if s.cfg.Units != nil {
		us := sdunit.Spec{Name: r.Name, StopTimeout: r.StopTimeout}
		if s.cfg.Cgroups != nil {
			// The unit's cgroup accounts (and without the module limits) the container, as
			// the supervisor's own subtree does in manual mode.
			if s.memBy == service.EnforcedByCgroup {
				us.MemoryMax = r.HardLimit
			}
			us.Started = func(dir string) error {
				g, err := cgroup.Open(dir)
				if err != nil {
					return err
				}
				if s.memBy == service.EnforcedByCgroup {
					// memory.oom.group besides memory.max: a kill ends the whole container.
					if err := g.SetMemoryLimit(r.HardLimit); err != nil {
						return fmt.Errorf("set the memory limit of container %q: %w", r.Name, err)
					}
				}
				cg = g
				return nil
			}
		}
		unit = s.cfg.Units.Unit(us)
		spec.Launcher = unit
		// Whatever fails from here, the unit this start created (if any) goes too.
		undo = append(undo, func() {
			if err := unit.Remove(); err != nil {
				s.log.Error("removing the unit of a failed start", "container", r.Name, "unit", unit.Name(), "error", err.Error())
			}
		})
	}
	created := time.Now()
	proc, err := runtime.Start(spec)
	if err != nil {
		switch {
		case errors.Is(err, runtime.ErrCommandNotFound):
			return fail(&service.Error{Kind: service.KindCommandNotFound, Msg: fmt.Sprintf("start container %q", r.Name), Err: err})
		case errors.Is(err, runtime.ErrCommandNotExecutable):
			return fail(&service.Error{Kind: service.KindCommandNotExecutable, Msg: fmt.Sprintf("start container %q", r.Name), Err: err})
		}
		return fail(internal(err, "start container %q", r.Name))
	}
	c := &container{
		dir:       dir,
		proc:      proc,
		cg:        cg,
		unit:      unit,
		clog:      clog,
		done:      make(chan struct{}),
		hard:      make(chan struct{}),
		monExited: make(chan struct{}),
		announced: make(chan struct{}),
	}
	if r.Remove {
		c.removed = make(chan struct{})
	}
	// Copy from the first moment: a container must never block on a full pipe.
	c.copies.Add(2)
	go s.copyOutput(c, r.Name, proc.Stdout, service.Stdout, nil)
	go s.copyOutput(c, r.Name, proc.Stderr, service.Stderr, nil)
	if proc.Pty != nil {
		// A terminal is one stream: all of it is logged as stdout, as docker and podman do.
		c.tty = newTtyHub(proc.Pty)
		c.copies.Add(1)
		go s.copyOutput(c, r.Name, c.tty, ttyStream, nil)
	}
	// The process is ours now: kill it, reap it and drain it; the undos added before (the
	// unit's, then the log's) run after this one.
	undo = append(undo, func() {
		c.announce()
		proc.Signal(syscall.SIGKILL)
		proc.Wait()
		c.copies.Wait()
	})
	startTime, _ := procStartTime(proc.Pid)

	c.rec = record{
		ContainerInfo: service.ContainerInfo{
			Name:        r.Name,
			ID:          id,
			State:       service.StateRunning,
			Pid:         proc.Pid,
			Command:     r.Command,
			Env:         r.Env,
			Rootfs:      rootfs,
			Overlay:     r.overlay,
			Hostname:    r.Hostname,
			SoftLimit:   r.SoftLimit,
			HardLimit:   r.HardLimit,
			StopTimeout: r.StopTimeout,
			CreatedAt:   created,
			StartedAt:   time.Now(),
			LogPath:     logPath,
			Tty:         r.Tty,
			Init:        r.Init,
			// What the container got, which inspect shows and state.json keeps.
			Capabilities:    proc.Security.Capabilities.Names(),
			Seccomp:         r.seccomp,
			NoNewPrivileges: proc.Security.NoNewPrivileges,
			Network:         string(proc.Security.Network),
		},
		InitStartTime: startTime,
		BootID:        s.bootID,
		AutoRemove:    r.Remove,
	}
	if cg != nil {
		c.rec.Cgroup = cg.Path()
	}
	if r.overlay {
		// What the user asked for is the base; the merged mount is an implementation detail.
		c.rec.Rootfs = r.lower
	}
	if unit != nil {
		c.rec.Unit = unit.Name()
		s.registerMachine(c)
	}
	s.keepPipes(c)
	undo = append(undo, func() { s.dropPipes(r.Name, r.Tty) })
	s.register(c)
	if c.registered {
		undo = append(undo, func() { s.unregister(c) })
	}
	if err := s.saveLocked(c); err != nil {
		return fail(internal(err, "start container %q", r.Name))
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return fail(service.Errorf(service.KindInvalidState, "the supervisor is shutting down; container %q was not started", r.Name))
	}
	s.containers[r.Name] = c
	s.reapers.Add(1)
	s.publish(service.EventStarted, c, 0, 0)
	info := c.info()
	s.mu.Unlock()
	// A soft-limit crossing before it was in the registry was not saved (saveRunning).
	s.saveRunning(c, true)
	if s.journal != nil {
		// Written here rather than by the journal writer, so it precedes the output lines.
		if err := s.journal.Event(fields, service.Event{Type: service.EventStarted, Time: info.StartedAt, Container: info}); err != nil {
			s.log.Debug("journal: started event", "container", r.Name, "error", err.Error())
		}
	}
	c.announce()
	if out != nil {
		c.followers.Add(1) // RunContainer's; before the reaper can remove the container
	}
	go s.reap(c)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if out != nil {
		*out = c
	}
	return info, nil
}

// compileFilters fills in sec's seccomp filters: the container's own (unless mode is
// unconfined) and, for a container in a unit of its own, the floor of jackfruit.service's
// system-call restrictions, which it does not inherit there (runtime.Security.Floor).
func (s *Supervisor) compileFilters(sec *runtime.Security, mode string) error {
	if mode == service.SeccompDefault {
		f, err := s.seccompFilter(sec.Capabilities)
		if err != nil {
			return err
		}
		sec.Seccomp = f
	}
	if s.cfg.Units == nil {
		return nil
	}
	s.filtersMu.Lock()
	defer s.filtersMu.Unlock()
	if s.floor == nil {
		f, err := runtime.FloorFilter()
		if err != nil {
			return err
		}
		s.floor = f
	}
	sec.Floor = s.floor
	return nil
}

// seccompFilter returns the default seccomp filter for a container asking for caps, compiled
// for the capabilities it will really hold (a capability the supervisor lacks cannot be
// given, and must not unlock the calls the profile reserves for its holders).
func (s *Supervisor) seccompFilter(caps runtime.CapSet) ([]byte, error) {
	caps &= runtime.BoundingSet()
	s.filtersMu.Lock()
	defer s.filtersMu.Unlock()
	if f, ok := s.filters[caps]; ok {
		return f, nil
	}
	f, err := runtime.SeccompFilter(caps)
	if err != nil {
		return nil, err
	}
	if s.filters == nil {
		s.filters = map[runtime.CapSet][]byte{}
	}
	s.filters[caps] = f
	return f, nil
}

func (c *container) announce() { c.announceOnce.Do(func() { close(c.announced) }) }

// copyOutput copies one output source (a pipe, or the terminal: ttyStream) into the
// container's log until EOF, or until Detach ends it: then the unfinished line it holds is
// saved for the next supervisor.
func (s *Supervisor) copyOutput(c *container, name string, rd io.ReadCloser, st service.Stream, carry []byte) {
	defer c.copies.Done()
	<-c.announced
	rest, err := c.clog.CopyFrom(rd, logStream(st), carry)
	if errors.Is(err, logs.ErrDetached) {
		s.writeCarry(c, st, rest)
	}
	if err != nil && err != logs.ErrDetached { // a read or file write error
		s.log.Warn("copying container output failed", "container", name, "stream", string(st), "error", err.Error())
	}
	rd.Close()
}

// register hands the container's init to the memory watcher. A failure does not fail the
// start: the container runs, and ps/inspect say its limits are not enforced and why.
func (s *Supervisor) register(c *container) {
	if s.mem == nil {
		c.rec.LimitsEnforced = false
		c.rec.Message = s.memMsg
		return
	}
	// Indexed under watchMu before the reader can look the new handle up: an event can
	// arrive the moment the watcher knows the container.
	s.watchMu.Lock()
	h, err := s.mem.Watch(watchSpec{Name: c.rec.Name, Proc: c.proc, Cgroup: c.cg, Soft: c.rec.SoftLimit, Hard: c.rec.HardLimit, SoftWarned: c.rec.SoftLimitExceeded})
	if err == nil {
		s.byWatch[h] = c
	}
	s.watchMu.Unlock()
	if err != nil {
		what := "registering with the kernel monitor"
		if s.memBy == service.EnforcedByCgroup {
			what = "limiting the container's cgroup"
		}
		c.rec.Message = fmt.Sprintf("memory limits are not enforced: %s failed: %v", what, err)
		if errors.Is(err, errContainerGone) {
			// The command was over before it could be registered (e.g. `true`): nothing to
			// watch, nothing worth a warning.
			s.log.Debug("container exited before it was registered with the kernel monitor", "container", c.rec.Name)
		} else {
			s.log.Warn("memory limits not enforced for container", "container", c.rec.Name, "error", err.Error())
		}
		return
	}
	// The monitor's reader may already be updating c.rec (the module queues a REGISTERED
	// event with the RSS at once), so from here on c.rec is only touched under s.mu.
	s.mu.Lock()
	c.watch, c.registered = h, true
	c.rec.WatchHandle = uint64(h)
	c.rec.LimitsEnforced = true
	c.rec.EnforcedBy = s.memBy
	s.mu.Unlock()
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate container id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// registerMachine makes the container a machine of systemd-machined (machinectl list,
// status, terminate). It is a convenience: a failure (machined absent, a name it refuses, a
// machine of that name from another manager) is a warning, and the container runs.
func (s *Supervisor) registerMachine(c *container) {
	err := s.cfg.Units.RegisterMachine(c.rec.Name, c.rec.ID, c.proc.Pid, c.rec.Rootfs)
	if err == nil {
		return
	}
	if errors.Is(err, sdunit.ErrLeaderGone) {
		// A short command (run --rm NAME -- /bin/true) may be over before machined looks.
		s.log.Debug("container not registered with machined", "container", c.rec.Name, "error", err.Error())
		return
	}
	if errors.Is(err, sdunit.ErrNoMachined) {
		s.machinedOnce.Do(func() {
			s.log.Warn("containers are not registered as machines (machinectl does not show them)", "error", err.Error())
		})
		return
	}
	s.log.Warn("container not registered with machined", "container", c.rec.Name, "error", err.Error())
}
