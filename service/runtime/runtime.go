// SPDX-License-Identifier: Apache-2.0

// Package runtime runs one command as a container: its own PID, UTS, mount and IPC
// namespaces, its own root filesystem (pivot_root), a fresh /proc, a minimal /dev, a hostname,
// stdin from /dev/null and stdout/stderr as pipes to the caller.
//
// The container is created by executing the "setup stage" in the new namespaces: the small
// dedicated jackfruit-init binary when the caller found one (OpenStage, Spec.Stage), else the
// current binary again (/proc/self/exe). The setup stage reads its configuration from an inherited
// socket, sets up the mounts, reports any failure back over the socket and finally execs the
// user's command, which becomes PID 1 of the container. This is why Init must be the first
// call in main(): in the setup stage it never returns.
//
// docs/runtime.md describes the sequence in detail.
package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Spec describes one container to start.
type Spec struct {
	Name     string   // container name; the hostname when Hostname is empty
	Hostname string   // UTS hostname inside the container
	Rootfs   string   // directory that becomes "/"; must hold /proc and /dev directories
	Args     []string // argv; Args[0] is resolved inside Rootfs using the container's PATH
	Env      []string // KEY=VALUE entries; they override the defaults PATH, HOME and TERM
	// Tty runs the command on a new pty of the container's devpts as its stdin, stdout,
	// stderr and controlling terminal; Process.Pty is the master.
	Tty bool
	// Init is the host path of a static init (tini-static) to run as PID 1 with the command
	// as its child, forwarding signals and reaping orphans; "" runs the command as PID 1.
	// It is bind-mounted read-only at InitPath in the container.
	Init string
	// Security is the container's confinement; nil means DefaultSecurity().
	Security *Security
	// Overlay, when set, is mounted on Rootfs by the setup stage, in the container's mount
	// namespace only (see Overlay). Rootfs may be any directory, Overlay.Lower itself too:
	// whatever it holds is covered there, and nowhere else.
	Overlay *Overlay
	// Stage is the setup-stage binary to run (OpenStage); nil re-executes /proc/self/exe.
	// It must stay open until Start returns.
	Stage *os.File
	// Cgroup is the cgroup v2 directory the setup stage is born in (clone3's
	// CLONE_INTO_CGROUP), so that everything of the container is accounted and limited
	// there from its first instruction; nil: the caller's own cgroup. Where clone3 is
	// refused (systemd's RestrictNamespaces=), the setup stage is moved there right after
	// the clone, before it is told what to run. Start does not close it.
	Cgroup *os.File
	// Launcher starts the setup stage as somebody else's child; nil: as the caller's.
	Launcher Launcher
}

// Launcher starts the setup stage somewhere else than as a child of the caller: as the main
// process of a systemd unit (package sdunit), whose parent, systemd, then outlives the
// supervisor and records the container's exit status.
type Launcher interface {
	// Launch runs SpawnSetup(args) in a process whose stdin is boot, and returns the pid of
	// the setup stage it cloned once that is known. boot carries the setup stage's
	// descriptors (SCM_RIGHTS), so that the launcher (systemd keeps a unit's stdio open as
	// long as the unit exists) holds none of them: EOF on the sync socket and the output
	// pipes then means what it means for a child.
	Launch(args []string, boot *os.File) (pid int, err error)
	// Exit returns how the setup stage (later the container's init) with pid ended. It is
	// called once the process has exited, which its parent notices and reaps, not us.
	Exit(pid int) (Exit, error)
}

// InitPath is where a container started with Spec.Init sees its init (as docker's --init:
// /dev is the container's own tmpfs, so the rootfs needs no such file and may be read-only).
const InitPath = "/dev/init"

// defaultEnv is the environment every container starts with; Spec.Env overrides it by key.
var defaultEnv = []string{"PATH=" + DefaultPath, "HOME=/root", "TERM=xterm"}

