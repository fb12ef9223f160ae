// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
)

// loadAll brings back the containers a previous supervisor recorded, so ps -a, inspect and
// logs survive a restart. It returns the containers that were running when it ended, for
// restoreLost; they are in the registry already, with their recorded state.
func (s *Supervisor) loadAll() (lost []*container, err error) {
	entries, err := os.ReadDir(s.containersDir())
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.containersDir(), e.Name())
		rec, err := load(dir)
		if errors.Is(err, errNoState) {
			// A start that never completed (the supervisor died in the middle): undo it.
			s.log.Warn("removing the remains of an unfinished container start", "dir", dir)
			if err := s.removeDir(dir, s.mergedDir(e.Name())); err != nil {
				s.log.Error("cannot remove unfinished container", "dir", dir, "error", err.Error())
			}
			continue
		}
		if err != nil {
			s.log.Warn("ignoring unreadable container state", "dir", dir, "error", err.Error())
			continue
		}
		c := &container{
			dir:       dir,
			rec:       rec,
			done:      make(chan struct{}),
			hard:      make(chan struct{}),
			monExited: make(chan struct{}),
		}
		close(c.done)
		if rec.AutoRemove && rec.State.Final() {
			// It ended, and the supervisor that ran it stopped before removing it.
			s.removeLeftover(c)
			continue
		}
		s.containers[rec.Name] = c
		if !rec.State.Final() {
			lost = append(lost, c)
		}
	}
	return lost, nil
}

// removeLeftover removes an AutoRemove container that a previous supervisor did not get to
// remove (it stopped, or the machine crashed, before the container ended or was removed).
func (s *Supervisor) removeLeftover(c *container) {
	if err := s.removeDir(c.dir, c.rec.MergedDir); err != nil {
		s.log.Error("cannot remove a container started with --rm", "container", c.rec.Name, "error", err.Error())
		return
	}
	s.log.Info("removed a container started with --rm that a previous supervisor left", "container", c.rec.Name, "state", string(c.rec.State))
}

// recoverLost settles a container that was running when the previous supervisor died.
func (s *Supervisor) recoverLost(rec *record) {
	killed := false
	if rec.Pid > 0 && rec.BootID != "" && rec.BootID == s.bootID && rec.InitStartTime != 0 {
		killed = killIfSame(rec.Pid, rec.InitStartTime)
	}
	if rec.Unit != "" && s.cfg.Units != nil {
		// The unit systemd kept for the exit status nobody will read now.
		if err := s.cfg.Units.Existing(rec.Name).Remove(); err != nil {
			s.log.Error("removing the unit of a lost container", "container", rec.Name, "unit", rec.Unit, "error", err.Error())
		}
	}
	if rec.MergedDir != "" {
		if err := s.teardownOverlay(rec.MergedDir); err != nil {
			s.log.Error("tearing down overlay of lost container", "container", rec.Name, "error", err.Error())
		}
	}
	// A cgroup enforces its limit with or without a supervisor: its memory.events tell
	// whether the limit ended the container meanwhile.
	oom := false
	if !killed && rec.EnforcedBy == service.EnforcedByCgroup && s.ownsCgroup(rec.Cgroup) {
		if g, err := cgroup.Open(rec.Cgroup); err == nil {
			if ev, err := g.MemoryEvents(); err == nil && ev.LimitKilled() {
				oom = true
			}
		}
	}
	// Whatever of the container is left (its init is gone, so is its pid namespace) goes
	// with its cgroup.
	if err := s.removeCgroup(rec); err != nil {
		s.log.Error("removing the cgroup of lost container", "container", rec.Name, "error", err.Error())
	}
	rec.FinishedAt = time.Now()
	rec.Pid = 0
	switch {
	case oom:
		rec.State, rec.ExitCode, rec.Signal = service.StateOOMKill, 128+int(unix.SIGKILL), "SIGKILL"
		rec.Message = "killed at the hard limit by its cgroup's memory.max while no supervisor ran"
	case killed:
		rec.State, rec.ExitCode, rec.Signal = service.StateKilled, 128+int(unix.SIGKILL), "SIGKILL"
		rec.Message = "the supervisor stopped while the container ran; its leftover processes were killed when the supervisor started again"
	default:
		rec.State, rec.ExitCode, rec.Signal = service.StateExited, -1, ""
		rec.Message = "the supervisor stopped while the container ran; its exit status is unknown"
	}
	s.log.Warn("container was running when the supervisor stopped", "container", rec.Name, "state", string(rec.State), "note", rec.Message)
}

// killIfSame SIGKILLs pid and waits for it to go, but only if it is still the process that
// started at startTime: a pidfd pins the process, and the start time checked after opening
// it rules out a reused pid.
func killIfSame(pid int, startTime uint64) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if st, err := procStartTime(pid); err != nil || st != startTime {
		return false
	}
	// A pidfd polls readable once its process has exited: a zombie nobody reaped yet is
	// over already, and signalling it would not make it "killed".
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0); err == nil && n > 0 {
		return false
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return false
	}
	// The pidfd polls readable once the process has exited; it is not our child, so its
	// new parent reaps it.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n > 0 {
			break
		}
	}
	return true
}
