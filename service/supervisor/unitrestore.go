// SPDX-License-Identifier: Apache-2.0

// Live restore in unit mode: taking over the containers a previous supervisor left running
// in their systemd units, and settling those that ended meanwhile with the exit status
// systemd, their parent, recorded.

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/sdunit"
)

// restoreWait bounds the questions to systemd while a restarted supervisor starts up.
const restoreWait = 30 * time.Second

// restoreUnit takes over c, which was running in its unit when the previous supervisor
// ended: if its init still runs (the same process: pid and start time), it is supervised
// again with its output pipes from the fd store; if it ended meanwhile, it is settled with
// the exit status systemd recorded. It returns false when neither is possible (the unit is
// gone, or runs something else), leaving c to restoreLost.
func (s *Supervisor) restoreUnit(c *container, hardKilled map[watchHandle]bool) bool {
	if c.rec.BootID != s.bootID || c.rec.Pid <= 0 {
		return false // units do not outlive a reboot
	}
	ctx, cancel := context.WithTimeout(context.Background(), restoreWait)
	defer cancel()
	u := s.cfg.Units.Existing(c.rec.Name)
	pid, err := u.MainPID(ctx)
	if err != nil {
		s.log.Warn("cannot ask systemd about a container's unit", "container", c.rec.Name, "unit", u.Name(), "error", err.Error())
		return false
	}
	if pid == c.rec.Pid {
		return s.adopt(c, u)
	}
	if pid != 0 {
		s.log.Warn("a container's unit runs another process than its init", "container", c.rec.Name, "unit", u.Name(), "pid", pid, "init", c.rec.Pid)
		return false
	}
	ex, at, done, err := u.Recorded(ctx, c.rec.Pid)
	if err != nil || !done {
		if err == nil {
			err = errors.New("no exit recorded for its init")
		}
		s.log.Warn("the exit status of a container that ended while no supervisor ran is not known", "container", c.rec.Name, "unit", u.Name(), "error", err.Error())
		return false
	}
	s.restoreEnded(c, u, ex, at, hardKilled)
	return true
}

// readerOf is f as an io.ReadCloser, nil (not a nil *os.File) when f is nil.
func readerOf(f *os.File) io.ReadCloser {
	if f == nil {
		return nil
	}
	return f
}

// adopt supervises c's running init again, as create does for a new one.
func (s *Supervisor) adopt(c *container, u *sdunit.Unit) bool {
	name := c.rec.Name
	kept := s.takeKept(name)
	giveBack := func() {
		// restoreLost drains what is there.
		for st, f := range kept {
			s.cfg.Inherited[pipeFDName(name, st)] = f
		}
	}
	stdout, stderr, pty := kept[service.Stdout], kept[service.Stderr], kept[ttyStream]
	same := func(pid int) bool {
		st, err := procStartTime(pid)
		return err == nil && st == c.rec.InitStartTime
	}
	clog, err := logs.OpenContainerLog(c.rec.LogPath, s.cfg.LogMaxBytes, logs.Fields{Name: name, ID: c.rec.ID}, s.journal)
	if err != nil {
		s.log.Error("cannot take over a running container: its log does not open", "container", name, "error", err.Error())
		giveBack()
		return false
	}
	proc, err := runtime.Adopt(c.rec.Pid, same, readerOf(stdout), readerOf(stderr), u)
	if err != nil {
		clog.Close()
		giveBack()
		if !errors.Is(err, runtime.ErrNotSame) {
			s.log.Warn("cannot take over a running container", "container", name, "error", err.Error())
		}
		return false
	}
	clog.SetLogger(s.log)
	if stdout == nil || stderr == nil {
		s.log.Warn("a container's output written while no supervisor ran is lost: the fd store did not keep its pipes", "container", name)
	}
	if c.rec.Tty && pty == nil {
		s.log.Warn("a container's terminal was not kept in the fd store: its output is not logged any more, and it cannot be attached to", "container", name)
	}
	// exec gives a command the init's confinement; this supervisor did not start the init,
	// so it comes from the record (what inspect shows).
	sec, err := s.securityOf(c.rec.ContainerInfo)
	if err != nil {
		s.log.Error("the confinement of a container taken over does not rebuild; exec into it gets no capabilities and the default filter",
			"container", name, "error", err.Error())
	}
	proc.Security = sec
	c.proc, c.unit, c.clog = proc, u, clog
	if c.rec.Cgroup != "" {
		if g, err := cgroup.Open(c.rec.Cgroup); err == nil {
			c.cg = g
		} else {
			s.log.Warn("the cgroup of a container taken over is not usable", "container", name, "cgroup", c.rec.Cgroup, "error", err.Error())
		}
	}
	c.done = make(chan struct{})
	// Nothing to precede: the container's start is in the journal already.
	c.announced = make(chan struct{})
	c.announce()
	srcs := map[service.Stream]io.ReadCloser{service.Stdout: proc.Stdout, service.Stderr: proc.Stderr}
	if pty != nil {
		proc.Pty = pty
		c.tty = newTtyHub(pty)
		srcs[ttyStream] = c.tty
	}
	for st, rd := range srcs {
		if rd == nil {
			continue
		}
		c.copies.Add(1)
		go s.copyOutput(c, name, rd, st, s.readCarry(c, st))
	}
	if s.mem != nil && s.memKept && c.rec.WatchHandle != 0 {
		// The kept monitor file still holds the registration (and its queued events).
		h := watchHandle(c.rec.WatchHandle)
		s.watchMu.Lock()
		s.byWatch[h] = c
		s.watchMu.Unlock()
		c.watch, c.registered = h, true
	} else {
		c.rec.WatchHandle = 0
		s.register(c)
	}
	if err := s.saveLocked(c); err != nil {
		s.log.Warn("saving the state of a container taken over", "container", name, "error", err.Error())
	}
	s.reapers.Add(1)
	go s.reap(c)
	s.log.Info("took over a running container", "container", name, "pid", c.rec.Pid, "unit", u.Name())
	return true
}

