// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Directive is one unit file setting, as units/jackfruit.service spells it.
type Directive struct{ Key, Value string }

// FloorDirectives are the system-call settings of jackfruit.service's hardening ("System
// calls" section of units/jackfruit.service, kept equal by a test in service/sdunit). A
// container started as the supervisor's child inherits them from the service. A container in
// a systemd unit of its own used to get them as properties of that unit; systemd then compiled
// and loaded seven filters of its own for every start, about a fifth of a unit's start in the
// full-system VM (docs/bench.md). Floor compiles the same restrictions into one filter, once,
// in the supervisor, and the setup stage installs it: moving out of the service's cgroup
// loosens nothing, and it costs one seccomp(2) call.
var FloorDirectives = []Directive{
	{"ProtectClock", "yes"},
	{"RestrictNamespaces", "mnt pid uts ipc net"},
	{"RestrictRealtime", "yes"},
	{"RestrictSUIDSGID", "yes"},
	{"LockPersonality", "yes"},
	{"SystemCallArchitectures", "native"},
	{"SystemCallFilter", "@system-service @mount sethostname setdomainname seccomp"},
	{"SystemCallErrorNumber", "EPERM"},
}

// Floor compiles FloorDirectives for the native architecture, with systemd's meaning of each
// (src/shared/seccomp-util.c, systemd 252) and its system-call groups as systemdGroups lists
// them:
//
//   - SystemCallFilter= allows the calls of its groups and names, SystemCallErrorNumber= is
//     what every other call gets; ProtectClock= takes @clock out again;
//   - SystemCallArchitectures=native: every filter this package builds kills foreign
//     architectures (and x32) already;
//   - RestrictNamespaces= refuses clone and unshare with the flag of a namespace type not
//     listed, setns into one (or with type 0, which means any) and clone3 (ENOSYS, so libc
//     falls back to clone, whose flags a filter can see);
//   - RestrictRealtime= leaves sched_setscheduler only SCHED_OTHER, SCHED_BATCH and
//     SCHED_IDLE;
//   - RestrictSUIDSGID= refuses a set-user-ID or set-group-ID bit in the mode of chmod,
//     fchmod, fchmodat, fchmodat2, mkdir, mkdirat, mknod, mknodat and creat, and of open and
//     openat when they create (O_CREAT or O_TMPFILE); openat2 gets ENOSYS (its flags are in a
//     structure a filter cannot read), so libc falls back to openat;
//   - LockPersonality= leaves personality only the current one, PER_LINUX.
//
// Where systemd compares a 32-bit argument as 64 bits, Floor compares only what the kernel
// reads (setns's nstype is an int), so that garbage in the upper half cannot turn a refused
// call into an allowed one. Checked against Debian's 252.39 source: it refuses clone3 and
// openat2 with ENOSYS as the floor does. The floor is stricter in two places on purpose
// (O_TMPFILE with a set-user-ID mode, time namespaces: each a way around a rule the others
// check), and lets fchmodat2 through without a set-ID bit where that build, whose libseccomp
// does not know the call, answers ENOSYS (libc falls back to fchmodat either way).
func Floor() (*Filter, error) { return compileFloor(runtime.GOARCH, FloorDirectives) }

// Namespace types as RestrictNamespaces= names them.
var namespaceTypes = map[string]uint64{
	"cgroup": unix.CLONE_NEWCGROUP, "ipc": unix.CLONE_NEWIPC, "net": unix.CLONE_NEWNET,
	"mnt": unix.CLONE_NEWNS, "pid": unix.CLONE_NEWPID, "user": unix.CLONE_NEWUSER,
	"uts": unix.CLONE_NEWUTS, "time": unix.CLONE_NEWTIME,
}

// Scheduling policies (include/uapi/linux/sched.h) and PER_LINUX (linux/personality.h).
const (
	schedOther = 0
	schedBatch = 3
	schedIdle  = 5
	perLinux   = 0
)