// SetupTimeout bounds how long Start waits for the setup stage (mounts, pivot_root) to reach
// the exec of the user's command; a wedged filesystem must not hang the caller forever.
const SetupTimeout = time.Minute

// Exit is how a container's init ended.
type Exit struct {
	// Code is the exit status when the process exited, or 128+signal when a signal killed
	// it (the shell's convention: 137 for SIGKILL).
	Code int
	// Signal is the signal that killed the process, 0 when it exited by itself.
	Signal syscall.Signal
	// CoreDumped is set when the killing signal produced a core dump.
	CoreDumped bool
	// CPUTime is the user and system time the process used, with that of the children it
	// waited for (the kernel's rusage of the reaped process).
	CPUTime time.Duration
}

// Signaled reports whether the process was killed by a signal.
func (e Exit) Signaled() bool { return e.Signal != 0 }

func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s), code %d", int(e.Signal), unix.SignalName(e.Signal), e.Code)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// Process is a running container's init, seen from the host.
//
// The caller must read Stdout and Stderr until EOF (a full pipe blocks the container) and
// close them; Wait does not close them, so output written just before exit is never lost.
// EOF arrives once every process of the container is gone, which the kernel ensures shortly
// after init exits.
type Process struct {
	Pid    int           // host pid of the container's init
	Stdout io.ReadCloser // read end of the container's stdout
	Stderr io.ReadCloser // read end of the container's stderr
	// Pty is the master of the container's terminal when Spec.Tty was set (Stdout and Stderr
	// then see only what the setup stage wrote before the terminal existed). Reading it
	// fails with EIO, not EOF, once every process has closed the slave.
	Pty *os.File
	// Security is the confinement the container got: the one asked for, with Capabilities
	// cut down to those the caller itself held (a capability nobody has cannot be given).
	Security Security

	mu     sync.Mutex
	pidfd  int // -1 once reaped; refers to exactly this process, so pid reuse never matters
	waited bool
	// launcher, when set, started the process and is its parent's voice: the process is not
	// our child, so Wait learns how it ended from there.
	launcher Launcher
	onExit   func()
}

