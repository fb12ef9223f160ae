// SPDX-License-Identifier: Apache-2.0

// Command jfprobe makes one privileged system call from inside a container and prints how it
// went: "ok", or the errno's name ("EPERM", "EACCES", ...). The isolation tests run it in the
// test rootfs, where busybox cannot make these calls directly or reports only a message. A
// probe that cannot even try (bad arguments) exits 2, so a test never mistakes a usage error
// for a refusal.
//
//	jfprobe mount FSTYPE SOURCE TARGET      mount(2) a filesystem
//	jfprobe remount-rw PATH                 bind-remount PATH read-write (per-mount flags)
//	jfprobe remount-sb-rw PATH              remount PATH's filesystem read-write (superblock)
//	jfprobe umount PATH                     umount2(2) with MNT_DETACH
//	jfprobe write PATH DATA                 open O_WRONLY and write DATA
//	jfprobe read PATH                       open O_RDONLY and read 512 bytes
//	jfprobe mknod PATH b|c MAJOR MINOR      mknod(2) a device node
//	jfprobe syslog                          syslog(2) SYSLOG_ACTION_READ_ALL (what dmesg does)
//	jfprobe init-module                     init_module(2) with an empty image
//	jfprobe keyctl                          keyctl(2) KEYCTL_JOIN_SESSION_KEYRING
//	jfprobe add-key                         add_key(2) a user key to the process keyring
//	jfprobe ptrace PID                      ptrace(2) PTRACE_SEIZE of PID
//	jfprobe ptrace-child                    PTRACE_SEIZE of a child it starts (sleep 10)
//	jfprobe bpf                             bpf(2) BPF_PROG_LOAD of a two-instruction kprobe program
//	jfprobe raw-socket                      socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
//	jfprobe bind-tcp PORT                   bind a TCP socket to 0.0.0.0:PORT
//	jfprobe link-down IFACE                 clear IFF_UP on IFACE (needs CAP_NET_ADMIN)
//	jfprobe sethostname NAME                sethostname(2)
//	jfprobe chroot DIR                      chroot(2)
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage("no probe given")
	}
	err := probe(os.Args[1], os.Args[2:])
	var ue usageErr
	switch {
	case errors.As(err, &ue):
		usage(string(ue))
	case err == nil:
		fmt.Println("ok")
	default:
		var errno unix.Errno
		if errors.As(err, &errno) {
			fmt.Println(unix.ErrnoName(errno))
			return
		}
		fmt.Fprintf(os.Stderr, "jfprobe %s: %v\n", os.Args[1], err)
		os.Exit(3)
	}
}

type usageErr string

func (u usageErr) Error() string { return string(u) }

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "jfprobe: %s (see the command's doc comment for the probes)\n", msg)
	os.Exit(2)
}

func need(args []string, n int, what string) error {
	if len(args) != n {
		return usageErr(fmt.Sprintf("want %d arguments: %s", n, what))
	}
	return nil
}

