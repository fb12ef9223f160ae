// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExecSpec describes a command to run inside a running container (`jackfruit exec`).
type ExecSpec struct {
	Args []string // argv; Args[0] is resolved inside the container using its PATH
	// Env is added to the container's environment: the defaults, the user's HOME, then the
	// container's own entries, then these (a later entry replaces an earlier one by key).
	Env []string
	// ContainerEnv is the environment the container was started with (Spec.Env).
	ContainerEnv []string
	Dir          string // working directory inside the container; "" is "/"
	// User is "", "UID", "UID:GID", "NAME" or "NAME:GROUP"; names are looked up in the
	// container's /etc/passwd and /etc/group. Empty runs as root, like the container's init.
	User string
	// Stdin, Stdout and Stderr become the process's descriptors 0, 1 and 2; nil is /dev/null.
	Stdin, Stdout, Stderr *os.File
	// Tty makes Stdin (a pty slave, see OpenPty) the controlling terminal of the process's
	// new session, so that job control and ^C work as on a login terminal.
	Tty bool
}

// execConfig is what the parent hands the exec stage over the sync socket.
type execConfig struct {
	Args         []string `json:"args"`
	Env          []string `json:"env"`
	ContainerEnv []string `json:"container_env"`
	Dir          string   `json:"dir"`
	User         string   `json:"user"`
	Tty          bool     `json:"tty"`
	Cgroup       bool     `json:"cgroup"` // execCgroupFd is open: join that cgroup
	// Security is the container's confinement (Process.Security of its init): the command
	// gets exactly the same capabilities, no_new_privs and seccomp filter.
	Security Security `json:"security"`
}

// execReport is the exec stage's answer: the pid of the started command, or why not.
type execReport struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	// Kind is "not-found" or "not-executable" for a command that cannot be run (exit codes
	// 127 and 126), "user" for a --user the container does not know, "dir" for a bad working
	// directory, "" for anything else.
	Kind string `json:"kind,omitempty"`
}

const (
	// execArg0 is argv[0] of the exec stage; with execEnv it tells Init to enter a container.
	execArg0 = "jackfruit-exec"
	execEnv  = "_JACKFRUIT_RUNTIME_EXEC_FD"
	// Descriptors of the exec stage: stdio, the sync socket, a pidfd of the container's init
	// and an O_PATH descriptor of the init's root directory.
	execSyncFd   = 3
	execPidFd    = 4
	execRootFd   = 5
	execCgroupFd = 6 // the init's cgroup v2 directory, when there is one
	maxUserSpec  = 256
)

// Errors of Exec besides ErrCommandNotFound and ErrCommandNotExecutable.
var (
	// ErrBadUser: the --user names a user or group the container does not have.
	ErrBadUser = errors.New("unknown user")
	// ErrBadDir: the working directory does not exist in the container.
	ErrBadDir = errors.New("bad working directory")
	// ErrNotRunning: the container's init has exited.
	ErrNotRunning = errors.New("container is not running")
)

// subreaper makes this process a child subreaper once (see Exec).
var subreaper struct {
	once sync.Once
	err  error
}

