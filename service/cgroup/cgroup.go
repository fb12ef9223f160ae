// SPDX-License-Identifier: Apache-2.0

// Package cgroup drives cgroup v2 directories for containers: accounting (memory.current,
// memory.events, cpu.stat, pids.current), the hard memory limit (memory.max with
// memory.oom.group, so an OOM kill ends the whole container) and removal.
//
// Only a pure cgroup2 hierarchy is used. On a hybrid host the memory, pids and cpu
// controllers sit on v1 hierarchies, so the unified one could neither account nor limit a
// container; such a host is reported as having no cgroups (Check) rather than half used.
//
// Two ways to get a Group:
//   - Open(dir) for a cgroup somebody else made (the cgroup of a container's systemd unit);
//   - a Subtree of the supervisor's own cgroup (manual mode, or under jackfruit.service with
//     Delegate=yes): Delegate moves the supervisor into a leaf of its own cgroup, enables the
//     controllers, and Subtree.Create makes <own>/containers/<name>.
//
// Nothing here keeps state beyond a path: a Group may be re-opened by a restarted supervisor
// from the path in its state file. All methods are safe for concurrent use.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMount is where a cgroup2-only host mounts the hierarchy.
const DefaultMount = "/sys/fs/cgroup"

// ErrNoController means the file of a controller is missing: the controller is not enabled
// for the group (or not available on this host).
var ErrNoController = errors.New("controller not enabled for this cgroup")

// Check reports whether mount is a cgroup2 mount. The error says what it is instead (a
// hybrid or v1-only host, or nothing mounted), for the supervisor's one warning.
func Check(mount string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil {
		return fmt.Errorf("no cgroup2 hierarchy at %s: %w", mount, err)
	}
	if int64(st.Type) == unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	var u unix.Statfs_t
	if unix.Statfs(filepath.Join(mount, "unified"), &u) == nil && int64(u.Type) == unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is a hybrid cgroup hierarchy (the controllers are on cgroup v1, %s/unified is cgroup2 without them); jackfruit uses cgroup v2 only (boot with systemd.unified_cgroup_hierarchy=1)", mount, mount)
	}
	if int64(st.Type) == unix.CGROUP_SUPER_MAGIC || hasV1(mount) {
		return fmt.Errorf("%s is a cgroup v1 hierarchy; jackfruit uses cgroup v2 only", mount)
	}
	return fmt.Errorf("%s is not a cgroup2 mount (filesystem type %#x); mount one with `mount -t cgroup2 none %s`", mount, st.Type, mount)
}

// hasV1 reports whether dir (a tmpfs, as on v1 hosts) holds cgroup v1 hierarchies.
func hasV1(dir string) bool {
	es, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range es {
		var st unix.Statfs_t
		if e.IsDir() && unix.Statfs(filepath.Join(dir, e.Name()), &st) == nil && int64(st.Type) == unix.CGROUP_SUPER_MAGIC {
			return true
		}
	}
	return false
}

// Group is one cgroup v2 directory.
type Group struct {
	dir string
}

// Open returns the cgroup at dir, an absolute path of a directory on a cgroup2 mount.
func Open(dir string) (*Group, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("cgroup %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if int64(st.Type) != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("cgroup %s: not on a cgroup2 mount (filesystem type %#x)", dir, st.Type)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("cgroup %s: not a cgroup directory: %w", dir, err)
	}
	return &Group{dir: dir}, nil
}

// Path is the group's directory.
func (g *Group) Path() string { return g.dir }

// OpenDir opens the group's directory, for clone3's CLONE_INTO_CGROUP
// (syscall.SysProcAttr.CgroupFD): a process born there is accounted and limited from its
// first instruction. The caller closes it.
func (g *Group) OpenDir() (*os.File, error) {
	f, err := os.OpenFile(g.dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", g.dir, err)
	}
	return f, nil
}

// read returns one interface file; a missing one wraps ErrNoController.
func (g *Group) read(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		if _, derr := os.Stat(g.dir); derr != nil {
			return nil, fmt.Errorf("cgroup %s: %w", g.dir, derr)
		}
		return nil, fmt.Errorf("cgroup %s: %s: %w", g.dir, name, ErrNoController)
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", g.dir, err)
	}
	return b, nil
}

