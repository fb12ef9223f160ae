// SPDX-License-Identifier: Apache-2.0

// Live restore: what a supervisor hands to the next one through systemd's fd store (each
// running container's output pipes), letting go of running containers on a restart, and
// taking over what a previous supervisor left.

package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/logs"
	"github.com/jackfruit/jackfruit/service/monitor"
	"github.com/jackfruit/jackfruit/service/sdglue"
)

// FDKeeper keeps descriptors for the next supervisor: systemd's fd store (*sdglue.FDStore).
type FDKeeper interface {
	// Store keeps a duplicate of fd under name; false (and no error) when it is not kept
	// (no store). An error wrapping sdglue.ErrStoreFull means the store is full; the
	// keeper has said so once.
	Store(name string, fd int) (bool, error)
	// Remove drops every descriptor kept under name.
	Remove(name string) error
}

// pipeFDName is the fd store name of a container's output pipe, "<name>.stdout" or
// "<name>.stderr", or of its terminal's master, "<name>.tty" (ttyStream). Container names
// have no ':' (which LISTEN_FDNAMES reserves).
func pipeFDName(name string, st service.Stream) string { return name + "." + string(st) }

// ttyStream names a container's terminal where its output sources are told apart: its fd
// store name and the file of its unfinished line. Its output is logged as stdout, as docker
// and podman log a terminal's.
const ttyStream service.Stream = "tty"

// logStream is the stream the output of source st is logged as.
func logStream(st service.Stream) service.Stream {
	if st == ttyStream {
		return service.Stdout
	}
	return st
}

// carryFile holds the unfinished last line of a stream that a supervisor had read when it
// let go of the stream (Detach), for the next one to log as the start of the next line.
func carryFile(dir string, st service.Stream) string {
	return filepath.Join(dir, "unfinished."+string(st))
}

// drainWait bounds how long a new supervisor drains the pipes of a container that is over:
// EOF comes as soon as its last process is gone, so this only guards against a writer that
// is not the container's.
const drainWait = 10 * time.Second

// keepPipes puts the read ends of c's output pipes into the fd store, so that output written
// while no supervisor runs stays in the pipes for the next one. A failure costs only that.
// A terminal's master goes there too: besides its output, it keeps the terminal itself, whose
// processes would get a hangup when the last master closed with this supervisor.
func (s *Supervisor) keepPipes(c *container) {
	if s.cfg.FDStore == nil {
		return
	}
	// The terminal first: near a full store, losing it would hang the container up, losing a
	// pipe only the output written during a restart.
	sts := []service.Stream{service.Stdout, service.Stderr}
	kept := map[service.Stream]any{service.Stdout: c.proc.Stdout, service.Stderr: c.proc.Stderr}
	if c.proc.Pty != nil {
		sts = append([]service.Stream{ttyStream}, sts...)
		kept[ttyStream] = c.proc.Pty
	}
	for _, st := range sts {
		rd := kept[st]
		err := withFD(rd, func(fd int) error {
			_, err := s.cfg.FDStore.Store(pipeFDName(c.rec.Name, st), fd)
			return err
		})
		switch {
		case err == nil, errors.Is(err, sdglue.ErrStoreFull):
		case st == ttyStream:
			s.log.Warn("container terminal not kept in the fd store: a restart of the supervisor would hang it up",
				"container", c.rec.Name, "error", err.Error())
		default:
			s.log.Warn("container output pipe not kept in the fd store: output written while the supervisor restarts would be lost",
				"container", c.rec.Name, "stream", string(st), "error", err.Error())
		}
	}
}

// dropPipes removes c's pipes (and with tty its terminal) from the fd store once they are
// drained to the end.
func (s *Supervisor) dropPipes(name string, tty bool) {
	if s.cfg.FDStore == nil {
		return
	}
	streams := []service.Stream{service.Stdout, service.Stderr}
	if tty {
		streams = append(streams, ttyStream)
	}
	for _, st := range streams {
		if err := s.cfg.FDStore.Remove(pipeFDName(name, st)); err != nil {
			s.log.Warn("removing a drained pipe from the fd store", "container", name, "stream", string(st), "error", err.Error())
		}
	}
}

