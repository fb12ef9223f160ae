// SPDX-License-Identifier: Apache-2.0

package seccomp

//go:generate go run gen_tables.go

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config is what a profile is resolved against.
type Config struct {
	// Caps is the container's capability set (jackfruit keeps bounding,
	// permitted and effective equal). Names as "CAP_SYS_ADMIN" or
	// "SYS_ADMIN", any case; unknown names are an error.
	Caps []string
	// Arch is the GOARCH to build for; empty means runtime.GOARCH.
	// amd64 and arm64 are supported.
	Arch string
	// Kernel is the "major.minor" version the profile's minKernel
	// conditions are checked against; empty means the running kernel.
	Kernel string
}

// archInfo is what the compiler needs to know about one architecture.
type archInfo struct {
	goarch   string
	audit    uint32            // seccomp_data.arch of native calls
	syscalls map[string]uint32 // name -> number
	// x32Bit, if not zero, is a bit in the syscall number that selects
	// another ABI under the same audit arch (amd64's x32); calls with it set
	// are killed.
	x32Bit uint32
}

var arches = map[string]*archInfo{
	"amd64": {goarch: "amd64", audit: unix.AUDIT_ARCH_X86_64, syscalls: syscallsAMD64, x32Bit: 0x40000000},
	"arm64": {goarch: "arm64", audit: unix.AUDIT_ARCH_AARCH64, syscalls: syscallsARM64},
}

func archByAudit(audit uint32) *archInfo {
	for _, a := range arches {
		if a.audit == audit {
			return a
		}
	}
	return nil
}

// Default compiles the docker/podman default profile for a container holding
// caps, on the native architecture and the running kernel.
func Default(caps []string) (*Filter, error) {
	return Compile(profiles.DefaultProfile(), Config{Caps: caps})
}

// specArches are the runtime-spec names of the supported architectures.
var specArches = map[string]specs.Arch{"amd64": specs.ArchX86_64, "arm64": specs.ArchAARCH64}

// DefaultOCI returns the policy Default compiles in the runtime-spec form
// (config.json's linux.seccomp), for an OCI runtime such as runc or crun: the
// default profile resolved for caps and the running kernel, on the native
// architecture only. jackfruit's benchmark gives it to its peers so that
// they run under the same filter.
func DefaultOCI(caps []string) (*specs.LinuxSeccomp, error) {
	p := profiles.DefaultProfile()
	r, err := resolve(p, Config{Caps: caps})
	if err != nil {
		return nil, err
	}
	return &specs.LinuxSeccomp{
		DefaultAction:   p.DefaultAction,
		DefaultErrnoRet: p.DefaultErrnoRet,
		Architectures:   []specs.Arch{specArches[r.arch.goarch]},
		Flags:           p.Flags,
		Syscalls:        r.rules,
	}, nil
}

// rule is one resolved profile rule for one syscall.
type rule struct {
	ret   uint32 // SECCOMP_RET_* with its data
	conds []specs.LinuxSeccompArg
}

// Compile resolves profile for cfg and compiles it. The profile is not
// modified.
func Compile(profile *profiles.Seccomp, cfg Config) (*Filter, error) {
	r, err := resolve(profile, cfg)
	if err != nil {
		return nil, err
	}
	arch := r.arch
	bySyscall := make(map[uint32][]rule)
	skipped := make(map[string]bool)
	for _, call := range r.rules {
		ret, _ := actionRet(call.Action, call.ErrnoRet) // resolve checked it
		for _, name := range call.Names {
			nr, ok := arch.syscalls[name]
			if !ok {
				skipped[name] = true
				continue
			}
			bySyscall[nr] = append(bySyscall[nr], rule{ret: ret, conds: call.Args})
		}
	}

	verdicts := make(map[uint32]verdict, len(bySyscall))
	for nr, rules := range bySyscall {
		v := verdict{ret: rules[0].ret}
		for _, ru := range rules {
			if ru.ret != v.ret {
				return nil, fmt.Errorf("seccomp: syscall %s has rules with different actions (%s and %s), which is ambiguous",
					arch.name(nr), retString(v.ret), retString(ru.ret))
			}
			if len(ru.conds) == 0 {
				v.alts = nil
				v.always = true
			}
			if !v.always {
				v.alts = append(v.alts, ru.conds)
			}
		}
		verdicts[nr] = v
	}

	prog, err := generate(arch, r.defRet, verdicts)
	if err != nil {
		return nil, err
	}
	f := &Filter{arch: arch, flags: r.flags, prog: prog}
	for name := range skipped {
		f.skipped = append(f.skipped, name)
	}
	sort.Strings(f.skipped)
	return f, nil
}

