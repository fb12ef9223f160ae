// SPDX-License-Identifier: Apache-2.0

// The service.Manager methods other than Start.

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
)

// Stop sends SIGTERM, then SIGKILL after the timeout, and returns once the container is final.
func (s *Supervisor) Stop(ctx context.Context, caller service.Caller, name string, timeout time.Duration) (service.ContainerInfo, error) {
	if err := s.authorise(caller, "stop containers"); err != nil {
		return service.ContainerInfo{}, err
	}
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	switch {
	case timeout == service.NoGrace:
	case timeout < 0 || timeout > MaxStopTimeout:
		return service.ContainerInfo{}, invalid("stop timeout %s is out of range [0, %s]", timeout, MaxStopTimeout)
	}
	s.stop(c, timeout)
	select {
	case <-c.done:
		return s.snapshot(c), nil
	case <-ctx.Done():
		return service.ContainerInfo{}, &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf("stopping container %q: gave up waiting (the stop goes on)", name), Err: ctx.Err()}
	}
}

// stop starts the TERM→KILL escalation for c and returns at once; the escalation goes on
// even when the caller stops waiting. timeout 0 selects the container's stop timeout,
// service.NoGrace none.
func (s *Supervisor) stop(c *container, timeout time.Duration) {
	s.mu.Lock()
	if c.rec.State.Final() || c.proc == nil || c.settling {
		s.mu.Unlock()
		return
	}
	switch timeout {
	case 0:
		timeout = c.rec.StopTimeout
	case service.NoGrace:
		timeout = 0
	}
	if c.rec.State == service.StateRunning {
		c.rec.State = service.StateStopping
		s.publish(service.EventChanged, c, 0, 0)
	}
	// Under s.mu while the container is not final: Close waits for the escalations only
	// after every container is final, so this Add never races its Wait.
	s.escalations.Add(1)
	s.mu.Unlock()
	if err := c.proc.Signal(syscall.SIGTERM); err != nil {
		s.log.Debug("SIGTERM", "container", c.rec.Name, "error", err.Error())
	}
	go func() {
		defer s.escalations.Done()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			s.log.Info("container did not stop in time; sending SIGKILL", "container", c.rec.Name, "timeout", timeout.String())
			if err := c.proc.Signal(syscall.SIGKILL); err != nil {
				s.log.Debug("SIGKILL", "container", c.rec.Name, "error", err.Error())
			}
		}
	}()
}

// Kill sends sig to the container's init.
func (s *Supervisor) Kill(ctx context.Context, caller service.Caller, name string, sig syscall.Signal) error {
	if err := s.authorise(caller, "send signals to containers"); err != nil {
		return err
	}
	if err := gaveUp(ctx, "send a signal to container %q", name); err != nil {
		return err
	}
	if sig == 0 {
		sig = service.DefaultKillSignal
	}
	if err := validSignal(sig); err != nil {
		return err
	}
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	state, settling := c.rec.State, c.settling
	s.mu.Unlock()
	if state.Final() || c.proc == nil {
		return service.Errorf(service.KindInvalidState, "container %q is not running (%s)", name, state)
	}
	if settling {
		return service.Errorf(service.KindInvalidState, "container %q is not running (it has just exited)", name)
	}
	if err := c.proc.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			// Its init is gone and the reaper is still draining the output: to the user
			// that is a container that is not running any more, not a supervisor failure.
			return service.Errorf(service.KindInvalidState, "container %q is not running (it has just exited)", name)
		}
		return internal(err, "send %s to container %q", signalName(sig), name)
	}
	return nil
}

// Remove deletes a final container with its writable layer and log file.
func (s *Supervisor) Remove(ctx context.Context, caller service.Caller, name string) error {
	if err := s.authorise(caller, "remove containers"); err != nil {
		return err
	}
	if err := gaveUp(ctx, "remove container %q", name); err != nil {
		return err
	}
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	return s.remove(c, name)
}

