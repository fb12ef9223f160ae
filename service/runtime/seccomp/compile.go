// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"fmt"
	"math"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (include/uapi/linux/seccomp.h):
// int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
// Both supported architectures are little-endian, so the low half of an
// argument comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// maxInsns is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxInsns = 4096

// verdict is what one syscall number gets: ret unconditionally if always,
// otherwise ret if any of alts (each a list of ANDed conditions) holds and
// the default action if none does.
type verdict struct {
	ret    uint32
	always bool
	alts   [][]specs.LinuxSeccompArg
}

// span is a run of syscall numbers [start, next span's start) sharing a
// verdict.
type span struct {
	start uint32
	v     verdict
}

// generate emits the program: the architecture check, then a binary search
// over spans of syscall numbers, each ending in a return or in the argument
// checks of one syscall.
func generate(arch *archInfo, defRet uint32, verdicts map[uint32]verdict) ([]bpf.RawInstruction, error) {
	var a asm
	// A foreign architecture (i386 through int 0x80, arm32 compat) is
	// killed before its syscall number is even looked at: the numbers mean
	// other calls there.
	ok := a.newLabel()
	a.emit(bpf.LoadAbsolute{Off: offArch, Size: 4})
	a.jump(bpf.JumpEqual, arch.audit, ok, next)
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	a.label(ok)
	a.emit(bpf.LoadAbsolute{Off: offNr, Size: 4})
	if arch.x32Bit != 0 {
		// -1 is let through as libseccomp does: it is what a tracer sets
		// to skip a call, and seccomp sees the call again after that.
		native := a.newLabel()
		a.jump(bpf.JumpGreaterOrEqual, arch.x32Bit, next, native)
		a.jump(bpf.JumpEqual, math.MaxUint32, native, next)
		a.ret(unix.SECCOMP_RET_KILL_PROCESS)
		a.label(native)
	}
	a.search(spans(defRet, verdicts), defRet)
	return a.assemble()
}

// spans sorts the syscalls and merges neighbours with the same
// unconditional verdict, gaps included: the default profile's ~350 allowed
// calls on amd64 become a few dozen spans.
func spans(defRet uint32, verdicts map[uint32]verdict) []span {
	nrs := make([]uint32, 0, len(verdicts))
	for nr := range verdicts {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })

	def := verdict{ret: defRet, always: true}
	var out []span
	add := func(start uint32, v verdict) {
		if n := len(out); n > 0 && v.always && out[n-1].v.always && out[n-1].v.ret == v.ret {
			return // extends the previous span
		}
		out = append(out, span{start: start, v: v})
	}
	var at uint64 // next number not yet covered
	for _, nr := range nrs {
		if uint64(nr) > at {
			add(uint32(at), def)
		}
		add(nr, verdicts[nr])
		at = uint64(nr) + 1
	}
	if at <= math.MaxUint32 {
		add(uint32(at), def)
	}
	return out
}

// search emits a binary search over ss with the syscall number in A.
func (a *asm) search(ss []span, defRet uint32) {
	if len(ss) == 1 {
		a.body(ss[0].v, defRet)
		return
	}
	mid := len(ss) / 2
	right := a.newLabel()
	a.jump(bpf.JumpGreaterOrEqual, ss[mid].start, right, next)
	a.search(ss[:mid], defRet)
	a.label(right)
	a.search(ss[mid:], defRet)
}