// restoreEnded settles c, whose init ended while no supervisor ran, with the exit status
// systemd recorded: its output is drained from the kept pipes first, a SIGKILL that the
// kernel monitor's kept file reported as its own (a HARD event queued, hardKilled) is a
// memory-limit kill, and the unit goes.
func (s *Supervisor) restoreEnded(c *container, u *sdunit.Unit, ex runtime.Exit, at time.Time, hardKilled map[watchHandle]bool) {
	name := c.rec.Name
	s.drain(c, s.takeKept(name))
	rec := &c.rec
	rec.State, rec.ExitCode, rec.Signal = service.StateExited, ex.Code, ""
	rec.Message = "ended while no supervisor ran; exit status as systemd recorded it"
	if ex.Signal != 0 {
		rec.State, rec.Signal = service.StateKilled, signalName(ex.Signal)
	}
	if s.mem != nil && s.memKept && rec.WatchHandle != 0 {
		h := watchHandle(rec.WatchHandle)
		killed := hardKilled[h]
		if use, err := s.mem.Usage(h); err == nil {
			killed = killed || use.Killed
			if use.RSS > 0 {
				rec.RSS = use.RSS
				rec.PeakRSS = max(rec.PeakRSS, use.RSS)
			}
		}
		if ex.Signal == syscall.SIGKILL && killed {
			rec.State = service.StateOOMKill
			rec.Message = "killed by the kernel memory monitor at the hard limit while no supervisor ran"
		}
		if err := s.mem.Unwatch(h); err != nil {
			s.log.Debug("unregister from kernel monitor", "container", name, "error", err.Error())
		}
	}
	if ex.Signal == syscall.SIGKILL && rec.EnforcedBy == service.EnforcedByCgroup {
		// systemd removes an exited unit's cgroup at once, memory.events with it: whether
		// memory.max did this cannot be told any more.
		rec.Message = "killed by SIGKILL while no supervisor ran; its cgroup (which enforced the memory limit) was gone, so whether the limit did it is not known"
	}
	if rec.MergedDir != "" {
		if err := s.teardownOverlay(rec.MergedDir); err != nil {
			s.log.Error("tearing down overlay of a container that ended", "container", name, "error", err.Error())
		}
	}
	rec.Pid = 0
	rec.FinishedAt = at
	if at.IsZero() {
		rec.FinishedAt = time.Now()
	}
	if err := u.Remove(); err != nil {
		s.log.Error("removing the unit of an ended container", "container", name, "unit", u.Name(), "error", err.Error())
	} else {
		rec.Cgroup = "" // gone with the unit
	}
	if err := save(c.dir, *rec); err != nil {
		s.log.Error("persisting the final state of a container that ended while no supervisor ran", "container", name, "error", err.Error())
	}
	s.dropPipes(name, rec.Tty)
	s.log.Info("a container ended while no supervisor ran", "container", name, "state", string(rec.State), "exit_code", rec.ExitCode, "detail", fmt.Sprintf("%v", ex))
}

// securityOf rebuilds the confinement a container's init got (runtime.Process.Security) from
// its record. On an error it returns the narrowest one instead: no capabilities, no_new_privs,
// the default filter.
func (s *Supervisor) securityOf(info service.ContainerInfo) (runtime.Security, error) {
	narrowest := func(err error) (runtime.Security, error) {
		sec := runtime.Security{NoNewPrivileges: true, Network: runtime.Network(info.Network)}
		return sec, errors.Join(err, s.compileFilters(&sec, service.SeccompDefault))
	}
	var caps runtime.CapSet
	for _, n := range info.Capabilities {
		c, err := runtime.ParseCap(n)
		if err != nil {
			return narrowest(fmt.Errorf("capability in state.json: %w", err))
		}
		caps |= 1 << c
	}
	network, err := runtime.ParseNetwork(info.Network)
	if err != nil {
		return narrowest(fmt.Errorf("network in state.json: %w", err))
	}
	mode := info.Seccomp
	if mode != service.SeccompDefault && mode != service.SeccompUnconfined {
		return narrowest(fmt.Errorf("seccomp state %q in state.json is neither %s nor %s", mode, service.SeccompDefault, service.SeccompUnconfined))
	}
	sec := runtime.Security{Capabilities: caps, NoNewPrivileges: info.NoNewPrivileges, Network: network}
	if err := s.compileFilters(&sec, mode); err != nil {
		return narrowest(err)
	}
	return sec, nil
}