// resolved is a profile resolved for one container: the rules that apply,
// each checked, with Name folded into Names.
type resolved struct {
	arch   *archInfo
	defRet uint32
	flags  uint32 // SECCOMP_FILTER_FLAG_*
	rules  []specs.LinuxSyscall
}

func resolve(profile *profiles.Seccomp, cfg Config) (*resolved, error) {
	if profile == nil {
		return nil, errors.New("seccomp: no profile")
	}
	goarch := cfg.Arch
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	arch, ok := arches[goarch]
	if !ok {
		return nil, fmt.Errorf("seccomp: architecture %q is not supported (amd64, arm64)", goarch)
	}
	caps, err := canonicalCaps(cfg.Caps)
	if err != nil {
		return nil, err
	}
	kernel, err := kernelVersion(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	if len(profile.LinuxSeccomp.Syscalls) != 0 {
		return nil, errors.New("seccomp: profile sets the runtime-spec syscalls field; use the profile's own syscalls list")
	}
	if profile.ListenerPath != "" || len(profile.ListenerMetadata) != 0 {
		return nil, errors.New("seccomp: profile asks for a notification listener, which jackfruit does not support")
	}
	r := &resolved{arch: arch}
	if r.defRet, err = actionRet(profile.DefaultAction, profile.DefaultErrnoRet); err != nil {
		return nil, fmt.Errorf("seccomp: default action: %w", err)
	}
	for _, fl := range profile.Flags {
		switch fl {
		case specs.LinuxSeccompFlagLog:
			r.flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			r.flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			return nil, fmt.Errorf("seccomp: profile flag %q is not supported", fl)
		}
	}
	for i, call := range profile.Syscalls {
		rule := call.LinuxSyscall
		// Older JSON profiles name one syscall per rule; moby still reads them.
		//lint:ignore SA1019 accepted for old profiles, as moby accepts them
		if legacy := call.Name; legacy != "" {
			if len(call.Names) != 0 {
				return nil, fmt.Errorf("seccomp: syscall rule %d has both name and names", i)
			}
			rule.Names = []string{legacy}
		}
		if len(rule.Names) == 0 {
			return nil, fmt.Errorf("seccomp: syscall rule %d names no syscall", i)
		}
		where := fmt.Sprintf("syscall rule %d (%s)", i, strings.Join(rule.Names, ", "))
		if !applies(call, arch.goarch, caps, kernel) {
			continue
		}
		if _, err := actionRet(rule.Action, rule.ErrnoRet); err != nil {
			return nil, fmt.Errorf("seccomp: %s: %w", where, err)
		}
		if err := checkArgs(rule.Args); err != nil {
			return nil, fmt.Errorf("seccomp: %s: %w", where, err)
		}
		r.rules = append(r.rules, rule)
	}
	return r, nil
}

// name returns the syscall name of nr, for messages.
func (a *archInfo) name(nr uint32) string {
	for n, v := range a.syscalls {
		if v == nr {
			return n
		}
	}
	return strconv.FormatUint(uint64(nr), 10)
}

// applies evaluates a rule's includes and excludes as moby's setupSeccomp
// does: includes need every listed capability, the architecture among the
// listed ones and a kernel at least minKernel; excludes drop the rule if any
// listed capability is held, the architecture is listed or the kernel is at
// least minKernel.
func applies(call *profiles.Syscall, goarch string, caps map[string]bool, kernel [2]uint64) bool {
	if ex := call.Excludes; ex != nil {
		if slices.Contains(ex.Arches, goarch) {
			return false
		}
		for _, c := range ex.Caps {
			if caps[c] {
				return false
			}
		}
		if ex.MinKernel != nil && kernelAtLeast(kernel, ex.MinKernel) {
			return false
		}
	}
	if in := call.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, goarch) {
			return false
		}
		for _, c := range in.Caps {
			if !caps[c] {
				return false
			}
		}
		if in.MinKernel != nil && !kernelAtLeast(kernel, in.MinKernel) {
			return false
		}
	}
	return true
}

