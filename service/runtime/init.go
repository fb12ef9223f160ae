// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service/runtime/seccomp"
)

// Init must be the first call in main() of every binary that calls Start or Exec. In a
// normal start it returns at once. In the container setup stage (the binary re-executed by
// Start inside the new namespaces) it sets up the container and execs the user's command,
// and in the exec stage (re-executed by Exec) it enters a running container and starts a
// command there; it never returns in either.
func Init() {
	execInit()
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return
	}
	fdStr, ok := os.LookupEnv(initEnv)
	if !ok {
		return
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd != syncFd {
		fmt.Fprintf(os.Stderr, "jackfruit: invalid %s=%q\n", initEnv, fdStr)
		os.Exit(ExitRuntimeFailure)
	}
	// Executed as /proc/self/fd/N (or /proc/self/exe), the process would be called "N" (or
	// "exe") in ps, top and perf until it execs the command.
	name := []byte(initArg0 + "\x00")
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	os.Exit(setupStage(os.NewFile(uintptr(fd), "jackfruit-sync")))
}

// setupStage runs as PID 1 of the new namespaces. Everything up to the exec is reported to
// the parent over sync; from the exec on, failures are the container's own (exit 126/127 with
// a message on its stderr), as with any command that cannot be run.
func setupStage(sync *os.File) (code int) {
	fail := func(err error) int {
		b, _ := json.Marshal(setupReport{Error: err.Error()})
		if _, werr := sync.Write(b); werr != nil {
			// The parent is gone or not listening; stderr is the only place left.
			fmt.Fprintf(os.Stderr, "jackfruit: container setup failed: %v\n", err)
		}
		return ExitRuntimeFailure
	}
	defer func() {
		// A bug here must still come back as a setup error, not as a mystery exit code.
		if r := recover(); r != nil {
			code = fail(fmt.Errorf("setup stage panic: %v", r))
		}
	}()

	raw, err := io.ReadAll(io.LimitReader(sync, 16<<20))
	if err != nil {
		return fail(fmt.Errorf("reading setup config: %w", err))
	}
	var cfg setupConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail(fmt.Errorf("decoding setup config: %w", err))
	}
	if cfg.Protocol < minSetupProtocol || cfg.Protocol > setupProtocol {
		return fail(fmt.Errorf("the setup stage (%s) speaks setup protocols %d to %d, the supervisor %d: they are from different builds; install or build them together (make build)",
			StageName, minSetupProtocol, setupProtocol, cfg.Protocol))
	}
	// Capabilities, no_new_privs, the seccomp filter and the signal mask are all per thread
	// and survive exec only on the thread that execs: from here to the exec this goroutine
	// owns its thread, and every one of them is set on it.
	goruntime.LockOSThread()
	if err := setupContainer(&cfg); err != nil {
		return fail(err)
	}
	// Last before "set up": from here on the process holds only what the container keeps,
	// and a failure is still reported as a setup failure.
	if err := confine(cfg.Security); err != nil {
		return fail(err)
	}
	// Tell the parent the container is set up; the EOF that follows when exec closes the
	// socket then means "exec'd", and an EOF without this byte means we died unreported.
	// With a terminal, the pty master goes to the parent with the same byte.
	var rights []byte
	if cfg.Tty {
		master, err := setupTty()
		if err != nil {
			return fail(err)
		}
		rights = unix.UnixRights(master)
		defer unix.Close(master)
	}
	if err := unix.Sendmsg(int(sync.Fd()), []byte{setupDone}, rights, nil, 0); err != nil {
		return fail(fmt.Errorf("reporting setup done: %w", err))
	}
	env := buildEnv(cfg.Env)
	// From here on the container exists; what follows is the command's own failure.
	path, err := ResolveCommand("/", cfg.Args, env)
	if err != nil {
		var ce *CommandError
		fmt.Fprintf(os.Stderr, "jackfruit: %v\n", err)
		if errors.As(err, &ce) {
			return ce.ExitCode()
		}
		return ExitCommandNotFound
	}
	if err := closeOnExecFrom(3); err != nil {
		return fail(err)
	}
	// The signal mask is per thread and survives exec: this is the locked thread that execs.
	if err := resetSignals(); err != nil {
		return fail(err)
	}
	argv := cfg.Args
	if cfg.Init != "" {
		// The init finds the command in PATH as we just did, and runs it as its child.
		path, argv = InitPath, append([]string{InitPath, "--"}, cfg.Args...)
	}
	err = unix.Exec(path, argv, env)
	// Exec only returns on failure. ENOENT after a successful lookup means the file's
	// interpreter or dynamic loader is missing from the rootfs.
	if errors.Is(err, unix.ENOENT) {
		fmt.Fprintf(os.Stderr, "jackfruit: exec %q: %v (is its interpreter or dynamic loader missing from the rootfs?)\n", path, err)
		return ExitCommandNotFound
	}
	fmt.Fprintf(os.Stderr, "jackfruit: exec %q: %v\n", path, err)
	return ExitCommandNotExecutable
}