// withFD runs fn with the descriptor of f (an *os.File or anything with SyscallConn)
// without taking it out of non-blocking mode, as os.File.Fd would.
func withFD(f any, fn func(fd int) error) error {
	sc, ok := f.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", f)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// takeInherited removes the stored descriptor name from what this supervisor was started
// with and returns it ready for the netpoller (nil if there is none).
func (s *Supervisor) takeInherited(name string) *os.File {
	f := s.cfg.Inherited[name]
	if f == nil {
		return nil
	}
	delete(s.cfg.Inherited, name)
	// Passed descriptors are blocking; os.NewFile puts a non-blocking one into the
	// netpoller, so a read deadline can end a read (Detach) and no thread blocks in it.
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		s.log.Warn("cannot use a descriptor from the fd store", "name", name, "error", err.Error())
		return nil
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.log.Warn("cannot use a descriptor from the fd store", "name", name, "error", err.Error())
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// dropUnusedInherited closes what is left of the inherited descriptors (those of containers
// that are final or gone) and removes them from the store.
func (s *Supervisor) dropUnusedInherited() {
	for name, f := range s.cfg.Inherited {
		f.Close()
		delete(s.cfg.Inherited, name)
		s.log.Info("dropping a descriptor from the fd store that no container needs", "name", name)
		if s.cfg.FDStore != nil {
			if err := s.cfg.FDStore.Remove(name); err != nil {
				s.log.Warn("removing from the fd store", "name", name, "error", err.Error())
			}
		}
	}
}

// readCarry returns (and deletes) the unfinished line a previous supervisor left for st.
func (s *Supervisor) readCarry(c *container, st service.Stream) []byte {
	path := carryFile(c.dir, st)
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("reading the unfinished line a previous supervisor left", "container", c.rec.Name, "stream", string(st), "error", err.Error())
		}
		return nil
	}
	os.Remove(path)
	if len(b) > logs.MaxLinePiece {
		s.log.Warn("ignoring an oversized unfinished line left by a previous supervisor", "container", c.rec.Name, "stream", string(st), "bytes", len(b))
		return nil
	}
	return b
}

// writeCarry saves the unfinished line of st for the next supervisor.
func (s *Supervisor) writeCarry(c *container, st service.Stream, rest []byte) {
	if len(rest) == 0 {
		return
	}
	if err := os.WriteFile(carryFile(c.dir, st), rest, 0o600); err != nil {
		s.log.Warn("the unfinished last line of a container's output is lost across the restart",
			"container", c.rec.Name, "stream", string(st), "bytes", len(rest), "error", err.Error())
	}
}

// Detach lets go of the running containers without stopping them, for the next supervisor
// to take over: what systemctl restart, a package upgrade's restart and a crash want. The
// output copiers stop at a line boundary (an unfinished line is saved for the next
// supervisor; the rest stays in the pipes, which the fd store keeps), the records stay
// "running", and nothing is removed from the fd store. Then it ends like Close. New starts
// are refused from the moment Detach begins.
//
// Only containers with a parent that outlives the supervisor (their systemd unit) survive:
// the next supervisor kills the others, which were its children (manual mode), after
// draining their pipes.
func (s *Supervisor) Detach() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.detaching = true
		s.mu.Unlock()
		// A start in flight either registered its container before closing (and is in the
		// list below) or undoes itself.
		s.starts.Wait()
		s.mu.Lock()
		var running []*container
		for _, c := range s.containers {
			if !c.rec.State.Final() && c.proc != nil {
				running = append(running, c)
			}
		}
		s.mu.Unlock()
		if len(running) > 0 {
			s.log.Info("leaving containers running for the next supervisor", "count", len(running))
		}
		now := time.Now()
		for _, c := range running {
			rds := []any{c.proc.Stdout, c.proc.Stderr}
			if c.tty != nil {
				// The terminal's master is in the fd store (keepPipes): the next supervisor
				// reads on, and the container sees no hangup when this process exits.
				rds = append(rds, c.tty)
			}
			for _, rd := range rds {
				if f, ok := rd.(interface{ SetReadDeadline(time.Time) error }); ok {
					f.SetReadDeadline(now)
				}
			}
		}
		// The records stay as they are ("running"); a container that ends right now is
		// either settled by its reaper, which got past its check before detaching was set
		// (waited for here), or left to the next supervisor.
		s.finishing.Wait()
		for _, c := range running {
			// What it has now (soft limit exceeded, peak RSS), for the next supervisor: one
			// write (with its fsync) only where that changed since the last.
			s.saveRunning(c, true)
			c.copies.Wait()
			if err := c.clog.Close(); err != nil {
				s.log.Warn("closing container log", "container", c.rec.Name, "error", err.Error())
			}
		}
		// The other reapers stay parked on their pidfds; the process ends with them.
		close(s.shutdown)
		s.savers.Wait()
		close(s.stopBg)
		if s.mem != nil {
			// The fd store holds the file too (openMonitor), so its registrations and
			// event queue live on for the next supervisor. Without the store the module
			// drops them with this last descriptor, and the next supervisor registers the
			// containers it takes over anew.
			s.mem.Close()
		}
		s.events.close()
		s.bg.Wait()
		if s.journal != nil {
			s.journal.Close()
		}
		s.closeStage()
		s.trash.wait()
		s.lock.Close()
	})
	return nil
}

// restoreLost settles a container that was running when the previous supervisor ended and
// that this one cannot supervise again (manual mode: it was the previous supervisor's child,
// which nobody can wait for now). Its output written meanwhile is drained from the kept
// pipes into its log first; an init still alive is killed, but only when it is provably the
// same process.
func (s *Supervisor) restoreLost(c *container) {
	kept := s.takeKept(c.rec.Name)
	s.recoverLost(&c.rec)
	s.drain(c, kept)
	if err := save(c.dir, c.rec); err != nil {
		s.log.Error("persisting recovered container state", "container", c.rec.Name, "error", err.Error())
	}
	s.dropPipes(c.rec.Name, true)
}

