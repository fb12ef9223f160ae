// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
)

// delegateEnv makes the test binary a stand-in supervisor that calls Delegate on the mount
// it names and prints the outcome (TestDelegate).
const delegateEnv = "JACKFRUIT_TEST_DELEGATE_MOUNT"

type delegateResult struct {
	Dir         string   `json:"dir"`
	Controllers []string `json:"controllers"`
	Own         string   `json:"own"` // /proc/self/cgroup's 0:: entry after Delegate
	Error       string   `json:"error"`
}

// hogEnv makes the test binary a memory hog that touches 1 MiB more every few milliseconds
// until it is killed (TestMemoryLimitKills).
const hogEnv = "JACKFRUIT_TEST_CGROUP_HOG"

func TestMain(m *testing.M) {
	if os.Getenv(hogEnv) != "" {
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
			goruntime.KeepAlive(keep)
			time.Sleep(2 * time.Millisecond)
		}
	}
	if mount := os.Getenv(delegateEnv); mount != "" {
		var r delegateResult
		s, err := Delegate(mount)
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Dir, r.Controllers = s.Dir(), s.Controllers()
			r.Own, _ = ownCgroup("/proc/self/cgroup")
		}
		json.NewEncoder(os.Stdout).Encode(r)
		os.Exit(0)
	}
	os.Exit(testutil.RunInPrivateMounts(m))
}

// relPath is dir's path inside the hierarchy mounted at mount, as /proc/PID/cgroup shows it.
func relPath(t *testing.T, mount, dir string) string {
	t.Helper()
	rel, err := filepath.Rel(mount, dir)
	if err != nil {
		t.Fatal(err)
	}
	return "/" + rel
}

// startIn starts `sleep 600` born in g (CLONE_INTO_CGROUP).
func startIn(t *testing.T, g *Group) *exec.Cmd {
	t.Helper()
	f, err := g.OpenDir()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in %s: %v", g.Path(), err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func TestCheck(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultMount, &st); err != nil {
		t.Skipf("no %s: %v", DefaultMount, err)
	}
	err := Check(DefaultMount)
	if int64(st.Type) == unix.CGROUP2_SUPER_MAGIC {
		if err != nil {
			t.Fatalf("Check(%s) on a cgroup2 host: %v", DefaultMount, err)
		}
	} else {
		// This project's build host is hybrid: cgroup v1 controllers plus an empty unified
		// hierarchy. That must read as "no cgroup", with the reason.
		if err == nil {
			t.Fatalf("Check(%s) accepted filesystem type %#x", DefaultMount, st.Type)
		}
		t.Logf("Check(%s): %v", DefaultMount, err)
		if _, uerr := os.Stat(filepath.Join(DefaultMount, "unified", "cgroup.procs")); uerr == nil && !strings.Contains(err.Error(), "hybrid") {
			t.Errorf("Check on a hybrid host does not say so: %v", err)
		}
		if _, derr := Delegate(DefaultMount); derr == nil {
			t.Errorf("Delegate(%s) on a host without a pure cgroup2 mount succeeded", DefaultMount)
		}
	}
	if err := Check(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a cgroup2 mount") {
		t.Errorf("Check(a tmp directory) = %v; want not a cgroup2 mount", err)
	}
	if err := Check(DefaultMount + "/"); err == nil && int64(st.Type) != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("Check(%s/) accepted it", DefaultMount)
	}
	if err := Check("/nonexistent"); err == nil {
		t.Error("Check(/nonexistent) succeeded")
	}
}

