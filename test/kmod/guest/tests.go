// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackfruit/jackfruit/service/monitor"
	"golang.org/x/sys/unix"
)

const (
	hogStep     = 4 * mib
	hogSoft     = 40 * mib
	hogHard     = 64 * mib
	bigLimit    = 1 << 40
	scanDefault = 100 * time.Millisecond
)

func mustRaw(t *T, nonblock bool) *rawDev {
	d, err := openRaw(nonblock)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return d
}

func mustClient(t *T) *monitor.Client {
	c, err := monitor.Open(monitor.DefaultDevice)
	if err != nil {
		t.Fatalf("monitor.Open: %v", err)
	}
	return c
}

func mustSleeper(t *T) *exec.Cmd {
	c, err := spawnSleeper()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

func wantErrno(t *T, what string, got, want unix.Errno) {
	if got != want {
		t.Errorf("%s: got errno %d (%v), want %d (%v)", what, int(got), got, int(want), want)
	}
}

func testLoad(t *T) {
	if err := insmod("scan_interval_ms=100"); err != nil {
		t.Fatalf("%v", err)
	}
	fi, err := os.Stat(monitor.DefaultDevice)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want a 0600 character device", monitor.DefaultDevice, fi.Mode())
	}
	b, err := os.ReadFile(paramDir + "scan_interval_ms")
	if err != nil || strings.TrimSpace(string(b)) != "100" {
		t.Errorf("scan_interval_ms parameter reads %q (%v), want 100", b, err)
	}
	if err := setParam("scan_interval_ms", "5"); err == nil {
		t.Errorf("scan_interval_ms=5 accepted, want EINVAL (minimum is 10)")
	}
}

func testVersion(t *T) {
	c := mustClient(t) // Open checks GET_VERSION
	defer c.Close()
	st, err := c.Stats()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if st.Entries != 0 || st.FileEntries != 0 || st.MaxEntries != 1024 || st.ScanIntervalMs != 100 ||
		st.EventQueueLen != 256 || st.ScanPending != 0 {
		t.Errorf("fresh module stats %+v, want 0 entries, max 1024, interval 100, queue 256, no scan pending", st)
	}
}

