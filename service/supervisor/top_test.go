// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// execBackground starts cmd in the container and ends it when the test ends.
func execBackground(t *testing.T, e *testEnv, req service.ExecRequest) service.ExecProcess {
	t.Helper()
	p, err := e.s.Exec(context.Background(), root, req)
	if err != nil {
		t.Fatalf("exec %v: %v", req.Command, err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		p.Wait(context.Background())
		if p.Pty() != nil {
			p.Pty().Close()
		}
	})
	return p
}

func findProc(ps []service.Process, cmd string) (service.Process, bool) {
	for _, p := range ps {
		if strings.Join(p.Args, " ") == cmd {
			return p, true
		}
	}
	return service.Process{}, false
}

func TestTop(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	info := e.start(t, "box", "sleep", "1000")
	plain := execBackground(t, e, service.ExecRequest{Name: "box", Command: []string{"sleep", "999"}, User: "nobody"})
	tty := execBackground(t, e, service.ExecRequest{Name: "box", Command: []string{"sleep", "998"}, Tty: true})
	time.Sleep(100 * time.Millisecond) // the exec'd commands are running by now, not yet exec'd perhaps

	var ps []service.Process
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if ps, err = e.s.Top(ctx, service.Caller{UID: 65534}, "box"); err != nil {
			t.Fatal(err)
		}
		_, ok1 := findProc(ps, "sleep 999")
		_, ok2 := findProc(ps, "sleep 998")
		if ok1 && ok2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ps) != 3 {
		t.Fatalf("want init and two exec'd processes, got %+v", ps)
	}
	init := ps[0]
	if init.Pid != 1 || init.PPid != 0 || init.HostPid != info.Pid || init.User != "root" || init.TTY != "?" ||
		strings.Join(init.Args, " ") != "sleep 1000" || init.Elapsed <= 0 {
		t.Errorf("init: %+v", init)
	}
	p, _ := findProc(ps, "sleep 999")
	if p.Pid <= 1 || p.PPid != 0 || p.HostPid != plain.Pid() || p.User != "nobody" || p.UID != 65534 || p.TTY != "?" {
		t.Errorf("exec'd process: %+v (host pid %d)", p, plain.Pid())
	}
	p, _ = findProc(ps, "sleep 998")
	if p.Pid <= 1 || p.HostPid != tty.Pid() || !strings.HasPrefix(p.TTY, "pts/") {
		t.Errorf("exec'd process on a terminal: %+v", p)
	}

	if _, err := e.s.Top(ctx, root, "nope"); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("top of an unknown container: %v", err)
	}
	if _, err := e.s.Top(ctx, root, "bad/name"); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("top of a bad name: %v", err)
	}
	e.start(t, "short", "true")
	e.wait(t, "short")
	if _, err := e.s.Top(ctx, root, "short"); service.KindOf(err) != service.KindInvalidState || !strings.Contains(err.Error(), "not running (exited)") {
		t.Errorf("top of an exited container: %v", err)
	}
}

