// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ociDefaultCaps is the capability set runc, crun and podman give a default
// container.
var ociDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// capSets are the capability sets the verdict tests compile for.
var capSets = map[string][]string{
	"none":          nil,
	"oci-default":   ociDefaultCaps,
	"oci+sys_admin": append(slices.Clone(ociDefaultCaps), "CAP_SYS_ADMIN"),
	"all":           capNames,
}

// vmInput encodes a struct seccomp_data for golang.org/x/net/bpf's VM. The
// VM loads 32-bit words big-endian where the kernel loads them in native
// (little-endian) order, so each word the program reads is stored
// big-endian at the offset the kernel would find it: the low half of an
// argument at 16+8i, the high half at 20+8i.
func vmInput(nr, arch uint32, args [6]uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[offArgs+8*i+4:], uint32(a>>32))
	}
	return b
}

func newVM(t testing.TB, f *Filter) *bpf.VM {
	t.Helper()
	insns, ok := bpf.Disassemble(f.prog)
	if !ok {
		t.Fatal("program has instructions golang.org/x/net/bpf cannot decode")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return vm
}

func run(t testing.TB, vm *bpf.VM, nr, arch uint32, args [6]uint64) uint32 {
	t.Helper()
	out, err := vm.Run(vmInput(nr, arch, args))
	if err != nil {
		t.Fatalf("vm.Run: %v", err)
	}
	return uint32(out)
}

// refRet is the reference translation of an OCI action, written out
// independently of actionRet.
func refRet(act specs.LinuxSeccompAction, errnoRet *uint) uint32 {
	errno := uint32(unix.EPERM)
	if errnoRet != nil {
		errno = uint32(*errnoRet)
	}
	switch act {
	case specs.ActAllow:
		return 0x7fff0000
	case specs.ActErrno:
		return 0x00050000 | errno
	}
	panic("reference: action " + string(act))
}

// refProfile is a resolved profile indexed by syscall number.
type refProfile struct {
	sc   *specs.LinuxSeccomp
	byNr map[uint32][]specs.LinuxSyscall
}

func newRef(sc *specs.LinuxSeccomp, table map[string]uint32) *refProfile {
	r := &refProfile{sc: sc, byNr: make(map[uint32][]specs.LinuxSyscall)}
	for _, s := range sc.Syscalls {
		for _, n := range s.Names {
			if nr, ok := table[n]; ok {
				r.byNr[nr] = append(r.byNr[nr], s)
			}
		}
	}
	return r
}

// verdict is the verdict of the resolved profile for one call, evaluated
// directly: the first rule naming the syscall whose conditions all hold
// decides (the compiler refuses profiles where the order would matter).
func (r *refProfile) verdict(nr uint32, args [6]uint64) uint32 {
	for _, s := range r.byNr[nr] {
		match := true
		for _, c := range s.Args {
			a := args[c.Index]
			var ok bool
			switch c.Op {
			case specs.OpEqualTo:
				ok = a == c.Value
			case specs.OpNotEqual:
				ok = a != c.Value
			case specs.OpLessThan:
				ok = a < c.Value
			case specs.OpLessEqual:
				ok = a <= c.Value
			case specs.OpGreaterThan:
				ok = a > c.Value
			case specs.OpGreaterEqual:
				ok = a >= c.Value
			case specs.OpMaskedEqual:
				ok = a&c.Value == c.ValueTwo
			default:
				panic("reference: operator " + string(c.Op))
			}
			match = match && ok
		}
		if match {
			return refRet(s.Action, s.ErrnoRet)
		}
	}
	return refRet(r.sc.DefaultAction, r.sc.DefaultErrnoRet)
}

// mobyResolved resolves the default profile with moby's own code (for the
// running kernel and runtime.GOARCH), the reference the compiler's
// resolution is checked against.
func mobyResolved(t testing.TB, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	sc, err := profiles.GetDefaultProfile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// interesting returns argument values near every constant the profile
// compares with: the value itself, its neighbours, with the high half
// disturbed, and for masks each masked bit set on the expected datum.
func interesting(sc *specs.LinuxSeccomp, rng *rand.Rand) []uint64 {
	vals := []uint64{0, 1, 0xffffffff, 1 << 32, ^uint64(0), 0xffffffff00000000}
	for _, s := range sc.Syscalls {
		for _, c := range s.Args {
			for _, v := range []uint64{c.Value, c.ValueTwo} {
				vals = append(vals, v, v-1, v+1, v|1<<32, v|1<<63, v^0xffffffff00000000)
			}
			if c.Op == specs.OpMaskedEqual {
				for bit := range 64 {
					if c.Value&(1<<bit) != 0 {
						vals = append(vals, c.ValueTwo|1<<bit, c.ValueTwo&^(1<<bit))
					}
				}
				vals = append(vals, c.ValueTwo|rng.Uint64()&^c.Value)
			}
		}
	}
	return vals
}

// TestVerdictsMatchProfile runs every syscall of the amd64 table, and
// numbers beyond it, through the compiled program in the BPF VM and checks
// the verdict against moby's resolution of the profile evaluated directly.
func TestVerdictsMatchProfile(t *testing.T) {
	arch := arches[runtime.GOARCH]
	if arch == nil {
		t.Skip("no table for this architecture")
	}
	for name, caps := range capSets {
		t.Run(name, func(t *testing.T) {
			f, err := Default(caps)
			if err != nil {
				t.Fatal(err)
			}
			vm := newVM(t, f)
			sc := mobyResolved(t, caps)
			ref := newRef(sc, arch.syscalls)
			rng := rand.New(rand.NewPCG(1, uint64(len(caps))))
			vals := interesting(sc, rng)
			checked := 0
			check := func(nr uint32, args [6]uint64) {
				t.Helper()
				got, want := run(t, vm, nr, arch.audit, args), ref.verdict(nr, args)
				if got != want {
					t.Fatalf("syscall %s (%d) args %#x: filter says %s, profile says %s",
						arch.name(nr), nr, args, retString(got), retString(want))
				}
				checked++
			}
			nrs := []uint32{0xffffffff, 1000, 4095, arch.x32Bit - 1}
			for _, nr := range arch.syscalls {
				if nr >= 600 {
					nrs = append(nrs, nr)
				}
			}
			for nr := range uint32(600) {
				nrs = append(nrs, nr)
			}
			for _, nr := range nrs {
				check(nr, [6]uint64{})
				for range 4 {
					check(nr, [6]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()})
					check(nr, [6]uint64{rng.Uint64N(64), rng.Uint64N(1 << 20), rng.Uint64N(3), 0, 0, 0})
				}
				if !slices.ContainsFunc(ref.byNr[nr], func(s specs.LinuxSyscall) bool { return len(s.Args) > 0 }) {
					continue
				}
				// Every interesting value in every argument position.
				for _, v := range vals {
					for i := range 6 {
						var args [6]uint64
						args[i] = v
						check(nr, args)
					}
				}
			}
			t.Logf("%d verdicts checked, %d instructions", checked, f.Len())
		})
	}
}

// TestForeignArchitecturesKilled: i386, x32 and anything but the native
// audit arch is killed, whatever the syscall.
func TestForeignArchitecturesKilled(t *testing.T) {
	f, err := Default(ociDefaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, f)
	getpid := syscallsAMD64["getpid"]
	if got := run(t, vm, getpid, unix.AUDIT_ARCH_X86_64, [6]uint64{}); got != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("native getpid: %s, want allow", retString(got))
	}
	for _, c := range []struct {
		name     string
		nr, arch uint32
	}{
		{"i386 getpid", 20, unix.AUDIT_ARCH_I386},
		{"i386 socketcall", 102, unix.AUDIT_ARCH_I386},
		{"x32 getpid", getpid | 0x40000000, unix.AUDIT_ARCH_X86_64},
		{"x32 highest", 0xfffffffe, unix.AUDIT_ARCH_X86_64},
		{"aarch64 getpid", 172, unix.AUDIT_ARCH_AARCH64},
		{"arm getpid", 20, unix.AUDIT_ARCH_ARM},
		{"zero arch", getpid, 0},
	} {
		if got := run(t, vm, c.nr, c.arch, [6]uint64{}); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("%s: %s, want kill-process", c.name, retString(got))
		}
	}
}