func testRoundTrip(t *T) {
	ev := mustRaw(t, true)
	defer ev.Close()
	ev.drain()
	c := mustClient(t)
	defer c.Close()
	// A process with a known resident size: the kernel's RSS counters are
	// per-CPU batched, so a tiny fresh process may still read as 0 bytes.
	h, err := startHog(false, "-step-mib", "8", "-max-mib", "8", "-interval", "1s")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer h.Kill()
	for i := 0; i < 100 && !h.Allocated(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	pid := h.cmd.Process.Pid
	fd, e0 := pidfdOf(pid)
	if e0 != 0 {
		t.Fatalf("pidfd_open: %v", e0)
	}
	id, err := c.Register(fd, "roundtrip", 32*mib, 64*mib)
	unix.Close(fd) // the module holds its own reference
	if err != nil {
		t.Fatalf("%v", err)
	}
	if id == 0 {
		t.Errorf("REGISTER returned id 0")
	}
	e, err := c.Query(id)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if e.ID != id || e.Pid != pid || e.Name != "roundtrip" || e.Soft != 32*mib || e.Hard != 64*mib ||
		e.SoftWarned || e.Killed || e.Exited || e.Tasks != 1 || e.RSS < 8*mib || e.RSS > 32*mib || e.Sampled == 0 {
		t.Errorf("query after register: %+v", e)
	}
	st, _ := c.Stats()
	if st.Entries != 1 || st.FileEntries != 1 {
		t.Errorf("stats entries %d (this file %d), want 1 and 1", st.Entries, st.FileEntries)
	}
	// Events go to the open file that registered, not to another one.
	if n, _ := ev.readEvents(300*time.Millisecond, nil); len(n) != 0 {
		t.Errorf("another open file got this file's events: %s", eventsString(n))
	}
	evs := clientEvents(t, c, 1)
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	mono := time.Duration(now.Nano())
	if evs[0].Type != monitor.EventRegistered || evs[0].ID != id || evs[0].Pid != pid || evs[0].Name != "roundtrip" ||
		evs[0].Limit != 64*mib || evs[0].RSS < 8*mib || time.Since(evs[0].Time) > time.Minute ||
		evs[0].Mono <= 0 || evs[0].Mono > mono || mono-evs[0].Mono > time.Minute || evs[0].Seq != 1 {
		t.Errorf("registered event %+v (CLOCK_MONOTONIC now %v)", evs[0], mono)
	}
	// Scans keep running while registered; the entry stays untouched.
	time.Sleep(3 * scanDefault)
	if e2, err := c.Query(id); err != nil || e2.SoftWarned || e2.Killed || e2.Sampled <= e.Sampled {
		t.Errorf("query after scans: %+v %v (want a newer sample than %v)", e2, err, e.Sampled)
	}
	if err := c.Unregister(id); err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := c.Query(id); !errors.Is(err, unix.ENOENT) {
		t.Errorf("query after unregister: %v, want ENOENT", err)
	}
	if err := c.Unregister(id); !errors.Is(err, unix.ENOENT) {
		t.Errorf("second unregister: %v, want ENOENT", err)
	}
	if st := procState(pid); st == "" || st == "Z" {
		t.Errorf("process %d gone: unregister must not touch the process", pid)
	}
}

func testErrnos(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	s := mustSleeper(t)
	defer stopProc(s)
	pid := s.Process.Pid
	reg := func(pid int, name string, soft, hard uint64) unix.Errno {
		_, e := d.register(pid, name, soft, hard)
		return e
	}

	wantErrno(t, "soft > hard", reg(pid, "x", 2*mib, mib), unix.EINVAL)
	wantErrno(t, "hard == 0", reg(pid, "x", 0, 0), unix.EINVAL)
	wantErrno(t, "empty name", reg(pid, "", 0, mib), unix.EINVAL)
	wantErrno(t, "name starting with '-'", reg(pid, "-x", 0, mib), unix.EINVAL)
	wantErrno(t, "name with space", reg(pid, "a b", 0, mib), unix.EINVAL)
	wantErrno(t, "name with '='", reg(pid, "a=b", 0, mib), unix.EINVAL)
	wantErrno(t, "name with newline", reg(pid, "a\nb", 0, mib), unix.EINVAL)
	wantErrno(t, "global init", reg(1, "x", 0, mib), unix.EINVAL)

	// The pidfd: none, not a file, not a pidfd.
	wantErrno(t, "pidfd -1", d.regFdErr(-1), unix.EBADF)
	wantErrno(t, "pidfd not open", d.regFdErr(1000), unix.EBADF)
	devnull, _ := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	wantErrno(t, "pidfd of /dev/null", d.regFdErr(devnull), unix.EBADF)
	unix.Close(devnull)
	wantErrno(t, "pidfd of the device itself", d.regFdErr(d.fd), unix.EBADF)
	efd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC) // another anonymous-inode file
	wantErrno(t, "pidfd of an eventfd", d.regFdErr(efd), unix.EBADF)
	unix.Close(efd)

	a := monitor.RegisterArgs{HardLimit: mib}
	fd, _ := pidfdOf(pid)
	defer unix.Close(fd)
	a.Pidfd = int32(fd)
	for i := range a.Name {
		a.Name[i] = 'a' // no terminator within 64 bytes
	}
	wantErrno(t, "unterminated name", d.ioctl(monitor.IocRegister, unsafe.Pointer(&a)), unix.EINVAL)
	a = monitor.RegisterArgs{Pidfd: int32(fd), HardLimit: mib}
	copy(a.Name[:], "ok\x00junk")
	wantErrno(t, "garbage after the name", d.ioctl(monitor.IocRegister, unsafe.Pointer(&a)), unix.EINVAL)

	// ESRCH: a reaped process (its pidfd kept), a zombie and a thread.
	gone := mustSleeper(t)
	gonePid := gone.Process.Pid
	goneFd, _ := pidfdOf(gonePid)
	defer unix.Close(goneFd)
	stopProc(gone)
	_, e := d.registerFd(goneFd, "x", 0, mib)
	wantErrno(t, "pidfd of a reaped process", e, unix.ESRCH)
	z := exec.Command("/bin/busybox", "true")
	if err := z.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	for i := 0; i < 200 && procState(z.Process.Pid) != "Z"; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	wantErrno(t, "zombie", reg(z.Process.Pid, "x", 0, mib), unix.ESRCH)
	_ = z.Wait()

	// EEXIST, from this file and from another one.
	id, e := d.register(pid, "dup", 0, bigLimit)
	wantErrno(t, "first register", e, 0)
	wantErrno(t, "second register", reg(pid, "dup2", 0, bigLimit), unix.EEXIST)
	other := mustRaw(t, true)
	_, e = other.register(pid, "dup3", 0, bigLimit)
	wantErrno(t, "register by another open file", e, unix.EEXIST)
	other.Close()

	// ENOSPC at the cap.
	if err := setParam("max_entries", "2"); err != nil {
		t.Fatalf("%v", err)
	}
	s2, s3 := mustSleeper(t), mustSleeper(t)
	defer stopProc(s2)
	defer stopProc(s3)
	id2, e := d.register(s2.Process.Pid, "two", 0, bigLimit)
	wantErrno(t, "register at 1 of 2", e, 0)
	wantErrno(t, "register over max_entries", reg(s3.Process.Pid, "three", 0, bigLimit), unix.ENOSPC)
	if err := setParam("max_entries", "1024"); err != nil {
		t.Fatalf("%v", err)
	}
	id3, e := d.register(s3.Process.Pid, "three", 0, bigLimit)
	wantErrno(t, "register after raising max_entries", e, 0)
	if id == id2 || id2 == id3 || id == id3 {
		t.Errorf("ids %d %d %d are not distinct", id, id2, id3)
	}

	// UNREGISTER / QUERY.
	wantErrno(t, "unregister unknown id", d.unregister(id3+1000), unix.ENOENT)
	wantErrno(t, "unregister id 0", d.unregister(0), unix.EINVAL)
	_, e = d.query(id3 + 1000)
	wantErrno(t, "query unknown id", e, unix.ENOENT)
	_, e = d.query(0)
	wantErrno(t, "query id 0", e, unix.EINVAL)
	for _, i := range []uint64{id, id2, id3} {
		wantErrno(t, "cleanup unregister", d.unregister(i), 0)
	}

	// Unknown commands and bad pointers.
	wantErrno(t, "unknown nr", d.ioctlAddr(monitor.IocGetVersion+(7<<0), 0), unix.ENOTTY)
	wantErrno(t, "wrong size", d.ioctlAddr(monitor.IocRegister+(1<<16), 0), unix.ENOTTY)
	wantErrno(t, "register NULL", d.ioctlAddr(monitor.IocRegister, 0), unix.EFAULT)
	wantErrno(t, "stats to kernel address", d.ioctlAddr(monitor.IocStats, 0xffffffff81000000), unix.EFAULT)
	wantErrno(t, "version to NULL", d.ioctlAddr(monitor.IocGetVersion, 0), unix.EFAULT)
	wantErrno(t, "query all NULL", d.ioctlAddr(monitor.IocQueryAll, 0), unix.EFAULT)

	// read() semantics.
	d.drain()
	if _, err := unix.Read(d.fd, make([]byte, monitor.EventSize-1)); err != unix.EINVAL {
		t.Errorf("read with a buffer smaller than one event: %v, want EINVAL", err)
	}
	if _, err := unix.Read(d.fd, make([]byte, monitor.EventSize)); err != unix.EAGAIN {
		t.Errorf("O_NONBLOCK read on an empty queue: %v, want EAGAIN", err)
	}

	// The Go client names the problem before the kernel sees it.
	c := mustClient(t)
	defer c.Close()
	if _, err := c.Register(fd, "bad name", 0, mib); !errors.Is(err, unix.EINVAL) {
		t.Errorf("client register with bad name: %v, want EINVAL", err)
	}
	if _, err := c.Register(goneFd, "x", 0, mib); !errors.Is(err, unix.ESRCH) {
		t.Errorf("client register of a reaped process: %v, want ESRCH", err)
	}
}

