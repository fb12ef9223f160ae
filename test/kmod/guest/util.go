// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackfruit/jackfruit/service/monitor"
	"golang.org/x/sys/unix"
)

const paramDir = "/sys/module/container_monitor/parameters/"

// insmod loads the module from modulePath with the given parameters.
func insmod(params string) error {
	f, err := os.Open(modulePath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil {
		return fmt.Errorf("finit_module(%s, %q): %w", modulePath, params, err)
	}
	// devtmpfs creates the node asynchronously with the misc device.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(monitor.DefaultDevice); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear after loading the module", monitor.DefaultDevice)
}

func rmmod() error {
	if err := unix.DeleteModule("container_monitor", unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("delete_module(container_monitor): %w", err)
	}
	return nil
}

func setParam(name, val string) error {
	if err := os.WriteFile(paramDir+name, []byte(val), 0); err != nil {
		return fmt.Errorf("set %s=%s: %w", name, val, err)
	}
	return nil
}

// rawDev is a raw descriptor on the device for tests that need exact
// errnos, garbage arguments or O_NONBLOCK reads.
type rawDev struct{ fd int }

func openRaw(nonblock bool) (*rawDev, error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if nonblock {
		flags |= unix.O_NONBLOCK
	}
	fd, err := unix.Open(monitor.DefaultDevice, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", monitor.DefaultDevice, err)
	}
	return &rawDev{fd: fd}, nil
}

func (d *rawDev) Close() { unix.Close(d.fd) }

func (d *rawDev) ioctl(cmd uintptr, arg unsafe.Pointer) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), cmd, uintptr(arg))
	return e
}

// ioctlAddr passes an arbitrary (possibly bad) address.
func (d *rawDev) ioctlAddr(cmd, addr uintptr) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), cmd, addr)
	return e
}

// pidfdOf opens a pidfd of pid; the caller closes it.
func pidfdOf(pid int) (int, unix.Errno) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err.(unix.Errno)
	}
	return fd, 0
}

// registerFd registers the process pidfd refers to and returns the id.
func (d *rawDev) registerFd(pidfd int, name string, soft, hard uint64) (uint64, unix.Errno) {
	a := monitor.RegisterArgs{Pidfd: int32(pidfd), SoftLimit: soft, HardLimit: hard}
	copy(a.Name[:], name)
	e := d.ioctl(monitor.IocRegister, unsafe.Pointer(&a))
	return a.ID, e
}

// register registers pid through a pidfd opened for the call.
func (d *rawDev) register(pid int, name string, soft, hard uint64) (uint64, unix.Errno) {
	fd, e := pidfdOf(pid)
	if e != 0 {
		return 0, e
	}
	defer unix.Close(fd)
	return d.registerFd(fd, name, soft, hard)
}

func (d *rawDev) unregister(id uint64) unix.Errno {
	a := monitor.UnregisterArgs{ID: id}
	return d.ioctl(monitor.IocUnregister, unsafe.Pointer(&a))
}

func (d *rawDev) query(id uint64) (monitor.QueryArgs, unix.Errno) {
	q := monitor.QueryArgs{ID: id}
	e := d.ioctl(monitor.IocQuery, unsafe.Pointer(&q))
	return q, e
}

func (d *rawDev) stats() monitor.Stats {
	var st monitor.Stats
	_ = d.ioctl(monitor.IocStats, unsafe.Pointer(&st))
	return st
}

// queryAll runs QUERY_ALL with an array of n records.
func (d *rawDev) queryAll(n int) ([]monitor.QueryArgs, monitor.QueryAllArgs, unix.Errno) {
	buf := make([]monitor.QueryArgs, n+1) // +1: never a nil address
	var pin runtime.Pinner
	pin.Pin(&buf[0])
	defer pin.Unpin()
	a := monitor.QueryAllArgs{Entries: uint64(uintptr(unsafe.Pointer(&buf[0]))), Count: uint32(n)}
	e := d.ioctl(monitor.IocQueryAll, unsafe.Pointer(&a))
	return buf[:a.Count], a, e
}