// body emits one span's verdict.
func (a *asm) body(v verdict, defRet uint32) {
	if v.always {
		a.ret(v.ret)
		return
	}
	match := a.newLabel()
	// Alternatives that are one equality each form sets (socket's allowed
	// domains, personality's allowed values): per argument and high half,
	// check the high half once and then compare the low half with each
	// value, instead of repeating the whole 64-bit comparison per value.
	type setKey struct {
		index uint
		hi    uint32
	}
	var keys []setKey
	sets := make(map[setKey][]uint32)
	var rest [][]specs.LinuxSeccompArg
	for _, conds := range v.alts {
		if len(conds) != 1 || conds[0].Op != specs.OpEqualTo {
			rest = append(rest, conds)
			continue
		}
		k := setKey{conds[0].Index, uint32(conds[0].Value >> 32)}
		if _, seen := sets[k]; !seen {
			keys = append(keys, k)
		}
		sets[k] = append(sets[k], uint32(conds[0].Value))
	}
	for _, k := range keys {
		fail := a.newLabel()
		a.emit(bpf.LoadAbsolute{Off: offArgs + 8*uint32(k.index) + 4, Size: 4})
		a.jump(bpf.JumpEqual, k.hi, next, fail)
		a.emit(bpf.LoadAbsolute{Off: offArgs + 8*uint32(k.index), Size: 4})
		for _, lo := range sets[k] {
			a.jump(bpf.JumpEqual, lo, match, next)
		}
		a.label(fail)
	}
	for _, conds := range rest {
		fail := a.newLabel()
		for i, c := range conds {
			pass := next
			if i == len(conds)-1 {
				pass = match
			}
			a.cond(c, pass, fail)
		}
		a.label(fail)
	}
	a.ret(defRet)
	a.label(match)
	a.ret(v.ret)
}

// cond emits a 64-bit comparison of one argument, jumping to pass or fail.
// Unsigned, like libseccomp's: classic BPF has only 32-bit loads, so the
// high halves decide unless they are equal, then the low halves do.
func (a *asm) cond(c specs.LinuxSeccompArg, pass, fail label) {
	lo := bpf.LoadAbsolute{Off: offArgs + 8*uint32(c.Index), Size: 4}
	hi := bpf.LoadAbsolute{Off: offArgs + 8*uint32(c.Index) + 4, Size: 4}
	vhi, vlo := uint32(c.Value>>32), uint32(c.Value)
	switch c.Op {
	case specs.OpEqualTo:
		a.emit(hi)
		a.jump(bpf.JumpEqual, vhi, next, fail)
		a.emit(lo)
		a.jump(bpf.JumpEqual, vlo, pass, fail)
	case specs.OpNotEqual:
		a.emit(hi)
		a.jump(bpf.JumpEqual, vhi, next, pass)
		a.emit(lo)
		a.jump(bpf.JumpEqual, vlo, fail, pass)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.emit(hi)
		a.jump(bpf.JumpGreaterThan, vhi, pass, next)
		a.jump(bpf.JumpEqual, vhi, next, fail)
		a.emit(lo)
		test := bpf.JumpGreaterThan
		if c.Op == specs.OpGreaterEqual {
			test = bpf.JumpGreaterOrEqual
		}
		a.jump(test, vlo, pass, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.emit(hi)
		a.jump(bpf.JumpLessThan, vhi, pass, next)
		a.jump(bpf.JumpEqual, vhi, next, fail)
		a.emit(lo)
		test := bpf.JumpLessThan
		if c.Op == specs.OpLessEqual {
			test = bpf.JumpLessOrEqual
		}
		a.jump(test, vlo, pass, fail)
	case specs.OpMaskedEqual:
		// (arg & Value) == ValueTwo
		mhi, mlo := uint32(c.Value>>32), uint32(c.Value)
		dhi, dlo := uint32(c.ValueTwo>>32), uint32(c.ValueTwo)
		switch {
		case mhi == 0 && dhi != 0:
			a.always(fail) // the masked high half is 0, never dhi
			return
		case mhi != 0:
			a.emit(hi)
			a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mhi})
			a.jump(bpf.JumpEqual, dhi, next, fail)
		}
		a.emit(lo)
		a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mlo})
		a.jump(bpf.JumpEqual, dlo, pass, fail)
	default:
		panic(fmt.Sprintf("seccomp: operator %q passed checkArgs", c.Op)) // checkArgs refused it
	}
}

// label names a position in the program; next is the instruction after the
// jump, wherever trampolines put it.
type label int