// Exec starts spec.Args inside the container whose init is p: in all of its namespaces,
// under its root, as spec.User, with spec's stdio. It returns once the command has been
// exec'd (its pid is then final); Wait on the returned Process gives its exit status.
// The returned Process has no Stdout and Stderr: the command writes to spec's descriptors.
//
// How: the binary is re-executed as the "exec stage" (argv[0] jackfruit-exec), which stays
// in the host's PID namespace and is never visible inside the container. On one locked OS
// thread it joins the init's mount, UTS, IPC, network, cgroup and PID namespaces through the
// init's pidfd, chroots to the init's root, looks up the user and the command there and forks
// the command, which is born inside the container's PID namespace. It reports the command's
// pid and exits; the command is then reparented to this process, which is why Exec makes
// the caller a child subreaper (PR_SET_CHILD_SUBREAPER): the command must become our child
// for Wait to reap it and learn its exit code.
func (p *Process) Exec(spec ExecSpec) (*Process, error) {
	if err := validateExec(&spec); err != nil {
		return nil, err
	}
	subreaper.once.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			subreaper.err = fmt.Errorf("becoming a child subreaper: %w", err)
		}
	})
	if subreaper.err != nil {
		return nil, subreaper.err
	}
	pidfd, root, err := p.entry()
	if err != nil {
		return nil, err
	}
	defer pidfd.Close()
	defer root.Close()
	cgroup, err := openCgroupOf(p.Pid)
	if err != nil {
		return nil, err
	}
	if cgroup != nil {
		defer cgroup.Close()
	}
	cfg, err := json.Marshal(execConfig{Args: spec.Args, Env: spec.Env, ContainerEnv: spec.ContainerEnv,
		Dir: spec.Dir, User: spec.User, Tty: spec.Tty, Cgroup: cgroup != nil, Security: p.Security})
	if err != nil {
		return nil, fmt.Errorf("encoding exec config: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("exec sync socket: %w", err)
	}
	parentSock := os.NewFile(uintptr(fds[0]), "jackfruit-exec-sync")
	defer parentSock.Close()
	childSock := os.NewFile(uintptr(fds[1]), "jackfruit-exec-sync-child")
	childFd := childSock.Fd() // blocking mode for the exec stage's plain reads
	var devNull *os.File
	stdio := []*os.File{spec.Stdin, spec.Stdout, spec.Stderr}
	for i, f := range stdio {
		if f != nil {
			continue
		}
		if devNull == nil {
			if devNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
				childSock.Close()
				return nil, err
			}
			defer devNull.Close()
		}
		stdio[i] = devNull
	}
	helperPidfd := -1
	files := []uintptr{stdio[0].Fd(), stdio[1].Fd(), stdio[2].Fd(), childFd, pidfd.Fd(), root.Fd()}
	if cgroup != nil {
		files = append(files, cgroup.Fd())
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{fmt.Sprintf("%s=%d", execEnv, execSyncFd)},
		Files: files,
		Sys:   &syscall.SysProcAttr{PidFD: &helperPidfd},
	}
	helperPid, err := syscall.ForkExec("/proc/self/exe", []string{execArg0}, attr)
	childSock.Close()
	if err != nil {
		return nil, fmt.Errorf("starting exec stage: %w", err)
	}
	helper := &Process{Pid: helperPid, pidfd: helperPidfd}
	if helperPidfd < 0 {
		if helper.pidfd, err = unix.PidfdOpen(helperPid, 0); err != nil {
			_ = unix.Kill(helperPid, unix.SIGKILL)
			var ws unix.WaitStatus
			_, _ = unix.Wait4(helperPid, &ws, 0, nil)
			return nil, fmt.Errorf("pidfd_open of the exec stage: %w", err)
		}
	}
	rep, rerr := execHandshake(parentSock, cfg)
	if rerr != nil {
		_ = helper.Signal(syscall.SIGKILL)
	}
	// Reaping the exec stage first matters: only once it is gone is the command our child.
	hexit, werr := helper.Wait()
	switch {
	case rerr != nil:
		return nil, rerr
	case werr != nil:
		return nil, fmt.Errorf("exec stage: %w", werr)
	case rep.Error != "":
		switch rep.Kind {
		case "not-found":
			return nil, fmt.Errorf("%s: %w", rep.Error, ErrCommandNotFound)
		case "not-executable":
			return nil, fmt.Errorf("%s: %w", rep.Error, ErrCommandNotExecutable)
		case "user":
			return nil, fmt.Errorf("%s: %w", rep.Error, ErrBadUser)
		case "dir":
			return nil, fmt.Errorf("%s: %w", rep.Error, ErrBadDir)
		}
		return nil, errors.New(rep.Error)
	case rep.Pid <= 0:
		return nil, fmt.Errorf("exec stage %s without reporting a pid", hexit)
	}
	cpidfd, err := unix.PidfdOpen(rep.Pid, 0)
	if err != nil {
		// It is our child (or zombie) until we reap it, so its pid cannot have been reused.
		return nil, fmt.Errorf("pidfd_open of exec'd pid %d: %w", rep.Pid, err)
	}
	unix.CloseOnExec(cpidfd)
	return &Process{Pid: rep.Pid, pidfd: cpidfd}, nil
}

// entry returns a duplicate of the init's pidfd and an O_PATH descriptor of its root
// directory, both checked to belong to the init (not to a later process reusing its pid).
func (p *Process) entry() (pidfd, root *os.File, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return nil, nil, ErrNotRunning
	}
	dfd, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("duplicating the init's pidfd: %w", err)
	}
	rfd, err := unix.Open(fmt.Sprintf("/proc/%d/root", p.Pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		// The pid named our init when we opened its root only if the init is still alive.
		if serr := unix.PidfdSendSignal(p.pidfd, 0, nil, 0); serr != nil {
			unix.Close(rfd)
			err = serr
		}
	}
	if err != nil {
		unix.Close(dfd)
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			return nil, nil, ErrNotRunning
		}
		return nil, nil, fmt.Errorf("opening the root of pid %d: %w", p.Pid, err)
	}
	return os.NewFile(uintptr(dfd), "init-pidfd"), os.NewFile(uintptr(rfd), "init-root"), nil
}