// remove deletes c, a container in the registry under name, once it is final.
func (s *Supervisor) remove(c *container, name string) error {
	s.mu.Lock()
	if !c.rec.State.Final() {
		state := c.rec.State
		s.mu.Unlock()
		return service.Errorf(service.KindInvalidState, "container %q is %s; stop it before removing it", name, state)
	}
	if c.removing {
		s.mu.Unlock()
		return service.Errorf(service.KindInvalidState, "container %q is already being removed", name)
	}
	c.removing = true
	merged := c.rec.MergedDir
	leftover := record{}
	leftover.Cgroup = c.rec.Cgroup // still there when removing it failed as the container ended
	s.mu.Unlock()
	if err := s.removeCgroup(&leftover); err != nil {
		s.mu.Lock()
		c.removing = false
		s.mu.Unlock()
		return internal(err, "remove the cgroup of container %q", name)
	}
	c.disk.mu.Lock()
	err := s.removeDir(c.dir, merged)
	if err == nil {
		c.disk.gone = true // a background saver of its final state stops here
	}
	c.disk.mu.Unlock()
	if err != nil {
		s.mu.Lock()
		c.removing = false
		s.mu.Unlock()
		return internal(err, "remove container %q", name)
	}
	s.mu.Lock()
	delete(s.containers, name)
	s.publish(service.EventRemoved, c, 0, 0)
	s.mu.Unlock()
	return nil
}

