// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func uintp(v uint) *uint { return &v }

func profileOf(calls ...*profiles.Syscall) *profiles.Seccomp {
	return &profiles.Seccomp{
		LinuxSeccomp: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.EPERM))},
		Syscalls:     calls,
	}
}

func allow(names ...string) *profiles.Syscall {
	return &profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: names, Action: specs.ActAllow}}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name    string
		profile *profiles.Seccomp
		cfg     Config
		want    string
	}{
		{"unknown cap", profiles.DefaultProfile(), Config{Caps: []string{"CAP_SYS_ADMN"}}, `unknown capability "CAP_SYS_ADMN"`},
		{"unknown arch", profiles.DefaultProfile(), Config{Arch: "s390x"}, `architecture "s390x" is not supported`},
		{"bad kernel", profiles.DefaultProfile(), Config{Kernel: "six"}, `kernel version "six"`},
		{"nil profile", nil, Config{}, "no profile"},
		{"no default action", &profiles.Seccomp{Syscalls: []*profiles.Syscall{allow("read")}}, Config{}, "default action: no action"},
		{"notify", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActNotify}}), Config{},
			`syscall rule 0 (read): action "SCMP_ACT_NOTIFY" is not supported`},
		{"errnoRet on allow", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, ErrnoRet: uintp(5)}}), Config{},
			"errnoRet is only meaningful"},
		{"errno too big", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: uintp(70000)}}), Config{},
			"errnoRet 70000 is larger than 4095"},
		{"conflicting actions", profileOf(allow("read"), &profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: uintp(38)}}), Config{},
			"syscall read has rules with different actions (allow and errno(38))"},
		{"two conditions on one argument", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpGreaterEqual}, {Index: 0, Value: 10, Op: specs.OpLessThan}}}}), Config{},
			"two conditions on argument 0"},
		{"argument index", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 6, Value: 1, Op: specs.OpEqualTo}}}}), Config{}, "argument index 6 out of range"},
		{"unknown operator", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: "SCMP_CMP_ALMOST"}}}}), Config{}, `operator "SCMP_CMP_ALMOST" is not supported`},
		{"no names", profileOf(&profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Action: specs.ActAllow}}), Config{}, "names no syscall"},
		{"unknown flag", func() *profiles.Seccomp {
			p := profileOf(allow("read"))
			p.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}
			return p
		}(), Config{}, `flag "SECCOMP_FILTER_FLAG_NEW_LISTENER" is not supported`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Compile(c.profile, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v, %v; want an error containing %q", f, err, c.want)
			}
		})
	}
}

