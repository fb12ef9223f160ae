// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/testutil"
)

// The test binary is also the container setup stage: Start re-executes /proc/self/exe.
func TestMain(m *testing.M) {
	// A setup stage that dies before it can report, as a binary crashing at start-up would.
	if len(os.Args) == 2 && os.Args[0] == initArg0 && os.Args[1] == "crash-in-setup" {
		fmt.Fprintln(os.Stderr, "simulated crash")
		os.Exit(2)
	}
	Init()
	os.Exit(m.Run())
}

// testRootfs returns the busybox rootfs built by `make rootfs`; under make test a missing or
// unusable one fails the test (testutil.Rootfs).
func testRootfs(t *testing.T) string {
	t.Helper()
	return testutil.Rootfs(t)
}

// result is everything a finished container produced.
type result struct {
	exit           Exit
	stdout, stderr string
}

// run starts a container, drains its output and waits for it.
func run(t *testing.T, spec Spec) result {
	t.Helper()
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("Start(%q): %v", spec.Args, err)
	}
	return finish(t, p)
}

func finish(t *testing.T, p *Process) result {
	t.Helper()
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&out, p.Stdout) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&errOut, p.Stderr) }()
	exit, err := p.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	wg.Wait()
	p.Stdout.Close()
	p.Stderr.Close()
	return result{exit: exit, stdout: out.String(), stderr: errOut.String()}
}

func sh(rootfs, script string) Spec {
	return Spec{Name: "t", Rootfs: rootfs, Args: []string{"/bin/sh", "-c", script}}
}

// mustSucceed runs script and returns its stdout, failing on a non-zero exit.
func mustSucceed(t *testing.T, rootfs, script string) string {
	t.Helper()
	r := run(t, sh(rootfs, script))
	if r.exit.Code != 0 {
		t.Fatalf("%q: %v\nstdout: %s\nstderr: %s", script, r.exit, r.stdout, r.stderr)
	}
	return r.stdout
}

func TestPID1(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, `echo $$; readlink /proc/self; echo ppid=$PPID`)
	lines := strings.Fields(out)
	if len(lines) != 3 || lines[0] != "1" || lines[2] != "ppid=0" {
		t.Fatalf("want shell pid 1 with ppid 0, got %q", out)
	}
	if n, err := strconv.Atoi(lines[1]); err != nil || n < 2 || n > 10 {
		t.Fatalf("readlink /proc/self inside = %q, want a small pid of the container's namespace", lines[1])
	}
}

func TestHostname(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, "hostname; cat /proc/sys/kernel/hostname")
	spec.Hostname = "box-1"
	r := run(t, spec)
	if r.stdout != "box-1\nbox-1\n" {
		t.Fatalf("hostname inside = %q", r.stdout)
	}
	host, _ := os.Hostname()
	if host == "box-1" {
		t.Fatal("the container's hostname leaked to the host")
	}
	// Without Hostname, the name is used.
	spec = sh(rootfs, "hostname")
	spec.Name = "named-box"
	if r := run(t, spec); r.stdout != "named-box\n" {
		t.Fatalf("default hostname = %q, want the name", r.stdout)
	}
}

func TestOwnMounts(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, "cat /proc/mounts")
	var points []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("bad /proc/mounts line %q", line)
		}
		points = append(points, f[1]+":"+f[2])
	}
	want := map[string]bool{"/proc:proc": true, "/dev:tmpfs": true, "/dev/pts:devpts": true,
		"/dev/shm:tmpfs": true, "/dev/mqueue:mqueue": true, "/sys:sysfs": true}
	protected := map[string]bool{}
	for _, p := range append(append([]string{}, readonlyPaths...), maskedPaths...) {
		protected[p] = true
	}
	// The allowed device nodes are bind mounts (see setupDev).
	for _, d := range devices {
		want["/dev/"+d.name+":tmpfs"] = true
	}
	for _, p := range points {
		mp, _, _ := strings.Cut(p, ":")
		if mp == "/" || protected[mp] {
			continue
		}
		if !want[p] {
			t.Errorf("unexpected mount inside the container: %s (all: %v)", p, points)
		}
		delete(want, p)
	}
	for p := range want {
		t.Errorf("missing mount inside the container: %s (all: %v)", p, points)
	}
	if len(points) == 0 || !strings.HasPrefix(points[0], "/:") {
		t.Errorf("first mount should be the rootfs on /, got %v", points)
	}
}