func validateExec(s *ExecSpec) error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return errors.New("no command given")
	}
	for _, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("command argument %q contains a NUL byte", a)
		}
	}
	for _, kv := range append(append([]string{}, s.ContainerEnv...), s.Env...) {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("invalid environment entry %q: want KEY=VALUE", kv)
		}
	}
	if s.Dir != "" && (!strings.HasPrefix(s.Dir, "/") || strings.IndexByte(s.Dir, 0) >= 0) {
		return fmt.Errorf("working directory %q: %w: must be an absolute path", s.Dir, ErrBadDir)
	}
	if len(s.User) > maxUserSpec || strings.ContainsAny(s.User, "\x00\n") {
		return fmt.Errorf("user %q: %w: not a user name or id", s.User, ErrBadUser)
	}
	if s.Tty && s.Stdin == nil {
		return errors.New("a terminal needs the pty's slave as stdin")
	}
	return nil
}

// execHandshake sends the config and reads the exec stage's report.
func execHandshake(sock *os.File, cfg []byte) (execReport, error) {
	if err := sock.SetDeadline(time.Now().Add(SetupTimeout)); err != nil {
		return execReport{}, fmt.Errorf("exec sync socket deadline: %w", err)
	}
	if _, err := sock.Write(cfg); err != nil {
		return execReport{}, fmt.Errorf("sending exec config: %w", err)
	}
	rc, err := sock.SyscallConn()
	if err != nil {
		return execReport{}, err
	}
	var shutErr error
	if err := rc.Control(func(fd uintptr) { shutErr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return execReport{}, err
	}
	if shutErr != nil {
		return execReport{}, fmt.Errorf("exec sync socket shutdown: %w", shutErr)
	}
	raw, err := io.ReadAll(io.LimitReader(sock, 64<<10))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return execReport{}, fmt.Errorf("entering the container did not finish within %v", SetupTimeout)
		}
		return execReport{}, fmt.Errorf("reading the exec stage's report: %w", err)
	}
	if len(raw) == 0 {
		return execReport{}, errors.New("exec stage exited before reporting a result")
	}
	var rep execReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return execReport{}, fmt.Errorf("exec stage sent an unreadable report %q", raw)
	}
	return rep, nil
}

// execInit runs the exec stage when this process is one; it never returns then.
func execInit() {
	if len(os.Args) == 0 || os.Args[0] != execArg0 {
		return
	}
	fdStr, ok := os.LookupEnv(execEnv)
	if !ok {
		return
	}
	// Before anything else: a non-dumpable process's /proc files (exe, mem, fds) are closed
	// to the container, and the forked command shares this mm until it execs. This is the
	// defence against a container overwriting the host binary (CVE-2019-5736).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if fd, err := strconv.Atoi(fdStr); err != nil || fd != execSyncFd {
		fmt.Fprintf(os.Stderr, "jackfruit: invalid %s=%q\n", execEnv, fdStr)
		os.Exit(ExitRuntimeFailure)
	}
	os.Exit(execStage(os.NewFile(execSyncFd, "jackfruit-exec-sync")))
}