// buildEnv returns defaultEnv with the entries of env added, a later entry replacing an
// earlier one with the same key.
func buildEnv(env []string) []string {
	out := make([]string, 0, len(defaultEnv)+len(env))
	index := map[string]int{}
	for _, kv := range append(append([]string{}, defaultEnv...), env...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// setupContainer turns this process's fresh namespaces into the container: it runs with the
// mount namespace still a copy of the host's and leaves "/" being the container's rootfs.
func setupContainer(cfg *setupConfig) error {
	// Modes below are meant literally, not filtered by the supervisor's umask.
	unix.Umask(0)
	// The copy of the host's mounts is still shared with the host: make it private before
	// touching anything, or our mounts would appear on the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// The container's overlay exists in this mount namespace only (Spec.Overlay).
	if cfg.Overlay != nil {
		if err := mountOverlay(*cfg.Overlay, cfg.Rootfs); err != nil {
			return err
		}
	}
	// pivot_root needs the new root to be a mount point; a recursive bind of the rootfs onto
	// itself makes it one and keeps any mounts the rootfs already has beneath it.
	if err := unix.Mount(cfg.Rootfs, cfg.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting rootfs %s: %w", cfg.Rootfs, err)
	}
	// The init binary is a host file: take a detached bind mount of it (open_tree) before
	// the host's tree goes away; a bind from a path of the detached old root would fail.
	initFd := -1
	if cfg.Init != "" {
		fd, err := unix.OpenTree(unix.AT_FDCWD, cfg.Init, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("init binary %s: %w", cfg.Init, err)
		}
		initFd = fd
		defer unix.Close(initFd)
	}
	if err := pivotRoot(cfg.Rootfs); err != nil {
		return err
	}
	// The root and any mounts the rootfs brought get nodev now, in one call, before anything
	// else is mounted: every mount below asks for nodev itself, except those that must work
	// as devices (devpts, the allowed nodes, the /dev/null masks; mountAllNodev says why).
	nodev, err := nodevRoot()
	if err != nil {
		return err
	}
	// From here on every path is inside the container, so symlinks in the rootfs cannot
	// point our mounts at host directories.
	if err := mountProc(cfg.Rootfs); err != nil {
		return err
	}
	if err := setupDev(cfg.Rootfs); err != nil {
		return err
	}
	if initFd >= 0 {
		if err := mountInit(initFd); err != nil {
			return err
		}
	}
	if err := mountSys(); err != nil {
		return err
	}
	if err := protectKernelFiles(); err != nil {
		return err
	}
	if !nodev {
		// Without mount_setattr: last of the mounts, the same for every mount made above.
		if err := mountAllNodev(); err != nil {
			return err
		}
	}
	if cfg.Security.Network == NetworkNone {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("setting hostname %q: %w", cfg.Hostname, err)
	}
	// stdin was the host's /dev/null; use the container's own so /proc/self/fd/0 reads
	// "/dev/null" inside.
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/null: %w", err)
	}
	if err := unix.Dup3(null, 0, 0); err != nil {
		return fmt.Errorf("stdin from /dev/null: %w", err)
	}
	unix.Close(null)
	unix.Umask(0o022)
	return nil
}

// pivotRoot makes rootfs "/" and detaches the old root entirely, read-only.
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("entering rootfs %s: %w", rootfs, err)
	}
	// This namespace's copy of the host's tree, held across the pivot (see readOnlyTree).
	old, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the host's root: %w", err)
	}
	defer unix.Close(old)
	// pivot_root(".", ".") stacks the old root on top of the new one at "/", which needs no
	// directory for it inside the rootfs (so a read-only rootfs works); unmounting the top
	// of the stack then drops the old root.
	err = unix.PivotRoot(".", ".")
	switch {
	case errors.Is(err, unix.EINVAL) && hostRootIsInitramfs():
		// The initial ramfs cannot be pivoted away from (it has no parent mount). Do what
		// switch_root does instead: move the rootfs over "/" and chroot into it. The old
		// root stays underneath, unreachable by path.
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving rootfs %s over the initramfs root: %w", rootfs, err)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("chroot into %s: %w", rootfs, err)
		}
	case err != nil:
		return fmt.Errorf("pivot_root into %s: %w", rootfs, err)
	default:
		// Now that the new root is no longer part of the old tree.
		if err := readOnlyTree(old); err != nil {
			return err
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detaching the old root: %w", err)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// readOnlyTree makes every mount of the tree at fd read-only, in this mount namespace only
// (the copies of the host's mounts that clone gave the container; the host's own are other
// mounts and stay as they are). Detached, the old root is out of reach by path, but a
// descriptor of it that leaked into the container (the runc CVE-2024-21626 class of bug)
// would still lead there; read-only, such a leak writes nothing on the host. This is the
// defence in depth that ProtectSystem= gave a container of jackfruit.service's, for every
// container, in a unit of its own or not, for one system call (units/jackfruit.service).
func readOnlyTree(fd int) error {
	// Before Linux 5.12 there is no recursive change: the detach alone has to do.
	if _, err := setTreeAttr(fd, "", unix.AT_EMPTY_PATH, unix.MOUNT_ATTR_RDONLY); err != nil {
		return fmt.Errorf("making the host's mounts read-only before detaching them: %w", err)
	}
	return nil
}

// setTreeAttr sets the mount attributes attr on the mount at dirfd/path and every mount
// beneath it, keeping their other attributes. It reports false, and no error, on kernels
// without mount_setattr (before 5.12).
func setTreeAttr(dirfd int, path string, flags int, attr uint64) (bool, error) {
	a := unix.MountAttr{Attr_set: attr}
	err := unix.MountSetattr(dirfd, path, uint(flags)|unix.AT_RECURSIVE, &a)
	if errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return err == nil, err
}

// hostRootIsInitramfs reports whether "/" is the kernel's initial rootfs (ramfs or tmpfs
// without a parent mount), which pivot_root refuses to move.
func hostRootIsInitramfs() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE ...
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		_, after, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		rest := strings.Fields(after)
		return len(rest) >= 2 && rest[1] == "rootfs" && (rest[0] == "rootfs" || rest[0] == "ramfs" || rest[0] == "tmpfs")
	}
	return false
}