func TestKernelFilesProtected(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, `
		echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-readonly
		echo "keys=$(wc -c < /proc/keys)"
		ls /sys/firmware | wc -l
		grep -c . /proc/self/status >/dev/null && echo proc-readable`)
	if out != "sys-readonly\nkeys=0\n0\nproc-readable\n" {
		t.Fatalf("got %q", out)
	}
}

func TestProcShowsOnlyContainer(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, `sleep 30 & cd /proc; for p in [0-9]*; do echo $p; done; kill $!`)
	pids := strings.Fields(out)
	// sh (1), sleep, and the subshell-free loop run in sh itself: at most a few pids.
	if len(pids) < 2 || len(pids) > 4 || pids[0] != "1" {
		t.Fatalf("/proc inside lists %v, want only the container's few processes", pids)
	}
}

func TestNamespacesDiffer(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, "for n in ipc uts mnt pid net; do readlink /proc/self/ns/$n; done")
	inside := strings.Fields(out)
	for i, n := range []string{"ipc", "uts", "mnt", "pid", "net"} {
		host, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		same := inside[i] == host
		if n == "net" {
			// The network namespace is deliberately shared (no network setup in scope).
			if !same {
				t.Errorf("net namespace differs: %s vs %s", inside[i], host)
			}
			continue
		}
		if same {
			t.Errorf("%s namespace is the host's (%s)", n, host)
		}
	}
}

func TestExitCodes(t *testing.T) {
	rootfs := testRootfs(t)
	for _, tc := range []struct {
		args    []string
		code    int
		message string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"false"}, 1, ""},
		{[]string{"sh", "-c", "exit 42"}, 42, ""},
		{[]string{"/etc/passwd"}, 126, `jackfruit: executable file "/etc/passwd" cannot be run: permission denied`},
		{[]string{"/etc"}, 126, `jackfruit: executable file "/etc" cannot be run: is a directory`},
		{[]string{"no-such-cmd"}, 127, `jackfruit: executable file "no-such-cmd" not found in $PATH: no such file or directory`},
		{[]string{"/bin/nope"}, 127, `jackfruit: executable file "/bin/nope" not found: no such file or directory`},
	} {
		r := run(t, Spec{Name: "t", Rootfs: rootfs, Args: tc.args})
		if r.exit.Code != tc.code || r.exit.Signal != 0 {
			t.Errorf("%q: %v, want code %d (stderr %q)", tc.args, r.exit, tc.code, r.stderr)
		}
		if tc.message != "" && strings.TrimSpace(r.stderr) != tc.message {
			t.Errorf("%q: stderr %q, want %q", tc.args, r.stderr, tc.message)
		}
	}
}

