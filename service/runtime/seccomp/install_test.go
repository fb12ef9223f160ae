// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	profiles "github.com/moby/profiles/seccomp"
	"golang.org/x/sys/unix"
)

// The install tests re-execute the test binary: a filter cannot be removed,
// so each scenario runs in a child process that installs it and reports
// what its probes got, one JSON object on stdout.
const (
	envChild  = "JF_SECCOMP_CHILD"  // scenario
	envCaps   = "JF_SECCOMP_CAPS"   // comma-separated capability set
	envKernel = "JF_SECCOMP_KERNEL" // Config.Kernel
	// envFloorOnly: the floor scenario installs the floor alone, not the container's filter.
	envFloorOnly = "JF_SECCOMP_FLOOR_ONLY"
	envExec      = "JF_SECCOMP_EXEC" // program the "exec" scenario runs
	envN         = "JF_SECCOMP_N"    // repetitions in the cost scenarios
)

func TestMain(m *testing.M) {
	if scenario := os.Getenv(envChild); scenario != "" {
		if err := child(scenario); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(scenario string) error {
	var caps []string
	if s := os.Getenv(envCaps); s != "" {
		caps = strings.Split(s, ",")
	}
	f, err := Compile(profiles.DefaultProfile(), Config{Caps: caps, Kernel: os.Getenv(envKernel)})
	if err != nil {
		return err
	}
	// Go through the encoding, as the setup stage will.
	if f, err = Unmarshal(f.Marshal()); err != nil {
		return err
	}
	if scenario == "floor" {
		// The setup stage's order: the floor, then the container's own filter (here the
		// default one for caps), both with TSYNC.
		fl, err := Floor()
		if err != nil {
			return err
		}
		if fl, err = Unmarshal(fl.Marshal()); err != nil {
			return err
		}
		if err := fl.Install(); err != nil {
			return err
		}
		scenario = "probes"
		if os.Getenv(envFloorOnly) != "" {
			scenario = "floor-only"
		}
	}
	switch scenario {
	case "probes", "unfiltered", "floor-only":
		// The parent started us in a new mount namespace; keep the
		// mount probes' effects out of the host's.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("making mounts private: %w", err)
		}
		dir, err := os.MkdirTemp("", "jf-seccomp-mnt")
		if err != nil {
			return err
		}
		defer os.Remove(dir)
		if scenario == "probes" {
			if err := f.Install(); err != nil {
				return err
			}
		}
		r := probes(dir)
		for k, v := range floorProbes(dir) {
			r[k] = v
		}
		return json.NewEncoder(os.Stdout).Encode(r)
	case "x32":
		if err := f.Install(); err != nil {
			return err
		}
		_, _, e := unix.RawSyscall(unix.SYS_GETPID|0x40000000, 0, 0, 0)
		return fmt.Errorf("x32 getpid returned (errno %v) instead of killing the process", e)
	case "exec":
		if err := f.Install(); err != nil {
			return err
		}
		path := os.Getenv(envExec)
		return unix.Exec(path, []string{path}, nil)
	case "access":
		return accessScenario(f)
	case "install-cost":
		return installCost(f)
	case "syscall-cost":
		return syscallCost(f)
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}

// accessScenario: without CAP_SYS_ADMIN and without no_new_privs the kernel
// refuses the filter, with a message that says why; with no_new_privs it is
// taken. Capabilities are per thread, so the drop and the attempts run on
// one locked thread.
func accessScenario(f *Filter) error {
	runtime.LockOSThread() // never unlocked: the thread dies with the process
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	out := map[string]string{}
	if err := f.Install(); err != nil {
		out["without"] = err.Error()
	} else {
		out["without"] = "ok"
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := f.Install(); err != nil {
		out["with-nnp"] = err.Error()
	} else {
		out["with-nnp"] = "ok"
	}
	out["status"] = statusLine("Seccomp")
	return json.NewEncoder(os.Stdout).Encode(out)
}

func statusLine(key string) string { return procStatus("/proc/self/status", key) }

// threadStatus reads the calling thread's status, which differs from the
// process's (the main thread's) for per-thread state such as a filter
// installed without TSYNC.
func threadStatus(key string) string { return procStatus("/proc/thread-self/status", key) }

func procStatus(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return "missing"
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func rawCall(nr uintptr, args ...uintptr) string {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if e != 0 {
		return unix.ErrnoName(e)
	}
	return "ok"
}

// probes runs every check and returns its outcome: "ok" or the errno name.
func probes(mnt string) map[string]string {
	r := map[string]string{}
	r["getpid"] = rawCall(unix.SYS_GETPID)
	r["pipe-rw"] = func() string {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return errString(err)
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		if _, err := unix.Write(p[1], []byte("jf")); err != nil {
			return errString(err)
		}
		buf := make([]byte, 2)
		if n, err := unix.Read(p[0], buf); err != nil || n != 2 || string(buf) != "jf" {
			return fmt.Sprintf("read %q, %v", buf[:n], err)
		}
		return "ok"
	}()
	r["threads"] = func() string {
		// New OS threads are clone(CLONE_VM|CLONE_THREAD|...): the Go
		// runtime aborts the process if that is refused.
		tasks := func() int { e, _ := os.ReadDir("/proc/self/task"); return len(e) }
		before := tasks()
		release := make(chan struct{})
		defer close(release)
		// Idle threads the runtime already has may take some of the locked goroutines; lock
		// more goroutines than there are threads, so that at least 4 new ones must be made.
		for range before + 4 {
			go func() { runtime.LockOSThread(); <-release }()
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if tasks() >= before+4 {
				return "ok"
			}
		}
		return fmt.Sprintf("threads %d -> %d", before, tasks())
	}()
	r["fork-exec"] = errString(exec.Command("/bin/true").Run())
	cloneWith := func(flags uintptr) string {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
		return errString(cmd.Run())
	}
	r["clone-newns"] = cloneWith(unix.CLONE_NEWNS)
	r["clone-newnet"] = cloneWith(unix.CLONE_NEWNET)
	r["unshare-newuser"] = errString(unix.Unshare(unix.CLONE_NEWUSER))
	r["unshare-newns"] = func() string {
		ch := make(chan error)
		go func() { runtime.LockOSThread(); ch <- unix.Unshare(unix.CLONE_NEWNS) }() // the thread is discarded
		return errString(<-ch)
	}()
	r["mount"] = func() string {
		err := unix.Mount("jf-seccomp", mnt, "tmpfs", 0, "")
		if err == nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		return errString(err)
	}()
	r["keyctl"] = func() string {
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_PROCESS_KEYRING, 1, 0, 0)
		return errString(err)
	}()
	r["add_key"] = func() string {
		_, err := unix.AddKey("user", "jf-seccomp-test", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return errString(err)
	}()
	r["bpf"] = rawCall(unix.SYS_BPF, 0xffff, 0, 0)
	r["init_module"] = rawCall(unix.SYS_INIT_MODULE, 0, 0, 0)
	r["finit_module"] = rawCall(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)
	r["syslog"] = rawCall(unix.SYS_SYSLOG, 10, 0, 0) // SYSLOG_ACTION_SIZE_BUFFER
	r["reboot"] = rawCall(unix.SYS_REBOOT, 0, 0, 0)  // wrong magic: EINVAL if it gets through
	r["setns"] = rawCall(unix.SYS_SETNS, ^uintptr(0), 0)
	r["chroot"] = errString(unix.Chroot("/"))
	// PTRACE_PEEKUSR on a pid that does not exist: ESRCH once past seccomp.
	r["ptrace"] = rawCall(unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, 0x3ffffff0, 0, 0)
	r["personality-query"] = rawCall(unix.SYS_PERSONALITY, 0xffffffff)
	r["personality-addr-no-randomize"] = rawCall(unix.SYS_PERSONALITY, 0x0040000) // ADDR_NO_RANDOMIZE
	socket := func(domain int) string {
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errString(err)
	}
	r["socket-inet"] = socket(unix.AF_INET)
	r["socket-unix"] = socket(unix.AF_UNIX)
	r["socket-vsock"] = socket(unix.AF_VSOCK)
	r["socket-alg"] = func() string {
		fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return errString(err)
	}()
	r["clone3"] = rawCall(unix.SYS_CLONE3, 0, 0)
	r["seccomp-status"] = func() string {
		// TSYNC: every thread, not only the one that installed it.
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err.Error()
		}
		mode := statusLine("Seccomp")
		for _, task := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "status"))
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue // the thread exited since ReadDir (ESRCH: while it was being read)
			}
			if err != nil {
				return err.Error()
			}
			if !bytes.Contains(b, []byte("\nSeccomp:\t"+mode+"\n")) {
				return "thread " + task.Name() + " is not in seccomp mode " + mode
			}
		}
		return mode
	}()
	r["no-new-privs"] = statusLine("NoNewPrivs")
	return r
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs seccomp filters and mounts in a child")
	}
}

