// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// wantControllers are the controllers a container's group gets where the host offers them:
// memory (accounting and the hard limit), pids (task count) and cpu (cpu.stat's
// breakdown, weights).
var wantControllers = []string{"memory", "pids", "cpu"}

// Subtree is the part of the hierarchy where a supervisor creates one group per container:
// <own>/containers/<name>, beside <own>/supervisor, the leaf the supervisor itself moves to.
// That split is forced by cgroup v2's no-internal-processes rule: a group that hands
// controllers to its children (cgroup.subtree_control) may hold no processes itself.
type Subtree struct {
	dir         string            // the parent of the containers' groups
	controllers []string          // enabled for the containers' groups
	missing     map[string]string // controller -> why it is not enabled
}

// ownLeaf and containersDir are the names Delegate gives the two halves of the
// supervisor's cgroup.
const (
	ownLeaf       = "supervisor"
	containersDir = "containers"
	// rootDir is where Delegate works when the supervisor sits in the root cgroup
	// (an initramfs, a container of its own): never clutter the top of the hierarchy.
	rootDir = "jackfruit"
)

// Delegate prepares the supervisor's own cgroup (read from /proc/self/cgroup, under the
// cgroup2 mount) for containers: it moves this process into <own>/supervisor, enables the
// available controllers (memory, pids, cpu) in <own> and in <own>/containers, and returns
// the subtree that
// creates <own>/containers/<name>. When the supervisor runs in the root cgroup, <own> is
// <root>/jackfruit. Under systemd this needs Delegate=yes on the supervisor's unit
// (jackfruit.service has it).
//
// An error means no cgroups at all (mount is not a pure cgroup2 mount, or the process cannot
// be moved); a controller that cannot be enabled is not an error: Subtree.Missing says why.
func Delegate(mount string) (*Subtree, error) {
	if err := Check(mount); err != nil {
		return nil, err
	}
	rel, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := filepath.Join(mount, rel)
	s := &Subtree{missing: make(map[string]string)}
	if rel == "/" {
		// The root may hold processes and hand out controllers at once.
		s.enable(own)
		own = filepath.Join(own, rootDir)
		if err := mkdir(own); err != nil {
			return nil, err
		}
	}
	leaf := filepath.Join(own, ownLeaf)
	if err := mkdir(leaf); err != nil {
		return nil, err
	}
	if err := (&Group{dir: leaf}).write("cgroup.procs", "0"); err != nil {
		return nil, fmt.Errorf("moving the supervisor into its own leaf cgroup: %w", err)
	}
	s.enable(own)
	s.dir = filepath.Join(own, containersDir)
	if err := mkdir(s.dir); err != nil {
		return nil, err
	}
	s.controllers = s.enable(s.dir)
	return s, nil
}

// NewSubtree uses dir, an existing or new cgroup that holds no processes, as the parent of
// the containers' groups, enabling there whichever of wantControllers its parent hands down. It is
// for a supervisor whose place in the hierarchy is prepared by someone else (and for tests).
func NewSubtree(dir string) (*Subtree, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("cgroup subtree %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	if _, err := Open(dir); err != nil {
		return nil, err
	}
	s := &Subtree{dir: dir, missing: make(map[string]string)}
	s.controllers = s.enable(dir)
	return s, nil
}

// enable turns on in dir's cgroup.subtree_control each of wantControllers that dir offers
// (cgroup.controllers), one at a time so that one refusal does not cost the others. It
// returns those enabled and records why the others are not.
func (s *Subtree) enable(dir string) []string {
	g := &Group{dir: dir}
	b, err := g.read("cgroup.controllers")
	if err != nil {
		for _, c := range wantControllers {
			s.missing[c] = err.Error()
		}
		return nil
	}
	offered := strings.Fields(string(b))
	var on []string
	for _, c := range wantControllers {
		if !contains(offered, c) {
			if _, ok := s.missing[c]; !ok {
				s.missing[c] = fmt.Sprintf("the %s controller is not available in %s (cgroup.controllers: %q)", c, dir, strings.TrimSpace(string(b)))
			}
			continue
		}
		if err := g.write("cgroup.subtree_control", "+"+c); err != nil {
			if errors.Is(err, unix.EBUSY) {
				err = fmt.Errorf("%w (other processes share the supervisor's cgroup; run it in a cgroup of its own, e.g. under systemd with Delegate=yes)", err)
			}
			s.missing[c] = err.Error()
			continue
		}
		delete(s.missing, c)
		on = append(on, c)
	}
	return on
}

// Dir is the parent directory of the containers' groups.
func (s *Subtree) Dir() string { return s.dir }

// Controllers lists the controllers the containers' groups have.
func (s *Subtree) Controllers() []string { return append([]string(nil), s.controllers...) }

// Has reports whether the containers' groups have controller.
func (s *Subtree) Has(controller string) bool { return contains(s.controllers, controller) }

// Missing says why controller is not enabled for the containers' groups ("" when it is).
func (s *Subtree) Missing(controller string) string {
	if s.Has(controller) {
		return ""
	}
	if why, ok := s.missing[controller]; ok {
		return why
	}
	return fmt.Sprintf("the %s controller is not one jackfruit enables", controller)
}

// Contains reports whether dir is a group of this subtree (one Create made).
func (s *Subtree) Contains(dir string) bool {
	return filepath.Dir(filepath.Clean(dir)) == s.dir
}

// Create makes the group of container name. A group of that name left behind by an earlier
// run is replaced when it is empty (its limits and memory.events counters must not carry
// over); one that still holds processes is refused, as those belong to a container that is
// not this one.
func (s *Subtree) Create(name string) (*Group, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("invalid cgroup name %q", name)
	}
	g := &Group{dir: filepath.Join(s.dir, name)}
	err := os.Mkdir(g.dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		procs, perr := g.Procs()
		if perr != nil {
			return nil, perr
		}
		if len(procs) > 0 || hasChildren(g.dir) {
			return nil, fmt.Errorf("cgroup %s exists and is in use (processes %v); not reusing it", g.dir, procs)
		}
		if err := unix.Rmdir(g.dir); err != nil && err != unix.ENOENT {
			return nil, fmt.Errorf("replacing the leftover cgroup %s: %w", g.dir, err)
		}
		err = os.Mkdir(g.dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", g.dir, err)
	}
	return g, nil
}

// ownCgroup returns the cgroup v2 path of the "0::" line of a /proc/PID/cgroup file.
func ownCgroup(procFile string) (string, error) {
	b, err := os.ReadFile(procFile)
	if err != nil {
		return "", fmt.Errorf("finding the supervisor's cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			rel = filepath.Clean("/" + rel)
			if strings.HasSuffix(rel, " (deleted)") {
				return "", fmt.Errorf("finding the supervisor's cgroup: %s was removed", rel)
			}
			return rel, nil
		}
	}
	return "", fmt.Errorf("finding the supervisor's cgroup: %s has no cgroup v2 (0::) entry", procFile)
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