const (
	sxidBits = unix.S_ISUID | unix.S_ISGID
	// creating is what makes open and openat create a file: O_CREAT, or O_TMPFILE without
	// its O_DIRECTORY half (__O_TMPFILE).
	creating = unix.O_CREAT | (unix.O_TMPFILE &^ unix.O_DIRECTORY)
)

// floor collects the verdicts of the directives for one architecture.
type floor struct {
	arch    *archInfo
	defRet  uint32
	allow   map[string]bool
	special map[string]verdict // calls a directive puts conditions on, or refuses differently
}

func compileFloor(goarch string, directives []Directive) (*Filter, error) {
	arch, ok := arches[goarch]
	if !ok {
		return nil, fmt.Errorf("seccomp: architecture %q is not supported (amd64, arm64)", goarch)
	}
	fl := &floor{arch: arch, allow: map[string]bool{}, special: map[string]verdict{}}
	var deny []string
	for _, d := range directives {
		var err error
		switch d.Key {
		case "SystemCallFilter":
			err = fl.expand(d.Value, fl.allow)
		case "SystemCallErrorNumber":
			if d.Value != "EPERM" {
				err = fmt.Errorf("only EPERM is supported")
			}
			fl.defRet = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		case "SystemCallArchitectures":
			if d.Value != "native" {
				err = fmt.Errorf("only native is supported")
			}
		case "ProtectClock":
			if err = yes(d.Value); err == nil {
				deny = append(deny, "@clock")
			}
		case "RestrictNamespaces":
			err = fl.namespaces(d.Value)
		case "RestrictRealtime":
			if err = yes(d.Value); err == nil {
				err = fl.add("sched_setscheduler", allowIf(
					[]specs.LinuxSeccompArg{eq(1, schedOther)},
					[]specs.LinuxSeccompArg{eq(1, schedBatch)},
					[]specs.LinuxSeccompArg{eq(1, schedIdle)}))
			}
		case "RestrictSUIDSGID":
			if err = yes(d.Value); err == nil {
				err = fl.sxid()
			}
		case "LockPersonality":
			if err = yes(d.Value); err == nil {
				err = fl.add("personality", allowIf([]specs.LinuxSeccompArg{eq(0, perLinux)}))
			}
		default:
			err = fmt.Errorf("not a setting the floor knows")
		}
		if err != nil {
			return nil, fmt.Errorf("seccomp floor: %s=%s: %w", d.Key, d.Value, err)
		}
	}
	if fl.defRet == 0 || len(fl.allow) == 0 {
		return nil, fmt.Errorf("seccomp floor: needs SystemCallFilter= (an allow list) and SystemCallErrorNumber=")
	}
	for _, group := range deny {
		removed := map[string]bool{}
		if err := fl.expand(group, removed); err != nil {
			return nil, fmt.Errorf("seccomp floor: %w", err)
		}
		for name := range removed {
			delete(fl.allow, name)
		}
	}

	verdicts := make(map[uint32]verdict)
	for name := range fl.allow {
		if nr, ok := arch.syscalls[name]; ok {
			verdicts[nr] = verdict{ret: unix.SECCOMP_RET_ALLOW, always: true}
		}
	}
	for name, v := range fl.special {
		nr, ok := arch.syscalls[name]
		if !ok {
			continue // open, creat, mkdir … do not exist on arm64
		}
		// A condition only narrows what the allow list lets through; an ENOSYS stands
		// whatever the list says.
		if v.always || fl.allow[name] {
			verdicts[nr] = v
		}
	}
	prog, err := generate(arch, fl.defRet, verdicts)
	if err != nil {
		return nil, fmt.Errorf("seccomp floor: %w", err)
	}
	return &Filter{arch: arch, prog: prog}, nil
}

