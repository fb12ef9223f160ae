// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unsafe"

	"github.com/jackfruit/jackfruit/service/monitor"
	"golang.org/x/sys/unix"
)

// Tests of ABI 2: registrations and events belong to the open file, ids instead of pid
// numbers, strict validation, permissions, QUERY from the last scan and QUERY_ALL.

// testTwoOpeners: two open files coexist (no EBUSY), each sees only its own events and
// entries, and neither can address the other's ids.
func testTwoOpeners(t *T) {
	a, b := mustRaw(t, true), mustRaw(t, true)
	defer a.Close()
	defer b.Close()
	x, y := mustSleeper(t), mustSleeper(t)
	defer stopProc(x)
	defer stopProc(y)
	idx, e := a.register(x.Process.Pid, "from-a", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register through a: %v", e)
	}
	idy, e := b.register(y.Process.Pid, "from-b", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register through b: %v", e)
	}
	for _, c := range []struct {
		d    *rawDev
		name string
		id   uint64
	}{{a, "from-a", idx}, {b, "from-b", idy}} {
		evs, _ := c.d.readEvents(500*time.Millisecond, nil)
		if len(evs) != 1 || evs[0].Name != c.name || evs[0].ID != c.id || evs[0].Seq != 1 {
			t.Errorf("file of %s read %s, want only its own registered event with seq 1", c.name, eventsString(evs))
		}
		if st := c.d.stats(); st.FileEntries != 1 || st.Entries < 2 {
			t.Errorf("file of %s: stats %+v, want 1 own entry of >= 2", c.name, st)
		}
	}
	_, e = a.query(idy)
	wantErrno(t, "query of b's id through a", e, unix.ENOENT)
	wantErrno(t, "unregister of b's id through a", a.unregister(idy), unix.ENOENT)
	if _, e := b.query(idy); e != 0 {
		t.Errorf("b's entry after a tried to remove it: %v", e)
	}
	wantErrno(t, "a unregisters its own", a.unregister(idx), 0)
	wantErrno(t, "b unregisters its own", b.unregister(idy), 0)
}

// testCloseDropsEntries: closing the last descriptor of an open file drops its entries at
// once (the processes live on), and handing the descriptor to another process over
// SCM_RIGHTS keeps them, with their queued events, for as long as that process holds it.
func testCloseDropsEntries(t *T) {
	obs := mustRaw(t, true)
	defer obs.Close()
	x := mustSleeper(t)
	defer stopProc(x)

	d := mustRaw(t, true)
	if _, e := d.register(x.Process.Pid, "closed", 0, 4*mib); e != 0 {
		t.Fatalf("register: %v", e)
	}
	k, _ := openKmsg()
	defer unix.Close(k.fd)
	k.next()
	d.Close()
	if st := obs.stats(); st.Entries != 0 || st.ScanPending != 0 {
		t.Errorf("after close: %d entries, scan pending %d, want none", st.Entries, st.ScanPending)
	}
	if n := len(grepMsgs(k.next(), "Device file closed, dropping container=closed pid=")); n != 1 {
		t.Errorf("%d 'Device file closed' lines, want 1", n)
	}
	id, e := obs.register(x.Process.Pid, "again", 0, bigLimit)
	wantErrno(t, "register the same process through another file", e, 0)
	wantErrno(t, "unregister it", obs.unregister(id), 0)

	// A short-lived registrant hands its file to a holder and exits.
	d = mustRaw(t, true)
	idh, e := d.register(x.Process.Pid, "handed", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	self, _ := os.Executable()
	holder := exec.Command(self, "holder")
	holder.ExtraFiles = []*os.File{os.NewFile(uintptr(sp[1]), "sock")}
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatalf("start holder: %v", err)
	}
	holder.ExtraFiles[0].Close()
	defer func() { stdin.Close(); _ = holder.Wait() }()
	if err := unix.Sendmsg(sp[0], []byte{0}, unix.UnixRights(d.fd), nil, 0); err != nil {
		t.Fatalf("sendmsg SCM_RIGHTS: %v", err)
	}
	unix.Close(sp[0])
	d.Close() // the registrant's last descriptor: the holder has the open file now
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder said nothing: %v", err)
	}
	want := fmt.Sprintf("HOLDER entries=1 event=registered:handed#%d", idh)
	if strings.TrimSpace(line) != want {
		t.Errorf("holder: %q, want %q", strings.TrimSpace(line), want)
	}
	if st := obs.stats(); st.Entries != 1 {
		t.Errorf("%d entries while the holder has the file, want 1", st.Entries)
	}
	stdin.Close()
	_ = holder.Wait()
	if st := obs.stats(); st.Entries != 0 {
		t.Errorf("%d entries after the holder exited, want 0", st.Entries)
	}
	if procState(x.Process.Pid) == "" {
		t.Errorf("the watched process died with the holder")
	}
}