// setupConfig is what the parent hands the setup stage over the sync socket.
type setupConfig struct {
	Protocol int      `json:"protocol"` // setupProtocol
	Name     string   `json:"name"`
	Overlay  *Overlay `json:"overlay,omitempty"`
	Hostname string   `json:"hostname"`
	Rootfs   string   `json:"rootfs"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Tty      bool     `json:"tty,omitempty"`
	Init     string   `json:"init,omitempty"`
	Security Security `json:"security"`
}

// setupReport is what the setup stage sends back when it fails before exec.
type setupReport struct {
	Error string `json:"error"`
}

const (
	// initArg0 is argv[0] of the setup stage; together with initEnv it tells Init that this
	// process is a container being set up, not a normal start of the binary.
	initArg0 = "jackfruit-init"
	// initEnv carries the number of the inherited sync socket descriptor.
	initEnv = "_JACKFRUIT_RUNTIME_INIT_FD"
	// syncFd is where the sync socket lands in the setup stage (after stdin, stdout, stderr).
	syncFd = 3
	// setupDone is the byte the setup stage sends once the container is set up, right
	// before it resolves and execs the command.
	setupDone = 0
)

// maxHostname is the kernel's limit (HOST_NAME_MAX).
const maxHostname = 64

func (s *Spec) validate() error {
	if s.Rootfs == "" {
		return errors.New("no rootfs given")
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return errors.New("no command given")
	}
	host := s.hostname()
	if host == "" {
		return errors.New("neither a hostname nor a name given")
	}
	if len(host) > maxHostname || strings.ContainsAny(host, "\x00/ \t\n") {
		return fmt.Errorf("invalid hostname %q: at most %d characters, no slash, space or NUL", host, maxHostname)
	}
	for _, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("command argument %q contains a NUL byte", a)
		}
	}
	for _, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("invalid environment entry %q: want KEY=VALUE", kv)
		}
	}
	if s.Security != nil {
		if _, err := ParseNetwork(string(s.Security.Network)); err != nil {
			return err
		}
	}
	return nil
}

// security returns the confinement to apply, with every default filled in.
func (s *Spec) security() (Security, error) {
	if s.Security == nil {
		return DefaultSecurity()
	}
	sec := *s.Security
	sec.Network, _ = ParseNetwork(string(sec.Network))
	return sec, nil
}

func (s *Spec) hostname() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	return s.Name
}

// Start creates the container and runs spec.Args in it. It returns once the command has
// been exec'd (or has failed to exec: that shows as exit code 127/126 from Wait and a message
// on Stderr). A failure of the setup itself (a missing /proc in the rootfs, a failed mount)
// is returned as an error, and the half-made container is already reaped.
func Start(spec Spec) (*Process, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("container %q: %w", spec.Name, err)
	}
	rootfs, err := filepath.Abs(spec.Rootfs)
	if err != nil {
		return nil, fmt.Errorf("container %q: rootfs %q: %w", spec.Name, spec.Rootfs, err)
	}
	if fi, err := os.Stat(rootfs); err != nil {
		return nil, fmt.Errorf("container %q: rootfs: %w", spec.Name, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("container %q: rootfs %s is not a directory", spec.Name, rootfs)
	}
	sec, err := spec.security()
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", spec.Name, err)
	}
	var overlay *Overlay
	if spec.Overlay != nil {
		o := *spec.Overlay
		if err := absOverlayPaths(&o.Lower, &o.Upper, &o.Work, &rootfs); err != nil {
			return nil, fmt.Errorf("container %q: %w", spec.Name, err)
		}
		overlay = &o
	}
	cfg, err := json.Marshal(setupConfig{
		Protocol: setupProtocol,
		Overlay:  overlay,
		Name:     spec.Name,
		Hostname: spec.hostname(),
		Rootfs:   rootfs,
		Args:     spec.Args,
		Env:      spec.Env,
		Tty:      spec.Tty,
		Init:     spec.Init,
		Security: sec,
	})
	if err != nil {
		return nil, fmt.Errorf("container %q: encoding setup config: %w", spec.Name, err)
	}

	p, syncSock, err := spawn(spec.Name, sec.Network, spec.Cgroup, spec.Stage, spec.Launcher)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", spec.Name, err)
	}
	p.Security = sec
	p.Security.Capabilities &= BoundingSet()
	// no_new_privs is inherited and can never be unset: under a unit with NoNewPrivileges=yes
	// every container has it, asked for or not, and inspect must say so.
	if inheritedNoNewPrivs() {
		p.Security.NoNewPrivileges = true
	}
	defer syncSock.Close()
	pty, err := handshake(syncSock, cfg)
	if err == nil && spec.Tty && pty == nil {
		err = errors.New("setup stage sent no pty")
	}
	if err != nil {
		if pty != nil {
			pty.Close()
		}
		// Whatever went wrong, the setup stage must not survive as a half-made container.
		_ = p.Signal(syscall.SIGKILL)
		_, _ = p.Wait()
		// A setup stage that died before it could report (say, a crash in the binary's
		// start-up) leaves its reason on stderr only.
		if tail := stderrTail(p.Stderr); tail != "" {
			err = fmt.Errorf("%w; setup stage stderr: %s", err, tail)
		}
		p.Stdout.Close()
		p.Stderr.Close()
		return nil, fmt.Errorf("container %q: %w", spec.Name, err)
	}
	p.Pty = pty
	return p, nil
}

// spawn starts the setup stage (the binary stage, or this one when nil) in new namespaces,
// as our child or through l, and returns it with the parent's end of the sync socket.
func spawn(name string, network Network, cgroup *os.File, stage *os.File, l Launcher) (p *Process, syncSock *os.File, err error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	// Non-blocking so the parent's end goes through Go's poller and honours a deadline.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sync socket: %w", err)
	}
	parentSock := os.NewFile(uintptr(fds[0]), "jackfruit-sync")
	childSock := os.NewFile(uintptr(fds[1]), "jackfruit-sync-child")
	closers = append(closers, childSock)
	// The setup stage reads its end with plain blocking reads. Fd also puts it in
	// blocking mode, and the two ends are separate open files, so the parent's stays
	// non-blocking.
	childFd := childSock.Fd()
	outR, outW, err := os.Pipe()
	if err != nil {
		parentSock.Close()
		return nil, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	closers = append(closers, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		parentSock.Close()
		outR.Close()
		return nil, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	closers = append(closers, errW)
	fail := func(err error) (*Process, *os.File, error) {
		parentSock.Close()
		outR.Close()
		errR.Close()
		return nil, nil, err
	}

	if l != nil {
		boot, err := bootSocket(childSock, outW, errW, stage)
		if err != nil {
			return fail(err)
		}
		pid, err := l.Launch(SpawnArgs(name, network), boot)
		boot.Close()
		if err != nil {
			return fail(fmt.Errorf("starting setup stage: %w", err))
		}
		// Not our child: its parent (systemd) may reap it any time. It waits for its config
		// on the sync socket, so it is alive unless it crashed; a pid reused since would not
		// hold the other end of our socket, which the handshake then finds closed.
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return fail(fmt.Errorf("pidfd_open of setup stage %d: %w", pid, err))
		}
		unix.CloseOnExec(pidfd)
		return &Process{Pid: pid, Stdout: outR, Stderr: errR, pidfd: pidfd, launcher: l}, parentSock, nil
	}

	// The setup stage replaces this with the container's own /dev/null; it only needs a
	// harmless descriptor 0 until then.
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, devNull)
	pid, pidfd, err := cloneSetup(name, network, cgroup, stagePath(stage), []uintptr{devNull.Fd(), outW.Fd(), errW.Fd(), childFd})
	if err != nil {
		return fail(err)
	}
	return &Process{Pid: pid, Stdout: outR, Stderr: errR, pidfd: pidfd}, parentSock, nil
}

// stageRuntimeEnv sizes the setup stage's Go runtime for what it is: one thread of system
// calls that lives a few milliseconds and then execs. One P instead of one per CPU, and no
// garbage collector, take ≈ 0.4 ms of CPU off every start (docs/bench.md).
var stageRuntimeEnv = []string{"GOMAXPROCS=1", "GOGC=off"}

// cloneSetup clones the setup stage (the binary at path stage) into new namespaces with
// files as its descriptors 0-3 (3 is the sync socket) and returns its pid and a pidfd of it.
func cloneSetup(name string, network Network, cgroup *os.File, stage string, files []uintptr) (pid, pidfd int, err error) {
	pidfd = -1
	cloneflags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if network == NetworkNone {
		cloneflags |= syscall.CLONE_NEWNET
	}
	attr := &syscall.ProcAttr{
		Dir: "/",
		// The setup stage builds the container's environment from the config; nothing of
		// the supervisor's environment may leak in. stageRuntimeEnv is for the stage's own
		// Go runtime, which the container's command never sees.
		Env:   append([]string{fmt.Sprintf("%s=%d", initEnv, syncFd)}, stageRuntimeEnv...),
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			// Its own session: a Ctrl-C on the supervisor's terminal must not reach containers.
			Setsid: true,
			PidFD:  &pidfd,
		},
	}
	if cgroup != nil {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = int(cgroup.Fd())
	}
	pid, err = syscall.ForkExec(stage, []string{initArg0, name}, attr)
	moveLater := false
	if cgroup != nil && (errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM)) {
		// clone3 refused: systemd's RestrictNamespaces= (jackfruit.service) makes it fail
		// with ENOSYS, as it cannot see clone3's flags. Clone as before and move the setup
		// stage before it gets its config (below): it then has run nothing of the
		// container's yet, only its own start-up is charged to our cgroup.
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = false, 0
		pidfd = -1
		pid, err = syscall.ForkExec(stage, []string{initArg0, name}, attr)
		moveLater = err == nil
	}
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return 0, -1, fmt.Errorf("starting setup stage: executing %s: %w (is /proc mounted?)", stage, err)
		}
		if cgroup != nil {
			return 0, -1, fmt.Errorf("starting setup stage in cgroup %s: %w", cgroup.Name(), err)
		}
		return 0, -1, fmt.Errorf("starting setup stage: %w", err)
	}
	if pidfd < 0 {
		// clone did not hand out a pidfd; the child is not reaped yet, so its pid cannot
		// have been reused and pidfd_open still names it.
		pidfd, err = unix.PidfdOpen(pid, 0)
		if err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, 0, nil)
			return 0, -1, fmt.Errorf("pidfd_open: %w", err)
		}
		unix.CloseOnExec(pidfd)
	}
	if moveLater {
		// Our child, not reaped yet: its pid cannot have been reused.
		if err := moveToCgroup(int(cgroup.Fd()), pid); err != nil {
			_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, 0, nil)
			unix.Close(pidfd)
			return 0, -1, fmt.Errorf("placing the setup stage in cgroup %s: %w", cgroup.Name(), err)
		}
	}
	return pid, pidfd, nil
}

// moveToCgroup moves process pid (every thread) into the cgroup v2 directory dirfd.
func moveToCgroup(dirfd, pid int) error {
	fd, err := unix.Openat(dirfd, "cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte(strconv.Itoa(pid)))
	return err
}

// bootMsg is the one byte that carries the setup stage's descriptors to the spawn stage.
const bootMsg = "j"

// bootSocket returns one end of a socket pair whose other end has already sent sync, stdout,
// stderr and the setup stage's binary when there is one (in that order) and is closed: the
// spawn stage's stdin. The binary goes along so that the spawn stage runs exactly the setup
// stage the supervisor opened, whatever an upgrade has put on disk since.
func bootSocket(sync, stdout, stderr, stage *os.File) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("boot socket: %w", err)
	}
	defer unix.Close(fds[0])
	send := []int{int(sync.Fd()), int(stdout.Fd()), int(stderr.Fd())}
	if stage != nil {
		send = append(send, int(stage.Fd()))
	}
	rights := unix.UnixRights(send...)
	if err := unix.Sendmsg(fds[0], []byte(bootMsg), rights, nil, 0); err != nil {
		unix.Close(fds[1])
		return nil, fmt.Errorf("boot socket: sending the setup stage's descriptors: %w", err)
	}
	return os.NewFile(uintptr(fds[1]), "jackfruit-boot"), nil
}

// receiveBoot takes the setup stage's descriptors (sync, stdout, stderr, and its binary if
// sent) from the boot socket on descriptor 0.
func receiveBoot() ([]int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(0, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, errors.New("stdin is not the supervisor's boot socket: this stage is started by the supervisor only")
	}
	buf := make([]byte, len(bootMsg))
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(0, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("reading the boot socket: %w", err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if string(buf[:n]) != bootMsg || len(fds) < 3 || len(fds) > 4 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("the boot socket sent %q with %d descriptors, want %q with 3 or 4", buf[:n], len(fds), bootMsg)
	}
	return fds, nil
}

// ErrNotSame means Adopt found pid, but not the process it was asked for (the pid was
// reused).
var ErrNotSame = errors.New("the pid belongs to another process now")

// Adopt returns the Process of a container init that l started earlier (for a supervisor
// that ran before this one), from its pid, with the read ends of its output pipes (either
// may be nil: that output is not read). same is asked once a pidfd pins the process, so
// that a reused pid is never taken for the container (ErrNotSame). Wait and Signal work as
// for a Process from Start; the caller sets Pty when it kept the terminal's master.
func Adopt(pid int, same func(pid int) bool, stdout, stderr io.ReadCloser, l Launcher) (*Process, error) {
	if l == nil {
		return nil, errors.New("adopt: only a process started by a Launcher can be adopted (a child of a process that is gone cannot be waited for)")
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	if !same(pid) {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt pid %d: %w", pid, ErrNotSame)
	}
	return &Process{Pid: pid, Stdout: stdout, Stderr: stderr, pidfd: fd, launcher: l}, nil
}

// SpawnVerb, as the first argument of the jackfruit CLI or of the setup-stage binary
// (jackfruit-init), makes it the spawn stage: SpawnMain with the arguments after it.
const SpawnVerb = "spawn"

// SpawnMain is the spawn stage, the first process of a container's systemd unit (`jackfruit
// spawn NAME NETWORK` or `jackfruit-init spawn NAME NETWORK`, args as SpawnArgs made them):
// it clones the setup stage and exits. systemd, the parent of the orphan, then takes it as
// the unit's main process. Both binaries serve it, so a unit can run the small one.
func SpawnMain(args []string) error {
	if os.Getenv("INVOCATION_ID") == "" {
		return errors.New("the spawn stage is the first process of a container's systemd unit, started by the supervisor; it is not for use by hand")
	}
	_, pidfd, err := SpawnSetup(args)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	unix.Close(pidfd)
	return nil
}

// SpawnArgs are the arguments a Launcher passes to SpawnSetup.
func SpawnArgs(name string, network Network) []string {
	return []string{name, string(network)}
}

// SpawnSetup is the core of the spawn stage, the first process of a container's systemd
// unit (started by a Launcher): it clones the setup stage exactly as Start does, with the
// sync socket and output pipes that came on the boot socket (stdin). It returns the setup
// stage's pid and a pidfd of it; the caller exits, which leaves systemd the parent.
func SpawnSetup(args []string) (pid, pidfd int, err error) {
	if len(args) != 2 || args[0] == "" {
		return 0, -1, fmt.Errorf("want 2 arguments (container name, network), got %q", args)
	}
	network, err := ParseNetwork(args[1])
	if err != nil {
		return 0, -1, err
	}
	fds, err := receiveBoot()
	if err != nil {
		return 0, -1, err
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, -1, err
	}
	defer devNull.Close()
	stage := "/proc/self/exe" // this binary is a setup stage too (runtime.Init)
	if len(fds) == 4 {
		stage = "/proc/self/fd/" + strconv.Itoa(fds[3])
	}
	return cloneSetup(args[0], network, nil, stage, []uintptr{devNull.Fd(), uintptr(fds[1]), uintptr(fds[2]), uintptr(fds[0])})
}

// handshake sends the config and waits until the setup stage reports the container set up
// and then execs the command (the socket is close-on-exec there, so EOF follows), or reports
// a failure.
func handshake(sock *os.File, cfg []byte) (pty *os.File, err error) {
	if err := sock.SetDeadline(time.Now().Add(SetupTimeout)); err != nil {
		return nil, fmt.Errorf("sync socket deadline: %w", err)
	}
	// A setup stage that dies before reading its config resets the connection.
	diedEarly := func(err error) bool {
		return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
	}
	errDiedEarly := errors.New("setup stage exited before reporting a result")
	if _, err := sock.Write(cfg); err != nil {
		if diedEarly(err) {
			return nil, errDiedEarly
		}
		return nil, fmt.Errorf("sending setup config: %w", err)
	}
	// Half-close so the setup stage reads the config to EOF.
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var shutErr error
	if err := rc.Control(func(fd uintptr) { shutErr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return nil, err
	}
	if shutErr != nil {
		return nil, fmt.Errorf("sync socket shutdown: %w", shutErr)
	}
	reply, fds, err := readWithFds(sock, 64<<10)
	var master *os.File
	for i, fd := range fds {
		// Only the pty master travels this way, with the "set up" byte.
		if i == 0 && len(reply) > 0 && reply[0] == setupDone {
			// Non-blocking before NewFile: reads then park in the netpoller (no thread per
			// terminal, deadlines work), and an attached client that sets O_NONBLOCK on its
			// duplicate (one open file, one set of flags) changes nothing for us.
			_ = unix.SetNonblock(fd, true)
			master = os.NewFile(uintptr(fd), "pty-master")
		} else {
			unix.Close(fd)
		}
	}
	defer func() {
		if err != nil && master != nil {
			master.Close()
		}
	}()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("setup did not finish within %v", SetupTimeout)
		}
		if diedEarly(err) {
			return nil, errDiedEarly
		}
		return nil, fmt.Errorf("reading setup result: %w", err)
	}
	if len(reply) == 0 {
		return nil, errDiedEarly
	}
	if reply[0] == setupDone {
		if len(reply) == 1 {
			return master, nil
		}
		// The last steps before exec (descriptors, signals) failed after "set up".
		reply = reply[1:]
	}
	var rep setupReport
	if err := json.Unmarshal(reply, &rep); err != nil || rep.Error == "" {
		return nil, fmt.Errorf("setup failed with an unreadable report %q", reply)
	}
	return nil, fmt.Errorf("setup failed: %s", rep.Error)
}