// readEvents reads events from a non-blocking descriptor until stop returns
// true or timeout passes.
func (d *rawDev) readEvents(timeout time.Duration, stop func([]monitor.Event) bool) ([]monitor.Event, error) {
	var evs []monitor.Event
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 16*monitor.EventSize)
	for {
		n, err := unix.Read(d.fd, buf)
		switch {
		case err == unix.EAGAIN:
			if stop != nil && stop(evs) {
				return evs, nil
			}
			left := time.Until(deadline)
			if left <= 0 {
				return evs, fmt.Errorf("timed out after %v waiting for events (got %s)", timeout, eventsString(evs))
			}
			ms := int(left / time.Millisecond)
			if ms > 100 {
				ms = 100
			}
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}, ms+1)
			continue
		case err != nil:
			return evs, fmt.Errorf("read: %w", err)
		case n%monitor.EventSize != 0:
			return evs, fmt.Errorf("read returned %d bytes, not a multiple of %d", n, monitor.EventSize)
		}
		for off := 0; off < n; off += monitor.EventSize {
			ev, err := monitor.DecodeEvent(buf[off : off+monitor.EventSize])
			if err != nil {
				return evs, err
			}
			evs = append(evs, ev)
		}
		if stop != nil && stop(evs) {
			return evs, nil
		}
	}
}

// drain discards queued events.
func (d *rawDev) drain() {
	buf := make([]byte, 64*monitor.EventSize)
	for {
		if _, err := unix.Read(d.fd, buf); err != nil {
			return
		}
	}
}

func eventsString(evs []monitor.Event) string {
	var b strings.Builder
	b.WriteString("[")
	for i, e := range evs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%s:%d#%d", e.Type, e.Name, e.Pid, e.ID)
	}
	b.WriteString("]")
	return b.String()
}

// spawnSleeper starts a long sleep; the caller kills and reaps it.
func spawnSleeper() (*exec.Cmd, error) {
	cmd := exec.Command("/bin/busybox", "sleep", "100000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sleeper: %w", err)
	}
	return cmd, nil
}

func stopProc(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// procState returns the state letter of /proc/PID/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// kmsg reads the kernel log incrementally through /dev/kmsg.
type kmsg struct{ fd int }

func openKmsg() (*kmsg, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	return &kmsg{fd: fd}, nil
}

// next returns the messages logged since the previous call.
func (k *kmsg) next() []string {
	var msgs []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // overwritten records: skip to the oldest kept one
		}
		if err != nil || n <= 0 {
			return msgs
		}
		rec := string(buf[:n])
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		// Continuation lines (" KEY=value") carry device metadata only.
		if j := strings.IndexByte(rec, '\n'); j >= 0 {
			rec = rec[:j]
		}
		msgs = append(msgs, rec)
	}
}

// kernelComplaints returns messages that mean the kernel found a bug.
func kernelComplaints(msgs []string) []string {
	var bad []string
	prefixes := []string{"BUG:", "WARNING:", "Oops", "Kernel panic", "kernel BUG", "INFO: task", "watchdog: BUG"}
	anywhere := []string{"list_del corruption", "list_add corruption", "KASAN", "general protection", "Call Trace", "UBSAN", "refcount_t:"}
	for _, m := range msgs {
		hit := false
		for _, p := range prefixes {
			hit = hit || strings.HasPrefix(m, p)
		}
		for _, a := range anywhere {
			hit = hit || strings.Contains(m, a)
		}
		if hit {
			bad = append(bad, m)
		}
	}
	return bad
}

func grepMsgs(msgs []string, sub string) []string {
	var out []string
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			out = append(out, m)
		}
	}
	return out
}

// regFdErr registers a valid request with the given (bad) pidfd.
func (d *rawDev) regFdErr(pidfd int) unix.Errno {
	_, e := d.registerFd(pidfd, "badfd", 0, mib)
	return e
}

// clientEvents reads n events through the Go client, failing after 5 s.
func clientEvents(t *T, c *monitor.Client, n int) []monitor.Event {
	_ = c.File().SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.File().SetReadDeadline(time.Time{})
	var evs []monitor.Event
	for len(evs) < n {
		e, err := c.ReadEvent()
		if err != nil {
			t.Fatalf("reading event %d of %d: %v (got %s)", len(evs)+1, n, err, eventsString(evs))
		}
		evs = append(evs, e)
	}
	return evs
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