const next label = -1

// insn is an instruction before layout: a fixed one, or a jump to labels.
type insn struct {
	fixed  bpf.Instruction
	isJump bool
	test   bpf.JumpTest
	val    uint32
	jt, jf label
	isJA   bool // unconditional jump to jt
	// farT and farF are set by layout when the conditional target is out
	// of reach of an 8-bit offset: a `ja` follows to carry the jump.
	farT, farF bool
}

// asm is a forward-only BPF assembler with labels.
type asm struct {
	insns  []insn
	labels []int // label -> index into insns (the next instruction emitted)
}

func (a *asm) newLabel() label        { a.labels = append(a.labels, -1); return label(len(a.labels) - 1) }
func (a *asm) label(l label)          { a.labels[l] = len(a.insns) }
func (a *asm) emit(i bpf.Instruction) { a.insns = append(a.insns, insn{fixed: i}) }
func (a *asm) ret(v uint32)           { a.emit(bpf.RetConstant{Val: v}) }
func (a *asm) always(l label)         { a.insns = append(a.insns, insn{isJA: true, jt: l}) }
func (a *asm) jump(t bpf.JumpTest, v uint32, jt, jf label) {
	a.insns = append(a.insns, insn{isJump: true, test: t, val: v, jt: jt, jf: jf})
}

func (i *insn) size() int {
	n := 1
	if i.farT {
		n++
	}
	if i.farF {
		n++
	}
	return n
}

// assemble lays the program out, growing conditional jumps whose target is
// more than 255 instructions away into a short jump to a `ja`, until
// nothing moves, and encodes it.
func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	var pos []int
	target := func(i int, l label) int {
		if l == next {
			return pos[i+1]
		}
		return pos[a.labels[l]]
	}
	for {
		pos = make([]int, len(a.insns)+1)
		for i := range a.insns {
			pos[i+1] = pos[i] + a.insns[i].size()
		}
		grown := false
		for i := range a.insns {
			in := &a.insns[i]
			if !in.isJump {
				continue
			}
			// Offsets count from the instruction after the conditional
			// jump itself, which precedes its trampolines.
			if !in.farT && target(i, in.jt)-(pos[i]+1) > math.MaxUint8 {
				in.farT, grown = true, true
			}
			if !in.farF && target(i, in.jf)-(pos[i]+1) > math.MaxUint8 {
				in.farF, grown = true, true
			}
		}
		if !grown {
			break
		}
	}
	if pos[len(a.insns)] > maxInsns {
		return nil, fmt.Errorf("seccomp: program has %d instructions, the kernel takes at most %d", pos[len(a.insns)], maxInsns)
	}

	var out []bpf.Instruction
	for i := range a.insns {
		in := &a.insns[i]
		switch {
		case in.isJA:
			d := target(i, in.jt) - (pos[i] + 1)
			if d < 0 {
				return nil, fmt.Errorf("seccomp: internal error: backward jump at %d", pos[i])
			}
			out = append(out, bpf.Jump{Skip: uint32(d)})
		case in.isJump:
			t, f := target(i, in.jt), target(i, in.jf)
			base := pos[i] + 1
			if t < base || f < base {
				return nil, fmt.Errorf("seccomp: internal error: backward jump at %d", pos[i])
			}
			st, sf := t-base, f-base
			tramp := 0
			if in.farT {
				st, tramp = tramp, tramp+1
			}
			if in.farF {
				sf = tramp
			}
			out = append(out, bpf.JumpIf{Cond: in.test, Val: in.val, SkipTrue: uint8(st), SkipFalse: uint8(sf)})
			if in.farT {
				out = append(out, bpf.Jump{Skip: uint32(t - (base + 1))})
			}
			if in.farF {
				out = append(out, bpf.Jump{Skip: uint32(f - (base + tramp + 1))})
			}
		default:
			out = append(out, in.fixed)
		}
	}
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assembling: %w", err)
	}
	return raw, nil
}