func TestCapSpellings(t *testing.T) {
	a, err := Default([]string{"sys_admin", "CAP_CHOWN", " Net_Raw"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Default([]string{"CAP_SYS_ADMIN", "CHOWN", "CAP_NET_RAW"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Marshal(), b.Marshal()) {
		t.Fatal("the same capabilities spelled differently compile to different programs")
	}
}

// TestKernelCondition: ptrace is allowed from kernel 4.8 on (seccomp can no
// longer be bypassed through it there); on an older kernel it needs
// CAP_SYS_PTRACE.
func TestKernelCondition(t *testing.T) {
	for _, c := range []struct {
		kernel string
		caps   []string
		want   uint32
	}{
		{"4.8", nil, unix.SECCOMP_RET_ALLOW},
		{"6.1.0-13-amd64", nil, unix.SECCOMP_RET_ALLOW},
		{"4.7", nil, unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{"3.10", []string{"SYS_PTRACE"}, unix.SECCOMP_RET_ALLOW},
	} {
		f, err := Compile(profiles.DefaultProfile(), Config{Arch: "amd64", Kernel: c.kernel, Caps: c.caps})
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, newVM(t, f), syscallsAMD64["ptrace"], unix.AUDIT_ARCH_X86_64, [6]uint64{}); got != c.want {
			t.Errorf("kernel %s caps %v: ptrace %s, want %s", c.kernel, c.caps, retString(got), retString(c.want))
		}
	}
}

// TestLongJumps: profiles whose argument checks are far longer than a
// conditional jump reaches (255 instructions) still compile, and every
// verdict holds: one with many two-condition alternatives, one with a set
// of 300 values for one argument.
func TestLongJumps(t *testing.T) {
	var pairs, set []*profiles.Syscall
	for _, name := range []string{"ioctl", "fcntl", "prctl"} {
		for v := range uint64(100) {
			pairs = append(pairs, &profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{name}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: v*3 + 1<<33, Op: specs.OpEqualTo}, {Index: 2, Value: v, Op: specs.OpLessEqual}}}})
		}
	}
	for v := range uint64(300) {
		set = append(set, &profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: v*3 + 1<<33, Op: specs.OpEqualTo}}}})
	}
	common := []*profiles.Syscall{allow("read", "write", "getpid", "exit_group"),
		{LinuxSyscall: specs.LinuxSyscall{Names: []string{"openat"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOSYS))}}}
	for name, calls := range map[string][]*profiles.Syscall{"pairs": pairs, "set": set} {
		p := profileOf(append(calls, common...)...)
		f, err := Compile(p, Config{Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d instructions", name, f.Len())
		insns, _ := bpf.Disassemble(f.prog)
		if !slices.ContainsFunc(insns, func(in bpf.Instruction) bool { _, ja := in.(bpf.Jump); return ja }) {
			t.Fatalf("%s: no long jump in the program: the test does not exercise them", name)
		}
		vm := newVM(t, f)
		ref := newRef(resolveForTest(t, p, "amd64", nil), syscallsAMD64)
		rng := rand.New(rand.NewPCG(7, 7))
		for nr := range uint32(500) {
			for _, v := range []uint64{0, 1<<33 + 3, 1<<33 + 447, 1<<33 + 448, 1<<33 + 897, 447, rng.Uint64(), 1<<33 + rng.Uint64N(900)} {
				for _, w := range []uint64{0, 100, 149, 150, rng.Uint64N(200)} {
					args := [6]uint64{1, v, w}
					if got, want := run(t, vm, nr, unix.AUDIT_ARCH_X86_64, args), ref.verdict(nr, args); got != want {
						t.Fatalf("%s: nr %d args %#x: filter %s, profile %s", name, nr, args, retString(got), retString(want))
					}
				}
			}
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	f, err := Default(ociDefaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	blob := f.Marshal()
	g, err := Unmarshal(blob)
	if err != nil {
		t.Fatal(err)
	}
	if g.Arch() != f.Arch() || g.Len() != f.Len() || !bytes.Equal(g.Marshal(), blob) {
		t.Fatal("round trip changed the filter")
	}

	bad := func(name string, b []byte, want string) {
		t.Helper()
		if _, err := Unmarshal(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Unmarshal error %v, want one containing %q", name, err, want)
		}
	}
	mut := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(blob)) }
	bad("empty", nil, "not a marshalled filter")
	bad("magic", mut(func(b []byte) []byte { b[0] = 'x'; return b }), "not a marshalled filter")
	bad("version", mut(func(b []byte) []byte { b[4] = 9; return b }), "version 9")
	bad("arch", mut(func(b []byte) []byte { b[8] = 0x28; b[11] = 0x40; return b }), "unknown audit arch 0x40000028")
	bad("flags", mut(func(b []byte) []byte { b[12] = 8; return b }), "unsupported flags 0x8")
	bad("truncated", blob[:len(blob)-1], "bytes, want")
	bad("count", mut(func(b []byte) []byte { b[16], b[17] = 0, 0x20; return b }), "instructions, want 1..4096")
	bad("opcode", mut(func(b []byte) []byte { b[headerSize] = 0xff; b[headerSize+1] = 0xff; return b }), "instruction 0 (0xffff) is not one the compiler emits")
	bad("load offset", mut(func(b []byte) []byte { b[headerSize+4] = 64; return b }), "instruction 0 loads offset 64")
	last := f.Len() - 1
	bad("jump", mut(func(b []byte) []byte { b[len(b)-8] = opJA; return b }), fmt.Sprintf("instruction %d jumps past the end", last))
	bad("cond jump", mut(func(b []byte) []byte { b[len(b)-8] = opJEQ; b[len(b)-5] = 1; return b }), fmt.Sprintf("instruction %d jumps past the end", last))
	bad("no return", mut(func(b []byte) []byte { b[len(b)-8] = opAnd; return b }), "does not end in a return")
	// Every instruction the compiler emits for the long-jump profile passes.
	var calls []*profiles.Syscall
	for v := range uint64(300) {
		calls = append(calls, &profiles.Syscall{LinuxSyscall: specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: v, Op: specs.OpMaskedEqual, ValueTwo: v}}}})
	}
	long, err := Compile(profileOf(calls...), Config{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(long.Marshal()); err != nil {
		t.Fatal(err)
	}
}

func TestInstallRefusesEmpty(t *testing.T) {
	for _, f := range []*Filter{nil, {}} {
		if err := f.Install(); err == nil || !strings.Contains(err.Error(), "empty filter") {
			t.Errorf("Install of %#v: %v", f, err)
		}
	}
}

func TestInstallRefusesForeignArch(t *testing.T) {
	other := "arm64"
	if arches[other].goarch == runtime.GOARCH {
		other = "amd64"
	}
	f, err := Compile(profiles.DefaultProfile(), Config{Arch: other})
	if err != nil {
		t.Fatal(err)
	}
	// Refused before any syscall: installing it would kill this process.
	if err := f.Install(); err == nil || !strings.Contains(err.Error(), "filter is for "+other) {
		t.Fatalf("Install of a %s filter: %v", other, err)
	}
}