func TestOpenRefuses(t *testing.T) {
	_, dir := testutil.Cgroup2(t)
	for _, bad := range []string{"relative/path", t.TempDir(), filepath.Join(dir, "missing")} {
		if _, err := Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	g, err := Open(dir + "/")
	if err != nil || g.Path() != dir {
		t.Fatalf("Open(%s/) = %v, %v", dir, g, err)
	}
}

func TestSubtreeLifecycle(t *testing.T) {
	mount, dir := testutil.Cgroup2(t)
	sub, err := NewSubtree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "nul\x00"} {
		if _, err := sub.Create(bad); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	g, err := sub.Create("c1")
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Contains(g.Path()) || sub.Contains(filepath.Dir(dir)) || sub.Contains(filepath.Join(g.Path(), "x")) {
		t.Errorf("Contains is wrong for %s or %s", g.Path(), dir)
	}
	cmd := startIn(t, g)
	// Born there, not moved later: clone3 put the child into the group.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + relPath(t, mount, g.Path()); !strings.Contains(string(b), want+"\n") {
		t.Fatalf("/proc/PID/cgroup = %q; want the line %q", b, want)
	}
	procs, err := g.Procs()
	if err != nil || len(procs) != 1 || procs[0] != cmd.Process.Pid {
		t.Fatalf("Procs = %v, %v; want [%d]", procs, err, cmd.Process.Pid)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Tasks != 1 {
		t.Errorf("Tasks = %d; want 1 (sleep has one thread)", st.Tasks)
	}
	if st.HasMemory != sub.Has("memory") {
		t.Errorf("HasMemory = %v but the subtree's controllers are %v", st.HasMemory, sub.Controllers())
	}
	if !sub.Has("memory") {
		if why := sub.Missing("memory"); why == "" {
			t.Error("no reason given for the missing memory controller")
		} else {
			t.Logf("memory controller: %s", why)
		}
		if err := g.SetMemoryLimit(64 << 20); !errors.Is(err, ErrNoController) {
			t.Errorf("SetMemoryLimit without the memory controller = %v; want ErrNoController", err)
		}
		if _, err := g.MemoryEvents(); !errors.Is(err, ErrNoController) {
			t.Errorf("MemoryEvents without the memory controller = %v; want ErrNoController", err)
		}
	} else {
		if err := g.SetMemoryLimit(64 << 20); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(g.Path(), "memory.max")); strings.TrimSpace(string(b)) != "67108864" {
			t.Errorf("memory.max = %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(g.Path(), "memory.oom.group")); strings.TrimSpace(string(b)) != "1" {
			t.Errorf("memory.oom.group = %q", b)
		}
	}

	// A group in use is never taken over by a second Create of the same name.
	if _, err := sub.Create("c1"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Create of a group in use = %v; want refused", err)
	}

	// Remove kills what is left and removes the directory.
	start := time.Now()
	if err := g.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	t.Logf("Remove took %v", time.Since(start))
	if _, err := os.Stat(g.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group still there after Remove: %v", err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("process in the removed group ended with %v; want SIGKILL", err)
	}
	if err := g.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := g.Stats(); err == nil {
		t.Error("Stats of a removed group succeeded")
	}

	// An empty leftover of the same name (a crash between mkdir and rmdir) is replaced by a
	// fresh group: nothing of its settings carries over.
	left := filepath.Join(sub.Dir(), "c2")
	if err := os.Mkdir(left, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "cgroup.max.descendants"), []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	if g2, err := sub.Create("c2"); err != nil {
		t.Errorf("Create over an empty leftover: %v", err)
	} else {
		if b, _ := os.ReadFile(filepath.Join(g2.Path(), "cgroup.max.descendants")); strings.TrimSpace(string(b)) != "max" {
			t.Errorf("the leftover's setting carried over: cgroup.max.descendants = %q", b)
		}
		if err := g2.Remove(); err != nil {
			t.Error(err)
		}
	}
}

func TestRemoveNested(t *testing.T) {
	_, dir := testutil.Cgroup2(t)
	g, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	inner, err := Open(filepath.Join(dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := startIn(t, inner)
	if err := g.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", dir, err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the process below the removed group survived")
	}
}

func TestDelegate(t *testing.T) {
	mount, dir := testutil.Cgroup2(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	own, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := own.OpenDir()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A stand-in supervisor born in the test's group, which is thus its own cgroup.
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), delegateEnv+"="+mount)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stand-in supervisor: %v", err)
	}
	var r delegateResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("stand-in supervisor printed %q: %v", out, err)
	}
	if r.Error != "" {
		t.Fatalf("Delegate: %s", r.Error)
	}
	if r.Own != relPath(t, mount, filepath.Join(dir, "supervisor")) {
		t.Errorf("after Delegate the supervisor is in %q; want its leaf %s/supervisor", r.Own, dir)
	}
	if r.Dir != filepath.Join(dir, "containers") {
		t.Errorf("containers go to %q; want %s/containers", r.Dir, dir)
	}
	offered, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	for _, c := range wantControllers {
		if strings.Contains(string(offered), c) != contains(r.Controllers, c) {
			t.Errorf("controller %s: offered %q, enabled %v", c, offered, r.Controllers)
		}
	}
	// A second supervisor in the same cgroup (a restart) finds the directories in place. A
	// process cannot be born in a group that hands out controllers, so, as systemd does when
	// it starts a unit afresh, its cgroup hands out none at first.
	for _, d := range []string{filepath.Join(dir, "containers"), dir} {
		for _, c := range r.Controllers {
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("-"+c), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd = exec.Command(exe)
	cmd.Env = append(os.Environ(), delegateEnv+"="+mount)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if out, err = cmd.Output(); err != nil {
		t.Fatal(err)
	}
	r = delegateResult{}
	if err := json.Unmarshal(out, &r); err != nil || r.Error != "" || r.Dir != filepath.Join(dir, "containers") {
		t.Errorf("second Delegate: %q, %v", out, err)
	}
}

func TestOwnCgroup(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ file, want, err string }{
		{"12:memory:/x\n0::/system.slice/jackfruit.service\n", "/system.slice/jackfruit.service", ""},
		{"0::/\n", "/", ""},
		{"4:memory:/a\n", "", "no cgroup v2"},
		{"0::/gone (deleted)\n", "", "removed"},
	} {
		p := filepath.Join(dir, "cgroup")
		os.WriteFile(p, []byte(c.file), 0o644)
		got, err := ownCgroup(p)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ownCgroup(%q) = %q, %v; want %q, error %q", c.file, got, err, c.want, c.err)
		}
	}
}