func kernelAtLeast(k [2]uint64, min *profiles.KernelVersion) bool {
	return k[0] > min.Kernel || (k[0] == min.Kernel && k[1] >= min.Major)
}

// kernelVersion parses "major.minor[.anything]", or the running kernel's
// release if s is empty.
func kernelVersion(s string) ([2]uint64, error) {
	if s == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return [2]uint64{}, fmt.Errorf("seccomp: uname: %w", err)
		}
		s = string(u.Release[:bytes.IndexByte(u.Release[:], 0)])
	}
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return [2]uint64{}, fmt.Errorf("seccomp: kernel version %q is not major.minor", s)
	}
	minor, _, _ := strings.Cut(parts[1], "-")
	maj, err1 := strconv.ParseUint(parts[0], 10, 32)
	mnr, err2 := strconv.ParseUint(minor, 10, 32)
	if err1 != nil || err2 != nil {
		return [2]uint64{}, fmt.Errorf("seccomp: kernel version %q is not major.minor", s)
	}
	return [2]uint64{maj, mnr}, nil
}

// maxErrno is the largest errno the kernel passes through from
// SECCOMP_RET_ERRNO (MAX_ERRNO in include/linux/err.h).
const maxErrno = 4095

// actionRet translates an OCI action to its SECCOMP_RET_* value. As in runc,
// ERRNO and TRACE without errnoRet use EPERM.
func actionRet(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if act != specs.ActErrno && act != specs.ActTrace {
			return 0, fmt.Errorf("errnoRet is only meaningful with %s or %s, not %s", specs.ActErrno, specs.ActTrace, act)
		}
		if *errnoRet > maxErrno {
			return 0, fmt.Errorf("errnoRet %d is larger than %d", *errnoRet, maxErrno)
		}
		data = uint32(*errnoRet)
	}
	switch act {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case "":
		return 0, errors.New("no action")
	default:
		return 0, fmt.Errorf("action %q is not supported", act)
	}
}

func retString(ret uint32) string {
	switch ret & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW:
		return "allow"
	case unix.SECCOMP_RET_ERRNO:
		return fmt.Sprintf("errno(%d)", ret&unix.SECCOMP_RET_DATA)
	case unix.SECCOMP_RET_TRACE:
		return fmt.Sprintf("trace(%d)", ret&unix.SECCOMP_RET_DATA)
	case unix.SECCOMP_RET_KILL_THREAD:
		return "kill-thread"
	case unix.SECCOMP_RET_KILL_PROCESS:
		return "kill-process"
	case unix.SECCOMP_RET_TRAP:
		return "trap"
	case unix.SECCOMP_RET_LOG:
		return "log"
	}
	return fmt.Sprintf("%#x", ret)
}

func checkArgs(args []specs.LinuxSeccompArg) error {
	var seen [6]bool
	for _, a := range args {
		if a.Index > 5 {
			return fmt.Errorf("argument index %d out of range 0..5", a.Index)
		}
		if seen[a.Index] {
			// runc turns repeated comparisons on one argument into
			// separate ORed rules, libseccomp ANDs them: refuse rather
			// than pick one meaning silently.
			return fmt.Errorf("two conditions on argument %d in one rule; write one rule per condition", a.Index)
		}
		seen[a.Index] = true
		switch a.Op {
		case specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
			specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual:
		default:
			return fmt.Errorf("argument %d: operator %q is not supported", a.Index, a.Op)
		}
	}
	return nil
}

// capNames are the capabilities Linux defines (include/uapi/linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// canonicalCaps turns names as podman spells them (SYS_ADMIN, cap_sys_admin)
// into the profile's spelling (CAP_SYS_ADMIN).
func canonicalCaps(names []string) (map[string]bool, error) {
	caps := make(map[string]bool, len(names))
	for _, n := range names {
		c := strings.ToUpper(strings.TrimSpace(n))
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(capNames, c) {
			return nil, fmt.Errorf("seccomp: unknown capability %q", n)
		}
		caps[c] = true
	}
	return caps, nil
}