// TestARM64 compiles for arm64 and checks verdicts with the compiler's own
// resolution (moby's resolves for the build architecture only) but the
// reference evaluation.
func TestARM64(t *testing.T) {
	f, err := Compile(profiles.DefaultProfile(), Config{Caps: ociDefaultCaps, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Arch() != "arm64" {
		t.Fatalf("Arch() = %s", f.Arch())
	}
	vm := newVM(t, f)
	ref := newRef(resolveForTest(t, profiles.DefaultProfile(), "arm64", ociDefaultCaps), syscallsARM64)
	for _, nr := range syscallsARM64 {
		for _, args := range [][6]uint64{{}, {unix.CLONE_NEWNS}, {unix.AF_INET}, {unix.AF_VSOCK}, {0xffffffff}} {
			got, want := run(t, vm, nr, unix.AUDIT_ARCH_AARCH64, args), ref.verdict(nr, args)
			if got != want {
				t.Fatalf("arm64 %s args %#x: filter %s, profile %s", arches["arm64"].name(nr), args, retString(got), retString(want))
			}
		}
	}
	if got := run(t, vm, 20, unix.AUDIT_ARCH_ARM, [6]uint64{}); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("arm32 compat call: %s, want kill-process", retString(got))
	}
	// arm64 has no x32-style bit: a high number is just unknown.
	if got := run(t, vm, 0x40000000|172, unix.AUDIT_ARCH_AARCH64, [6]uint64{}); got != unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM) {
		t.Errorf("arm64 high syscall number: %s, want errno(1)", retString(got))
	}
	if slices.Contains(f.Skipped(), "clone") || !slices.Contains(f.Skipped(), "open") {
		t.Errorf("arm64 skipped names look wrong: %v", f.Skipped())
	}
}