// removeDir deletes a container directory, but never through a mount: if an overlay is still
// mounted there it is unmounted first, and the removal is refused when that fails.
func (s *Supervisor) removeDir(dir, merged string) error {
	if merged != "" {
		if err := s.teardownOverlay(merged); err != nil {
			return err
		}
	}
	mps, err := mountPoints(dir)
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if len(mps) > 0 {
		return fmt.Errorf("%s is still mounted; not removing %s", mps[0], dir)
	}
	// One rename frees the name at once; the files (a dozen or more unlinks and rmdirs,
	// ~2 ms on a busy ext4, on every `run --rm`'s critical path) go in the background. The
	// directory is renamed to a fresh name in the trash rather than into a new directory
	// there: every inode created on the state directory's filesystem costs, and on an ext4
	// without a journal each allocation scans past the inodes deleted in the last minutes
	// (docs/bench.md, "Where the time goes").
	for range 3 {
		gone := filepath.Join(s.trashDir(), "c-"+filepath.Base(dir)+"-"+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Rename(dir, gone)
		if err == nil {
			s.emptyTrash(gone)
			return nil
		}
		// Only a name already taken in the trash (EEXIST, ENOTEMPTY) is worth another name.
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	return os.RemoveAll(dir)
}

// trashDir holds removed container directories until they are deleted in the background;
// on the state directory's filesystem, so that moving a directory there is one rename.
func (s *Supervisor) trashDir() string { return filepath.Join(s.cfg.StateDir, "trash") }

// emptyTrash deletes dir in the background (trash); Close and Detach wait for it.
func (s *Supervisor) emptyTrash(dir string) { s.trash.add(dir) }

// removeUnmounted undoes a directory of a failed start, unless something is still mounted
// below it: deleting through a mount could reach what is mounted there.
func (s *Supervisor) removeUnmounted(dir string) {
	mps, err := mountPoints(dir)
	if err == nil && len(mps) == 0 {
		err = os.RemoveAll(dir)
	} else if err == nil {
		err = fmt.Errorf("%s is still mounted", mps[0])
	}
	if err != nil {
		s.log.Error("cannot clean up after a failed start", "dir", dir, "error", err.Error())
	}
}

// autoRemove removes an AutoRemove container once its reaper has settled it, and tells
// RunContainer (c.removed) when that is done or why it failed.
func (s *Supervisor) autoRemove(c *container) {
	defer close(c.removed)
	c.followers.Wait()
	if err := s.remove(c, c.rec.Name); err != nil {
		c.disk.mu.Lock()
		gone := c.disk.gone
		c.disk.mu.Unlock()
		if gone {
			return // someone's Remove got there first
		}
		c.removeErr = err
		s.log.Error("cannot remove a container started with --rm", "container", c.rec.Name, "error", err.Error())
	}
}

// RunContainer starts a container, delivers its output as it comes and returns its final
// state (see service.Manager).
func (s *Supervisor) RunContainer(ctx context.Context, caller service.Caller, req service.StartRequest, started func(service.ContainerInfo), fn func(service.LogLine) error) (service.ContainerInfo, error) {
	var c *container
	info, err := s.start(ctx, caller, req, &c)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	started(info)
	// The container itself, not its name: with Remove it leaves the registry as it ends,
	// though not before this follower has read its log (c.followers).
	err = c.clog.Read(ctx, service.LogOptions{Follow: true}, fn)
	c.followers.Done()
	if err != nil {
		return service.ContainerInfo{}, err
	}
	gaveUp := func() (service.ContainerInfo, error) {
		return service.ContainerInfo{}, &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf("running container %q: gave up waiting (it goes on)", req.Name), Err: ctx.Err()}
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return gaveUp()
	}
	info = s.snapshot(c)
	if c.removed != nil {
		select {
		case <-c.removed:
		case <-ctx.Done():
			return gaveUp()
		}
		if c.removeErr != nil {
			info.Message = fmt.Sprintf("%s: %v", service.MsgNotRemoved, c.removeErr)
		}
	}
	return info, nil
}

// Get returns one container.
func (s *Supervisor) Get(ctx context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	return s.snapshot(c), nil
}

// List returns the containers sorted by creation time (then name); all=false leaves out
// final ones.
func (s *Supervisor) List(ctx context.Context, caller service.Caller, all bool) ([]service.ContainerInfo, error) {
	s.mu.Lock()
	out := make([]service.ContainerInfo, 0, len(s.containers))
	for _, c := range s.containers {
		if all || !c.rec.State.Final() {
			out = append(out, c.info())
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Wait blocks until the container is final and its output drained.
func (s *Supervisor) Wait(ctx context.Context, caller service.Caller, name string) (service.ContainerInfo, error) {
	c, err := s.lookup(name)
	if err != nil {
		return service.ContainerInfo{}, err
	}
	select {
	case <-c.done:
		return s.snapshot(c), nil
	case <-ctx.Done():
		return service.ContainerInfo{}, &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf("waiting for container %q: gave up", name), Err: ctx.Err()}
	}
}

// Logs delivers the container's output from its log file; with Follow it goes on until the
// container is final and drained.
func (s *Supervisor) Logs(ctx context.Context, caller service.Caller, name string, opts service.LogOptions, fn func(service.LogLine) error) error {
	c, err := s.lookup(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	final, path := c.rec.State.Final(), c.rec.LogPath
	s.mu.Unlock()
	if c.clog != nil && !final {
		if err := c.clog.Read(ctx, opts, fn); err != nil || !opts.Follow {
			return err
		}
		if !opts.Until.IsZero() && !time.Now().Before(opts.Until) {
			return nil // following ended at Until, not at the container's end
		}
		// The log ends when the output is drained, a moment before the final state is
		// settled; a follower returns only once ps would show the container final.
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := logs.ReadFile(ctx, path, opts, fn); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a container that never printed anything may have no log yet
		}
		return err
	}
	return nil
}

// Subscribe delivers every event from now on; see service.Manager.
func (s *Supervisor) Subscribe() (<-chan service.Event, func()) {
	return s.events.subscribe(subscriberBuffer)
}

// Status describes the supervisor.
func (s *Supervisor) Status() service.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := service.Status{
		Version:          service.Version,
		BaseRootfs:       s.cfg.BaseRootfs,
		MonitorAvailable: s.memBy == service.EnforcedByModule,
		MonitorMessage:   s.monMsg,
		MemoryEnforcer:   s.memBy,
		JournalAvailable: s.journal != nil,
		ContainerCount:   len(s.containers),
	}
	for _, c := range s.containers {
		if !c.rec.State.Final() {
			st.RunningCount++
		}
	}
	return st
}

// gaveUp returns an error when the caller has given up (ctx ended), so that a call nobody
// waits for any more changes nothing; nil otherwise.
func gaveUp(ctx context.Context, format string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return &service.Error{Kind: service.KindInternal, Msg: fmt.Sprintf(format, args...) + ": the caller gave up", Err: err}
	}
	return nil
}
