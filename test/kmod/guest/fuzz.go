// SPDX-License-Identifier: Apache-2.0

package main

import (
	"math/rand"
	"time"
	"unsafe"

	"github.com/jackfruit/jackfruit/service/monitor"
	"golang.org/x/sys/unix"
)

// testFuzz issues 10,000 ioctls with random command numbers, sizes,
// garbage structs and bad pointers, plus reads into bad buffers. Every call
// must fail cleanly (only GET_VERSION/STATS/QUERY into a valid buffer may
// succeed) and the kernel must not complain (checked by the harness).
func testFuzz(t *T) {
	const calls = 10000
	d := mustRaw(t, true)
	defer d.Close()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	// Garbage buffer: two pages followed by a PROT_NONE guard page, so a
	// struct can straddle into unmapped memory.
	page := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 3*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(mem)
	if err := unix.Mprotect(mem[2*page:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	// A user address that faults: a PROT_NONE page kept reserved for the whole run. (A page
	// that was mapped and then unmapped is not safe to use: the Go runtime may map that range
	// again, and then the "bad" pointer is valid and the ioctl rightly succeeds.)
	noAccess, err := unix.Mmap(-1, 0, page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap PROT_NONE: %v", err)
	}
	defer unix.Munmap(noAccess)
	faultAddr := uintptr(unsafe.Pointer(&noAccess[0]))

	valid := []uintptr{monitor.IocGetVersion, monitor.IocRegister, monitor.IocUnregister, monitor.IocQuery, monitor.IocStats, monitor.IocQueryAll}
	// ioctl types the VFS handles itself before the driver (FIOCLEX,
	// FIONBIO, FIGETBSZ, FS_IOC_*...): those may legitimately succeed.
	vfsTypes := map[uintptr]bool{0x00: true, 0x54: true, 0x58: true, 0x66: true, 0x94: true, 0x15: true}
	badAddrs := []uintptr{0, 1, 0x1000, faultAddr, 0xffffffff81000000, 0xffff888000000000, 0x8000000000000000, ^uintptr(0)}

	var counts = map[unix.Errno]int{}
	successes := 0
	for i := 0; i < calls; i++ {
		// Fresh garbage each time; sometimes a nearly valid register.
		rng.Read(mem[:2*page])
		var cmd uintptr
		switch r := rng.Intn(10); {
		case r < 4:
			cmd = valid[rng.Intn(len(valid))]
		case r < 7: // our magic, any nr/dir/size
			cmd = uintptr(rng.Intn(4))<<30 | uintptr(rng.Intn(1<<14))<<16 | monitor.IocMagic<<8 | uintptr(rng.Intn(256))
		default:
			for {
				cmd = uintptr(rng.Uint32())
				if !vfsTypes[(cmd>>8)&0xff] && (cmd>>8)&0xff != monitor.IocMagic {
					break
				}
			}
		}
		var addr uintptr
		off := 0
		validBuf := false
		switch r := rng.Intn(10); {
		case r < 3:
			addr = badAddrs[rng.Intn(len(badAddrs))]
		case r < 5: // straddles the guard page
			addr = base + 2*uintptr(page) - uintptr(1+rng.Intn(100))
		default:
			off = rng.Intn(page)
			addr = base + uintptr(off)
			validBuf = true
		}
		// A struct that ends before the guard page is a valid buffer too.
		if size := (cmd >> 16) & 0x3fff; addr >= base && size <= 2*uintptr(page) && addr-base <= 2*uintptr(page)-size {
			validBuf = true
			off = int(addr - base)
		}
		if cmd == monitor.IocRegister && validBuf && rng.Intn(2) == 0 {
			nearlyValidRegister(rng, (*monitor.RegisterArgs)(unsafe.Pointer(&mem[off])))
		}
		e := d.ioctlAddr(cmd, addr)
		counts[e]++
		if e == 0 {
			successes++
			// QUERY cannot succeed: nothing is registered through this file. QUERY_ALL
			// can, with zero flags and any array (it has no entries to write).
			readOnly := cmd == monitor.IocGetVersion || cmd == monitor.IocStats || cmd == monitor.IocQueryAll
			if !(readOnly && validBuf) {
				t.Errorf("ioctl %#x on %#x succeeded", cmd, addr)
				if cmd == monitor.IocRegister {
					a := (*monitor.RegisterArgs)(unsafe.Pointer(&mem[off]))
					_ = d.unregister(a.ID)
				}
			}
			continue
		}
		isOurs := (cmd>>8)&0xff == monitor.IocMagic
		isValid := false
		for _, v := range valid {
			isValid = isValid || v == cmd
		}
		if isOurs && !isValid && e != unix.ENOTTY {
			t.Errorf("unknown command %#x gave %v, want ENOTTY", cmd, e)
		}
		if isValid && !(e == unix.EFAULT || e == unix.EINVAL || e == unix.ENOENT || e == unix.ESRCH || e == unix.EEXIST || e == unix.EBADF) {
			t.Errorf("command %#x on %#x gave %v", cmd, addr, e)
		}
		if i%8 == 0 {
			// read() into bad or short buffers.
			n := rng.Intn(3 * monitor.EventSize)
			if _, _, e := unix.Syscall(unix.SYS_READ, uintptr(d.fd), addr, uintptr(n)); e == 0 {
				// Only possible with a valid buffer and a queued event.
				if !validBuf {
					t.Errorf("read into %#x succeeded", addr)
				}
			}
		}
		if len(t.errors) > 20 {
			t.Fatalf("too many failures")
		}
	}
	t.Logf("%d calls: %d succeeded (read-only into valid buffers), errnos %v", calls, successes, counts)
	c := mustClient(t)
	defer c.Close()
	if st, _ := c.Stats(); st.Entries != 0 {
		t.Errorf("%d entries registered by garbage", st.Entries)
	}
}

// nearlyValidRegister fills a register request with exactly one bad field.
func nearlyValidRegister(rng *rand.Rand, a *monitor.RegisterArgs) {
	// A pidfd number that may be any open descriptor of this process (the device, the
	// kmsg reader, a pipe...) or none: only a pidfd may be accepted, and there is none.
	*a = monitor.RegisterArgs{Pidfd: int32(rng.Intn(64)), SoftLimit: 1 << 20, HardLimit: 2 << 20}
	copy(a.Name[:], "fuzz")
	switch rng.Intn(7) {
	case 0:
		a.Flags = rng.Uint32() | 1
	case 1:
		a.SoftLimit = a.HardLimit + 1
	case 2:
		a.HardLimit, a.SoftLimit = 0, 0
	case 3:
		a.Name[10] = byte(1 + rng.Intn(255)) // garbage after the NUL
	case 4:
		a.Name[0] = '-'
	case 5:
		a.Reserved = rng.Uint64() | 1
	case 6:
		a.Name[1] = byte(0x80 + rng.Intn(128)) // not ASCII
	}
}
