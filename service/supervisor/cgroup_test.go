// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
)

// cgroupEnv is a supervisor whose containers get a cgroup each below a test cgroup of a
// pure cgroup2 hierarchy (no memory controller on a hybrid host); the kernel monitor is off.
func cgroupEnv(t *testing.T) (e *testEnv, mount string, sub *cgroup.Subtree) {
	t.Helper()
	mount, dir := testutil.Cgroup2(t)
	sub, err := cgroup.NewSubtree(filepath.Join(dir, "containers"))
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, func(c *Config) {
		c.Cgroups = sub
		c.MonitorDevice = MonitorDisabled
	})
	return e, mount, sub
}

// cgroupOf is the cgroup v2 line of /proc/PID/cgroup, as a path under mount.
func cgroupOf(t *testing.T, mount string, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Join(mount, rel)
		}
	}
	t.Fatalf("pid %d has no cgroup v2 entry: %q", pid, b)
	return ""
}

func TestContainerCgroup(t *testing.T) {
	e, mount, sub := cgroupEnv(t)
	ctx := context.Background()
	info := e.start(t, "box", "sleep", "1000")
	want := filepath.Join(sub.Dir(), "box")
	if info.Cgroup != want {
		t.Fatalf("Cgroup = %q; want %q", info.Cgroup, want)
	}
	// The init is born in it (CLONE_INTO_CGROUP), and so is what exec runs.
	if got := cgroupOf(t, mount, info.Pid); got != want {
		t.Errorf("the init is in %s; want %s", got, want)
	}
	p, err := e.s.Exec(ctx, root, service.ExecRequest{Name: "box", Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cgroupOf(t, mount, p.Pid()); got != want {
		t.Errorf("the exec'd process is in %s; want %s", got, want)
	}
	g, err := cgroup.Open(info.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Stats()
	if err != nil || st.Tasks != 2 {
		t.Errorf("Stats = %+v, %v; want 2 tasks (init and exec'd sleep)", st, err)
	}

	// Neither the module nor a memory controller (this host): nothing enforces, and the
	// message says why, naming both.
	if !sub.Has("memory") {
		if info.LimitsEnforced || info.EnforcedBy != "" || !strings.Contains(info.Message, "not enforced") || !strings.Contains(info.Message, "memory controller") {
			t.Errorf("limits: enforced=%v by %q, message %q; want not enforced, saying why", info.LimitsEnforced, info.EnforcedBy, info.Message)
		}
		if st := e.s.Status(); st.MemoryEnforcer != "" || st.MonitorAvailable {
			t.Errorf("Status: enforcer %q monitor %v", st.MemoryEnforcer, st.MonitorAvailable)
		}
	}

	if _, err := e.s.Stop(ctx, root, "box", service.NoGrace); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	final := e.wait(t, "box")
	if final.Cgroup != "" {
		t.Errorf("ended container still names its cgroup %q", final.Cgroup)
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cgroup of an ended container is still there: %v", err)
	}
	// state.json agrees.
	rec, err := load(filepath.Join(e.cfg.StateDir, "containers", "box"))
	if err != nil || rec.Cgroup != "" {
		t.Errorf("state.json cgroup %q, %v", rec.Cgroup, err)
	}
	if err := e.s.Remove(ctx, root, "box"); err != nil {
		t.Fatal(err)
	}
}

// A start that fails leaves no cgroup behind, and a group of the same name that is in use
// (another supervisor's container) is never taken over.
func TestContainerCgroupFailedStart(t *testing.T) {
	e, _, sub := cgroupEnv(t)
	ctx := context.Background()
	_, err := e.s.Start(ctx, root, service.StartRequest{Name: "nocmd", Command: []string{"/no/such/command"}})
	if service.KindOf(err) != service.KindCommandNotFound {
		t.Fatalf("start of a missing command: %v", err)
	}
	if _, err := os.Stat(filepath.Join(sub.Dir(), "nocmd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed start left its cgroup: %v", err)
	}

	busy, err := sub.Create("busy")
	if err != nil {
		t.Fatal(err)
	}
	other := newEnv(t, func(c *Config) { c.MonitorDevice = MonitorDisabled }) // no cgroups
	occupant := other.start(t, "busy", "sleep", "1000")
	if err := os.WriteFile(filepath.Join(busy.Path(), "cgroup.procs"), []byte(fmt.Sprint(occupant.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Start(ctx, root, service.StartRequest{Name: "busy", Command: []string{"sleep", "1"}})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("start over a cgroup in use: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "busy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused start left its directory: %v", err)
	}
	if got, err := busy.Procs(); err != nil || len(got) != 1 || got[0] != occupant.Pid {
		t.Errorf("the occupant's cgroup was touched: %v %v", got, err)
	}
	if _, err := other.s.Stop(ctx, root, "busy", service.NoGrace); err != nil {
		t.Fatal(err)
	}
}

// A supervisor that died with a container running: the next one kills what is left and
// removes the container's cgroup.
func TestContainerCgroupRecovered(t *testing.T) {
	mount, dir := testutil.Cgroup2(t)
	sub, err := cgroup.NewSubtree(filepath.Join(dir, "containers"))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// A record as a dead supervisor leaves it: running, with a cgroup that still holds a
	// process (here one the test starts in it).
	g, err := sub.Create("orphan")
	if err != nil {
		t.Fatal(err)
	}
	e0 := newEnv(t, func(c *Config) { c.MonitorDevice = MonitorDisabled })
	stray := e0.start(t, "stray", "sleep", "1000")
	if err := os.WriteFile(filepath.Join(g.Path(), "cgroup.procs"), []byte(fmt.Sprint(stray.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if got := cgroupOf(t, mount, stray.Pid); got != g.Path() {
		t.Fatalf("stray in %s", got)
	}
	cdir := filepath.Join(state, "containers", "orphan")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	rec := record{ContainerInfo: service.ContainerInfo{Name: "orphan", ID: strings.Repeat("ab", 32), State: service.StateRunning, Cgroup: g.Path(), LogPath: filepath.Join(cdir, "container.log")}}
	if err := save(cdir, rec); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.StateDir = state
		c.Cgroups = sub
		c.MonitorDevice = MonitorDisabled
	})
	info, err := e.s.Get(context.Background(), root, "orphan")
	if err != nil || !info.State.Final() || info.Cgroup != "" {
		t.Fatalf("recovered: %+v %v", info, err)
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lost container's cgroup is still there: %v", err)
	}
	if final := e0.wait(t, "stray"); final.State != service.StateKilled {
		t.Errorf("the process left in the lost container's cgroup ended %s; want killed", final.State)
	}
}

// Without a cgroup hierarchy containers run as before, with no cgroup recorded.
func TestNoCgroup(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MonitorDevice = MonitorDisabled })
	info := e.start(t, "plain", "true")
	if info.Cgroup != "" {
		t.Errorf("Cgroup = %q without cgroups", info.Cgroup)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if final, err := e.s.Wait(ctx, root, "plain"); err != nil || final.State != service.StateExited {
		t.Fatalf("%+v %v", final, err)
	}
}

// Under systemd's RestrictNamespaces= (jackfruit.service) clone3 fails with ENOSYS, so
// CLONE_INTO_CGROUP is not there: the setup stage is moved into the container's cgroup right
// after a plain clone instead, before it runs anything of the container.
func TestContainerCgroupWithoutClone3(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skip("the test filter knows x86-64's clone3 number only")
	}
	e, mount, sub := cgroupEnv(t)
	type result struct {
		info service.ContainerInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The filter stays on this thread, which dies with the goroutine (still locked).
		goruntime.LockOSThread()
		if err := refuseClone3(); err != nil {
			done <- result{err: err}
			return
		}
		// Proof that the filter works: a clone3 here gets ENOSYS.
		if _, _, errno := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); errno != unix.ENOSYS {
			done <- result{err: fmt.Errorf("clone3 under the test filter: %v, want ENOSYS", errno)}
			return
		}
		info, err := e.s.Start(context.Background(), root, service.StartRequest{Name: "noclone3", Command: []string{"sleep", "1000"}})
		done <- result{info, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := filepath.Join(sub.Dir(), "noclone3")
	if got := cgroupOf(t, mount, r.info.Pid); got != want || r.info.Cgroup != want {
		t.Errorf("the init is in %s (recorded %s); want %s", got, r.info.Cgroup, want)
	}
	if _, err := e.s.Stop(context.Background(), root, "noclone3", service.NoGrace); err != nil {
		t.Fatal(err)
	}
}

// refuseClone3 installs on the calling thread a seccomp filter that fails clone3 with ENOSYS,
// as systemd's RestrictNamespaces= does, and allows everything else.
func refuseClone3() error {
	const (
		retAllow = 0x7fff0000
		retErrno = 0x00050000
	)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_CLONE3},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("installing the test seccomp filter: %w", errno)
	}
	return nil
}
