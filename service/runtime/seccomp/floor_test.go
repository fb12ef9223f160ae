// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFloor installs the floor in a child holding all of root's capabilities, alone and
// under the container's default filter (with and without CAP_SYS_ADMIN, which opens the
// namespace calls in the profile but not in the floor), and checks every probe the floor
// decides. The unfiltered child of TestInstall shows each refusal is a filter's.
func TestFloor(t *testing.T) {
	needRoot(t)
	// What the floor decides whatever the container's filter says.
	floor := map[string]string{
		"ptrace": "EPERM", "adjtimex": "EPERM", "bpf": "EPERM", "syslog": "EPERM", "reboot": "EPERM",
		"init_module": "EPERM", "personality-query": "EPERM", "personality-addr-no-randomize": "EPERM",
		"personality-linux": "ok",
		"chmod-suid":        "EPERM", "chmod-plain": "ENOENT", "mkdir-sgid": "EPERM",
		"open-create-suid": "EPERM", "open-read-suidmode": "ENOENT",
		"sched-fifo": "EPERM", "sched-batch": "ESRCH",
		"openat2": "ENOSYS", "clone3": "ENOSYS",
		"unshare-newuser": "EPERM", "clone-newuser": "EPERM", "setns-newuser": "EPERM",
		"setns": "EPERM", "setns-hi-garbage": "EPERM",
		"getpid": "ok", "pipe-rw": "ok", "threads": "ok", "fork-exec": "ok",
		"seccomp-status": "2",
	}
	merge := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range floor {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	sysAdmin := append(slices.Clone(ociDefaultCaps), "SYS_ADMIN")
	for _, c := range []struct {
		name string
		caps []string
		env  []string
		want map[string]string
	}{
		// The floor alone: namespaces it keeps, mounts (@mount) and chroot pass.
		{"floor-only", nil, []string{envFloorOnly + "=1"}, merge(map[string]string{
			"clone-newns": "ok", "setns-newnet": "EBADF", "mount": "ok", "chroot": "ok", "keyctl": "ok",
		})},
		{"floor+oci-default", ociDefaultCaps, nil, merge(map[string]string{
			"clone-newns": "EPERM", "setns-newnet": "EPERM", "mount": "EPERM", "keyctl": "EPERM",
		})},
		{"floor+oci+sys_admin", sysAdmin, nil, merge(map[string]string{
			"clone-newns": "ok", "setns-newnet": "EBADF", "mount": "ok", "keyctl": "EPERM",
		})},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ps, stderr := runChild(t, "floor", c.caps, c.env...)
			if !ps.Success() || got == nil {
				t.Fatalf("child: %v, stderr %s", ps, stderr)
			}
			for probe, want := range c.want {
				if got[probe] != want {
					t.Errorf("%s: %s, want %s", probe, got[probe], want)
				}
			}
		})
	}
}