// mountPoint checks that the container path p is a real directory to mount on, creating it
// when the rootfs lacks it: a directory holding just a static binary is a valid rootfs (the
// issue asks only for the command to be in it), and podman, crun and runc create missing
// mount points the same way. Only a rootfs that cannot take the directory (read-only) fails.
// rootfs is the host path, only for the message.
func mountPoint(p, rootfs string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("rootfs %s: %s: %w", rootfs, p, err)
		}
		merr := unix.Mkdir(p, 0o755)
		if merr == nil {
			return nil
		}
		return fmt.Errorf("rootfs %s has no %s directory and it cannot be created (%v); create it: mkdir %s%s", rootfs, p, merr, rootfs, p)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("rootfs %s: %s is not a directory", rootfs, p)
	}
	return nil
}

func mountProc(rootfs string) error {
	if err := mountPoint("/proc", rootfs); err != nil {
		return err
	}
	// A new proc instance shows only this PID namespace's processes.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	return nil
}

// setupDev mounts a nodev tmpfs on /dev holding only the allowed device nodes, a private
// devpts, /dev/shm, /dev/mqueue and the usual /proc/self/fd symlinks: no host disks or
// consoles.
//
// The /dev tmpfs is nodev, so a node the container makes there with mknod (it keeps
// CAP_MKNOD, as in the OCI default) cannot be opened. The allowed nodes are created on a
// separate, short-lived tmpfs without nodev and each is bind-mounted onto /dev/NAME: a bind
// mount keeps the flags of the mount it came from, so these nodes work. That staging tmpfs is
// then detached, so nothing the container can reach both allows device nodes and is writable.
// The container cannot undo any of it: mount and umount need CAP_SYS_ADMIN.
func setupDev(rootfs string) error {
	if err := mountPoint("/dev", rootfs); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mounting tmpfs on /dev: %w", err)
	}
	if err := bindDeviceNodes(); err != nil {
		return err
	}
	type mnt struct {
		dir, fstype, data string
		mode              uint32
		flags             uintptr
	}
	for _, m := range []mnt{
		// newinstance: the container's ptys are its own, not the host's. devpts holds only
		// pty nodes and refuses mknod, so it alone stays without nodev.
		{"/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755, unix.MS_NOSUID | unix.MS_NOEXEC},
		{"/dev/shm", "tmpfs", "mode=1777,size=65536k", 0o1777, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"/dev/mqueue", "mqueue", "", 0o755, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	} {
		if err := unix.Mkdir(m.dir, m.mode); err != nil {
			return fmt.Errorf("creating %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	for _, l := range [][2]string{
		{"pts/ptmx", "/dev/ptmx"},
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	} {
		if err := unix.Symlink(l[0], l[1]); err != nil {
			return fmt.Errorf("creating %s: %w", l[1], err)
		}
	}
	return nil
}

// bindDeviceNodes creates the allowed nodes on a staging tmpfs that permits devices, binds
// each onto an empty file in the nodev /dev, and detaches the staging tmpfs again.
func bindDeviceNodes() error {
	const staging = "/dev/.jackfruit-nodes"
	if err := unix.Mkdir(staging, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", staging, err)
	}
	if err := unix.Mount("tmpfs", staging, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=700,size=4k"); err != nil {
		return fmt.Errorf("mounting the device staging tmpfs: %w", err)
	}
	for _, d := range devices {
		src, dst := staging+"/"+d.name, "/dev/"+d.name
		if err := unix.Mknod(src, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("creating %s: %w", dst, err)
		}
		fd, err := unix.Open(dst, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return fmt.Errorf("creating mount point %s: %w", dst, err)
		}
		unix.Close(fd)
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", dst, err)
		}
	}
	if err := unix.Unmount(staging, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the device staging tmpfs: %w", err)
	}
	if err := unix.Rmdir(staging); err != nil {
		return fmt.Errorf("removing %s: %w", staging, err)
	}
	return nil
}

// nodevRoot adds nodev to the root and every mount beneath it, keeping each one's other
// flags, and reports whether it could: false on kernels without mount_setattr (before 5.12),
// where mountAllNodev does it by remounting each mount instead.
func nodevRoot() (bool, error) {
	ok, err := setTreeAttr(unix.AT_FDCWD, "/", 0, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return false, fmt.Errorf("making the container's root nodev: %w", err)
	}
	return ok, nil
}

// mountAllNodev adds nodev to every mount of the container that lacks it (the rootfs and any
// mounts under it, whatever their origin), keeping each one's other flags. Only devpts and
// mounts whose root is a character device (the allowed nodes and the /dev/null masks, all
// made by setupDev and protectKernelFiles) keep working device nodes. Where the container has
// no device cgroup this is what makes a node it creates with mknod useless: open fails with
// EACCES on a nodev mount, and without CAP_SYS_ADMIN no mount can be remounted or added.
func mountAllNodev() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		f := strings.Fields(line)
		before, after, ok := strings.Cut(line, " - ")
		if len(f) < 6 || !ok {
			continue
		}
		if rest := strings.Fields(after); len(rest) > 0 && rest[0] == "devpts" {
			continue
		}
		mp := UnescapeMountinfo(strings.Fields(before)[4])
		var flags uintptr = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NODEV
		nodev := false
		for _, o := range strings.Split(strings.Fields(before)[5], ",") {
			switch o {
			case "nodev":
				nodev = true
			case "ro":
				flags |= unix.MS_RDONLY
			case "nosuid":
				flags |= unix.MS_NOSUID
			case "noexec":
				flags |= unix.MS_NOEXEC
			}
		}
		if nodev {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(mp, &st); err != nil {
			return fmt.Errorf("nodev for %s: %w", mp, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR {
			continue
		}
		// Without an atime flag a remount keeps the mount's atime mode.
		if err := unix.Mount("", mp, "", flags, ""); err != nil {
			return fmt.Errorf("remounting %s nodev: %w", mp, err)
		}
	}
	return nil
}

// UnescapeMountinfo undoes mountinfo's octal escapes (\040 for a space and so on).
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopbackUp brings up "lo" in the container's own network namespace (--network none), so
// programs that talk to 127.0.0.1 work; it is the only interface there.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing up lo: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: reading flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

// mountSys mounts a read-only sysfs when the rootfs has a /sys directory; unlike /proc and
// /dev it is optional, as many small images have no use for it.
func mountSys() error {
	var st unix.Stat_t
	if err := unix.Lstat("/sys", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("sysfs", "/sys", "sysfs", flags, ""); err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	return nil
}

// protectKernelFiles makes readonlyPaths read-only and hides maskedPaths: a file under
// /dev/null, a directory under an empty read-only tmpfs. Paths this kernel lacks are skipped.
func protectKernelFiles() error {
	for _, p := range readonlyPaths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("making %s read-only: %w", p, err)
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount(p, p, "", flags, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", p, err)
		}
	}
	for _, p := range maskedPaths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			continue
		}
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=755")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	return nil
}

// confine drops everything the container may not keep, on the calling (locked, exec'ing)
// thread: the ambient set is cleared, the bounding set cut down to sec.Capabilities,
// no_new_privs set when asked, the seccomp filter installed, and the permitted, effective and
// inheritable sets made the same capabilities. Order matters: dropping from the bounding set
// needs CAP_SETPCAP, and installing a filter without no_new_privs needs CAP_SYS_ADMIN, so
// capset comes last (the filter allows it, as it allows everything up to the execve). On
// exec the kernel recomputes the sets; for a root process it keeps permitted = effective =
// inheritable | bounding, which is exactly sec.Capabilities.
func confine(sec Security) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: a kernel before 4.3 has no ambient set to clear.
		return fmt.Errorf("clearing the ambient capabilities: %w", err)
	}
	for c := Cap(0); c < 64; c++ {
		if sec.Capabilities.Has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("dropping %s from the bounding set: %w", c, err)
		}
	}
	if sec.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	// The floor first: the container's own filter must pass it too (seccomp is allowed), and
	// both filters then judge every call, the stricter verdict winning.
	for _, blob := range [][]byte{sec.Floor, sec.Seccomp} {
		if len(blob) == 0 {
			continue
		}
		f, err := seccomp.Unmarshal(blob)
		if err != nil {
			return fmt.Errorf("seccomp filter: %w", err)
		}
		// TSYNC: every thread of this Go process gets it, not only this one.
		if err := f.Install(); err != nil {
			return err
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	// What the supervisor itself lacks cannot be granted; Start reports the intersection.
	held := CapSet(data[0].Permitted) | CapSet(data[1].Permitted)<<32
	keep := sec.Capabilities & held
	for i := range data {
		v := uint32(keep >> (32 * i))
		data[i] = unix.CapUserData{Effective: v, Permitted: v, Inheritable: v}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities %s: %w", keep, err)
	}
	return nil
}

// resetSignals gives the command default dispositions for every signal and an empty signal
// mask. exec resets handled signals by itself, but ignored ones stay ignored: a supervisor
// run by systemd (IgnoreSIGPIPE=yes) or under nohup would otherwise pass SIG_IGN for SIGPIPE
// or SIGHUP on to every container.
func resetSignals() error {
	// An all-zero struct sigaction is SIG_DFL with no flags and an empty mask, whatever the
	// architecture's field order.
	var dfl [4]uint64
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
		// 32 and 33 are reserved by the C library's threads; the kernel may refuse them.
		if errno != 0 && errno != unix.EINVAL {
			return fmt.Errorf("resetting signal %d: %w", sig, errno)
		}
	}
	var empty unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &empty, nil); err != nil {
		return fmt.Errorf("clearing the signal mask: %w", err)
	}
	return nil
}