// runChild runs one scenario and returns its decoded output (nil when it
// printed none) and how it ended.
func runChild(t testing.TB, scenario string, caps []string, env ...string) (map[string]string, *os.ProcessState, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+scenario, envCaps+"="+strings.Join(caps, ","))
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("starting %s child: %v", scenario, err)
	}
	var out map[string]string
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			t.Fatalf("%s child printed %q: %v (stderr %s)", scenario, stdout.String(), err, stderr.String())
		}
	}
	return out, cmd.ProcessState, stderr.String()
}

// TestInstall applies the default filter in a child holding all of root's
// capabilities and checks each probe's outcome for several container
// capability sets, and that the same probe without the filter comes out
// otherwise (so every refusal is the filter's doing).
func TestInstall(t *testing.T) {
	needRoot(t)
	unfiltered, ps, stderr := runChild(t, "unfiltered", nil)
	if !ps.Success() || unfiltered == nil {
		t.Fatalf("unfiltered child: %v, stderr %s", ps, stderr)
	}
	if unfiltered["seccomp-status"] != "0" {
		t.Fatalf("the test process is already under seccomp (%s): cannot compare", unfiltered["seccomp-status"])
	}
	common := map[string]string{
		"getpid": "ok", "pipe-rw": "ok", "threads": "ok", "fork-exec": "ok",
		"keyctl": "EPERM", "add_key": "EPERM", "init_module": "EPERM", "finit_module": "EPERM",
		"reboot": "EPERM", "personality-query": "ok", "personality-addr-no-randomize": "EPERM",
		"socket-inet": "ok", "socket-unix": "ok", "socket-vsock": "EPERM", "socket-alg": "EPERM",
		"unshare-newuser": "EPERM",
		// Allowed by the profile on kernels >= 4.8; without CAP_SYS_PTRACE
		// and in a PID namespace a container's ptrace reaches nothing
		// outside it.
		"ptrace":         "ESRCH",
		"seccomp-status": "2", "no-new-privs": "0",
		// What the floor narrows (TestFloor), which the profile lets through.
		"chmod-suid": "ENOENT", "chmod-plain": "ENOENT", "mkdir-sgid": "ENOENT",
		"open-create-suid": "ENOENT", "open-read-suidmode": "ENOENT",
		"sched-fifo": "ESRCH", "sched-batch": "ESRCH", "personality-linux": "ok",
		"adjtimex": "EFAULT", "openat2": "EINVAL",
	}
	withSysAdmin := map[string]string{
		"clone-newns": "ok", "clone-newnet": "ok", "unshare-newns": "ok", "mount": "ok",
		"setns": "EBADF", "clone3": "EINVAL", "syslog": "ok", "bpf": "EINVAL", "chroot": "ok",
		"setns-newnet": "EBADF", "setns-newuser": "EBADF", "setns-hi-garbage": "EBADF", "clone-newuser": "ok",
		// Allowed by seccomp, refused by the kernel for a multi-threaded caller.
		"unshare-newuser": "EINVAL",
	}
	withoutSysAdmin := map[string]string{
		"clone-newns": "EPERM", "clone-newnet": "EPERM", "unshare-newns": "EPERM", "mount": "EPERM",
		"setns": "EPERM", "clone3": "ENOSYS", "syslog": "EPERM", "bpf": "EPERM",
		"setns-newnet": "EPERM", "setns-newuser": "EPERM", "setns-hi-garbage": "EPERM", "clone-newuser": "EPERM",
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	for _, c := range []struct {
		name   string
		caps   []string
		kernel string
		want   map[string]string
	}{
		{"oci-default", ociDefaultCaps, "", merge(common, withoutSysAdmin, map[string]string{"chroot": "ok"})},
		{"oci+sys_admin", append(append([]string(nil), ociDefaultCaps...), "SYS_ADMIN"), "", merge(common, withSysAdmin)},
		{"no-caps-old-kernel", nil, "4.7", merge(common, withoutSysAdmin, map[string]string{"chroot": "EPERM", "ptrace": "EPERM"})},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ps, stderr := runChild(t, "probes", c.caps, envKernel+"="+c.kernel)
			if !ps.Success() || got == nil {
				t.Fatalf("child: %v, stderr %s", ps, stderr)
			}
			for probe, want := range c.want {
				if got[probe] != want {
					t.Errorf("%s: %s, want %s", probe, got[probe], want)
				}
				// A refusal proves nothing if the call fails the same
				// way without the filter.
				if (want == "EPERM" || want == "ENOSYS") && unfiltered[probe] == want {
					t.Errorf("%s: %s without the filter too: the probe does not show the filter", probe, want)
				}
			}
			for probe := range got {
				if _, ok := c.want[probe]; !ok {
					t.Errorf("probe %s (%s) has no expectation", probe, got[probe])
				}
			}
		})
	}
	t.Logf("without the filter: %v", unfiltered)
}