// write writes one value to an interface file; a missing file wraps ErrNoController.
func (g *Group) write(name, value string) error {
	f, err := os.OpenFile(filepath.Join(g.dir, name), os.O_WRONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup %s: %s: %w", g.dir, name, ErrNoController)
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", g.dir, err)
	}
	defer f.Close()
	// One write(2): the kernel parses each write as a whole.
	if _, err := f.WriteString(value); err != nil {
		return fmt.Errorf("cgroup %s: writing %q to %s: %w", g.dir, value, name, err)
	}
	return nil
}

// MemoryCurrent is memory.current: every byte charged to the group (anonymous memory, page
// cache, kernel memory), which is what memory.max limits.
func (g *Group) MemoryCurrent() (uint64, error) {
	b, err := g.read("memory.current")
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: memory.current %q: %w", g.dir, bytes.TrimSpace(b), err)
	}
	return v, nil
}

// MemoryPeak is memory.peak (Linux 5.19): the highest memory.current since the group was
// made.
func (g *Group) MemoryPeak() (uint64, error) {
	b, err := g.read("memory.peak")
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: memory.peak %q: %w", g.dir, bytes.TrimSpace(b), err)
	}
	return v, nil
}

// MemoryEvents are the counters of memory.events that tell a limit kill.
type MemoryEvents struct {
	Max          uint64 // times usage hit memory.max (and reclaim was tried)
	OOM          uint64 // times the group's own limit could not be met: an OOM in the group
	OOMKill      uint64 // processes of the group killed by any OOM killer
	OOMGroupKill uint64 // times the group was killed as a whole (memory.oom.group)
}

// LimitKilled reports whether the group's own memory limit killed something. oom_kill alone
// is not enough: a host-wide OOM kill of one of its processes counts there too, while oom
// counts only OOMs of this group's (or an ancestor's) limit.
func (e MemoryEvents) LimitKilled() bool {
	return e.OOM > 0 && (e.OOMKill > 0 || e.OOMGroupKill > 0)
}

// MemoryEvents reads memory.events (hierarchical: a container's group is a leaf).
func (g *Group) MemoryEvents() (MemoryEvents, error) {
	var e MemoryEvents
	kv, err := g.keyed("memory.events")
	if err != nil {
		return e, err
	}
	e.Max, e.OOM, e.OOMKill, e.OOMGroupKill = kv["max"], kv["oom"], kv["oom_kill"], kv["oom_group_kill"]
	return e, nil
}

// keyed parses a flat-keyed file ("key value" lines).
func (g *Group) keyed(name string) (map[string]uint64, error) {
	b, err := g.read(name)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %s: %q: %w", g.dir, name, sc.Text(), err)
		}
		out[k] = n
	}
	return out, nil
}

// CPUUsage is usage_usec of cpu.stat: CPU time used by the group's processes, alive and
// gone. cpu.stat exists without the cpu controller.
func (g *Group) CPUUsage() (time.Duration, error) {
	kv, err := g.keyed("cpu.stat")
	if err != nil {
		return 0, err
	}
	us, ok := kv["usage_usec"]
	if !ok {
		return 0, fmt.Errorf("cgroup %s: cpu.stat has no usage_usec", g.dir)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Tasks is the number of tasks (threads) in the group: pids.current, or, where the pids
// controller is not enabled, the entries of cgroup.threads (the same count, read slower).
func (g *Group) Tasks() (uint64, error) {
	b, err := g.read("pids.current")
	if errors.Is(err, ErrNoController) {
		if b, err = g.read("cgroup.threads"); err != nil {
			return 0, err
		}
		return uint64(bytes.Count(b, []byte("\n"))), nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: pids.current %q: %w", g.dir, bytes.TrimSpace(b), err)
	}
	return v, nil
}

// Procs lists the processes (thread group ids) in the group.
func (g *Group) Procs() ([]int, error) {
	b, err := g.read("cgroup.procs")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: cgroup.procs entry %q: %w", g.dir, f, err)
		}
		out = append(out, pid)
	}
	return out, nil
}