// resolveForTest mirrors moby's setupSeccomp for another architecture.
func resolveForTest(t *testing.T, p *profiles.Seccomp, goarch string, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	cm, err := canonicalCaps(caps)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernelVersion("")
	if err != nil {
		t.Fatal(err)
	}
	out := p.LinuxSeccomp
	for _, call := range p.Syscalls {
		if applies(call, goarch, cm, k) {
			out.Syscalls = append(out.Syscalls, call.LinuxSyscall)
		}
	}
	return &out
}

// TestSkippedAreNotAMD64Calls: every name skipped on amd64 is absent from
// the kernel's own amd64 syscall list (the installed UAPI header), and every
// call the header lists is in the table under the same number.
func TestSkippedAreNotAMD64Calls(t *testing.T) {
	hdr := parseUnistd(t, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
	f, err := Compile(profiles.DefaultProfile(), Config{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Skipped() {
		if _, ok := hdr[n]; ok {
			t.Errorf("%s is an amd64 syscall (%d) but was skipped", n, hdr[n])
		}
	}
	for n, nr := range hdr {
		if got, ok := syscallsAMD64[n]; !ok || got != nr {
			t.Errorf("table has %s = %d (present %v), the header says %d", n, got, ok, nr)
		}
	}
	t.Logf("skipped on amd64: %v", f.Skipped())
}

// TestProgramSize reports instruction count and compile time for the cap
// sets; the kernel's limit is 4096, the budget here is well under.
func TestProgramSize(t *testing.T) {
	for _, name := range []string{"none", "oci-default", "oci+sys_admin", "all"} {
		start := time.Now()
		f, err := Default(capSets[name])
		elapsed := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-14s %4d instructions (%d bytes marshalled), compiled in %v", name, f.Len(), len(f.Marshal()), elapsed)
		if f.Len() > 1024 {
			t.Errorf("%s: %d instructions, budget 1024", name, f.Len())
		}
	}
}

func BenchmarkCompileDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Default(ociDefaultCaps); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	f, err := Default(ociDefaultCaps)
	if err != nil {
		b.Fatal(err)
	}
	blob := f.Marshal()
	for b.Loop() {
		if _, err := Unmarshal(blob); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerdict checks random calls against the reference; `go test` runs the
// seeds, `go test -fuzz FuzzVerdict` searches.
func FuzzVerdict(f *testing.F) {
	type compiled struct {
		vm  *bpf.VM
		ref *refProfile
	}
	var cs []compiled
	for _, name := range []string{"none", "oci-default", "oci+sys_admin", "all"} {
		flt, err := Default(capSets[name])
		if err != nil {
			f.Fatal(err)
		}
		cs = append(cs, compiled{newVM(f, flt), newRef(mobyResolved(f, capSets[name]), syscallsAMD64)})
	}
	f.Add(uint8(0), uint32(56), uint64(unix.CLONE_NEWNS), uint64(0), uint64(0))
	f.Add(uint8(1), uint32(41), uint64(unix.AF_VSOCK), uint64(1), uint64(0))
	f.Add(uint8(2), uint32(135), uint64(0xffffffff), uint64(0), uint64(0))
	f.Add(uint8(3), uint32(435), uint64(0), uint64(88), uint64(0))
	f.Fuzz(func(t *testing.T, which uint8, nr uint32, a0, a1, a2 uint64) {
		c := cs[int(which)%len(cs)]
		nr %= 1024 // the interesting part; TestVerdictsMatchProfile covers the rest
		args := [6]uint64{a0, a1, a2, a0 ^ a1, a1 ^ a2, a2 ^ a0}
		got := run(t, c.vm, nr, unix.AUDIT_ARCH_X86_64, args)
		want := c.ref.verdict(nr, args)
		if got != want {
			t.Fatalf("nr %d args %#x: filter %s, profile %s", nr, args, retString(got), retString(want))
		}
	})
}

func parseUnistd(t *testing.T, path string) map[string]uint32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no UAPI header to compare with: %v", err)
	}
	out := make(map[string]uint32)
	for _, line := range strings.Split(string(data), "\n") {
		var name string
		var nr uint32
		if n, _ := fmt.Sscanf(line, "#define __NR_%s %d", &name, &nr); n == 2 {
			out[name] = nr
		}
	}
	if len(out) < 300 {
		t.Fatalf("%s: only %d syscalls parsed", path, len(out))
	}
	return out
}

// constAllow reports whether the kernel's seccomp action cache (Linux
// 5.11+, kernel/seccomp.c) would mark syscall nr of arch as always
// allowed: at attach time the kernel runs the classic program with only
// nr and arch known and gives up at the first instruction that needs
// anything else (an argument load, an unknown opcode). Calls it marks are
// answered from a bitmap and never run the filter.
func constAllow(prog []bpf.RawInstruction, nr, arch uint32) bool {
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Op {
		case opLoad:
			switch in.K {
			case offNr:
				a = nr
			case offArch:
				a = arch
			default:
				return false
			}
		case opRet:
			return in.K == unix.SECCOMP_RET_ALLOW
		case opJA:
			pc += int(in.K)
		case opJEQ, opJGE, opJGT, opJSET:
			var taken bool
			switch in.Op {
			case opJEQ:
				taken = a == in.K
			case opJGE:
				taken = a >= in.K
			case opJGT:
				taken = a > in.K
			case opJSET:
				taken = a&in.K != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case opAnd:
			a &= in.K
		default:
			return false
		}
	}
	return false
}

// TestKernelActionCache: every syscall the profile allows without
// conditions is one the kernel's action cache serves without running the
// filter, and nothing else is. The program must keep argument loads inside
// the blocks of the syscalls that have conditions for this to hold.
func TestKernelActionCache(t *testing.T) {
	arch := arches[runtime.GOARCH]
	if arch == nil {
		t.Skip("no table for this architecture")
	}
	for name, caps := range capSets {
		f, err := Default(caps)
		if err != nil {
			t.Fatal(err)
		}
		ref := newRef(mobyResolved(t, caps), arch.syscalls)
		cached := 0
		for nr := range uint32(1024) {
			rules := ref.byNr[nr]
			always := slices.ContainsFunc(rules, func(s specs.LinuxSyscall) bool {
				return len(s.Args) == 0 && s.Action == specs.ActAllow
			})
			got := constAllow(f.prog, nr, arch.audit)
			if got != always {
				t.Errorf("%s: syscall %s: action cache %v, profile allows it unconditionally: %v", name, arch.name(nr), got, always)
			}
			if got {
				cached++
			}
			if constAllow(f.prog, nr, unix.AUDIT_ARCH_I386) {
				t.Errorf("%s: i386 syscall %d would be cached as allowed", name, nr)
			}
		}
		t.Logf("%s: %d syscalls answered from the kernel's bitmap", name, cached)
	}
}