// TestX32Killed: a syscall through the x32 ABI kills the process.
func TestX32Killed(t *testing.T) {
	needRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 is an amd64 ABI")
	}
	_, ps, stderr := runChild(t, "x32", ociDefaultCaps)
	if ws := ps.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("x32 child ended with %v, want killed by SIGSYS (stderr %s)", ps, stderr)
	}
}

// TestI386Killed: a program entering the kernel through int 0x80 (the i386
// ABI, AUDIT_ARCH_I386) under the filter is killed; without it the same
// program runs.
func TestI386Killed(t *testing.T) {
	needRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("int 0x80 is an amd64 test")
	}
	prog := filepath.Join(t.TempDir(), "int80")
	if err := os.WriteFile(prog, int80ELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(prog).Run(); err != nil {
		t.Skipf("the i386 program does not run without a filter (no IA32 emulation?): %v", err)
	}
	_, ps, stderr := runChild(t, "exec", ociDefaultCaps, envExec+"="+prog)
	if ws := ps.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("i386 child ended with %v, want killed by SIGSYS (stderr %s)", ps, stderr)
	}
}

// int80ELF is a minimal static x86-64 executable:
//
//	mov eax, 20     ; i386 getpid
//	int 0x80
//	xor edi, edi
//	mov eax, 60     ; exit(0)
//	syscall
func int80ELF() []byte {
	code := []byte{0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0x31, 0xff, 0xb8, 60, 0, 0, 0, 0x0f, 0x05}
	const base, ehsize, phsize = 0x400000, 64, 56
	var b bytes.Buffer
	le := binary.LittleEndian
	w := func(v any) { _ = binary.Write(&b, le, v) }
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(2))                      // ET_EXEC
	w(uint16(0x3e))                   // EM_X86_64
	w(uint32(1))                      // EV_CURRENT
	w(uint64(base + ehsize + phsize)) // entry
	w(uint64(ehsize))                 // phoff
	w(uint64(0))                      // shoff
	w(uint32(0))                      // flags
	w(uint16(ehsize))
	w(uint16(phsize))
	w(uint16(1)) // phnum
	w(uint16(0))
	w(uint16(0))
	w(uint16(0))
	size := uint64(ehsize + phsize + len(code))
	w(uint32(1)) // PT_LOAD
	w(uint32(5)) // R+X
	w(uint64(0)) // offset
	w(uint64(base))
	w(uint64(base))
	w(size)
	w(size)
	w(uint64(0x1000))
	b.Write(code)
	return b.Bytes()
}