// testEPERM re-executes ktest without CAP_KILL and expects EPERM.
func testEPERM(t *T) {
	s := mustSleeper(t)
	defer stopProc(s)
	self, _ := os.Executable()
	out, err := exec.Command(self, "eperm", fmt.Sprint(s.Process.Pid)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "errno=1" {
		t.Errorf("register without CAP_KILL: %q %v, want errno=1 (EPERM)", out, err)
	}
}

// epermMain drops CAP_KILL from this thread and tries REGISTER.
func epermMain(args []string) {
	var pid int
	if len(args) != 1 {
		os.Exit(2)
	}
	fmt.Sscan(args[0], &pid)
	// Capabilities are per thread: do everything on this one.
	runtimeLockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		fmt.Printf("capget: %v\n", err)
		os.Exit(1)
	}
	data[0].Effective &^= 1 << unix.CAP_KILL
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		fmt.Printf("capset: %v\n", err)
		os.Exit(1)
	}
	d, err := openRaw(false)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	_, e := d.register(pid, "noperm", 0, mib)
	fmt.Printf("errno=%d\n", int(e))
	os.Exit(0)
}

func testReadPoll(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	fds := []unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 200); n != 0 || err != nil {
		t.Errorf("poll on an empty queue: n=%d err=%v, want a timeout", n, err)
	}

	// A blocking reader through the Go client wakes on a new event of its file.
	c := mustClient(t)
	got := make(chan monitor.Event, 1)
	errc := make(chan error, 1)
	go func() {
		e, err := c.ReadEvent()
		if err != nil {
			errc <- err
			return
		}
		got <- e
	}()
	time.Sleep(200 * time.Millisecond)
	s := mustSleeper(t)
	defer stopProc(s)
	sfd, _ := pidfdOf(s.Process.Pid)
	defer unix.Close(sfd)
	cid, err := c.Register(sfd, "pollme", 0, bigLimit)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	select {
	case e := <-got:
		if e.Type != monitor.EventRegistered || e.Name != "pollme" {
			t.Errorf("blocking read got %+v", e)
		}
	case err := <-errc:
		t.Errorf("blocking ReadEvent: %v", err)
	case <-time.After(5 * time.Second):
		t.Errorf("blocking ReadEvent did not wake up on a new event")
	}

	// poll reports readable; a read of several slots returns whole records.
	if err := c.Unregister(cid); err != nil {
		t.Errorf("unregister: %v", err)
	}
	id, e := d.register(s.Process.Pid, "pollme2", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	if n, err := unix.Poll(fds, 2000); n != 1 || fds[0].Revents&unix.POLLIN == 0 {
		t.Errorf("poll with an event queued: n=%d revents=%#x err=%v", n, fds[0].Revents, err)
	}
	buf := make([]byte, 3*monitor.EventSize+5)
	n, err := unix.Read(d.fd, buf)
	if err != nil || n != monitor.EventSize {
		t.Errorf("read of 3.x records with 1 queued: n=%d err=%v, want %d", n, err, monitor.EventSize)
	}
	_ = d.unregister(id)

	// Close unblocks a pending ReadEvent with an error.
	go func() {
		_, err := c.ReadEvent()
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadEvent after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("ReadEvent still blocked after Close")
	}
}

