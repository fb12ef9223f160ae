// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SpareMaxAge bounds how long a spare setup stage waits to be used. Its process's start time
// (what ps and top show for the container's PID 1) is when the spare was cloned, not when the
// container was created, so the spare must be young; and a host where nothing starts keeps
// no extra process for long.
const SpareMaxAge = 30 * time.Second

// spareArg is argv[1] of a spare setup stage (argv[1] is the container's name otherwise), so
// that ps shows what it is while it waits.
const spareArg = "(spare)"

// Spares keeps, for each network mode a container was recently started with, one setup
// stage started ahead of need: cloned in fresh namespaces, its Go runtime up, blocked reading
// its config. Start hands such a spare its config instead of cloning one, which takes the
// setup stage's process start-up (a few milliseconds) off the container's start, then starts
// the next spare once the container is set up, while its command runs.
//
// A spare is the same process a cold start would create, in the same state: nothing of the
// container's is in it before the config arrives. What differs, and why it is safe:
//   - Its mount namespace is a copy of ours from when it was cloned. A mount made since
//     then (in our namespace or propagated into it) discards every spare: /proc/self/mountinfo
//     reports each change of our mount table to poll, checked at every take.
//   - It is cloned in our cgroup and moved into the container's before it gets its config
//     (the fallback cloneSetup already takes when clone3 is refused), so only its own Go
//     start-up was charged elsewhere.
//   - It is at most SpareMaxAge old, and it exits by itself if we die (its config read
//     then ends at EOF).
//
// Spares only serve containers that are our children (no Launcher): a container in its own
// systemd unit is started by systemd.
type Spares struct {
	stage  *os.File
	maxAge time.Duration
	// mounts is our /proc/self/mountinfo, open only to be polled for changes. A raw
	// descriptor on purpose: an os.File would be in Go's epoll set, and each wake-up of the
	// netpoller's epoll_wait would consume the change before mountsChanged sees it.
	mounts int

	mu sync.Mutex
	// gen counts the mount-table changes seen; a spare cloned in an earlier generation
	// holds a stale copy of our mounts.
	gen     uint64
	parked  map[Network]*spare
	filling map[Network]bool
	closed  bool
	wg      sync.WaitGroup
}

type spare struct {
	p     *Process
	sock  *os.File
	gen   uint64
	timer *time.Timer
}

// NewSpares returns an empty set of spares of the setup stage stage (as opened by OpenStage;
// nil means the running binary). Spares are started by Start once a container has been
// started with a network mode; Close ends them.
func NewSpares(stage *os.File) (*Spares, error) {
	mounts, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("spare setup stages: watching the mount table: %w", err)
	}
	return &Spares{
		stage:   stage,
		maxAge:  SpareMaxAge,
		mounts:  mounts,
		parked:  map[Network]*spare{},
		filling: map[Network]bool{},
	}, nil
}

// mountsChanged reports whether our mount table changed since the last call (or since
// NewSpares). The kernel's poll of a mountinfo file says POLLERR|POLLPRI once per change
// of the namespace's mounts and rearms in the same call, so this costs one syscall.
func (s *Spares) mountsChanged() bool {
	fds := []unix.PollFd{{Fd: int32(s.mounts), Events: unix.POLLPRI}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		// If we cannot tell, the copy may be stale: say it changed.
		return err != nil || (n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLPRI) != 0)
	}
}

// take returns a spare for a container with network mode network, already moved into
// cgroup (when not nil), or nil when there is none to use.
func (s *Spares) take(network Network, stage, cgroup *os.File) (*Process, *os.File) {
	if s == nil || stage != s.stage {
		return nil, nil
	}
	s.mu.Lock()
	if s.mountsChanged() {
		s.gen++
	}
	sp := s.parked[network]
	delete(s.parked, network)
	gen := s.gen
	s.mu.Unlock()
	if sp == nil {
		return nil, nil
	}
	sp.timer.Stop()
	if sp.gen != gen || !alive(sp.p) {
		s.discard(sp)
		return nil, nil
	}
	if cgroup != nil {
		// Not reaped (we did not wait), so the pid is still this spare's.
		if err := moveToCgroup(int(cgroup.Fd()), sp.p.Pid); err != nil {
			s.discard(sp)
			return nil, nil
		}
	}
	return sp.p, sp.sock
}

// alive reports whether p has not exited: its pidfd polls readable once it has.
func alive(p *Process) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 0
}

// refill starts a spare for network mode network in the background unless one is parked or
// on its way.
func (s *Spares) refill(network Network) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.parked[network] != nil || s.filling[network] {
		return
	}
	s.filling[network] = true
	gen := s.gen
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p, sock, err := spawn(spareArg, network, nil, s.stage, nil)
		if err != nil {
			// A cold start will meet the same problem and report it.
			s.mu.Lock()
			s.filling[network] = false
			s.mu.Unlock()
			return
		}
		sp := &spare{p: p, sock: sock, gen: gen}
		s.mu.Lock()
		s.filling[network] = false
		stale := s.closed || gen != s.gen
		if !stale {
			s.parked[network] = sp
			sp.timer = time.AfterFunc(s.maxAge, func() { s.expire(network, sp) })
		}
		s.mu.Unlock()
		if stale {
			s.discard(sp)
		}
	}()
}

// expire discards sp if it is still parked.
func (s *Spares) expire(network Network, sp *spare) {
	s.mu.Lock()
	if s.parked[network] != sp {
		s.mu.Unlock()
		return
	}
	delete(s.parked, network)
	s.mu.Unlock()
	s.discard(sp)
}

// discard kills and reaps a spare that will not be used.
func (s *Spares) discard(sp *spare) {
	sp.sock.Close()
	_ = sp.p.Signal(unix.SIGKILL)
	_, _ = sp.p.Wait()
	sp.p.Stdout.Close()
	sp.p.Stderr.Close()
}

// Close ends every spare and waits for those being started; later calls do nothing. Start
// must not be called with s afterwards.
func (s *Spares) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	parked := s.parked
	s.parked = map[Network]*spare{}
	s.mu.Unlock()
	for _, sp := range parked {
		sp.timer.Stop()
		s.discard(sp)
	}
	s.wg.Wait()
	unix.Close(s.mounts)
}