// holderMain receives a device descriptor over the socket at fd 3, reports what the open
// file holds (its entry and the event queued before the hand-over), and keeps it until
// its stdin closes.
func holderMain() {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
	if err != nil {
		fmt.Printf("HOLDER recvmsg: %v\n", err)
		os.Exit(1)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	if len(msgs) != 1 {
		fmt.Println("HOLDER no fd")
		os.Exit(1)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		fmt.Printf("HOLDER rights: %v\n", err)
		os.Exit(1)
	}
	d := &rawDev{fd: fds[0]}
	st := d.stats()
	evs, _ := d.readEvents(time.Second, func(e []monitor.Event) bool { return len(e) > 0 })
	ev := "none"
	if len(evs) == 1 {
		ev = fmt.Sprintf("%s:%s#%d", evs[0].Type, evs[0].Name, evs[0].ID)
	}
	fmt.Printf("HOLDER entries=%d event=%s\n", st.FileEntries, ev)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// testFaultingRead: a read() into a buffer that faults loses no event; the next read()
// returns it, and a buffer that faults after one record returns that one record only.
func testFaultingRead(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	x, y := mustSleeper(t), mustSleeper(t)
	defer stopProc(x)
	defer stopProc(y)
	page := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(mem)
	if err := unix.Mprotect(mem[page:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	guard := uintptr(unsafe.Pointer(&mem[page]))
	read := func(addr uintptr, n int) (int, unix.Errno) {
		r, _, e := unix.Syscall(unix.SYS_READ, uintptr(d.fd), addr, uintptr(n))
		return int(r), e
	}

	id1, e := d.register(x.Process.Pid, "fault1", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	if _, e := read(guard, monitor.EventSize); e != unix.EFAULT {
		t.Errorf("read into a PROT_NONE page: %v, want EFAULT", e)
	}
	if st := d.stats(); st.EventsQueued != 1 || st.EventsDropped != 0 {
		t.Errorf("after the faulting read: %d queued, %d dropped, want 1 and 0", st.EventsQueued, st.EventsDropped)
	}
	evs, _ := d.readEvents(time.Second, func(e []monitor.Event) bool { return len(e) >= 1 })
	if len(evs) != 1 || evs[0].ID != id1 || evs[0].Seq != 1 {
		t.Errorf("after the faulting read got %s, want fault1's registered event, seq 1", eventsString(evs))
	}

	// Two queued; the buffer holds the first record and faults in the second.
	id2, _ := d.register(y.Process.Pid, "fault2", 0, bigLimit)
	_ = d.unregister(id1)
	id3, _ := d.register(x.Process.Pid, "fault3", 0, bigLimit)
	start := guard - uintptr(monitor.EventSize) - 8
	n, e := read(start, 2*monitor.EventSize)
	if e != 0 || n != monitor.EventSize {
		t.Errorf("read of two records into a buffer faulting in the second: n=%d %v, want one record", n, e)
	} else if ev, _ := monitor.DecodeEvent(mem[int(start-uintptr(unsafe.Pointer(&mem[0]))):][:monitor.EventSize]); ev.ID != id2 || ev.Seq != 2 {
		t.Errorf("first record %+v, want fault2 seq 2", ev)
	}
	evs, _ = d.readEvents(time.Second, func(e []monitor.Event) bool { return len(e) >= 1 })
	if len(evs) != 1 || evs[0].ID != id3 || evs[0].Seq != 3 {
		t.Errorf("then %s, want fault3's event, seq 3", eventsString(evs))
	}
	_ = d.unregister(id2)
	_ = d.unregister(id3)
}

// testReservedFields: every flag, reserved field and output field set on input, and every
// byte outside ASCII [A-Za-z0-9_.-] in a name, is EINVAL and changes nothing.
func testReservedFields(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	x := mustSleeper(t)
	defer stopProc(x)
	fd, _ := pidfdOf(x.Process.Pid)
	defer unix.Close(fd)
	base := func() monitor.RegisterArgs {
		a := monitor.RegisterArgs{Pidfd: int32(fd), HardLimit: bigLimit}
		copy(a.Name[:], "resv")
		return a
	}
	regCases := map[string]func(*monitor.RegisterArgs){
		"flags bit 0":        func(a *monitor.RegisterArgs) { a.Flags = 1 },
		"flags bit 31":       func(a *monitor.RegisterArgs) { a.Flags = 1 << 31 },
		"reserved":           func(a *monitor.RegisterArgs) { a.Reserved = 1 },
		"id on input":        func(a *monitor.RegisterArgs) { a.ID = 5 },
		"name byte 0xE9":     func(a *monitor.RegisterArgs) { copy(a.Name[:], "caf\xe9") },
		"name starting 0xC0": func(a *monitor.RegisterArgs) { copy(a.Name[:], "\xc0bc") },
		"name byte 0xFF":     func(a *monitor.RegisterArgs) { copy(a.Name[:], "ab\xff") },
		"name byte 0x7F":     func(a *monitor.RegisterArgs) { copy(a.Name[:], "ab\x7f") },
		"name with '/'":      func(a *monitor.RegisterArgs) { copy(a.Name[:], "a/b") },
		"name with tab":      func(a *monitor.RegisterArgs) { copy(a.Name[:], "a\tb") },
	}
	for what, mut := range regCases {
		a := base()
		mut(&a)
		wantErrno(t, "register with "+what, d.ioctl(monitor.IocRegister, unsafe.Pointer(&a)), unix.EINVAL)
	}
	if st := d.stats(); st.FileEntries != 0 {
		t.Fatalf("%d entries registered by invalid requests", st.FileEntries)
	}
	a := base()
	wantErrno(t, "the valid base request", d.ioctl(monitor.IocRegister, unsafe.Pointer(&a)), 0)
	id := a.ID

	for what, u := range map[string]monitor.UnregisterArgs{
		"flags": {ID: id, Flags: 1}, "reserved": {ID: id, Reserved: 1}, "id 0": {},
	} {
		wantErrno(t, "unregister with "+what, d.ioctl(monitor.IocUnregister, unsafe.Pointer(&u)), unix.EINVAL)
	}
	qCases := map[string]func(*monitor.QueryArgs){
		"flags": func(q *monitor.QueryArgs) { q.Flags = 1 }, "pid": func(q *monitor.QueryArgs) { q.Pid = 1 },
		"rss": func(q *monitor.QueryArgs) { q.RSS = 1 }, "soft": func(q *monitor.QueryArgs) { q.SoftLimit = 1 },
		"hard": func(q *monitor.QueryArgs) { q.HardLimit = 1 }, "sample": func(q *monitor.QueryArgs) { q.SampleNs = 1 },
		"tasks": func(q *monitor.QueryArgs) { q.NrTasks = 1 }, "reserved": func(q *monitor.QueryArgs) { q.Reserved = 1 },
		"name[0]": func(q *monitor.QueryArgs) { q.Name[0] = 'x' }, "name[63]": func(q *monitor.QueryArgs) { q.Name[63] = 1 },
	}
	for what, mut := range qCases {
		q := monitor.QueryArgs{ID: id}
		mut(&q)
		wantErrno(t, "query with "+what, d.ioctl(monitor.IocQuery, unsafe.Pointer(&q)), unix.EINVAL)
	}
	buf := make([]monitor.QueryArgs, 4)
	for what, qa := range map[string]monitor.QueryAllArgs{
		"flags": {Flags: 1}, "reserved": {Reserved: 1}, "total": {Total: 1},
	} {
		qa.Entries, qa.Count = uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf))
		wantErrno(t, "query all with "+what, d.ioctl(monitor.IocQueryAll, unsafe.Pointer(&qa)), unix.EINVAL)
	}
	if q, e := d.query(id); e != 0 || cString(q.Name[:]) != "resv" {
		t.Errorf("the entry after the invalid requests: %v %+v", e, q)
	}
	wantErrno(t, "unregister", d.unregister(id), 0)
}

// testUnprivileged: without CAP_KILL no mutating ioctl works, even on a file that a
// privileged process opened and registered through; a read-only file cannot mutate either.
func testUnprivileged(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	x := mustSleeper(t)
	defer stopProc(x)
	id, e := d.register(x.Process.Pid, "privileged", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, "noperm-fd", fmt.Sprint(id), fmt.Sprint(x.Process.Pid))
	// A duplicate shares d's open file. It gets its own *os.File, closed here: wrapping
	// d.fd itself would leave a finalizer that closes that number again later, whatever
	// it is by then.
	dup, err := unix.Dup(d.fd)
	if err != nil {
		t.Fatalf("dup: %v", err)
	}
	df := os.NewFile(uintptr(dup), "dev")
	cmd.ExtraFiles = []*os.File{df}
	out, err := cmd.CombinedOutput()
	df.Close()
	if want := "unregister=1 register=1 query=0"; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("without CAP_KILL on the registrant's file: %q %v, want %q (1 = EPERM)", out, err, want)
	}
	if _, e := d.query(id); e != 0 {
		t.Errorf("the entry after the unprivileged attempts: %v", e)
	}

	ro, err := unix.Open(monitor.DefaultDevice, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	r := &rawDev{fd: ro}
	defer r.Close()
	_, e = r.register(x.Process.Pid, "readonly", 0, bigLimit)
	wantErrno(t, "register on a read-only file", e, unix.EBADF)
	wantErrno(t, "unregister on a read-only file", r.unregister(id), unix.EBADF)
	_, e = r.query(id)
	wantErrno(t, "query of another file's id on a read-only file", e, unix.ENOENT)
	var st monitor.Stats
	wantErrno(t, "stats on a read-only file", r.ioctl(monitor.IocStats, unsafe.Pointer(&st)), 0)
	if _, err := unix.Read(ro, make([]byte, monitor.EventSize)); err != unix.EAGAIN {
		t.Errorf("read on a read-only file: %v, want EAGAIN", err)
	}
	wantErrno(t, "unregister", d.unregister(id), 0)
}

// nopermFdMain drops CAP_KILL and tries UNREGISTER (of an id registered by its parent),
// REGISTER and QUERY on the inherited open file at fd 3.
func nopermFdMain(args []string) {
	var id uint64
	var pid int
	if len(args) != 2 {
		os.Exit(2)
	}
	fmt.Sscan(args[0], &id)
	fmt.Sscan(args[1], &pid)
	runtimeLockOSThread()
	if err := dropCapKill(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	d := &rawDev{fd: 3}
	u := d.unregister(id)
	_, r := d.register(pid, "noperm", 0, mib)
	_, q := d.query(id)
	fmt.Printf("unregister=%d register=%d query=%d\n", int(u), int(r), int(q))
	os.Exit(0)
}

// dropCapKill removes CAP_KILL from the calling thread's effective set.
func dropCapKill() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Effective &^= 1 << unix.CAP_KILL
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// testQueryAll: one call returns every entry of this file in registration order, as QUERY
// gives them; a short array gets a prefix and the total; other files' entries never show.
func testQueryAll(t *T) {
	d, other := mustRaw(t, true), mustRaw(t, true)
	defer d.Close()
	defer other.Close()
	var ids []uint64
	for i := 0; i < 3; i++ {
		p := mustSleeper(t)
		defer stopProc(p)
		id, e := d.register(p.Process.Pid, fmt.Sprintf("all%d", i), uint64(i)*mib, bigLimit)
		if e != 0 {
			t.Fatalf("register: %v", e)
		}
		ids = append(ids, id)
	}
	o := mustSleeper(t)
	defer stopProc(o)
	oid, _ := other.register(o.Process.Pid, "other", 0, bigLimit)
	defer other.unregister(oid)

	if got, a, e := d.queryAll(0); e != 0 || len(got) != 0 || a.Total != 3 {
		t.Errorf("count 0: %v, %d written, total %d; want 0 written, total 3", e, len(got), a.Total)
	}
	if got, a, e := d.queryAll(2); e != 0 || len(got) != 2 || a.Total != 3 || got[0].ID != ids[0] || got[1].ID != ids[1] {
		t.Errorf("count 2: %v, %d written, total %d", e, len(got), a.Total)
	}
	got, a, e := d.queryAll(10)
	if e != 0 || len(got) != 3 || a.Total != 3 {
		t.Fatalf("count 10: %v, %d written, total %d; want 3 and 3", e, len(got), a.Total)
	}
	for i, q := range got {
		one, e := d.query(ids[i])
		if e != 0 || q != one {
			t.Errorf("QUERY_ALL record %d %+v differs from QUERY %+v (%v)", i, q, one, e)
		}
	}
	if got, _, _ := other.queryAll(10); len(got) != 1 || got[0].ID != oid {
		t.Errorf("the other file's QUERY_ALL: %d records, want its own one", len(got))
	}
	qa := monitor.QueryAllArgs{Entries: 0x1000, Count: 3}
	wantErrno(t, "query all into a bad address", d.ioctl(monitor.IocQueryAll, unsafe.Pointer(&qa)), unix.EFAULT)
	c := mustClient(t)
	defer c.Close()
	if es, err := c.QueryAll(); err != nil || len(es) != 0 {
		t.Errorf("client QueryAll on a fresh file: %v %v", es, err)
	}
	for _, id := range ids {
		_ = d.unregister(id)
	}
}

// testQueryFromScan: QUERY answers from the latest scan and does not walk the tasks, so
// with the scan parked a growing container reads the same until the next scan.
func testQueryFromScan(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	h, err := startHog(false, "-step-mib", "8", "-max-mib", "48", "-interval", "100ms")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer h.Kill()
	for i := 0; i < 100 && !h.Allocated(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if err := setParam("scan_interval_ms", "60000"); err != nil {
		t.Fatalf("%v", err)
	}
	defer func() { _ = setParam("scan_interval_ms", "100") }()
	id, e := d.register(h.cmd.Process.Pid, "grower", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	q1, _ := d.query(id)
	time.Sleep(1500 * time.Millisecond) // the hog grows by several steps
	q2, _ := d.query(id)
	if q2.RSS != q1.RSS || q2.SampleNs != q1.SampleNs {
		t.Errorf("with no scan in between, QUERY changed: rss %d -> %d, sample %d -> %d", q1.RSS, q2.RSS, q1.SampleNs, q2.SampleNs)
	}
	if err := setParam("scan_interval_ms", "100"); err != nil {
		t.Fatalf("%v", err)
	}
	time.Sleep(500 * time.Millisecond)
	q3, _ := d.query(id)
	if q3.RSS <= q1.RSS+8*mib || q3.SampleNs <= q2.SampleNs {
		t.Errorf("after scans: rss %d (was %d), sample %d (was %d); want the grown size from a newer sample", q3.RSS, q1.RSS, q3.SampleNs, q2.SampleNs)
	}
	_ = d.unregister(id)
}

// testIdleNoScan: with nothing registered no scan is queued, not even after the interval
// changes; one registration queues it, its removal unqueues it.
func testIdleNoScan(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	st := d.stats()
	if st.Entries != 0 || st.ScanPending != 0 {
		t.Fatalf("not idle: %+v", st)
	}
	if err := setParam("scan_interval_ms", "20"); err != nil {
		t.Fatalf("%v", err)
	}
	defer func() { _ = setParam("scan_interval_ms", "100") }()
	time.Sleep(300 * time.Millisecond)
	if st2 := d.stats(); st2.Scans != st.Scans || st2.ScanPending != 0 {
		t.Errorf("idle module scanned %d times after an interval change (pending %d)", st2.Scans-st.Scans, st2.ScanPending)
	}
	x := mustSleeper(t)
	defer stopProc(x)
	if err := setParam("scan_interval_ms", "1000"); err != nil {
		t.Fatalf("%v", err)
	}
	id, e := d.register(x.Process.Pid, "idle", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	if st := d.stats(); st.ScanPending != 1 {
		t.Errorf("no scan queued after a registration")
	}
	_ = d.unregister(id)
	st = d.stats()
	if st.ScanPending != 0 {
		t.Errorf("a scan stays queued after the last entry went")
	}
	time.Sleep(1200 * time.Millisecond)
	if st2 := d.stats(); st2.Scans != st.Scans {
		t.Errorf("%d scans ran after the last entry went", st2.Scans-st.Scans)
	}
}
