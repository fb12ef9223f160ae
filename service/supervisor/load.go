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
)

// loadAll brings back the containers a previous supervisor recorded, so ps -a, inspect and
// logs survive a restart. Containers that were running when it died cannot be supervised
// again (their output pipes are gone): they are marked final with a message, and an init
// that is still alive is killed, but only when it is provably the same process.
func (s *Supervisor) loadAll() error {
	entries, err := os.ReadDir(s.containersDir())
	if err != nil {
		return fmt.Errorf("read state directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.containersDir(), e.Name())
		rec, err := load(dir)
		if errors.Is(err, os.ErrNotExist) {
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
		if !rec.State.Final() {
			s.recoverLost(&rec)
			if err := save(dir, rec); err != nil {
				s.log.Error("persisting recovered container state", "container", rec.Name, "error", err.Error())
			}
		}
		c := &container{
			dir:       dir,
			rec:       rec,
			done:      make(chan struct{}),
			hard:      make(chan struct{}),
			monExited: make(chan struct{}),
		}
		close(c.done)
		s.containers[rec.Name] = c
	}
	return nil
}

// recoverLost settles a container that was running when the previous supervisor died.
func (s *Supervisor) recoverLost(rec *record) {
	killed := false
	if rec.Pid > 0 && rec.BootID != "" && rec.BootID == s.bootID && rec.InitStartTime != 0 {
		killed = killIfSame(rec.Pid, rec.InitStartTime)
	}
	if rec.MergedDir != "" {
		if err := s.teardownOverlay(rec.MergedDir); err != nil {
			s.log.Error("tearing down overlay of lost container", "container", rec.Name, "error", err.Error())
		}
	}
	rec.FinishedAt = time.Now()
	rec.Pid = 0
	if killed {
		rec.State, rec.ExitCode, rec.Signal = service.StateKilled, 128+int(unix.SIGKILL), "SIGKILL"
		rec.Message = "the supervisor stopped while the container ran; its leftover processes were killed when the supervisor started again"
	} else {
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
