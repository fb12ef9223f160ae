// SPDX-License-Identifier: Apache-2.0

// The default confinement of a container, written down once as data (as runc's specconv
// example and the OCI default spec do): the capabilities it keeps, the kernel files it may
// not write or read, the device nodes it gets. The setup stage only applies these tables;
// docs/security.md explains each choice and compares it with runc and podman.

package runtime

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service/runtime/seccomp"
)

// Cap is a Linux capability number (include/uapi/linux/capability.h).
type Cap uint

// capNames are the kernel's capability names without the CAP_ prefix, indexed by number.
var capNames = [...]string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// String returns the kernel's name, e.g. "CAP_NET_ADMIN".
func (c Cap) String() string {
	if int(c) < len(capNames) {
		return "CAP_" + capNames[c]
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// CapSet is a set of capabilities, bit N standing for capability N: the form the kernel uses
// in capset(2) and /proc/PID/status (CapEff and friends).
type CapSet uint64

// Has reports whether c is in the set.
func (s CapSet) Has(c Cap) bool { return c < 64 && s&(1<<c) != 0 }

// Caps lists the set's capabilities in numeric order.
func (s CapSet) Caps() []Cap {
	out := make([]Cap, 0, bits.OnesCount64(uint64(s)))
	for c := Cap(0); c < 64; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Names lists the set's capabilities by kernel name ("CAP_CHOWN", ...) in numeric order.
func (s CapSet) Names() []string {
	out := []string{}
	for _, c := range s.Caps() {
		out = append(out, c.String())
	}
	return out
}

// String is the set as /proc/PID/status prints it (16 hex digits).
func (s CapSet) String() string { return fmt.Sprintf("%016x", uint64(s)) }

func capSetOf(names ...string) CapSet {
	var s CapSet
	for _, n := range names {
		c, err := ParseCap(n)
		if err != nil {
			panic(err) // the tables below are constants
		}
		s |= 1 << c
	}
	return s
}

// ParseCap accepts a capability as podman spells it: "NET_ADMIN" or "CAP_NET_ADMIN", in any
// case. "ALL" is not a capability; ResolveCapabilities handles it.
func ParseCap(name string) (Cap, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "CAP_")
	for i, known := range capNames {
		if n == known {
			return Cap(i), nil
		}
	}
	return 0, fmt.Errorf("unknown capability %q (names as in capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL)", name)
}

// DefaultCapabilities is the OCI default set (runc's and crun's `spec`, podman's and Docker's
// default): enough for a root shell, package managers, chown, su, binding low ports and ping,
// and none of the capabilities that reach the host's kernel (SYS_ADMIN, SYS_MODULE,
// NET_ADMIN, SYS_PTRACE, SYSLOG, BPF, ...). CapEff 00000000a80425fb.
var DefaultCapabilities = capSetOf(
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)

// AllCapabilities is every capability this kernel knows (0..cap_last_cap), or every one
// jackfruit knows when /proc does not say.
func AllCapabilities() CapSet {
	last := len(capNames) - 1
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			last = n
		}
	}
	return CapSet(uint64(1)<<(last+1) - 1)
}

// ResolveCapabilities applies podman's --cap-add and --cap-drop to DefaultCapabilities.
// "ALL" in add starts from every capability (then drop applies); "ALL" in drop starts from
// none (then add applies). A name in both lists, ALL in both, or an unknown name is an error
// naming it: a typo must never start a container with a different set than asked for.
func ResolveCapabilities(add, drop []string) (CapSet, error) {
	isAll := func(n string) bool { return strings.EqualFold(strings.TrimSpace(n), "ALL") }
	parse := func(list []string, what string) (CapSet, bool, error) {
		var s CapSet
		all := false
		for _, n := range list {
			if isAll(n) {
				all = true
				continue
			}
			c, err := ParseCap(n)
			if err != nil {
				return 0, false, fmt.Errorf("%s: %w", what, err)
			}
			s |= 1 << c
		}
		return s, all, nil
	}
	a, addAll, err := parse(add, "cap-add")
	if err != nil {
		return 0, err
	}
	d, dropAll, err := parse(drop, "cap-drop")
	if err != nil {
		return 0, err
	}
	if addAll && dropAll {
		return 0, fmt.Errorf("cap-add ALL and cap-drop ALL contradict each other")
	}
	if both := a & d; both != 0 {
		return 0, fmt.Errorf("capabilities %s are both added and dropped", strings.Join(both.Names(), ", "))
	}
	switch {
	case addAll:
		return AllCapabilities() &^ d, nil
	case dropAll:
		return a, nil
	}
	return (DefaultCapabilities | a) &^ d, nil
}