// TestInstallAccess: without no_new_privs and CAP_SYS_ADMIN Install fails
// with a message naming both; with no_new_privs it works.
func TestInstallAccess(t *testing.T) {
	needRoot(t)
	got, ps, stderr := runChild(t, "access", ociDefaultCaps)
	if !ps.Success() || got == nil {
		t.Fatalf("child: %v, stderr %s", ps, stderr)
	}
	if !strings.Contains(got["without"], "set no_new_privs or hold CAP_SYS_ADMIN") {
		t.Errorf("Install without CAP_SYS_ADMIN or no_new_privs: %q", got["without"])
	}
	if got["with-nnp"] != "ok" || got["status"] != "2" {
		t.Errorf("Install with no_new_privs: %q, Seccomp: %s", got["with-nnp"], got["status"])
	}
}

// installCost decodes and installs the filter n times and reports the median
// time of each step. Filters stack, and the kernel allows 32768
// instructions (after translation to eBPF) along a stack
// (MAX_INSNS_PER_PATH), so n stays small.
func installCost(f *Filter) error {
	n, err := strconv.Atoi(os.Getenv(envN))
	if err != nil || n < 1 || n > 25 {
		return fmt.Errorf("%s=%q: want 1..25", envN, os.Getenv(envN))
	}
	blob := f.Marshal()
	var unmarshal, install []time.Duration
	for range n {
		t0 := time.Now()
		g, err := Unmarshal(blob)
		if err != nil {
			return err
		}
		t1 := time.Now()
		if err := g.Install(); err != nil {
			return err
		}
		unmarshal = append(unmarshal, t1.Sub(t0))
		install = append(install, time.Since(t1))
	}
	// The median: on a shared host a preempted install would otherwise
	// dominate the mean.
	median := func(d []time.Duration) string {
		slices.Sort(d)
		return strconv.FormatInt(d[len(d)/2].Nanoseconds(), 10)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{
		"unmarshal": median(unmarshal),
		"install":   median(install),
	})
}

