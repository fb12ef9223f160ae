// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Filter is a compiled seccomp program for one architecture.
type Filter struct {
	arch    *archInfo
	flags   uint32 // seccomp(2) flags the profile asked for; TSYNC is added by Install
	prog    []bpf.RawInstruction
	skipped []string
}

// Len is the number of BPF instructions (the kernel takes at most 4096).
func (f *Filter) Len() int { return len(f.prog) }

// Arch is the GOARCH the filter is for.
func (f *Filter) Arch() string { return f.arch.goarch }

// Skipped lists the profile's syscall names that do not exist on the
// filter's architecture and so fall to the default action. Empty after
// Unmarshal.
func (f *Filter) Skipped() []string { return append([]string(nil), f.skipped...) }

// Encoding of a marshalled filter, all little-endian:
// magic "jfsc", version (4 bytes), audit arch, seccomp flags, instruction
// count, then count struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}.
const (
	magic      = "jfsc"
	version    = 1
	headerSize = 20
	insnSize   = 8
)

// Marshal encodes the compiled program for Unmarshal, e.g. in another
// process: compiling is done once in the supervisor, not on every start.
func (f *Filter) Marshal() []byte {
	b := make([]byte, headerSize, headerSize+insnSize*len(f.prog))
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[4:], version)
	binary.LittleEndian.PutUint32(b[8:], f.arch.audit)
	binary.LittleEndian.PutUint32(b[12:], f.flags)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(f.prog)))
	for _, in := range f.prog {
		b = binary.LittleEndian.AppendUint16(b, in.Op)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return b
}

// Unmarshal decodes what Marshal produced. It checks the framing, the
// architecture and that every instruction is one classic BPF knows; the
// kernel checks the rest when the filter is installed.
func Unmarshal(b []byte) (*Filter, error) {
	if len(b) < headerSize || string(b[:4]) != magic {
		return nil, errors.New("seccomp: not a marshalled filter")
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != version {
		return nil, fmt.Errorf("seccomp: marshalled filter has version %d, want %d", v, version)
	}
	audit := binary.LittleEndian.Uint32(b[8:])
	arch := archByAudit(audit)
	if arch == nil {
		return nil, fmt.Errorf("seccomp: marshalled filter is for unknown audit arch %#x", audit)
	}
	flags := binary.LittleEndian.Uint32(b[12:])
	if flags&^uint32(unix.SECCOMP_FILTER_FLAG_LOG|unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW) != 0 {
		return nil, fmt.Errorf("seccomp: marshalled filter has unsupported flags %#x", flags)
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if n == 0 || n > maxInsns {
		return nil, fmt.Errorf("seccomp: marshalled filter has %d instructions, want 1..%d", n, maxInsns)
	}
	if uint64(len(b)) != headerSize+insnSize*uint64(n) {
		return nil, fmt.Errorf("seccomp: marshalled filter is %d bytes, want %d for %d instructions", len(b), headerSize+insnSize*n, n)
	}
	prog := make([]bpf.RawInstruction, n)
	for i := range prog {
		p := b[headerSize+insnSize*i:]
		prog[i] = bpf.RawInstruction{
			Op: binary.LittleEndian.Uint16(p),
			Jt: p[2],
			Jf: p[3],
			K:  binary.LittleEndian.Uint32(p[4:]),
		}
		if err := checkInsn(prog[i], i, len(prog)); err != nil {
			return nil, fmt.Errorf("seccomp: marshalled filter: %w", err)
		}
	}
	if prog[n-1].Op != opRet {
		return nil, errors.New("seccomp: marshalled filter does not end in a return")
	}
	return &Filter{arch: arch, flags: flags, prog: prog}, nil
}

// The opcodes the compiler emits (linux/filter.h): BPF_LD|BPF_W|BPF_ABS,
// BPF_ALU|BPF_AND|BPF_K, BPF_JMP|BPF_JA and BPF_JMP|{JEQ,JGT,JGE,JSET}|BPF_K,
// BPF_RET|BPF_K.
const (
	opLoad = 0x20
	opAnd  = 0x54
	opJA   = 0x05
	opJEQ  = 0x15
	opJGT  = 0x25
	opJGE  = 0x35
	opJSET = 0x45
	opRet  = 0x06
)

// checkInsn accepts only what the compiler emits, with jumps inside the
// program. The kernel checks again; this gives a clear error before, and
// costs nothing per start, unlike disassembling into golang.org/x/net/bpf's
// types (an allocation per instruction).
func checkInsn(in bpf.RawInstruction, i, n int) error {
	switch in.Op {
	case opLoad:
		if in.K%4 != 0 || in.K >= 64 {
			return fmt.Errorf("instruction %d loads offset %d, outside struct seccomp_data", i, in.K)
		}
	case opAnd, opRet:
	case opJA:
		if uint64(i)+1+uint64(in.K) >= uint64(n) {
			return fmt.Errorf("instruction %d jumps past the end", i)
		}
	case opJEQ, opJGT, opJGE, opJSET:
		if i+1+int(max(in.Jt, in.Jf)) >= n {
			return fmt.Errorf("instruction %d jumps past the end", i)
		}
	default:
		return fmt.Errorf("instruction %d (%#04x) is not one the compiler emits", i, in.Op)
	}
	return nil
}

// Install applies the filter to every thread of the calling process
// (SECCOMP_FILTER_FLAG_TSYNC: the Go runtime runs goroutines on several
// threads, and a filter on one thread only would leave the others, and
// whatever they exec, unfiltered). It does not set no_new_privs; without
// it the caller needs CAP_SYS_ADMIN. The filter is inherited across fork and
// execve and cannot be removed.
func (f *Filter) Install() error {
	if f == nil || f.arch == nil || len(f.prog) == 0 {
		return errors.New("seccomp: empty filter (build one with Default, Compile or Unmarshal)")
	}
	if f.arch.goarch != runtime.GOARCH {
		// Every call would be killed as a foreign architecture.
		return fmt.Errorf("seccomp: filter is for %s, this process runs on %s", f.arch.goarch, runtime.GOARCH)
	}
	raw := make([]unix.SockFilter, len(f.prog))
	for i, in := range f.prog {
		raw[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog := unix.SockFprog{Len: uint16(len(raw)), Filter: &raw[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		uintptr(f.flags|unix.SECCOMP_FILTER_FLAG_TSYNC), uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(raw)
	switch {
	case errno == unix.EACCES:
		return errors.New("seccomp: installing the filter: permission denied (set no_new_privs or hold CAP_SYS_ADMIN)")
	case errno != 0:
		return fmt.Errorf("seccomp: installing the filter: %w", errno)
	case r != 0:
		// TSYNC reports the first thread it could not move to the new
		// filter: one already under a filter this one does not descend
		// from.
		return fmt.Errorf("seccomp: installing the filter: thread %d has a different seccomp filter and cannot be synchronised", r)
	}
	return nil
}