// A container's /etc/passwd is its own: top neither follows its symlinks out of the
// container nor blocks on a FIFO put in its place.
func TestTopHostilePasswd(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(host, []byte("root:x:0:0::/:/bin/sh\nhostonly:x:65534:65534::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start(t, "box", "sleep", "1000")
	execBackground(t, e, service.ExecRequest{Name: "box", Command: []string{"sleep", "999"}, User: "65534"})
	out, exit, err := execOutput(t, e, service.ExecRequest{Name: "box", Command: []string{"ln", "-sf", host, "/etc/passwd"}})
	if err != nil || exit.Code != 0 {
		t.Fatalf("ln: %q %+v %v", out, exit, err)
	}
	ps, err := e.s.Top(ctx, root, "box")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.User == "hostonly" {
			t.Errorf("top read the host's %s through the container's symlink: %+v", host, p)
		}
	}
	if out, exit, err := execOutput(t, e, service.ExecRequest{Name: "box", Command: []string{"sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd"}}); err != nil || exit.Code != 0 {
		t.Fatalf("mkfifo: %q %+v %v", out, exit, err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.s.Top(ctx, root, "box"); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top blocks on a FIFO at the container's /etc/passwd")
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, "box", "sleep", "1000")
	e.start(t, "idle", "sleep", "1000")
	busy := execBackground(t, e, service.ExecRequest{Name: "box", Command: []string{"sh", "-c", "while :; do :; done"}})

	first, err := e.s.Stats(ctx, service.Caller{UID: 65534}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].Name != "box" || first[1].Name != "idle" {
		t.Fatalf("stats of every running container: %+v", first)
	}
	time.Sleep(time.Second)
	busy.Signal(syscall.SIGKILL)
	busy.Wait(ctx)
	second, err := e.s.Stats(ctx, root, []string{"box"})
	if err != nil {
		t.Fatal(err)
	}
	b0, b1 := first[0], second[0]
	used := b1.CPUTime - b0.CPUTime
	// The busy loop had at least a fair share of one of the machine's CPUs for most of that
	// second: far more than nothing, and never more than all of them.
	if used < 100*time.Millisecond || float64(used) > float64(b1.Time.Sub(b0.Time))*float64(goruntime.NumCPU()) {
		t.Errorf("CPU time of the busy container over %v: %v", b1.Time.Sub(b0.Time), used)
	}
	if b0.Processes != 2 || b0.Tasks < 2 || b1.Processes != 1 || b1.State != service.StateRunning ||
		b1.SoftLimit != service.DefaultSoftLimit || b1.HardLimit != service.DefaultHardLimit {
		t.Errorf("samples: %+v then %+v", b0, b1)
	}
	// The exec'd loop has ended and was reaped outside the container: its time stays counted.
	third, err := e.s.Stats(ctx, root, []string{"box"})
	if err != nil {
		t.Fatal(err)
	}
	if third[0].CPUTime < b1.CPUTime {
		t.Errorf("CPU time dropped when the exec'd loop ended: %v then %v", b1.CPUTime, third[0].CPUTime)
	}

	if _, err := e.s.Stats(ctx, root, []string{"box", "nope"}); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("stats of an unknown container: %v", err)
	}
	if _, err := e.s.Stats(ctx, root, []string{"box", "box"}); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("stats of a container named twice: %v", err)
	}
	if _, err := e.s.Stop(ctx, root, "idle", service.NoGrace); err != nil {
		t.Fatal(err)
	}
	st, err := e.s.Stats(ctx, root, []string{"idle"})
	if err != nil || len(st) != 1 || st[0].State != service.StateKilled || st[0].Processes != 0 || st[0].CPUTime != 0 {
		t.Errorf("stats of a stopped container: %+v %v", st, err)
	}
	if all, err := e.s.Stats(ctx, root, nil); err != nil || len(all) != 1 || all[0].Name != "box" {
		t.Errorf("stats of the running containers once one stopped: %+v %v", all, err)
	}
}

// With a cgroup per container, top lists the cgroup's processes (the exec'd ones are there
// too) and stats takes CPU time and tasks from it.
func TestTopAndStatsWithCgroup(t *testing.T) {
	e, _, sub := cgroupEnv(t)
	ctx := context.Background()
	e.start(t, "box", "sleep", "1000")
	busy := execBackground(t, e, service.ExecRequest{Name: "box", Command: []string{"sh", "-c", "while :; do :; done"}})
	var ps []service.Process
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if ps, err = e.s.Top(ctx, root, "box"); err != nil {
			t.Fatal(err)
		}
		if len(ps) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(ps) != 2 || ps[0].Pid != 1 || ps[1].HostPid != busy.Pid() || ps[1].Pid <= 1 {
		t.Fatalf("top of a container with a cgroup: %+v", ps)
	}
	// Until the loop has had 150 ms of CPU, however long a loaded machine takes to give it.
	usage := func() time.Duration {
		b, err := os.ReadFile(filepath.Join(sub.Dir(), "box", "cpu.stat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				usec, _ := strconv.ParseInt(v, 10, 64)
				return time.Duration(usec) * time.Microsecond
			}
		}
		t.Fatalf("no usage_usec in cpu.stat: %q", b)
		return 0
	}
	for deadline := time.Now().Add(30 * time.Second); usage() < 150*time.Millisecond; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the busy loop had %v of CPU after 30 s", usage())
		}
	}
	busy.Signal(syscall.SIGKILL)
	busy.Wait(ctx)
	st, err := e.s.Stats(ctx, root, []string{"box"})
	if err != nil {
		t.Fatal(err)
	}
	cgCPU := usage()
	// The exec'd loop is gone, so its time is in the cgroup's total: what stats reported.
	if s := st[0]; s.CPUTime < 100*time.Millisecond || s.CPUTime > cgCPU || cgCPU-s.CPUTime > 50*time.Millisecond ||
		s.Processes != 1 || s.Tasks != 1 {
		t.Errorf("stats %+v; the cgroup's cpu.stat says %v", s, cgCPU)
	}
}