func testOverflow(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	before := d.stats()
	s := mustSleeper(t)
	defer stopProc(s)
	const n = 300 // queue holds event_queue_len=256
	for i := 0; i < n; i++ {
		id, e := d.register(s.Process.Pid, fmt.Sprintf("ov%d", i), 0, bigLimit)
		if e != 0 {
			t.Fatalf("register %d: %v", i, e)
		}
		if e := d.unregister(id); e != 0 {
			t.Fatalf("unregister %d: %v", i, e)
		}
	}
	after := d.stats()
	if dropped := after.EventsDropped - before.EventsDropped; dropped != n-256 {
		t.Errorf("events dropped %d, want %d", dropped, n-256)
	}
	if after.EventsQueued != 256 {
		t.Errorf("events queued %d, want 256", after.EventsQueued)
	}
	evs, _ := d.readEvents(time.Second, func(e []monitor.Event) bool { return len(e) >= 256 })
	if len(evs) != 256 {
		t.Fatalf("read %d events, want 256", len(evs))
	}
	if evs[0].Name != fmt.Sprintf("ov%d", n-256) || evs[255].Name != fmt.Sprintf("ov%d", n-1) {
		t.Errorf("kept events %s..%s, want the newest ov%d..ov%d", evs[0].Name, evs[255].Name, n-256, n-1)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Errorf("sequence gap inside kept events at %d: %d after %d", i, evs[i].Seq, evs[i-1].Seq)
			break
		}
	}
}