// takeKept takes a container's output sources from the fd store: its pipes and its
// terminal's master, those that are there.
func (s *Supervisor) takeKept(name string) map[service.Stream]*os.File {
	kept := map[service.Stream]*os.File{}
	for _, st := range []service.Stream{service.Stdout, service.Stderr, ttyStream} {
		if f := s.takeInherited(pipeFDName(name, st)); f != nil {
			kept[st] = f
		}
	}
	return kept
}

// drain copies what is left in a container's kept pipes and terminal (the init is gone, or
// is about to be killed) into its log, in order after what the previous supervisor logged,
// and closes them. The unfinished lines the previous supervisor saved are used up.
func (s *Supervisor) drain(c *container, kept map[service.Stream]*os.File) {
	defer func() {
		for _, st := range []service.Stream{service.Stdout, service.Stderr, ttyStream} {
			os.Remove(carryFile(c.dir, st))
		}
	}()
	if len(kept) == 0 {
		return
	}
	clog, err := logs.OpenContainerLog(c.rec.LogPath, s.cfg.LogMaxBytes, logs.Fields{Name: c.rec.Name, ID: c.rec.ID}, s.journal)
	if err != nil {
		s.log.Error("output written while the supervisor was down is lost: cannot open the container log", "container", c.rec.Name, "error", err.Error())
		for _, f := range kept {
			f.Close()
		}
		return
	}
	clog.SetLogger(s.log)
	deadline := time.Now().Add(drainWait)
	done := make(chan struct{}, len(kept))
	for st, f := range kept {
		go func() {
			defer func() { done <- struct{}{} }()
			var rd io.Reader = f
			if st == ttyStream {
				// A master reads EIO, not EOF, once no process has the terminal open.
				rd = newTtyHub(f)
			}
			defer f.Close()
			f.SetReadDeadline(deadline)
			rest, err := clog.CopyFrom(rd, logStream(st), s.readCarry(c, st))
			if errors.Is(err, logs.ErrDetached) {
				// Someone else still holds the pipe open: log what was there.
				s.log.Warn("container output pipe still open after its init ended; stopped draining it", "container", c.rec.Name, "stream", string(st))
				clog.CopyFrom(eofReader{}, logStream(st), rest)
			} else if err != nil {
				s.log.Warn("draining container output", "container", c.rec.Name, "stream", string(st), "error", err.Error())
			}
		}()
	}
	for range kept {
		<-done
	}
	if err := clog.Close(); err != nil {
		s.log.Warn("closing container log", "container", c.rec.Name, "error", err.Error())
	}
}

// eofReader is an empty stream: CopyFrom logs the carried unfinished line and returns.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// ContainersOutlive reports whether the containers outlive this supervisor: only then does
// Detach leave them running for the next one. They do in unit mode, where systemd is the
// parent of each init and records how it ends; in manual mode they are the supervisor's
// children and the next supervisor could not learn how they end.
func (s *Supervisor) ContainersOutlive() bool {
	return s.cfg.Units != nil
}

// monitorFDName is the fd store name of the kernel monitor's open file. The module ties
// registrations and their event queue to the open file, so keeping it keeps both: the
// containers stay watched (and are killed at their hard limits) while no supervisor runs,
// and the next supervisor reads what happened meanwhile.
const monitorFDName = "monitor"

// openMonitor opens the kernel monitor: the previous supervisor's file when the fd store
// kept it, else the device, whose file it then puts in the store.
func (s *Supervisor) openMonitor(device string) (*moduleWatcher, error) {
	if f := s.takeInherited(monitorFDName); f != nil {
		c, err := monitor.FromFile(f)
		if err == nil {
			s.memKept = true
			s.log.Info("took over the kernel monitor file of the previous supervisor (its registrations and queued events)")
			return &moduleWatcher{c: c}, nil
		}
		f.Close()
		s.log.Warn("the kernel monitor file in the fd store is not usable; opening the device again (containers of the previous supervisor are registered anew)", "error", err.Error())
		if s.cfg.FDStore != nil {
			if err := s.cfg.FDStore.Remove(monitorFDName); err != nil {
				s.log.Warn("removing from the fd store", "name", monitorFDName, "error", err.Error())
			}
		}
	}
	m, err := openModuleWatcher(device)
	if err != nil {
		return nil, err
	}
	if s.cfg.FDStore != nil {
		err := withFD(m.c.File(), func(fd int) error {
			_, err := s.cfg.FDStore.Store(monitorFDName, fd)
			return err
		})
		if err != nil && !errors.Is(err, sdglue.ErrStoreFull) {
			s.log.Warn("the kernel monitor file is not kept in the fd store: a restart of the supervisor leaves its containers unwatched until it is back", "error", err.Error())
		}
	}
	return m, nil
}