// Stats is one reading of a group's accounting, for ps, inspect and top.
type Stats struct {
	// MemoryCurrent is memory.current in bytes; valid when HasMemory (the memory
	// controller is enabled for the group).
	MemoryCurrent uint64
	HasMemory     bool
	CPUUsage      time.Duration // cpu.stat usage_usec
	Tasks         uint64        // threads in the group (pids.current or cgroup.threads)
}

// Stats reads memory.current, cpu.stat and the task count. A controller that is not
// enabled leaves its fields zero; any other failure (the group is gone) is an error.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	s.MemoryCurrent, err = g.MemoryCurrent()
	switch {
	case err == nil:
		s.HasMemory = true
	case !errors.Is(err, ErrNoController):
		return s, err
	}
	if s.CPUUsage, err = g.CPUUsage(); err != nil {
		return s, err
	}
	if s.Tasks, err = g.Tasks(); err != nil {
		return s, err
	}
	return s, nil
}

// SetMemoryLimit makes hard (bytes) the group's hard limit: memory.max, with
// memory.oom.group set so that an OOM kill takes every process of the group (as the kernel
// monitor's SIGKILL of a container's init does), and memory.swap.max 0 where swap is
// accounted, so that the limit is not stretched by swapping. It needs the memory controller.
func (g *Group) SetMemoryLimit(hard uint64) error {
	if hard == 0 {
		return fmt.Errorf("cgroup %s: a memory limit of 0 bytes", g.dir)
	}
	if err := g.write("memory.oom.group", "1"); err != nil {
		return err
	}
	if err := g.write("memory.swap.max", "0"); err != nil && !errors.Is(err, ErrNoController) {
		return err
	}
	return g.write("memory.max", strconv.FormatUint(hard, 10))
}

// Kill SIGKILLs every process of the group and its descendants at once (cgroup.kill, Linux
// 5.14). Without cgroup.kill it fails rather than signal pids read from cgroup.procs, any of
// which may have been reused by then.
func (g *Group) Kill() error {
	if err := g.write("cgroup.kill", "1"); err != nil {
		if errors.Is(err, ErrNoController) {
			return fmt.Errorf("cgroup %s: no cgroup.kill (Linux 5.14 or later needed)", g.dir)
		}
		return err
	}
	return nil
}

// removeWait bounds how long Remove waits for killed processes to leave the group.
const removeWait = 5 * time.Second

// Remove kills whatever is left in the group (and in groups below it) and removes the
// directories, retrying while the killed processes exit, for at most a few seconds. A group
// that is already gone is not an error.
func (g *Group) Remove() error {
	// By the time a container is removed its group is almost always empty and has no
	// groups below it, and then one rmdir is all it takes (it fails with EBUSY otherwise):
	// no stat, cgroup.procs read and directory listings on every removal.
	if err := unix.Rmdir(g.dir); err == nil || err == unix.ENOENT {
		return nil
	}
	procs, err := g.Procs()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(procs) > 0 || hasChildren(g.dir) {
		if err := g.Kill(); err != nil {
			return err
		}
	}
	return removeTree(g.dir, time.Now().Add(removeWait))
}

func hasChildren(dir string) bool {
	es, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range es {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// removeTree removes dir and the groups below it, deepest first. rmdir of a cgroup fails
// with EBUSY while it holds a process; killed processes leave it once they have exited.
func removeTree(dir string, deadline time.Time) error {
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing cgroup %s: %w", dir, err)
	}
	for _, e := range es {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name()), deadline); err != nil {
				return err
			}
		}
	}
	wait := time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}
