// SPDX-License-Identifier: Apache-2.0

// Package seccomp builds and installs the seccomp filter of a container: by
// default the one docker and podman apply, taken as data from
// github.com/moby/profiles/seccomp, compiled to classic BPF in pure Go so the
// jackfruit binary stays static and cgo-free.
//
// # What the default filter does
//
// The profile's rules are resolved for one container: a rule whose
// "includes" names capabilities is kept only if the container holds all of
// them, one whose "excludes" names a capability is dropped if it holds any
// (so --cap-add SYS_ADMIN unlocks mount, unshare, setns, clone with namespace
// flags … exactly as under podman), kernel-version and architecture
// conditions are checked against the running kernel and the native
// architecture. What remains is compiled into one program that
//
//   - kills the process (SECCOMP_RET_KILL_PROCESS) for any architecture but
//     the native one (AUDIT_ARCH_X86_64 on amd64, AUDIT_ARCH_AARCH64 on
//     arm64) and, on amd64, for the x32 ABI (syscall numbers with bit
//     0x40000000; -1, which a tracer sets to skip a call, gets the default
//     action as under libseccomp). docker's profile also admits i386 and x32 calls; jackfruit
//     does not: a 32-bit caller is a way around rules written for 64-bit
//     argument layouts, and no container workload here needs it;
//   - returns the profile's verdict for every syscall it names: allow, or an
//     errno (the default action is ERRNO(EPERM); clone3 gets ENOSYS when the
//     container lacks CAP_SYS_ADMIN, so that glibc falls back to clone, whose
//     flags the filter can see and refuse the namespace flags of);
//   - checks argument conditions (EQ, NE, LT, LE, GT, GE, MASKED_EQ) on the
//     full 64-bit argument, comparing both 32-bit halves. Conditions in one
//     rule are ANDed; several rules for one syscall are ORed (libseccomp's
//     semantics). Two conditions on the same argument in one rule are refused,
//     because runc and libseccomp disagree on what they mean.
//
// Syscall names the profile lists that do not exist on the architecture
// (chown32, the arm- and s390-only calls, …) are skipped, as libseccomp skips
// them: they fall to the default action, so a name we cannot map never
// allows anything. Filter.Skipped lists them. The name → number tables are
// generated from golang.org/x/sys/unix (gen_tables.go).
//
// # Why our own generator
//
// github.com/elastic/go-seccomp-bpf was the other candidate. It cannot
// express the profile: its argument operations have no MASKED_EQ with a
// datum (the clone rule needs "(flags & NS_FLAGS) == 0", which BitsNotSet
// could express, but not a general mask/value pair), no per-rule errno
// (clone3 → ENOSYS next to a default EPERM needs two ERRNO verdicts), it
// refuses unknown names instead of skipping them, it matches syscalls by a
// linear scan (about 350 comparisons for the last one in the profile) and it
// brings go-ucfg, yaml and testify into the module graph. The generator here
// is about 350 lines over golang.org/x/net/bpf: it merges neighbouring syscall
// numbers with the same verdict into ranges and finds the range by binary
// search (7 comparisons deep for the default profile on amd64), and its jump
// assembler inserts long jumps where a conditional branch would exceed 255
// instructions. Arguments are read only inside the blocks of the syscalls
// that have conditions, so the kernel's action cache (Linux 5.11+) answers
// every unconditionally allowed call from a bitmap without running the
// filter. The tests run every syscall of the table and random and
// boundary arguments through golang.org/x/net/bpf's VM and compare the
// verdict with moby's own resolution of the profile.
//
// # Usage
//
// Compile once, in the supervisor, and hand the bytes to the setup stage:
//
//	f, err := seccomp.Default([]string{"CAP_CHOWN", "CAP_NET_RAW", ...})
//	blob := f.Marshal()
//	// ... in the setup stage, after the mounts, before execve:
//	f, err := seccomp.Unmarshal(blob)
//	err = f.Install()
//
// DefaultOCI gives the same policy in the runtime-spec form, for runc or
// crun (the benchmark's peers).
//
// Install does not set no_new_privs: the caller decides. Without it the
// caller needs CAP_SYS_ADMIN, which the setup stage still has before it
// drops the container's capabilities; install the filter last among the
// privileged steps (its syscalls must pass the filter too: after Install,
// mount, pivot_root or setns fail with EPERM unless the container keeps
// CAP_SYS_ADMIN), then drop capabilities and execve. Install uses
// SECCOMP_FILTER_FLAG_TSYNC so that every thread of the (multi-threaded) Go
// process gets the filter, not only the calling one.
package seccomp