func TestExecFailureAfterLookup(t *testing.T) {
	rootfs := copyRootfs(t, testRootfs(t))
	if err := os.WriteFile(filepath.Join(rootfs, "bin/script"), []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/garbage"), []byte("\x00\x01not an executable format"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := run(t, Spec{Name: "t", Rootfs: rootfs, Args: []string{"script"}})
	if r.exit.Code != 127 || !strings.Contains(r.stderr, `jackfruit: exec "/bin/script": no such file or directory (is its interpreter or dynamic loader missing`) {
		t.Errorf("missing interpreter: %v, stderr %q", r.exit, r.stderr)
	}
	r = run(t, Spec{Name: "t", Rootfs: rootfs, Args: []string{"garbage"}})
	if r.exit.Code != 126 || !strings.Contains(r.stderr, `jackfruit: exec "/bin/garbage": exec format error`) {
		t.Errorf("bad format: %v, stderr %q", r.exit, r.stderr)
	}
}

func TestSignalKill(t *testing.T) {
	rootfs := testRootfs(t)
	p, err := Start(Spec{Name: "t", Rootfs: rootfs, Args: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	r := finish(t, p)
	if r.exit.Code != 137 || r.exit.Signal != syscall.SIGKILL {
		t.Fatalf("got %v, want 137 / SIGKILL", r.exit)
	}
	// After the reap the pidfd is gone: signalling must be harmless.
	if err := p.Signal(syscall.SIGKILL); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal after Wait = %v, want os.ErrProcessDone", err)
	}
	if _, err := p.Wait(); err == nil {
		t.Fatal("second Wait succeeded")
	}
}

func TestSignalTermWithHandler(t *testing.T) {
	rootfs := testRootfs(t)
	// PID 1 gets only signals it handles: the trap makes SIGTERM effective.
	p, err := Start(sh(rootfs, `trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(p.Stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("reading ready: %q %v", buf, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := finish(t, p)
	if r.exit.Code != 3 || r.stdout != "got TERM\n" {
		t.Fatalf("got %v stdout %q, want code 3 after the trap", r.exit, r.stdout)
	}
}

func TestStdinIsDevNull(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, `readlink /proc/self/fd/0; cat; echo "cat=$?"; ls -l /dev/null | cut -c1`)
	if out != "/dev/null\ncat=0\nc\n" {
		t.Fatalf("got %q", out)
	}
}

func TestEnvironment(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, "env | sort")
	spec.Env = []string{"FOO=bar baz", "TERM=dumb", "EMPTY="}
	r := run(t, spec)
	got := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := map[string]bool{"PATH=" + DefaultPath: true, "HOME=/root": true, "TERM=dumb": true,
		"FOO=bar baz": true, "EMPTY=": true}
	for _, kv := range got {
		if kv == "PWD=/" || kv == "SHLVL=1" { // set by the shell itself
			continue
		}
		if !want[kv] {
			t.Errorf("unexpected variable %q", kv)
		}
		delete(want, kv)
	}
	for kv := range want {
		t.Errorf("missing variable %q (got %q)", kv, got)
	}
}

func TestDevNodes(t *testing.T) {
	rootfs := testRootfs(t)
	out := mustSucceed(t, rootfs, `
		head -c 16 /dev/urandom | wc -c
		head -c 16 /dev/random | wc -c
		head -c 8 /dev/zero | od -An -tx1 | tr -d ' \n'; echo
		echo x > /dev/null && echo null-ok
		echo x > /dev/full 2>/dev/null || echo full-enospc
		echo shm > /dev/shm/f && cat /dev/shm/f
		ls /dev/fd/ | tr '\n' ' '; echo
		ls /dev | tr '\n' ' '`)
	want := "16\n16\n0000000000000000\nnull-ok\nfull-enospc\nshm\n0 1 2 3 \n" +
		"fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "
	if out != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestOnlyStdioInherited(t *testing.T) {
	rootfs := testRootfs(t)
	// ls itself opens one descriptor (3) for the directory it lists.
	out := mustSucceed(t, rootfs, "ls /proc/self/fd | tr '\n' ' '")
	if out != "0 1 2 3 " {
		t.Fatalf("descriptors inside: %q, want 0 1 2 (+3 for ls)", out)
	}
	// The exec'd init, seen from the host, must hold exactly stdin, stdout and stderr.
	p, err := Start(Spec{Name: "t", Rootfs: rootfs, Args: []string{"sleep", "10"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Signal(syscall.SIGKILL); finish(t, p) }()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		fds = append(fds, e.Name())
	}
	if strings.Join(fds, " ") != "0 1 2" {
		t.Fatalf("container init holds descriptors %v, want 0 1 2", fds)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid)); !strings.HasSuffix(exe, "/bin/busybox") {
		t.Fatalf("init is %q, want the exec'd busybox (Start returns only after exec)", exe)
	}
}

// overlayTempDir returns a temporary directory that can hold overlay upper and work
// directories. Those cannot live on another overlay (as /tmp is in some CI containers), so
// there it mounts a tmpfs of its own.
func overlayTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=700"); err != nil {
			t.Fatalf("mounting a tmpfs for overlay layers: %v", err)
		}
		t.Cleanup(func() { _ = Unmount(dir) })
	}
	return dir
}

func TestOverlay(t *testing.T) {
	rootfs := testRootfs(t)
	dir := overlayTempDir(t)
	var targets []string
	for i := 0; i < 2; i++ {
		d := filepath.Join(dir, strconv.Itoa(i))
		target := filepath.Join(d, "rootfs")
		if err := MountOverlay(rootfs, filepath.Join(d, "upper"), filepath.Join(d, "work"), target); err != nil {
			t.Fatalf("MountOverlay: %v", err)
		}
		t.Cleanup(func() { _ = Unmount(target) })
		targets = append(targets, target)
	}
	if err := MountOverlay(rootfs, filepath.Join(dir, "0/upper"), filepath.Join(dir, "0/work"), targets[0]); !errors.Is(err, ErrAlreadyMounted) {
		t.Fatalf("second MountOverlay on the same target = %v, want ErrAlreadyMounted", err)
	}
	mustSucceed(t, targets[0], "echo one > /etc/written; rm /bin/vi; echo changed > /etc/hostname")
	mustSucceed(t, targets[1], "echo two > /etc/written")
	if out := mustSucceed(t, targets[0], "cat /etc/written /etc/hostname; ls /bin/vi 2>&1 || true"); out != "one\nchanged\nls: /bin/vi: No such file or directory\n" {
		t.Fatalf("container 0 sees %q", out)
	}
	if out := mustSucceed(t, targets[1], "cat /etc/written /etc/hostname; ls /bin/vi"); out != "two\njackfruit\n/bin/vi\n" {
		t.Fatalf("container 1 sees %q", out)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc/written")); !os.IsNotExist(err) {
		t.Fatalf("write reached the base rootfs: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/hostname")); string(b) != "jackfruit\n" {
		t.Fatalf("base /etc/hostname changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "bin/vi")); err != nil {
		t.Fatalf("delete reached the base rootfs: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "0/upper/etc/written")); err != nil || string(b) != "one\n" {
		t.Fatalf("upper layer holds %q, %v", b, err)
	}
	for _, target := range targets {
		if err := Unmount(target); err != nil {
			t.Fatal(err)
		}
		if err := Unmount(target); err != nil {
			t.Fatalf("second Unmount: %v", err)
		}
		if m, err := isMountPoint(target); err != nil || m {
			t.Fatalf("%s still mounted (%v)", target, err)
		}
	}
	if err := Unmount(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("Unmount of a missing path: %v", err)
	}
}

func TestOverlayBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ lower, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{file, "not a directory"},
		{filepath.Join(dir, "a,b"), "must not contain"},
		{"", "no lower directory"},
	} {
		err := MountOverlay(tc.lower, filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "t"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MountOverlay(lower=%q) = %v, want an error containing %q", tc.lower, err, tc.want)
		}
	}
}

func TestConcurrentStarts(t *testing.T) {
	rootfs := testRootfs(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := Start(Spec{Name: fmt.Sprintf("c%d", i), Rootfs: rootfs,
				Args: []string{"sh", "-c", "sleep 0.2; echo $$ $(hostname)"}})
			if err != nil {
				errs <- err
				return
			}
			out, _ := io.ReadAll(p.Stdout)
			_, _ = io.ReadAll(p.Stderr)
			p.Stdout.Close()
			p.Stderr.Close()
			exit, err := p.Wait()
			if err != nil {
				errs <- err
				return
			}
			if want := fmt.Sprintf("1 c%d\n", i); exit.Code != 0 || string(out) != want {
				errs <- fmt.Errorf("container %d: %v, output %q, want %q", i, exit, out, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assertNoChildren(t)
}

// assertNoChildren fails if this process has any child left, reaped or not.
func assertNoChildren(t *testing.T) {
	t.Helper()
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if !errors.Is(err, unix.ECHILD) {
		t.Fatalf("children remain after Wait (waitid: %v)", err)
	}
}

func TestSetupFailure(t *testing.T) {
	rootfs := testRootfs(t)
	for _, tc := range []struct {
		name   string
		remove string // entry of the rootfs to replace
		file   bool   // replace it with a file instead of removing it
		want   string
	}{
		{"proc-file", "proc", true, "setup failed: rootfs %s: /proc is not a directory"},
		{"dev-file", "dev", true, "setup failed: rootfs %s: /dev is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := copyRootfs(t, rootfs)
			if err := os.Remove(filepath.Join(bad, tc.remove)); err != nil {
				t.Fatal(err)
			}
			if tc.file {
				if err := os.WriteFile(filepath.Join(bad, tc.remove), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p, err := Start(Spec{Name: "bad", Rootfs: bad, Args: []string{"true"}})
			if err == nil {
				finish(t, p)
				t.Fatal("Start succeeded on a broken rootfs")
			}
			want := `container "bad": ` + fmt.Sprintf(tc.want, bad)
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q, want %q", err, want)
			}
			t.Log(err)
			assertNoChildren(t)
		})
	}
	t.Run("crash", func(t *testing.T) {
		p, err := Start(Spec{Name: "crash-in-setup", Rootfs: rootfs, Args: []string{"true"}})
		if err == nil {
			finish(t, p)
			t.Fatal("Start succeeded although the setup stage died")
		}
		want := `container "crash-in-setup": setup stage exited before reporting a result; setup stage stderr: simulated crash`
		if err.Error() != want {
			t.Fatalf("error %q, want %q", err, want)
		}
		assertNoChildren(t)
	})
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []Spec{
		{Name: "x", Rootfs: file, Args: []string{"true"}},
		{Name: "x", Rootfs: filepath.Join(file, "missing"), Args: []string{"true"}},
		{Name: "x", Rootfs: rootfs},
		{Name: "x", Rootfs: rootfs, Args: []string{"true"}, Env: []string{"NOEQUALS"}},
		{Name: "x", Rootfs: rootfs, Args: []string{"true"}, Hostname: strings.Repeat("h", 65)},
		{Rootfs: rootfs, Args: []string{"true"}},
	} {
		if p, err := Start(spec); err == nil {
			finish(t, p)
			t.Errorf("Start(%+v) succeeded", spec)
		}
	}
	assertNoChildren(t)
}

// copyRootfs makes a copy of the test rootfs, cheap (hard links) when the temporary
// directory is on the same filesystem.
// A rootfs needs only the command: missing mount points (/proc, /dev) are created in it, as
// podman and runc do; a read-only rootfs that lacks them fails with a message naming the fix.
func TestMinimalRootfs(t *testing.T) {
	full := testRootfs(t)
	minimal := filepath.Join(t.TempDir(), "minimal")
	if err := os.MkdirAll(filepath.Join(minimal, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", filepath.Join(full, "bin", "busybox"), filepath.Join(minimal, "bin", "sh")).CombinedOutput(); err != nil {
		t.Fatalf("copying busybox: %v: %s", err, out)
	}

	// Read-only first: nothing may be created, and the error says what to do.
	if err := unix.Mount(minimal, minimal, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	ro := true
	unmount := func() {
		if ro {
			ro = false
			if err := unix.Unmount(minimal, unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting the read-only bind: %v", err)
			}
		}
	}
	t.Cleanup(unmount)
	if err := unix.Mount("", minimal, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	p, err := Start(Spec{Name: "ro-minimal", Rootfs: minimal, Args: []string{"/bin/sh", "-c", "true"}})
	if err == nil {
		finish(t, p)
		t.Fatal("Start succeeded on a read-only rootfs without /proc")
	}
	if want := fmt.Sprintf("rootfs %s has no /proc directory and it cannot be created", minimal); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "mkdir "+minimal+"/proc") {
		t.Fatalf("error %q, want it to contain %q and the mkdir to run", err, want)
	}
	assertNoChildren(t)
	unmount()

	p, err = Start(Spec{Name: "minimal", Rootfs: minimal, Args: []string{"/bin/sh", "-c", "echo $$; cat /proc/self/stat >/dev/null && echo ok"}})
	if err != nil {
		t.Fatalf("Start on a rootfs holding only the command: %v", err)
	}
	r := finish(t, p)
	if r.exit.Code != 0 || r.stdout != "1\nok\n" {
		t.Fatalf("exit %+v, output %q, stderr %q; want 0 and \"1\\nok\\n\"", r.exit, r.stdout, r.stderr)
	}
	for _, d := range []string{"proc", "dev"} {
		if fi, err := os.Lstat(filepath.Join(minimal, d)); err != nil || !fi.IsDir() {
			t.Errorf("mount point /%s not created in the rootfs: %v", d, err)
		}
	}
}

func copyRootfs(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := exec.Command("cp", "-a", "--link", src, dst).Run(); err == nil {
		return dst
	}
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying rootfs: %v: %s", err, out)
	}
	return dst
}

func countFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// mountsMentioning counts this namespace's mounts whose mount point or source contains s.
func mountsMentioning(t *testing.T, s string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

func TestNoLeaks(t *testing.T) {
	rootfs := testRootfs(t)
	dir := overlayTempDir(t)
	cycle := func(i int) {
		target := filepath.Join(dir, "rootfs")
		if err := MountOverlay(rootfs, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), target); err != nil {
			t.Fatal(err)
		}
		p, err := Start(Spec{Name: "leak", Rootfs: target, Args: []string{"sleep", "10"}})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_ = p.Signal(syscall.SIGKILL)
		} else {
			_ = p.Signal(syscall.SIGTERM) // sleep as PID 1 ignores it: must not break anything
			_ = p.Signal(syscall.SIGKILL)
		}
		finish(t, p)
		if err := Unmount(target); err != nil {
			t.Fatal(err)
		}
		// A setup failure must clean up as well.
		if p, err := Start(Spec{Name: "leak", Rootfs: rootfs, Args: []string{"true"}, Env: []string{"A=1"}, Hostname: "h"}); err == nil {
			finish(t, p)
		}
	}
	cycle(0) // warm up lazily opened runtime descriptors
	fds, mounts, total := countFds(t), mountsMentioning(t, dir), mountsMentioning(t, "\n")
	const cycles = 40
	for i := 1; i <= cycles; i++ {
		cycle(i)
	}
	if got := countFds(t); got != fds {
		t.Errorf("open descriptors: %d before, %d after %d cycles", fds, got, cycles)
	}
	if got := mountsMentioning(t, dir); got != mounts {
		t.Errorf("mounts under %s: %d before, %d after", dir, mounts, got)
	}
	// Other processes on the host may mount things meanwhile; only report the total.
	t.Logf("host mounts: %d before, %d after %d cycles", total, mountsMentioning(t, "\n"), cycles)
	assertNoChildren(t)
}

func TestWaitOutputComplete(t *testing.T) {
	rootfs := testRootfs(t)
	// Output written right before exit must all arrive, even far more than a pipe holds.
	r := run(t, sh(rootfs, "head -c 1000000 /dev/zero | tr '\\0' x; echo err >&2"))
	if len(r.stdout) != 1000000 || r.stderr != "err\n" {
		t.Fatalf("got %d bytes stdout, stderr %q", len(r.stdout), r.stderr)
	}
}

func TestMemoryHog(t *testing.T) {
	rootfs := testRootfs(t)
	start := time.Now()
	r := run(t, Spec{Name: "hog", Rootfs: rootfs, Args: []string{"memory_hog", "-step-mib", "2", "-interval", "10ms", "-max-mib", "6"}})
	if r.exit.Code != 0 || !strings.Contains(r.stdout, "step 3: +2 MiB, total 6 MiB") {
		t.Fatalf("memory_hog: %v, stdout %q, stderr %q", r.exit, r.stdout, r.stderr)
	}
	t.Logf("memory_hog run took %v", time.Since(start))
}

// BenchmarkStartWait measures a whole container life: namespaces, mounts, exec of `true`,
// reap. Timing goals live in `make bench`, never in pass/fail tests.
func BenchmarkStartWait(b *testing.B) {
	dir := os.Getenv("JACKFRUIT_TEST_ROOTFS")
	if dir == "" || os.Geteuid() != 0 {
		b.Skip("needs root and JACKFRUIT_TEST_ROOTFS")
	}
	for i := 0; i < b.N; i++ {
		p, err := Start(Spec{Name: "bench", Rootfs: dir, Args: []string{"true"}})
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, p.Stdout)
		_, _ = io.Copy(io.Discard, p.Stderr)
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		p.Stdout.Close()
		p.Stderr.Close()
	}
}

func TestSignalDispositionsReset(t *testing.T) {
	rootfs := testRootfs(t)
	// Whatever the supervisor inherited (systemd ignores SIGPIPE, nohup SIGHUP), the
	// container starts with default dispositions and nothing blocked.
	// Make the supervisor side ignore a signal, as nohup would.
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	// No shell in between: a shell changes dispositions for its children.
	r := run(t, Spec{Name: "t", Rootfs: rootfs, Args: []string{"grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"}})
	if r.stdout != "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n" {
		t.Fatalf("container signal state: %v\n%s%s", r.exit, r.stdout, r.stderr)
	}
}