// TestFloorVerdicts runs the floor in golang.org/x/net/bpf's VM on both architectures: what
// the allow list and each directive make of a call, including arguments a probe on a real
// kernel cannot reach (the upper half of an int, fchmodat2 on a kernel without it).
func TestFloorVerdicts(t *testing.T) {
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	type call struct {
		name string
		args [6]uint64
		want uint32
	}
	calls := []call{
		{"read", [6]uint64{}, allow},
		{"execve", [6]uint64{}, allow},
		{"mount", [6]uint64{}, allow},
		{"pivot_root", [6]uint64{}, allow},
		{"sethostname", [6]uint64{}, allow},
		{"seccomp", [6]uint64{}, allow},
		{"chroot", [6]uint64{}, allow},
		{"ptrace", [6]uint64{}, eperm},
		{"perf_event_open", [6]uint64{}, eperm},
		{"kexec_load", [6]uint64{}, eperm},
		{"init_module", [6]uint64{}, eperm},
		{"swapon", [6]uint64{}, eperm},
		{"clock_settime", [6]uint64{}, eperm},
		{"settimeofday", [6]uint64{}, eperm},
		{"clock_adjtime", [6]uint64{}, eperm},
		{"clone3", [6]uint64{}, enosys},
		{"openat2", [6]uint64{}, enosys},
		{"clone", [6]uint64{unix.CLONE_NEWNS | unix.CLONE_NEWPID | uint64(unix.SIGCHLD)}, allow},
		{"clone", [6]uint64{unix.CLONE_NEWUSER}, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWCGROUP}, eperm},
		{"unshare", [6]uint64{unix.CLONE_NEWNET | unix.CLONE_NEWIPC}, allow},
		{"unshare", [6]uint64{unix.CLONE_NEWTIME}, eperm},
		{"unshare", [6]uint64{unix.CLONE_NEWNS | unix.CLONE_NEWUSER}, eperm},
		{"setns", [6]uint64{3, unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC}, allow},
		{"setns", [6]uint64{3, 0}, eperm},
		{"setns", [6]uint64{3, 1 << 32}, eperm},
		{"setns", [6]uint64{3, unix.CLONE_NEWCGROUP}, eperm},
		{"setns", [6]uint64{3, unix.CLONE_NEWNET | unix.CLONE_NEWUSER}, eperm},
		{"sched_setscheduler", [6]uint64{0, 0}, allow},
		{"sched_setscheduler", [6]uint64{0, 5}, allow},
		{"sched_setscheduler", [6]uint64{0, 2}, eperm},
		{"sched_setscheduler", [6]uint64{0, 0x40000000}, eperm}, // SCHED_OTHER|SCHED_RESET_ON_FORK
		{"personality", [6]uint64{0}, allow},
		{"personality", [6]uint64{8}, eperm},
		{"personality", [6]uint64{0xffffffff}, eperm},
		{"chmod", [6]uint64{0, 0o755}, allow},
		{"chmod", [6]uint64{0, 0o4755}, eperm},
		{"fchmod", [6]uint64{0, 0o2755}, eperm},
		{"fchmodat", [6]uint64{0, 0, 0o6755}, eperm},
		{"fchmodat2", [6]uint64{0, 0, 0o4755}, eperm},
		{"fchmodat2", [6]uint64{0, 0, 0o1777}, allow},
		{"mkdirat", [6]uint64{0, 0, 0o2775}, eperm},
		{"mknodat", [6]uint64{0, 0, unix.S_IFREG | 0o4755}, eperm},
		{"openat", [6]uint64{0, 0, unix.O_RDONLY, 0o4755}, allow},
		{"openat", [6]uint64{0, 0, unix.O_CREAT | unix.O_WRONLY, 0o644}, allow},
		{"openat", [6]uint64{0, 0, unix.O_CREAT | unix.O_WRONLY, 0o4755}, eperm},
		{"openat", [6]uint64{0, 0, unix.O_TMPFILE | unix.O_RDWR, 0o2755}, eperm},
		{"open", [6]uint64{0, unix.O_CREAT, 0o4755}, eperm},
		{"creat", [6]uint64{0, 0o2755}, eperm},
		{"creat", [6]uint64{0, 0o755}, allow},
	}
	for _, goarch := range []string{"amd64", "arm64"} {
		f, err := compileFloor(goarch, FloorDirectives)
		if err != nil {
			t.Fatal(err)
		}
		vm := newVM(t, f)
		for _, c := range calls {
			nr, ok := f.arch.syscalls[c.name]
			if !ok {
				continue // open, creat, chmod … are amd64's only
			}
			if got := run(t, vm, nr, f.arch.audit, c.args); got != c.want {
				t.Errorf("%s: %s%v: %s, want %s", goarch, c.name, c.args, retString(got), retString(c.want))
			}
		}
		if got := run(t, vm, 0, unix.AUDIT_ARCH_I386, [6]uint64{}); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("%s: a foreign architecture gets %s, want kill-process", goarch, retString(got))
		}
	}
}

// TestFloorRefusesWhatItCannotMean: a directive the floor does not implement, or one in a
// form it does not, is an error naming it, never a floor that silently enforces less.
func TestFloorRefusesWhatItCannotMean(t *testing.T) {
	for _, d := range []Directive{
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallFilter", "~@mount"},
		{"SystemCallFilter", "@no-such-group"},
		{"SystemCallErrorNumber", "EACCES"},
		{"SystemCallArchitectures", "native x86"},
		{"RestrictNamespaces", "mnt bogus"},
		{"RestrictSUIDSGID", "no"},
	} {
		ds := append(slices.Clone(FloorDirectives), d)
		if d.Key == "SystemCallFilter" || d.Key == "SystemCallErrorNumber" || d.Key == "SystemCallArchitectures" {
			ds = []Directive{d, {"SystemCallErrorNumber", "EPERM"}, {"SystemCallFilter", "read"}}
		}
		if _, err := compileFloor("amd64", ds); err == nil {
			t.Errorf("%s=%s: compiled", d.Key, d.Value)
		} else {
			t.Logf("%s=%s: %v", d.Key, d.Value, err)
		}
	}
}