// Network selects the container's network namespace.
type Network string

// Network modes.
const (
	// NetworkHost shares the host's network namespace (the default, as systemd-nspawn's).
	NetworkHost Network = "host"
	// NetworkNone gives the container a network namespace of its own holding only "lo", up.
	NetworkNone Network = "none"
)

// ParseNetwork accepts "host", "none" or "" (the default, host).
func ParseNetwork(s string) (Network, error) {
	switch Network(s) {
	case "", NetworkHost:
		return NetworkHost, nil
	case NetworkNone:
		return NetworkNone, nil
	}
	return "", fmt.Errorf("unknown network mode %q (known: host, none)", s)
}

// Security is the confinement of one container. DefaultSecurity is what a container gets
// unless asked otherwise.
type Security struct {
	// Capabilities the command keeps, in its bounding, permitted, effective and inheritable
	// sets; the ambient set is cleared. Capabilities the supervisor itself lacks cannot be
	// given (Process.Capabilities says what the container actually got).
	Capabilities CapSet `json:"capabilities"`
	// NoNewPrivileges sets PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities then
	// grant nothing.
	NoNewPrivileges bool `json:"no_new_privileges,omitempty"`
	// Seccomp is the seccomp filter to install, as seccomp.Filter.Marshal encodes it
	// (SeccompFilter compiles the default one); nil runs the container without a filter.
	Seccomp []byte `json:"seccomp,omitempty"`
	// Floor is installed before Seccomp, and stays whatever the container asks for: the
	// system-call restrictions of the service the supervisor runs under (seccomp.Floor), for
	// a container that does not inherit them because it runs in a unit of its own. nil when
	// the container is the supervisor's child (it inherits them) or the supervisor runs by
	// hand.
	Floor []byte `json:"floor,omitempty"`
	// Network is the network mode; "" means NetworkHost.
	Network Network `json:"network,omitempty"`
}

// DefaultSecurity is the default confinement: DefaultCapabilities, the default seccomp
// filter, the host's network.
func DefaultSecurity() (Security, error) {
	filter, err := SeccompFilter(DefaultCapabilities & BoundingSet())
	if err != nil {
		return Security{}, err
	}
	return Security{Capabilities: DefaultCapabilities, Seccomp: filter, Network: NetworkHost}, nil
}

// FloorFilter compiles seccomp.Floor, marshalled for Security.Floor.
func FloorFilter() ([]byte, error) {
	f, err := seccomp.Floor()
	if err != nil {
		return nil, fmt.Errorf("compiling the system-call floor: %w", err)
	}
	return f.Marshal(), nil
}

// SeccompFilter compiles the default seccomp profile (the one docker and podman apply) for a
// container holding caps, marshalled for Security.Seccomp. The profile opens some calls
// only to holders of certain capabilities (mount with CAP_SYS_ADMIN, ...), so it must be
// compiled for the set the container really gets. Compiling takes a few milliseconds: callers
// that start many containers keep the result per set.
func SeccompFilter(caps CapSet) ([]byte, error) {
	f, err := seccomp.Default(caps.Names())
	if err != nil {
		return nil, fmt.Errorf("compiling the default seccomp filter: %w", err)
	}
	return f.Marshal(), nil
}

// Paths under /proc and /sys that the OCI default spec (runc and crun `spec`, podman, Docker)
// makes read-only or hides. Without CAP_SYS_ADMIN the container cannot unmount or remount
// them. A masked file is covered by /dev/null, a masked directory by an empty read-only tmpfs.
var (
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	maskedPaths   = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
)

// device is one node of the container's minimal /dev.
type device struct {
	name         string
	major, minor uint32
}

// devices are the only device nodes a container can open: the OCI default set. /dev/ptmx is
// a symlink to the container's own devpts instance. Every other filesystem the container can
// reach is mounted nodev, so a node it creates with mknod (CAP_MKNOD is in the default set,
// as in the OCI default) cannot be opened.
var devices = []device{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// BoundingSet is the calling thread's capability bounding set: what any process it starts
// can ever hold. All threads of the supervisor share it (nothing in it changes the set).
func BoundingSet() CapSet {
	var s CapSet
	for c := Cap(0); c < 64; c++ {
		r, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0, 0)
		if errno != 0 {
			break // EINVAL past the kernel's last capability
		}
		if r == 1 {
			s |= 1 << c
		}
	}
	return s
}

// inheritedNoNewPrivs reports whether the calling thread has no_new_privs set, which every
// process it starts inherits.
func inheritedNoNewPrivs() bool {
	r, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	return err == nil && r == 1
}