func probe(name string, args []string) error {
	switch name {
	case "mount":
		if err := need(args, 3, "FSTYPE SOURCE TARGET"); err != nil {
			return err
		}
		return unix.Mount(args[1], args[2], args[0], 0, "")
	case "remount-rw":
		if err := need(args, 1, "PATH"); err != nil {
			return err
		}
		return unix.Mount("", args[0], "", unix.MS_REMOUNT|unix.MS_BIND, "")
	case "remount-sb-rw":
		if err := need(args, 1, "PATH"); err != nil {
			return err
		}
		return unix.Mount("", args[0], "", unix.MS_REMOUNT, "")
	case "umount":
		if err := need(args, 1, "PATH"); err != nil {
			return err
		}
		return unix.Unmount(args[0], unix.MNT_DETACH)
	case "write":
		if err := need(args, 2, "PATH DATA"); err != nil {
			return err
		}
		fd, err := unix.Open(args[0], unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte(args[1]))
		return err
	case "read":
		if err := need(args, 1, "PATH"); err != nil {
			return err
		}
		fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Read(fd, make([]byte, 512))
		return err
	case "mknod":
		if err := need(args, 4, "PATH b|c MAJOR MINOR"); err != nil {
			return err
		}
		mode := uint32(unix.S_IFBLK)
		switch args[1] {
		case "b":
		case "c":
			mode = unix.S_IFCHR
		default:
			return usageErr("type must be b or c")
		}
		maj, err1 := strconv.ParseUint(args[2], 10, 32)
		min, err2 := strconv.ParseUint(args[3], 10, 32)
		if err1 != nil || err2 != nil {
			return usageErr("MAJOR and MINOR must be numbers")
		}
		return unix.Mknod(args[0], mode|0o600, int(unix.Mkdev(uint32(maj), uint32(min))))
	case "syslog":
		_, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, make([]byte, 4096))
		return err
	case "init-module":
		// An empty image: with CAP_SYS_MODULE the kernel would refuse it as malformed
		// (ENOEXEC/EINVAL/ENOSYS), so EPERM can only come from the permission check.
		param := []byte{0}
		img := []byte{0}
		_, _, errno := unix.Syscall(unix.SYS_INIT_MODULE, uintptr(unsafe.Pointer(&img[0])), 0, uintptr(unsafe.Pointer(&param[0])))
		return errnoOrNil(errno)
	case "keyctl":
		_, err := unix.KeyctlJoinSessionKeyring("jfprobe")
		return err
	case "add-key":
		_, err := unix.AddKey("user", "jfprobe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	case "ptrace":
		if err := need(args, 1, "PID"); err != nil {
			return err
		}
		pid, err := strconv.Atoi(args[0])
		if err != nil {
			return usageErr("PID must be a number")
		}
		return seize(pid)
	case "ptrace-child":
		cmd := exec.Command("/bin/sleep", "10")
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting the child: %w", err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		return seize(cmd.Process.Pid)
	case "bpf":
		return bpfProgLoad()
	case "raw-socket":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "bind-tcp":
		if err := need(args, 1, "PORT"); err != nil {
			return err
		}
		port, err := strconv.Atoi(args[0])
		if err != nil {
			return usageErr("PORT must be a number")
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		return unix.Bind(fd, &unix.SockaddrInet4{Port: port})
	case "link-down":
		if err := need(args, 1, "IFACE"); err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq(args[0])
		if err != nil {
			return usageErr(err.Error())
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return err
		}
		ifr.SetUint16(ifr.Uint16() &^ unix.IFF_UP)
		return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
	case "sethostname":
		if err := need(args, 1, "NAME"); err != nil {
			return err
		}
		return unix.Sethostname([]byte(args[0]))
	case "chroot":
		if err := need(args, 1, "DIR"); err != nil {
			return err
		}
		return unix.Chroot(args[0])
	}
	return usageErr(fmt.Sprintf("unknown probe %q", name))
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// seize attaches to pid without stopping it; the tracee is released when jfprobe exits.
func seize(pid int) error {
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0)
	return errnoOrNil(errno)
}

// bpfProgLoad loads "r0 = 0; exit" as a kprobe program. Only socket filter and cgroup skb
// programs may be loaded without CAP_BPF/CAP_SYS_ADMIN; the kernel checks that before it
// looks at the program, so EPERM is the permission check.
func bpfProgLoad() error {
	insns := [2]uint64{
		0x00000000000000b7, // BPF_ALU64|BPF_MOV|BPF_K r0 = 0
		0x0000000000000095, // BPF_JMP|BPF_EXIT
	}
	license := []byte("GPL\x00")
	// union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
	// log_size, log_buf, kern_version, ...
	var attr [128]byte
	put32 := func(off int, v uint32) { *(*uint32)(unsafe.Pointer(&attr[off])) = v }
	put64 := func(off int, v uint64) { *(*uint64)(unsafe.Pointer(&attr[off])) = v }
	const bpfProgTypeKprobe = 2
	put32(0, bpfProgTypeKprobe)
	put32(4, uint32(len(insns)))
	put64(8, uint64(uintptr(unsafe.Pointer(&insns[0]))))
	put64(16, uint64(uintptr(unsafe.Pointer(&license[0]))))
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno == 0 {
		return nil // a valid fd was returned; it closes with the process
	}
	return errno
}