// execStage enters the container and forks the command; see Process.Exec.
func execStage(sync *os.File) (code int) {
	report := func(r execReport) int {
		b, _ := json.Marshal(r)
		if _, err := sync.Write(b); err != nil {
			fmt.Fprintf(os.Stderr, "jackfruit: exec: %s\n", r.Error)
			return ExitRuntimeFailure
		}
		if r.Error != "" {
			return ExitRuntimeFailure
		}
		return 0
	}
	fail := func(kind string, err error) int { return report(execReport{Error: err.Error(), Kind: kind}) }
	defer func() {
		if r := recover(); r != nil {
			code = fail("", fmt.Errorf("exec stage panic: %v", r))
		}
	}()
	raw, err := io.ReadAll(io.LimitReader(sync, 16<<20))
	if err != nil {
		return fail("", fmt.Errorf("reading exec config: %w", err))
	}
	var cfg execConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail("", fmt.Errorf("decoding exec config: %w", err))
	}
	if cfg.Cgroup {
		// The command must be born in the container's cgroup, so that its memory and pids
		// count against the container's limits from the first instruction. clone3's
		// CLONE_INTO_CGROUP would do that for the child alone, but the container's seccomp
		// filter, installed below before the fork, refuses clone3 (ENOSYS: the filter cannot
		// see clone3's flags). So the exec stage joins the cgroup itself, first, while it is
		// still in the host's cgroup namespace, and forks with plain clone. Its own few
		// threads and pages count against the container for its short life.
		if err := joinCgroup(execCgroupFd); err != nil {
			return fail("", err)
		}
	}
	// Namespaces, root and credentials below belong to this OS thread only; the command is
	// forked from it and inherits them. The thread is never unlocked: it ends with the process.
	goruntime.LockOSThread()
	if err := enterContainer(); err != nil {
		return fail("", err)
	}
	id, err := lookupUser(cfg.User)
	if err != nil {
		return fail("user", err)
	}
	env := buildEnv(append(append(id.env(), cfg.ContainerEnv...), cfg.Env...))
	dir := cfg.Dir
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil {
		return fail("dir", fmt.Errorf("working directory %s: %w", dir, err))
	} else if !fi.IsDir() {
		return fail("dir", fmt.Errorf("working directory %s is not a directory", dir))
	}
	path, err := ResolveCommand("/", cfg.Args, env)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && errors.Is(err, ErrCommandNotExecutable) {
			return fail("not-executable", err)
		}
		return fail("not-found", err)
	}
	if err := closeOnExecFrom(execSyncFd); err != nil {
		return fail("", err)
	}
	// Dispositions the supervisor ignores (SIGPIPE under systemd) would survive the fork and
	// exec; the command gets the defaults, as the container's init does.
	if err := resetSignals(); err != nil {
		return fail("", err)
	}
	// Last: the command is confined exactly as the container's init (capabilities in every
	// set, no_new_privs, the seccomp filter). All of it is per thread and inherited by the
	// child this locked thread forks; the filter allows the fork, setuid and execve.
	if err := confine(cfg.Security); err != nil {
		return fail("", err)
	}
	sys := &syscall.SysProcAttr{Setsid: true, Setctty: cfg.Tty, Ctty: 0}
	if id.set {
		sys.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}
	}
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
		Dir: dir, Env: env, Files: []uintptr{0, 1, 2}, Sys: sys,
	})
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return fail("not-found", fmt.Errorf("exec %q: %v (is its interpreter or dynamic loader missing?)", path, err))
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
			return fail("not-executable", fmt.Errorf("exec %q: %w", path, err))
		}
		return fail("", fmt.Errorf("exec %q: %w", path, err))
	}
	return report(execReport{Pid: pid})
}

// enterContainer moves the calling (locked) thread into the namespaces and root of the
// container whose init's pidfd and root are the inherited descriptors execPidFd and execRootFd.
func enterContainer() error {
	// setns(CLONE_NEWNS) refuses a thread that shares its fs_struct (root, cwd) with others,
	// and every Go thread does.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	// One setns through the pidfd joins them all at once (Linux 5.8). The PID namespace
	// applies to children only, which is why the command is forked, not exec'd. Not
	// CLONE_NEWCGROUP: a container has no cgroup namespace of its own, and under
	// jackfruit.service's RestrictNamespaces= (no "cgroup") systemd's filter refuses any
	// setns naming it with EPERM.
	flags := unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET |
		unix.CLONE_NEWPID
	if err := unix.Setns(execPidFd, flags); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("joining the container's namespaces: %w", err)
	}
	// setns leaves us at the root of the mount namespace; the init's root may be below it
	// (a container on an initramfs host is chrooted, not pivoted), so take the init's own.
	if err := unix.Fchdir(execRootFd); err != nil {
		return fmt.Errorf("entering the container's root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot to the container's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// joinCgroup moves this whole process (every thread) into the cgroup v2 directory dirfd.
func joinCgroup(dirfd int) error {
	fd, err := unix.Openat(dirfd, "cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("joining the container's cgroup: %w", err)
	}
	defer unix.Close(fd)
	// "0" is the writing process itself.
	if _, err := unix.Write(fd, []byte("0")); err != nil {
		return fmt.Errorf("joining the container's cgroup: %w", err)
	}
	return nil
}

// openCgroupOf opens the cgroup v2 directory of pid (the "0::" line of /proc/PID/cgroup under
// the host's cgroup2 mount), or returns nil when there is no cgroup2 hierarchy to join (a
// host with cgroup v1 only).
func openCgroupOf(pid int) (*os.File, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("reading the cgroup of pid %d: %w", pid, err)
	}
	var rel string
	found := false
	for _, line := range strings.Split(string(raw), "\n") {
		if r, ok := strings.CutPrefix(line, "0::"); ok {
			rel, found = r, true
			break
		}
	}
	mount := cgroup2Mount()
	if !found || mount == "" {
		return nil, nil
	}
	f, err := os.OpenFile(filepath.Join(mount, filepath.Clean("/"+rel)), os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the cgroup %s of pid %d: %w", rel, pid, err)
	}
	return f, nil
}

// cgroup2Mount returns where this process sees the cgroup2 hierarchy ("" when nowhere).
func cgroup2Mount() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(after, "cgroup2 ") {
			continue
		}
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT ...; only a mount of the hierarchy's root maps
		// /proc/PID/cgroup paths directly.
		f := strings.Fields(line)
		if len(f) >= 5 && f[3] == "/" {
			return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(f[4])
		}
	}
	return ""
}
