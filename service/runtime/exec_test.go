// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startSleeper starts a long-running container and returns it; the cleanup kills it.
func startSleeper(t *testing.T, name string) *Process {
	t.Helper()
	p, err := Start(Spec{Name: name, Rootfs: testRootfs(t), Args: []string{"/bin/sleep", "1000"}, Env: []string{"FROM_CONTAINER=yes"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGKILL)
		finish(t, p)
	})
	return p
}

// execOut runs spec in p with stdout and stderr captured and returns them with the exit.
func execOut(t *testing.T, p *Process, spec ExecSpec) (Exit, string, string, error) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	spec.Stdout, spec.Stderr = outW, errW
	e, err := p.Exec(spec)
	outW.Close()
	errW.Close()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&out, outR) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&errOut, errR) }()
	var exit Exit
	if err == nil {
		exit, err = e.Wait()
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	wg.Wait()
	outR.Close()
	errR.Close()
	return exit, out.String(), errOut.String(), err
}

func TestExecSeesTheContainer(t *testing.T) {
	p := startSleeper(t, "exec-sees")
	script := `hostname; echo pid=$$; echo $(tr '\0' ' ' </proc/1/cmdline); cat /etc/hostname; ` +
		`echo env=$FROM_CONTAINER/$EXTRA home=$HOME; pwd; set -- /proc/[0-9]*; echo $#`
	exit, out, errOut, err := execOut(t, p, ExecSpec{
		Args: []string{"/bin/sh", "-c", script}, ContainerEnv: []string{"FROM_CONTAINER=yes"},
		Env: []string{"EXTRA=x"}, Dir: "/tmp",
	})
	if err != nil || exit.Code != 0 {
		t.Fatalf("exec: %v %v, stderr %q", err, exit, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 {
		t.Fatalf("output %q", out)
	}
	if lines[0] != "exec-sees" {
		t.Errorf("hostname %q, want the container's", lines[0])
	}
	// The container's init is 1; the exec'd shell is another pid of the same namespace.
	if lines[1] == "pid=1" || !strings.HasPrefix(lines[1], "pid=") {
		t.Errorf("%q: want a pid of the container's namespace other than 1", lines[1])
	}
	if lines[2] != "/bin/sleep 1000" {
		t.Errorf("/proc/1/cmdline %q: want the container's init", lines[2])
	}
	if lines[4] != "env=yes/x home=/root" {
		t.Errorf("environment %q", lines[4])
	}
	if lines[5] != "/tmp" {
		t.Errorf("working directory %q", lines[5])
	}
	// The container's /proc shows its own namespace only: init and this shell. The shell
	// expands the glob itself: a pipeline (ls | grep) raced, ls could finish before grep was
	// forked.
	if lines[6] != "2" {
		t.Errorf("%s processes visible in the container's /proc, want 2 (init, sh)", lines[6])
	}
}

func TestExecExitCodes(t *testing.T) {
	p := startSleeper(t, "exec-codes")
	exit, _, _, err := execOut(t, p, ExecSpec{Args: []string{"/bin/sh", "-c", "exit 7"}})
	if err != nil || exit.Code != 7 {
		t.Errorf("exit 7: got %v, %v", exit, err)
	}
	exit, _, _, err = execOut(t, p, ExecSpec{Args: []string{"/bin/sh", "-c", "kill -TERM $$"}})
	if err != nil || exit.Signal != syscall.SIGTERM || exit.Code != 143 {
		t.Errorf("killed by SIGTERM: got %v, %v", exit, err)
	}
	if _, _, _, err = execOut(t, p, ExecSpec{Args: []string{"no-such-command"}}); !errors.Is(err, ErrCommandNotFound) {
		t.Errorf("missing command: %v, want ErrCommandNotFound", err)
	}
	if _, _, _, err = execOut(t, p, ExecSpec{Args: []string{"/etc/passwd"}}); !errors.Is(err, ErrCommandNotExecutable) {
		t.Errorf("non-executable command: %v, want ErrCommandNotExecutable", err)
	}
	if _, _, _, err = execOut(t, p, ExecSpec{Args: []string{"/bin/true"}, Dir: "/nonexistent"}); !errors.Is(err, ErrBadDir) {
		t.Errorf("missing working directory: %v, want ErrBadDir", err)
	}
	if _, _, _, err = execOut(t, p, ExecSpec{}); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("empty command: %v", err)
	}
}

func TestExecUser(t *testing.T) {
	p := startSleeper(t, "exec-user")
	for _, c := range []struct{ user, want string }{
		{"", "0 0 /root"},
		{"nobody", "65534 65534 /nonexistent"},
		{"1234", "1234 1234 /root"},
		{"1234:5", "1234 5 /root"},
		{"daemon:tty", "1 5 /usr/sbin"},
	} {
		exit, out, errOut, err := execOut(t, p, ExecSpec{User: c.user, Args: []string{"/bin/sh", "-c", "echo $(id -u) $(id -g) $HOME"}})
		if err != nil || exit.Code != 0 {
			t.Errorf("user %q: %v %v %s", c.user, err, exit, errOut)
			continue
		}
		if got := strings.TrimSpace(out); got != c.want {
			t.Errorf("user %q: %q, want %q", c.user, got, c.want)
		}
	}
	for _, bad := range []string{"nosuchuser", "root:nosuchgroup", ":5", "1:", "4294967295"} {
		_, _, _, err := execOut(t, p, ExecSpec{User: bad, Args: []string{"/bin/true"}})
		if !errors.Is(err, ErrBadUser) {
			t.Errorf("user %q: %v, want ErrBadUser", bad, err)
		}
	}
}

func TestExecPty(t *testing.T) {
	p := startSleeper(t, "exec-pty")
	master, slave, err := p.OpenPty()
	if err != nil {
		t.Fatalf("OpenPty: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77}); err != nil {
		t.Fatal(err)
	}
	e, err := p.Exec(ExecSpec{Args: []string{"/bin/sh", "-c", "tty; stty size; [ -t 0 ] && echo interactive"},
		Stdin: slave, Stdout: slave, Stderr: slave, Tty: true})
	slave.Close()
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	// The slave closes when the shell exits: reading the master then fails with EIO.
	out, _ := io.ReadAll(master)
	exit, err := e.Wait()
	if err != nil || exit.Code != 0 {
		t.Fatalf("exit %v %v", exit, err)
	}
	got := strings.ReplaceAll(string(out), "\r\n", "\n")
	if got != "/dev/pts/0\n33 77\ninteractive\n" {
		t.Errorf("pty output %q", got)
	}
}

func TestExecConcurrent(t *testing.T) {
	p := startSleeper(t, "exec-many")
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, w, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			e, err := p.Exec(ExecSpec{Args: []string{"/bin/sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i%50)}, Stdout: w})
			w.Close()
			if err != nil {
				r.Close()
				errs <- err
				return
			}
			out, _ := io.ReadAll(r)
			r.Close()
			exit, err := e.Wait()
			if err != nil || exit.Code != i%50 || strings.TrimSpace(string(out)) != fmt.Sprint(i) {
				errs <- fmt.Errorf("exec %d: %v %v %q", i, exit, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestExecNotRunning(t *testing.T) {
	p, err := Start(Spec{Name: "exec-gone", Rootfs: testRootfs(t), Args: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the init to exit without reaping it: its pidfd polls readable.
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10000); err != nil || n != 1 {
		t.Fatalf("init did not exit: %v", err)
	}
	if _, err := p.Exec(ExecSpec{Args: []string{"/bin/true"}}); err == nil {
		t.Error("exec into an exited container succeeded")
	}
	finish(t, p)
	if _, err := p.Exec(ExecSpec{Args: []string{"/bin/true"}}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec into a reaped container: %v, want ErrNotRunning", err)
	}
}

// TestExecJoinsCgroup: the exec'd command is born in the cgroup of the container's init,
// wherever that is (its own group here), so it counts against the container's cgroup limits.
func TestExecJoinsCgroup(t *testing.T) {
	mount := cgroup2Mount()
	if mount == "" {
		t.Skip("no cgroup2 hierarchy on this host")
	}
	p := startSleeper(t, "exec-cgroup")
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var own string
	for _, l := range strings.Split(string(raw), "\n") {
		if r, ok := strings.CutPrefix(l, "0::"); ok {
			own = r
		}
	}
	dir, err := os.MkdirTemp(filepath.Join(mount, own), "jf-exec-test-")
	if err != nil {
		t.Skipf("cannot make a cgroup to test with: %v", err)
	}
	t.Cleanup(func() {
		// This runs before startSleeper's cleanup: the group empties once the init is dead.
		_ = p.Signal(syscall.SIGKILL)
		for range 100 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(p.Pid)), 0); err != nil {
		t.Skipf("cannot move the init into a test cgroup: %v", err)
	}
	_, out, errOut, err := execOut(t, p, ExecSpec{Args: []string{"/bin/cat", "/proc/self/cgroup"}})
	if err != nil {
		t.Fatalf("exec: %v %s", err, errOut)
	}
	rel := strings.TrimPrefix(dir, mount)
	// Inside the container the cgroup namespace is the host's, so the path is the full one.
	if !strings.Contains(out, "0::"+rel+"\n") {
		t.Errorf("exec'd command's cgroups:\n%s\nwant 0::%s", out, rel)
	}
}

func TestStartTty(t *testing.T) {
	p, err := Start(Spec{Name: "tty", Rootfs: testRootfs(t), Tty: true,
		Args: []string{"/bin/sh", "-c", "tty; [ -t 0 ] && [ -t 2 ] && echo all-terminal; read line; echo got-$line; nosuchcommand"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pty == nil {
		t.Fatal("no pty master")
	}
	if _, err := p.Pty.WriteString("typed\n"); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(p.Pty)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the master after the end: %v, want EIO", err)
	}
	p.Pty.Close()
	r := finish(t, p)
	got := strings.ReplaceAll(string(out), "\r\n", "\n")
	// The typed line is echoed by the terminal before the shell reads it.
	for _, want := range []string{"/dev/pts/0\n", "all-terminal\n", "typed\n", "got-typed\n", "nosuchcommand: not found"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output %q lacks %q", got, want)
		}
	}
	if r.exit.Code != 127 || r.stdout != "" || r.stderr != "" {
		t.Errorf("exit %v, pipes %q %q", r.exit, r.stdout, r.stderr)
	}
}

// zombiesOf counts the zombie children of pid, as seen from the host.
func zombiesOf(pid int) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// TestInit: with Spec.Init, tini is PID 1 from a read-only bind mount at /dev/init; SIGTERM
// reaches the command (a plain PID 1 would not get it), and orphans are reaped.
func TestInit(t *testing.T) {
	const tini = "/usr/bin/tini-static"
	if _, err := os.Stat(tini); err != nil {
		t.Skip("tini is not installed (test/deps.sh installs it)")
	}
	// An orphan: the inner shell leaves a short sleep behind for PID 1 to reap.
	cmd := []string{"/bin/sh", "-c", "sh -c 'sleep 0.1 &'; exec sleep 1000"}
	for _, withInit := range []bool{true, false} {
		spec := Spec{Name: "init", Rootfs: testRootfs(t), Args: cmd}
		if withInit {
			spec.Init = tini
		}
		p, err := Start(spec)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		z := zombiesOf(p.Pid)
		if withInit {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
			if !strings.HasPrefix(string(cmdline), InitPath+"\x00--\x00/bin/sh") {
				t.Errorf("PID 1 is %q, want the init", cmdline)
			}
			if z != 0 {
				t.Errorf("%d zombies under the init", z)
			}
			t0 := time.Now()
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			r := finish(t, p)
			if r.exit.Code != 128+int(syscall.SIGTERM) || time.Since(t0) > 5*time.Second {
				t.Errorf("SIGTERM under the init: %v after %v", r.exit, time.Since(t0))
			}
			continue
		}
		// Without an init, the same command leaves a zombie and shrugs SIGTERM off.
		if z == 0 {
			t.Errorf("no zombie without an init: the test proves nothing")
		}
		_ = p.Signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond)
		if err := p.Signal(0); err != nil {
			t.Errorf("plain PID 1 sleep died of SIGTERM: %v", err)
		}
		_ = p.Signal(syscall.SIGKILL)
		finish(t, p)
	}
}