// closeOnExecFrom marks every descriptor >= lowfd close-on-exec, so the command starts with
// exactly stdin, stdout and stderr whatever the setup stage's Go runtime opened.
func closeOnExecFrom(lowfd int) error {
	// close_range(CLOSE_RANGE_CLOEXEC) (Linux 5.11) does it in one call.
	if err := unix.CloseRange(uint(lowfd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing open descriptors: %w", err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= lowfd {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// setupTty allocates a pty in the container's own devpts (mounted by setupDev), makes its
// slave descriptors 0, 1 and 2 and the controlling terminal of this session (the setup stage
// is a session leader), and returns the master for the parent.
func setupTty() (int, error) {
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /dev/pts/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, fmt.Errorf("unlocking the pty: %w", err)
	}
	slave, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(master)
		return -1, fmt.Errorf("opening the pty's slave: %w", errno)
	}
	defer unix.Close(int(slave))
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(slave), fd, 0); err != nil {
			unix.Close(master)
			return -1, fmt.Errorf("pty as descriptor %d: %w", fd, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		unix.Close(master)
		return -1, fmt.Errorf("making the pty the controlling terminal: %w", err)
	}
	return master, nil
}

// mountInit attaches the detached bind mount of the init binary (from open_tree) read-only at
// InitPath, on the container's own /dev tmpfs.
func mountInit(fd int) error {
	f, err := unix.Open(InitPath, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o755)
	if err != nil {
		return fmt.Errorf("creating %s: %w", InitPath, err)
	}
	unix.Close(f)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, InitPath, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting the init at %s: %w", InitPath, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", InitPath, "", flags, ""); err != nil {
		return fmt.Errorf("making %s read-only: %w", InitPath, err)
	}
	return nil
}
