// SPDX-License-Identifier: Apache-2.0

// A running container's processes (top) and resource use (stats).

package supervisor

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
)

// Top lists the processes in the container's PID namespace: its init, their descendants and
// every exec'd command. Authorised as a read, like Get.
func (s *Supervisor) Top(ctx context.Context, caller service.Caller, name string) ([]service.Process, error) {
	c, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	ns, pid, err := s.containerNamespace(c)
	if err != nil {
		return nil, err
	}
	procs, err := s.containerProcs(c, ns)
	if err != nil {
		return nil, internal(err, "list the processes of container %q", name)
	}
	users := containerUsers(pid)
	now, err := bootTime()
	if err != nil {
		return nil, internal(err, "list the processes of container %q", name)
	}
	nsPid := make(map[int]int, len(procs)) // host pid -> pid in the container
	status := make(map[int]procStatus, len(procs))
	for _, p := range procs {
		st, err := readProcStatus(p.pid)
		if err != nil {
			continue // it ended meanwhile
		}
		status[p.pid] = st
		nsPid[p.pid] = st.nsPid
	}
	out := make([]service.Process, 0, len(procs))
	for _, p := range procs {
		st, ok := status[p.pid]
		if !ok {
			continue
		}
		user, ok := users[st.uid]
		if !ok {
			user = strconv.FormatUint(uint64(st.uid), 10)
		}
		args := readCmdline(p.pid, service.MaxProcessArgs)
		if len(args) == 0 || p.state == 'Z' {
			cmd := "[" + p.comm + "]"
			if p.state == 'Z' {
				cmd += " <defunct>"
			}
			args = []string{cmd}
		}
		out = append(out, service.Process{
			Pid: st.nsPid, PPid: nsPid[p.ppid], HostPid: p.pid, UID: st.uid, User: user,
			TTY:     ttyName(p.ttyNr),
			Elapsed: max(now-ticks(p.start), 0),
			CPUTime: ticks(p.utime + p.stime),
			Args:    args,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out, nil
}

// Stats samples the named containers, or every one not in a final state. Authorised as a
// read, like List.
func (s *Supervisor) Stats(ctx context.Context, caller service.Caller, names []string) ([]service.ContainerStats, error) {
	var cs []*container
	if len(names) == 0 {
		s.mu.Lock()
		for _, c := range s.containers {
			if !c.rec.State.Final() {
				cs = append(cs, c)
			}
		}
		s.mu.Unlock()
		sort.Slice(cs, func(i, j int) bool { return cs[i].rec.Name < cs[j].rec.Name })
	} else {
		seen := make(map[string]bool, len(names))
		for _, n := range names {
			if seen[n] {
				return nil, invalid("container %q is named twice", n)
			}
			seen[n] = true
			c, err := s.lookup(n)
			if err != nil {
				return nil, err
			}
			cs = append(cs, c)
		}
	}
	// Memory is what ps shows (the sampler keeps it fresh every second). CPU time and tasks
	// are counted now: from the container's cgroup where it has one, else from /proc, for
	// every container without a cgroup in one pass.
	out := make([]service.ContainerStats, len(cs))
	nsOf := make([]string, len(cs))
	want := make(map[string]bool, len(cs))
	for i, c := range cs {
		s.mu.Lock()
		r, g := c.rec, c.cg
		s.mu.Unlock()
		out[i] = service.ContainerStats{Name: r.Name, ID: r.ID, State: r.State,
			SoftLimit: r.SoftLimit, HardLimit: r.HardLimit, LimitsEnforced: r.LimitsEnforced, EnforcedBy: r.EnforcedBy}
		if r.State.Final() {
			continue
		}
		out[i].RSS, out[i].PeakRSS, out[i].MemoryCurrent = r.RSS, r.PeakRSS, r.MemoryCurrent
		ns, _, err := s.containerNamespace(c)
		if err != nil {
			continue // created, or ending right now: nothing to count
		}
		if g != nil {
			if cg, err := cgroupSample(g, ns); err == nil {
				out[i].CPUTime, out[i].Tasks, out[i].Processes = cg.cpu, cg.tasks, cg.procs
				if cg.mem > 0 {
					out[i].MemoryCurrent = cg.mem
				}
				continue
			}
			// The group is going away with the container: /proc still tells what is left.
		}
		nsOf[i], want[ns] = ns, true
	}
	var byNS map[string][]procStat
	if len(want) > 0 {
		var err error
		if byNS, err = namespaceProcs(want); err != nil {
			return nil, internal(err, "count the processes of containers")
		}
	}
	now := time.Now()
	for i, c := range cs {
		out[i].Time = now
		if nsOf[i] == "" {
			continue
		}
		procs := byNS[nsOf[i]]
		out[i].Processes = len(procs)
		for _, p := range procs {
			out[i].Tasks += p.threads
		}
		out[i].CPUTime = ticks(c.cpu.update(procs))
	}
	return out, nil
}

// cgroupUse is what a container's cgroup says about it.
type cgroupUse struct {
	cpu   time.Duration // cpu.stat usage_usec: every process it ever had, gone ones included
	tasks int
	procs int
	mem   uint64 // memory.current; 0 without the memory controller
}

func cgroupSample(g *cgroup.Group, ns string) (cgroupUse, error) {
	var u cgroupUse
	st, err := g.Stats()
	if err != nil {
		return u, err
	}
	pids, err := g.Procs()
	if err != nil {
		return u, err
	}
	for _, pid := range pids {
		if l, err := pidNamespace(pid); err == nil && l == ns {
			u.procs++
		}
	}
	u.cpu, u.tasks = st.CPUUsage, int(st.Tasks)
	if st.HasMemory {
		u.mem = st.MemoryCurrent
	}
	return u, nil
}

// containerProcs returns the processes of the container whose PID namespace is ns: those
// of its cgroup when it has one (no scan of all of /proc), else those /proc shows in ns.
// Of the cgroup's processes only those in ns count: an exec joins the cgroup a moment
// before its command forks into the container's namespace.
func (s *Supervisor) containerProcs(c *container, ns string) ([]procStat, error) {
	s.mu.Lock()
	g := c.cg
	s.mu.Unlock()
	if g != nil {
		if pids, err := g.Procs(); err == nil {
			out := make([]procStat, 0, len(pids))
			for _, pid := range pids {
				if l, err := pidNamespace(pid); err != nil || l != ns {
					continue
				}
				if st, err := readProcStat(pid); err == nil {
					out = append(out, st)
				}
			}
			return out, nil
		}
	}
	byNS, err := namespaceProcs(map[string]bool{ns: true})
	if err != nil {
		return nil, err
	}
	return byNS[ns], nil
}

// containerNamespace returns the PID namespace of c's init and the init's host pid, or
// KindInvalidState when c is not running.
func (s *Supervisor) containerNamespace(c *container) (string, int, error) {
	s.mu.Lock()
	name, state, pid := c.rec.Name, c.rec.State, c.rec.Pid
	s.mu.Unlock()
	if state.Final() || pid <= 0 {
		return "", 0, service.Errorf(service.KindInvalidState, "container %q is not running (%s)", name, state)
	}
	gone := service.Errorf(service.KindInvalidState, "container %q is not running (it has just exited)", name)
	ns, err := pidNamespace(pid)
	if err != nil {
		return "", 0, gone
	}
	if c.proc != nil {
		// The init is the supervisor's child: until it is reaped its pid cannot be reused,
		// so if it is still unreaped now, the namespace read above was its.
		if err := c.proc.WithPidfd(func(int) error { return nil }); err != nil {
			return "", 0, gone
		}
	} else if self, err := pidNamespace(os.Getpid()); err != nil || self == ns {
		// The init of a container an earlier supervisor started is not this one's child;
		// if its pid now names a process of the supervisor's own namespace, the init is
		// gone and the number was reused. Never list the host's processes as a container's.
		return "", 0, gone
	}
	return ns, pid, nil
}

// bootTime is the time since boot, the clock of /proc/PID/stat's start times.
func bootTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

func ticks(t uint64) time.Duration { return time.Duration(t) * (time.Second / clkTck) }

// cpuAccount turns the CPU times of a container's processes, read from /proc at each
// sample, into a total that only grows. /proc has no total for a set of processes: the sum
// over the live ones drops whenever one ends. A process's time does live on in its
// parent's cutime/cstime once the parent waits for it, so a process that ends while its
// parent (in the container) is there is left to the parent. An exec'd command's parent is
// outside the container: the supervisor reaps it and adds what the kernel says it used in
// all (exited). A process whose parent is gone has its last seen time kept in base. What an
// unobserved process used is counted only through its parent.
type cpuAccount struct {
	mu     sync.Mutex
	base   uint64
	last   map[procKey]procSeen
	finals map[int]uint64 // host pid -> total ticks of reaped exec'd commands seen alive
}

// procKey names one process across samples: a pid is reused, a pid with its start time not.
type procKey struct {
	pid   int
	start uint64
}

type procSeen struct {
	ticks uint64 // own time and that of the children it waited for
	ppid  int
}

// update takes the processes of a new sample and returns the container's total CPU time
// in clock ticks.
func (a *cpuAccount) update(procs []procStat) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	live := make(map[procKey]procSeen, len(procs))
	livePid := make(map[int]bool, len(procs))
	var sum uint64
	for _, p := range procs {
		t := p.utime + p.stime + p.cutime + p.cstime
		live[procKey{p.pid, p.start}] = procSeen{ticks: t, ppid: p.ppid}
		livePid[p.pid] = true
		sum += t
	}
	for k, seen := range a.last {
		if _, ok := live[k]; ok {
			continue
		}
		if t, ok := a.finals[k.pid]; ok {
			a.base += t
		} else if !livePid[seen.ppid] {
			a.base += seen.ticks
		}
	}
	clear(a.finals)
	a.last = live
	return a.base + sum
}

// exited accounts for an exec'd command the supervisor reaped, which used cpu in all (with
// the children it waited for). Seen by a sample, it is counted when the next sample misses
// it; never seen, at once.
func (a *cpuAccount) exited(pid int, cpu time.Duration) {
	t := uint64(cpu / (time.Second / clkTck))
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.last {
		if k.pid == pid {
			if a.finals == nil {
				a.finals = make(map[int]uint64)
			}
			a.finals[pid] = t
			return
		}
	}
	a.base += t
}