// hogScenario registers a hog container and checks SOFT once, then HARD
// below hard + 2 steps, then EXITED, in that order.
func hogScenario(t *T, name string, viaShell bool) (latency time.Duration, softLine, hardLine string) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	k, err := openKmsg()
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer unix.Close(k.fd)
	k.next()

	h, err := startHog(viaShell, "-step-mib", "4", "-interval", "200ms")
	if err != nil {
		t.Fatalf("start hog: %v", err)
	}
	defer h.Kill()
	pid := h.cmd.Process.Pid
	id, e := d.register(pid, name, hogSoft, hogHard)
	if e != 0 {
		t.Fatalf("register hog: %v", e)
	}
	if viaShell {
		// Wait until the hog runs under sh, then check both are counted.
		time.Sleep(600 * time.Millisecond)
		q, e := d.query(id)
		if e != 0 || q.NrTasks < 2 {
			t.Errorf("query of sh + hog: %+v %v, want at least 2 tasks", q, e)
		}
	}
	evs, err := d.readEvents(60*time.Second, func(e []monitor.Event) bool {
		return len(e) > 0 && e[len(e)-1].Type == monitor.EventExited
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	types := make([]monitor.EventType, len(evs))
	for i, e := range evs {
		types[i] = e.Type
		if e.Pid != pid || e.Name != name || e.ID != id {
			t.Errorf("event %d is for %s/%d#%d, want %s/%d#%d", i, e.Name, e.Pid, e.ID, name, pid, id)
		}
	}
	want := []monitor.EventType{monitor.EventRegistered, monitor.EventSoft, monitor.EventHard, monitor.EventExited}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events %s, want registered, soft-limit, hard-limit, exited", eventsString(evs))
	}
	soft, hard := evs[1], evs[2]
	if soft.RSS <= hogSoft || soft.Limit != hogSoft || soft.RSS > hogSoft+2*hogStep {
		t.Errorf("soft event rss=%d limit=%d, want limit %d < rss <= +2 steps", soft.RSS, soft.Limit, uint64(hogSoft))
	}
	if hard.RSS <= hogHard || hard.Limit != hogHard || hard.RSS >= hogHard+2*hogStep {
		t.Errorf("hard event rss=%d limit=%d, want %d < rss < hard + 2 steps (%d)", hard.RSS, hard.Limit, uint64(hogHard), uint64(hogHard+2*hogStep))
	}
	if !(soft.Seq < hard.Seq && !hard.Time.Before(soft.Time)) {
		t.Errorf("soft event (seq %d) not before hard event (seq %d)", soft.Seq, hard.Seq)
	}

	st, ok := h.Wait(10 * time.Second)
	if !ok {
		t.Fatalf("container init %d still running 10s after the hard limit", pid)
	}
	if ws, _ := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("container init ended with %v, want killed by SIGKILL", st)
	}
	for _, line := range strings.Split(psList(), "\n") {
		if strings.Contains(line, " hog ") {
			t.Errorf("a hog process survived its container: %s", line)
		}
	}

	msgs := k.next()
	softs := grepMsgs(msgs, "[container_monitor] SOFT LIMIT container="+name+" ")
	hards := grepMsgs(msgs, "[container_monitor] HARD LIMIT container="+name+" ")
	if len(softs) != 1 || len(hards) != 1 {
		t.Errorf("kernel log has %d SOFT and %d HARD lines for %s, want exactly 1 each: %q", len(softs), len(hards), name, append(softs, hards...))
	}
	wantSoft := fmt.Sprintf("[container_monitor] SOFT LIMIT container=%s pid=%d rss=%d limit=%d", name, pid, soft.RSS, uint64(hogSoft))
	wantHard := fmt.Sprintf("[container_monitor] HARD LIMIT container=%s pid=%d rss=%d limit=%d", name, pid, hard.RSS, uint64(hogHard))
	if len(softs) == 1 && softs[0] != wantSoft {
		t.Errorf("soft line %q, want %q", softs[0], wantSoft)
	}
	if len(hards) == 1 && hards[0] != wantHard {
		t.Errorf("hard line %q, want %q", hards[0], wantHard)
	}
	for _, m := range append(grepMsgs(msgs, "Registering container="+name+" "), append(softs, hards...)...) {
		fmt.Printf("KLOG %s\n", m)
	}

	if cross, ok := crossingStart(h.Reports(), hogHard); !viaShell && ok {
		latency = hard.Time.Sub(cross)
	}
	if len(softs) == 1 {
		softLine = softs[0]
	}
	if len(hards) == 1 {
		hardLine = hards[0]
	}
	return latency, softLine, hardLine
}