// syscallCost measures a cheap syscall and a fork+exec+wait of /bin/true
// (what a container's first process does at least once) on two locked
// threads, one under the filter and one not, in alternating rounds, and
// reports the best round of each: the build hosts are shared and noisy,
// and measuring before and after one install compares different moments.
func syscallCost(f *Filter) error {
	type result struct {
		perCall, perExec time.Duration
		err              error
	}
	worker := func(filtered bool, ready chan<- error, reqs <-chan struct{}, out chan<- result) {
		runtime.LockOSThread() // never unlocked: the filtered thread must not run other goroutines
		if filtered {
			// This thread only: no TSYNC, unlike Install.
			raw := make([]unix.SockFilter, len(f.prog))
			for i, in := range f.prog {
				raw[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
			}
			prog := unix.SockFprog{Len: uint16(len(raw)), Filter: &raw[0]}
			if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
				ready <- fmt.Errorf("installing on one thread: %w", e)
				return
			}
			runtime.KeepAlive(raw)
		}
		// Whichever thread the goroutine landed on (the main one
		// included), the filter must be on this one only.
		want := map[bool]string{false: "0", true: "2"}[filtered]
		if mode := threadStatus("Seccomp"); mode != want {
			ready <- fmt.Errorf("thread filtered=%v has Seccomp: %s", filtered, mode)
			return
		}
		ready <- nil
		for range reqs {
			const calls = 5000
			t0 := time.Now()
			for range calls {
				unix.Getppid()
			}
			perCall := time.Since(t0) / calls
			t0 = time.Now()
			err := exec.Command("/bin/true").Run()
			out <- result{perCall, time.Since(t0), err}
		}
	}
	var reqs [2]chan struct{}
	var outs [2]chan result
	ready := make(chan error)
	for i := range 2 {
		reqs[i], outs[i] = make(chan struct{}), make(chan result)
		go worker(i == 1, ready, reqs[i], outs[i])
		if err := <-ready; err != nil {
			return err
		}
	}
	best := [2]result{{time.Hour, time.Hour, nil}, {time.Hour, time.Hour, nil}}
	for range 20 {
		for i := range 2 {
			reqs[i] <- struct{}{}
			r := <-outs[i]
			if r.err != nil {
				return r.err
			}
			best[i].perCall = min(best[i].perCall, r.perCall)
			best[i].perExec = min(best[i].perExec, r.perExec)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{
		"call-before": strconv.FormatInt(best[0].perCall.Nanoseconds(), 10),
		"call-after":  strconv.FormatInt(best[1].perCall.Nanoseconds(), 10),
		"exec-before": strconv.FormatInt(best[0].perExec.Nanoseconds(), 10),
		"exec-after":  strconv.FormatInt(best[1].perExec.Nanoseconds(), 10),
	})
}

func childMetric(b *testing.B, out map[string]string, key string) float64 {
	b.Helper()
	v, err := strconv.ParseFloat(out[key], 64)
	if err != nil {
		b.Fatalf("child reported %s=%q", key, out[key])
	}
	return v
}

// BenchmarkInstall reports what applying the precompiled default filter
// costs one container start: decoding the supervisor's bytes and the
// seccomp(2) call (the kernel checks the program, translates it to eBPF and
// JIT-compiles it, then synchronises every thread).
func BenchmarkInstall(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var unmarshal, install float64
	done := 0
	for done < b.N {
		n := min(b.N-done, 25)
		out, ps, stderr := runChild(b, "install-cost", ociDefaultCaps, envN+"="+strconv.Itoa(n))
		if !ps.Success() || out == nil {
			b.Fatalf("child: %v, stderr %s", ps, stderr)
		}
		unmarshal += childMetric(b, out, "unmarshal") * float64(n)
		install += childMetric(b, out, "install") * float64(n)
		done += n
	}
	b.ReportMetric(unmarshal/float64(b.N), "ns-unmarshal/start")
	b.ReportMetric(install/float64(b.N), "ns-install/start")
}

// BenchmarkFilteredSyscalls reports what the filter adds to every syscall
// of the container (getppid, a call the search finds in the first range
// checks) and to a fork+exec+wait of /bin/true.
func BenchmarkFilteredSyscalls(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var call, exec float64
	for b.Loop() {
		out, ps, stderr := runChild(b, "syscall-cost", ociDefaultCaps)
		if !ps.Success() || out == nil {
			b.Fatalf("child: %v, stderr %s", ps, stderr)
		}
		call += childMetric(b, out, "call-after") - childMetric(b, out, "call-before")
		exec += childMetric(b, out, "exec-after") - childMetric(b, out, "exec-before")
	}
	b.ReportMetric(call/float64(b.N), "ns-added/syscall")
	b.ReportMetric(exec/float64(b.N), "ns-added/fork+exec")
}

// floorProbes are the calls the floor narrows (floor.go), each made so that the kernel
// fails it harmlessly once seccomp lets it through: a path under a directory that does not
// exist, a pid that does not exist, a descriptor that is not open.
func floorProbes(mnt string) map[string]string {
	r := map[string]string{}
	missing := filepath.Join(mnt, "missing", "f")
	r["chmod-suid"] = errString(unix.Chmod(missing, 0o4755))
	r["chmod-plain"] = errString(unix.Chmod(missing, 0o755))
	r["mkdir-sgid"] = errString(unix.Mkdir(missing, 0o2755))
	r["open-create-suid"] = func() string {
		fd, err := unix.Open(missing, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
		if err == nil {
			unix.Close(fd)
		}
		return errString(err)
	}()
	r["open-read-suidmode"] = func() string {
		// The mode means nothing without O_CREAT: not refused.
		fd, err := unix.Open(missing, unix.O_RDONLY|unix.O_CLOEXEC, 0o4755)
		if err == nil {
			unix.Close(fd)
		}
		return errString(err)
	}()
	param := [1]int32{1}
	sched := func(policy uintptr) string {
		return rawCall(unix.SYS_SCHED_SETSCHEDULER, 0x3ffffff0, policy, uintptr(unsafe.Pointer(&param[0])))
	}
	r["sched-fifo"] = sched(1)
	r["sched-batch"] = sched(unix.SCHED_BATCH)
	r["personality-linux"] = rawCall(unix.SYS_PERSONALITY, 0)
	r["adjtimex"] = rawCall(unix.SYS_ADJTIMEX, 0)
	r["openat2"] = rawCall(unix.SYS_OPENAT2, ^uintptr(0), 0, 0, 0)
	r["setns-newnet"] = rawCall(unix.SYS_SETNS, ^uintptr(0), unix.CLONE_NEWNET)
	r["setns-newuser"] = rawCall(unix.SYS_SETNS, ^uintptr(0), unix.CLONE_NEWUSER)
	// nstype is an int: the kernel reads 0 ("any type") from this.
	r["setns-hi-garbage"] = rawCall(unix.SYS_SETNS, ^uintptr(0), 1<<32)
	r["clone-newuser"] = func() string {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
		return errString(cmd.Run())
	}()
	return r
}