// stderrTail returns the last few KiB a dead setup stage wrote to stderr.
func stderrTail(r io.Reader) string {
	if f, ok := r.(*os.File); ok {
		_ = f.SetReadDeadline(time.Now().Add(time.Second))
	}
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// Signal sends sig to the container's init through its pidfd, so it can never hit another
// process that reused the pid. After Wait has reaped the process it returns os.ErrProcessDone.
// Note that init of a PID namespace only receives signals it has a handler for (SIGKILL
// always works), just as in podman without --init.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return os.ErrProcessDone
	}
	err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return os.ErrProcessDone
	}
	if err != nil {
		return fmt.Errorf("signal %s to pid %d: %w", unix.SignalName(sig), p.Pid, err)
	}
	return nil
}

// WithPidfd calls fn with the init's pidfd, which stays open until fn returns (Wait cannot
// close it meanwhile), so that another subsystem (the kernel memory monitor) can name this
// exact process without trusting its pid number. fn must not keep or close the descriptor.
// After Wait has reaped the process it returns os.ErrProcessDone without calling fn.
func (p *Process) WithPidfd(fn func(pidfd int) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return os.ErrProcessDone
	}
	return fn(p.pidfd)
}

// si_code values for SIGCHLD (include/uapi/asm-generic/siginfo.h); x/sys does not export them.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// siginfoChild is the SIGCHLD part of siginfo_t that waitid fills in.
type siginfoChild struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [100]byte
}