// expand adds the calls of a SystemCallFilter= value (names and @groups) to set.
func (fl *floor) expand(value string, set map[string]bool) error {
	for _, item := range strings.Fields(value) {
		if strings.HasPrefix(item, "~") {
			return fmt.Errorf("a deny list (%s) is not supported", item)
		}
		if !strings.HasPrefix(item, "@") {
			set[item] = true
			continue
		}
		members, ok := systemdGroups[item]
		if !ok {
			return fmt.Errorf("group %s is not one of %s's", item, systemdVersion)
		}
		if err := fl.expand(strings.Join(members, " "), set); err != nil {
			return err
		}
	}
	return nil
}

func (fl *floor) add(name string, v verdict) error {
	if _, dup := fl.special[name]; dup {
		// Two directives narrowing one call would need their conditions ANDed; none of
		// jackfruit.service's do, so this is a directive given twice.
		return fmt.Errorf("%s is restricted twice (a directive given twice?)", name)
	}
	fl.special[name] = v
	return nil
}

func (fl *floor) namespaces(value string) error {
	var keep uint64
	for _, n := range strings.Fields(value) {
		f, ok := namespaceTypes[n]
		if !ok {
			return fmt.Errorf("unknown namespace type %q", n)
		}
		keep |= f
	}
	var refused uint64
	for _, f := range namespaceTypes {
		if keep&f == 0 {
			refused |= f
		}
	}
	// clone's low byte is the exit signal, which CLONE_NEWTIME (0x80) overlaps: clone cannot
	// make a time namespace, only unshare and clone3 can.
	err := errors.Join(
		fl.add("clone", allowIf([]specs.LinuxSeccompArg{maskedEq(0, refused&^unix.CLONE_NEWTIME, 0)})),
		fl.add("unshare", allowIf([]specs.LinuxSeccompArg{maskedEq(0, refused, 0)})),
		fl.add("clone3", verdict{ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS), always: true}))
	// setns: a type with no refused bit and at least one kept one. 0 ("whatever fd is") is
	// refused, as systemd refuses it.
	var alts [][]specs.LinuxSeccompArg
	for _, n := range strings.Fields(value) {
		f := namespaceTypes[n]
		alts = append(alts, []specs.LinuxSeccompArg{maskedEq(1, refused, 0), maskedEq(1, f, f)})
	}
	return errors.Join(err, fl.add("setns", allowIf(alts...)))
}

// sxid is RestrictSUIDSGID=: no set-user-ID or set-group-ID bit in a mode argument.
func (fl *floor) sxid() error {
	noSxid := func(arg uint) []specs.LinuxSeccompArg {
		return []specs.LinuxSeccompArg{maskedEq(arg, sxidBits, 0)}
	}
	var errs []error
	for name, arg := range map[string]uint{
		"chmod": 1, "fchmod": 1, "mkdir": 1, "mknod": 1, "creat": 1,
		"fchmodat": 2, "fchmodat2": 2, "mkdirat": 2, "mknodat": 2,
	} {
		errs = append(errs, fl.add(name, allowIf(noSxid(arg))))
	}
	notCreating := func(arg uint) []specs.LinuxSeccompArg {
		return []specs.LinuxSeccompArg{maskedEq(arg, creating, 0)}
	}
	errs = append(errs,
		fl.add("open", allowIf(notCreating(1), noSxid(2))),
		fl.add("openat", allowIf(notCreating(2), noSxid(3))),
		fl.add("openat2", verdict{ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS), always: true}))
	return errors.Join(errs...)
}

func allowIf(alts ...[]specs.LinuxSeccompArg) verdict {
	return verdict{ret: unix.SECCOMP_RET_ALLOW, alts: alts}
}

func eq(arg uint, v uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: arg, Value: v, Op: specs.OpEqualTo}
}

// maskedEq is (arg & mask) == want. A mask within the low 32 bits compares only the low half,
// which is all the kernel reads of an int argument.
func maskedEq(arg uint, mask, want uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: arg, Value: mask, ValueTwo: want, Op: specs.OpMaskedEqual}
}

func yes(v string) error {
	if v != "yes" {
		return fmt.Errorf("only yes is supported")
	}
	return nil
}