// psList lists processes as "pid comm args" lines from /proc.
func psList() string {
	ents, _ := os.ReadDir("/proc")
	var b strings.Builder
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		fmt.Fprintf(&b, "%d %s \n", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return b.String()
}

func testHogInit(t *T) {
	lat, _, _ := hogScenario(t, "hog", false)
	if lat > 0 {
		fmt.Printf("KTEST-METRIC kill_latency_ms=%.1f kill_latency_scan_intervals=%.2f scan_interval_ms=100\n",
			float64(lat)/float64(time.Millisecond), float64(lat)/float64(scanDefault))
	}
}

// testSoftRecross: a hog that repeatedly grows past the soft limit and
// frees its memory gets one SOFT event per crossing, not one per scan.
func testSoftRecross(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	h, err := startHog(false, "-step-mib", "4", "-interval", "100ms", "-cycle-mib", "32")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer h.Kill()
	pid := h.cmd.Process.Pid
	id, e := d.register(pid, "recross", 20*mib, 1<<30)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	soft := func(evs []monitor.Event) int {
		n := 0
		for _, e := range evs {
			if e.Type == monitor.EventSoft {
				n++
			}
		}
		return n
	}
	evs, err := d.readEvents(20*time.Second, func(e []monitor.Event) bool { return soft(e) >= 1 })
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Then watch for more cycles (0.8 s each on hardware, ~1.5 s in TCG).
	more, _ := d.readEvents(4*time.Second, nil)
	evs = append(evs, more...)
	// Each cycle spends about four scans above the soft limit (the 20..32
	// MiB steps): warning on every scan would show as SOFT events 100 ms
	// apart, warning once per crossing as events a cycle apart.
	var last time.Time
	n := 0
	for _, e := range evs {
		if e.Type != monitor.EventSoft {
			continue
		}
		n++
		if !last.IsZero() && e.Time.Sub(last) < 500*time.Millisecond {
			t.Errorf("two SOFT events %v apart within one crossing", e.Time.Sub(last))
		}
		last = e.Time
	}
	if n < 2 {
		t.Errorf("%d soft events over several crossings, want one per crossing: %s", n, eventsString(evs))
	}
	t.Logf("%d soft events, one per crossing", n)
	for _, e := range evs {
		if e.Type == monitor.EventHard {
			t.Errorf("hard event below the hard limit: %+v", e)
		}
	}
	if e := d.unregister(id); e != 0 {
		t.Errorf("unregister: %v", e)
	}
}

func testHogChild(t *T) {
	hogScenario(t, "hogchild", true)
}

func testExit(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	// The process exits on its own and stays a zombie until reaped: the
	// module must see it as gone all the same.
	p := exec.Command("/bin/busybox", "sleep", "1")
	if err := p.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	pid := p.Process.Pid
	id, e := d.register(pid, "shortlived", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	evs, err := d.readEvents(10*time.Second, func(e []monitor.Event) bool {
		return len(e) > 0 && e[len(e)-1].Type == monitor.EventExited
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(evs) != 2 || evs[1].Pid != pid || evs[1].Name != "shortlived" {
		t.Errorf("events %s, want registered then exited for %d", eventsString(evs), pid)
	}
	if procState(pid) != "Z" {
		t.Errorf("process %d state %q, want a zombie still (not reaped yet)", pid, procState(pid))
	}
	_, e = d.query(id)
	wantErrno(t, "query after exit", e, unix.ENOENT)
	wantErrno(t, "unregister after exit", d.unregister(id), unix.ENOENT)
	_ = p.Wait()
	if st := d.stats(); st.Entries != 0 || st.ScanPending != 0 {
		t.Errorf("entries %d, scan pending %d after exit, want 0 and 0", st.Entries, st.ScanPending)
	}
}

// spawnWithPid starts a 16 MiB hog that gets the pid number pid (reaped before), by
// setting ns_last_pid; the caller stops it.
func spawnWithPid(t *T, pid int) *exec.Cmd {
	self, _ := os.Executable()
	for try := 0; try < 50; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(fmt.Sprint(pid-1)), 0); err != nil {
			t.Fatalf("set ns_last_pid: %v", err)
		}
		c := exec.Command(self, "hog", "-step-mib", "16", "-max-mib", "16", "-interval", "100ms")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatalf("%v", err)
		}
		if c.Process.Pid == pid {
			return c
		}
		stopProc(c)
	}
	t.Fatalf("could not get pid %d reused", pid)
	return nil
}

// testPidReuse registers A, lets it die, gives its pid number to a big hog B
// before the module scans again, and checks B is neither measured nor killed.
func testPidReuse(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	d.drain()
	a := mustSleeper(t)
	apid := a.Process.Pid
	// A hard limit above A's own size (a busybox sleep, ~6 MiB) and below B's 16 MiB.
	ida, e := d.register(apid, "reuse-a", 0, 12*mib)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	// Park the scan far away so the stale entry survives A's death.
	if err := setParam("scan_interval_ms", "60000"); err != nil {
		t.Fatalf("%v", err)
	}
	defer func() { _ = setParam("scan_interval_ms", "100") }()
	time.Sleep(300 * time.Millisecond)
	stopProc(a)
	b := spawnWithPid(t, apid)
	defer stopProc(b)
	time.Sleep(500 * time.Millisecond) // B is now well over A's 12 MiB hard limit

	// A's entry: exited, and still A's own sample (B holds 16 MiB).
	if q, e := d.query(ida); e != 0 || q.Flags&monitor.QueryExited == 0 || q.Pid != int32(apid) || q.RSS >= 12*mib {
		t.Errorf("query of A after its pid went to B: errno %v, flags %#x, pid %d, rss %d; want A's stale entry, exited, A's last sample",
			e, q.Flags, q.Pid, q.RSS)
	}
	if err := setParam("scan_interval_ms", "100"); err != nil {
		t.Fatalf("%v", err)
	}
	evs, err := d.readEvents(5*time.Second, func(e []monitor.Event) bool {
		return len(e) > 0 && e[len(e)-1].Type == monitor.EventExited
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, e := range evs {
		if e.Type == monitor.EventSoft || e.Type == monitor.EventHard || e.ID != ida {
			t.Errorf("event %s: only A's registered and exited were expected", eventsString([]monitor.Event{e}))
		}
	}
	time.Sleep(300 * time.Millisecond)
	if st := procState(apid); st == "" || st == "Z" {
		t.Errorf("new process with the recycled pid %d was killed (state %q)", apid, st)
	}
	idb, e := d.register(apid, "reuse-b", 0, bigLimit)
	wantErrno(t, "register the new process", e, 0)
	wantErrno(t, "unregister it", d.unregister(idb), 0)
}

// testUnregisterAfterReap is what the supervisor does when a container ends: reap the init,
// then unregister it. Meanwhile the pid number went to another registered process; the
// old id must reach the old entry only.
func testUnregisterAfterReap(t *T) {
	d := mustRaw(t, true)
	defer d.Close()
	if err := setParam("scan_interval_ms", "60000"); err != nil {
		t.Fatalf("%v", err)
	}
	defer func() { _ = setParam("scan_interval_ms", "100") }()
	a := mustSleeper(t)
	apid := a.Process.Pid
	afd, _ := pidfdOf(apid)
	ida, e := d.registerFd(afd, "old", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register: %v", e)
	}
	stopProc(a) // killed and reaped; the pidfd still names the dead process
	b := spawnWithPid(t, apid)
	defer stopProc(b)
	// The dead process's pidfd cannot register the newcomer.
	_, e = d.registerFd(afd, "stale", 0, bigLimit)
	wantErrno(t, "register through the pidfd of the reaped process", e, unix.ESRCH)
	unix.Close(afd)
	idb, e := d.register(apid, "new", 0, bigLimit)
	if e != 0 {
		t.Fatalf("register the process that got the pid: %v", e)
	}
	wantErrno(t, "unregister the reaped one by id", d.unregister(ida), 0)
	q, e := d.query(idb)
	if e != 0 || q.Pid != int32(apid) || q.Flags&monitor.QueryExited != 0 || cString(q.Name[:]) != "new" {
		t.Errorf("the newcomer's entry after the old one was unregistered: errno %v %+v", e, q)
	}
	if st := d.stats(); st.FileEntries != 1 {
		t.Errorf("%d entries, want the newcomer's only", st.FileEntries)
	}
	wantErrno(t, "unregister the newcomer", d.unregister(idb), 0)
}

func testConcurrent(t *T) {
	const workers, poolSize = 8, 16
	duration := 5 * time.Second
	var mu sync.Mutex
	pool := make([]*exec.Cmd, poolSize)
	for i := range pool {
		pool[i] = mustSleeper(t)
	}
	pidAt := func(i int) int {
		mu.Lock()
		defer mu.Unlock()
		return pool[i].Process.Pid
	}
	var ops, unexpected atomic.Int64
	var firstBad atomic.Value
	bad := func(what string, e error) {
		unexpected.Add(1)
		firstBad.CompareAndSwap(nil, fmt.Sprintf("%s: %v", what, e))
	}
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup

	// Churn: processes die and are replaced under the workers' feet.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; time.Now().Before(stop); i++ {
			n, err := spawnSleeper()
			if err != nil {
				bad("spawn", err)
				return
			}
			mu.Lock()
			old := pool[i%poolSize]
			pool[i%poolSize] = n
			mu.Unlock()
			stopProc(old)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			d, err := openRaw(true)
			if err != nil {
				bad("open", err)
				return
			}
			defer func() { d.Close() }()
			var ids []uint64
			buf := make([]byte, 4*monitor.EventSize)
			for i := 0; time.Now().Before(stop); i++ {
				pid := pidAt((w*7 + i) % poolSize)
				ops.Add(1)
				switch i % 8 {
				case 0, 1:
					pfd, e := pidfdOf(pid)
					if e != 0 {
						if e != unix.ESRCH {
							bad("pidfd_open", e)
						}
						continue
					}
					id, e := d.registerFd(pfd, fmt.Sprintf("w%d-%d", w, i), 1<<30, 2<<30)
					unix.Close(pfd)
					if e == 0 {
						ids = append(ids, id)
					} else if e != unix.EEXIST && e != unix.ESRCH {
						bad("register", e)
					}
				case 2:
					if len(ids) > 0 {
						id := ids[0]
						ids = ids[1:]
						if e := d.unregister(id); e != 0 && e != unix.ENOENT {
							bad("unregister", e)
						}
					}
				case 3:
					if len(ids) > 0 {
						if _, e := d.query(ids[i%len(ids)]); e != 0 && e != unix.ENOENT {
							bad("query", e)
						}
					}
				case 4:
					if _, _, e := d.queryAll(8); e != 0 {
						bad("query all", e)
					}
				case 5:
					var st monitor.Stats
					if e := d.ioctl(monitor.IocStats, unsafe.Pointer(&st)); e != 0 {
						bad("stats", e)
					}
				case 6:
					if _, err := unix.Read(d.fd, buf); err != nil && err != unix.EAGAIN {
						bad("read", err)
					}
				case 7:
					// Now and then close with live entries (release races the scan).
					if i%64 == 7 {
						d.Close()
						if d, err = openRaw(true); err != nil {
							bad("reopen", err)
							return
						}
						ids = nil
					}
				}
			}
		}(w)
	}
	wg.Wait()
	for i := range pool {
		stopProc(pool[i])
	}
	t.Logf("%d operations by %d threads in %v", ops.Load(), workers, duration)
	if unexpected.Load() > 0 {
		t.Errorf("%d unexpected results, first: %v", unexpected.Load(), firstBad.Load())
	}
	// Every file is closed: nothing may be left, without waiting for a scan.
	d := mustRaw(t, true)
	defer d.Close()
	if st := d.stats(); st.Entries != 0 || st.ScanPending != 0 {
		t.Errorf("%d entries left (scan pending %d) after every file closed", st.Entries, st.ScanPending)
	}
}

func testRmmod(t *T) {
	d := mustRaw(t, true)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			stopProc(p)
		}
	}()
	for i := 0; i < 3; i++ {
		p := mustSleeper(t)
		procs = append(procs, p)
		if _, e := d.register(p.Process.Pid, fmt.Sprintf("live%d", i), 0, bigLimit); e != 0 {
			t.Fatalf("register: %v", e)
		}
	}
	h, err := startHog(false, "-step-mib", "1", "-max-mib", "1", "-interval", "1s")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer h.Kill()
	if _, e := d.register(h.cmd.Process.Pid, "live-ns", 0, bigLimit); e != 0 {
		t.Fatalf("register: %v", e)
	}
	if err := rmmod(); !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EBUSY) {
		t.Errorf("rmmod with the device open: %v, want EWOULDBLOCK or EBUSY", err)
	}
	k, _ := openKmsg()
	defer unix.Close(k.fd)
	k.next()
	d.Close()
	if err := rmmod(); err != nil {
		t.Fatalf("rmmod after the last file closed: %v", err)
	}
	if _, err := os.Stat(monitor.DefaultDevice); !os.IsNotExist(err) {
		t.Errorf("%s still there after rmmod: %v", monitor.DefaultDevice, err)
	}
	if n := len(grepMsgs(k.next(), "Device file closed, dropping container=live")); n != 4 {
		t.Errorf("%d entries dropped at close, want 4", n)
	}
	for _, p := range procs {
		if procState(p.Process.Pid) == "" {
			t.Errorf("process %d died at close or rmmod", p.Process.Pid)
		}
	}
	if err := insmod("scan_interval_ms=100"); err != nil {
		t.Fatalf("insmod again: %v", err)
	}
	c := mustClient(t)
	defer c.Close()
	st, err := c.Stats()
	if err != nil || st.Entries != 0 || st.Scans != 0 {
		t.Errorf("stats after reload %+v %v, want a fresh module", st, err)
	}
	fd, _ := pidfdOf(procs[0].Process.Pid)
	defer unix.Close(fd)
	id, err := c.Register(fd, "again", 0, bigLimit)
	if err != nil {
		t.Errorf("register after reload: %v", err)
	}
	if err := c.Unregister(id); err != nil {
		t.Errorf("unregister after reload: %v", err)
	}
}
