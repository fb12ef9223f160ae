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

func (d *rawDev) register(pid int, name string, soft, hard uint64) unix.Errno {
	a := monitor.RegisterArgs{Pid: int32(pid), SoftLimit: soft, HardLimit: hard}
	copy(a.Name[:], name)
	return d.ioctl(monitor.IocRegister, unsafe.Pointer(&a))
}

func (d *rawDev) unregister(pid int) unix.Errno {
	a := monitor.UnregisterArgs{Pid: int32(pid)}
	return d.ioctl(monitor.IocUnregister, unsafe.Pointer(&a))
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
		fmt.Fprintf(&b, "%s:%s:%d", e.Type, e.Name, e.Pid)
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

// threadID returns the id of a thread of this process that is not its
// leader (a valid pid number that is not a process).
func threadID() int {
	ch := make(chan int)
	go func() {
		runtime.LockOSThread()
		// Stay on this thread until the id is used, then let it die.
		ch <- unix.Gettid()
		<-ch
	}()
	tid := <-ch
	return tid
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