// OnExit sets f to run once the init has exited, before Wait asks the Launcher how it ended.
// A container's systemd unit may lose its cgroup, and with it what memory.events says about
// the death, as soon as systemd has reaped the init; f reads it first. Call it before Wait.
func (p *Process) OnExit(f func()) {
	p.mu.Lock()
	p.onExit = f
	p.mu.Unlock()
}

// Wait blocks until the container's init has exited, reaps it and returns how it ended.
// Call it once; later calls return an error. It does not close Stdout and Stderr.
func (p *Process) Wait() (Exit, error) {
	p.mu.Lock()
	if p.waited {
		p.mu.Unlock()
		return Exit{}, fmt.Errorf("pid %d: Wait called twice", p.Pid)
	}
	p.waited = true
	fd, onExit := p.pidfd, p.onExit
	p.mu.Unlock()

	if p.launcher != nil {
		err := waitExited(fd)
		p.mu.Lock()
		unix.Close(p.pidfd)
		p.pidfd = -1
		p.mu.Unlock()
		if err != nil {
			return Exit{}, fmt.Errorf("waiting for pid %d: %w", p.Pid, err)
		}
		if onExit != nil {
			onExit()
		}
		return p.launcher.Exit(p.Pid)
	}
	var info siginfoChild
	var ru unix.Rusage
	err := waitPidfd(fd, &info, &ru)
	p.mu.Lock()
	unix.Close(p.pidfd)
	p.pidfd = -1
	p.mu.Unlock()
	if err != nil {
		return Exit{}, fmt.Errorf("waiting for pid %d: %w", p.Pid, err)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	switch info.Code {
	case cldExited:
		return Exit{Code: int(info.Status), CPUTime: cpu}, nil
	case cldKilled, cldDumped:
		sig := syscall.Signal(info.Status)
		return Exit{Code: 128 + int(sig), Signal: sig, CoreDumped: info.Code == cldDumped, CPUTime: cpu}, nil
	default:
		return Exit{}, fmt.Errorf("pid %d: unexpected wait code %d", p.Pid, info.Code)
	}
}

// waitPidfd reaps the process behind pidfd. A pidfd polls readable once its process has
// exited, so the wait parks in Go's netpoller instead of holding an OS thread in a blocking
// waitid for the container's whole life (a thread costs ~50 KiB of stacks per container).
// It polls a duplicate, so the Process keeps sole ownership of fd. ru receives the reaped
// process's resource usage.
func waitPidfd(fd int, info *siginfoChild, ru *unix.Rusage) error {
	reap := func(flags int) error {
		for {
			*info = siginfoChild{}
			err := unix.Waitid(unix.P_PIDFD, fd, (*unix.Siginfo)(unsafe.Pointer(info)), unix.WEXITED|flags, ru)
			if err != unix.EINTR {
				return err
			}
		}
	}
	dfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return reap(0)
	}
	if err := unix.SetNonblock(dfd, true); err != nil {
		unix.Close(dfd)
		return reap(0)
	}
	f := os.NewFile(uintptr(dfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return reap(0)
	}
	var werr error
	if err := rc.Read(func(uintptr) bool {
		werr = reap(unix.WNOHANG)
		return werr != nil || info.Pid != 0 // WNOHANG and still running: wait for readable
	}); err != nil {
		// Not pollable after all: block, with O_NONBLOCK (shared with the dup) cleared, as
		// waitid on a non-blocking pidfd would fail with EAGAIN instead of waiting.
		_ = unix.SetNonblock(dfd, false)
		return reap(0)
	}
	return werr
}

// waitExited waits until the process behind pidfd (not our child) has exited, parked in
// Go's netpoller: a pidfd polls readable once its process is gone.
func waitExited(fd int) error {
	exited := func() (bool, error) {
		for {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			if err == unix.EINTR {
				continue
			}
			return n > 0, err
		}
	}
	dfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(dfd, true); err != nil {
		unix.Close(dfd)
		return err
	}
	f := os.NewFile(uintptr(dfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	if err := rc.Read(func(uintptr) bool {
		var gone bool
		gone, perr = exited()
		return gone || perr != nil
	}); err != nil {
		// Not pollable through the netpoller: block in poll(2) instead.
		for {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n > 0 {
				return err
			}
		}
	}
	return perr
}

// readWithFds reads sock to EOF (at most max bytes) and collects the descriptors that came
// with the data (SCM_RIGHTS), honouring sock's deadline.
func readWithFds(sock *os.File, max int) ([]byte, []int, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	var fds []int
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		var n, oobn int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			for {
				n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		}); err != nil {
			return out, fds, err
		}
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for _, m := range msgs {
					if got, err := unix.ParseUnixRights(&m); err == nil {
						fds = append(fds, got...)
					}
				}
			}
		}
		if rerr != nil {
			return out, fds, rerr
		}
		if n == 0 {
			return out, fds, nil
		}
		out = append(out, buf[:n]...)
		if len(out) > max {
			return out, fds, fmt.Errorf("setup stage sent more than %d bytes", max)
		}
	}
}