func TestLimitKilled(t *testing.T) {
	for _, c := range []struct {
		e    MemoryEvents
		want bool
	}{
		{MemoryEvents{}, false},
		{MemoryEvents{Max: 10}, false},
		{MemoryEvents{OOMKill: 1}, false}, // a host-wide OOM killed one of its processes
		{MemoryEvents{OOM: 1, OOMKill: 1}, true},
		{MemoryEvents{OOM: 1, OOMGroupKill: 1, OOMKill: 3}, true},
		{MemoryEvents{OOM: 1}, false}, // its limit was hit, but nothing was killed (yet)
	} {
		if got := c.e.LimitKilled(); got != c.want {
			t.Errorf("%+v.LimitKilled() = %v; want %v", c.e, got, c.want)
		}
	}
}

// TestMemoryLimitKills runs where cgroup v2 has the memory controller (the QEMU guests of
// make runtime-vm-test; this project's hybrid build host has none): a hog in a group limited
// to 32 MiB is OOM-killed by the kernel, and memory.events says it was the group's own limit.
func TestMemoryLimitKills(t *testing.T) {
	_, dir := testutil.Cgroup2(t)
	sub, err := NewSubtree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Has("memory") {
		t.Skipf("no memory controller: %s", sub.Missing("memory"))
	}
	g, err := sub.Create("hog")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 20
	if err := g.SetMemoryLimit(limit); err != nil {
		t.Fatal(err)
	}
	if ev, err := g.MemoryEvents(); err != nil || ev.LimitKilled() {
		t.Fatalf("a new group's memory.events: %+v, %v", ev, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.OpenDir()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), hogEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the hog was not killed at %d bytes within a minute", limit)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the hog ended with %v; want SIGKILL from the OOM killer", err)
	}
	ev, err := g.MemoryEvents()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("memory.events after the kill: %+v", ev)
	if !ev.LimitKilled() || ev.OOMGroupKill == 0 {
		t.Errorf("memory.events %+v: want an OOM of the group's own limit and a group kill (memory.oom.group)", ev)
	}
	// The kernel charges a page before it finds the limit reached, so the peak may pass the
	// limit by a few pages (seen: 33558528 = limit + 4096 on 6.1 and 6.12).
	if peak, err := g.MemoryPeak(); err != nil || peak < limit*9/10 || peak > limit+64<<10 {
		t.Errorf("memory.peak %d, %v; want close to the limit %d", peak, err, limit)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}
