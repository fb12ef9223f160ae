// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultDevice is where udev/devtmpfs puts the module's misc device.
const DefaultDevice = "/dev/container_monitor"

var (
	// ErrUnavailable means the device cannot be used: the module is not
	// loaded, or the device cannot be opened. Limits are not enforced.
	ErrUnavailable = errors.New("container_monitor kernel module unavailable")
	// ErrVersionMismatch means the loaded module speaks another ABI.
	ErrVersionMismatch = errors.New("container_monitor kernel module ABI mismatch")
)

// EventType tells what happened to a registered container.
type EventType uint32

// Event types, as in CM_EVENT_* of kmod/monitor_ioctl.h.
const (
	EventRegistered EventType = 1
	EventSoft       EventType = 2
	EventHard       EventType = 3
	EventExited     EventType = 4
)

func (t EventType) String() string {
	switch t {
	case EventRegistered:
		return "registered"
	case EventSoft:
		return "soft-limit"
	case EventHard:
		return "hard-limit"
	case EventExited:
		return "exited"
	}
	return fmt.Sprintf("event(%d)", uint32(t))
}

// Event is one record read from the device.
type Event struct {
	Type  EventType
	Pid   int
	Name  string
	RSS   uint64 // bytes, at the time of the event
	Limit uint64 // the limit crossed (soft or hard); the hard limit otherwise
	Time  time.Time
	// Seq numbers events from 1 since the module was loaded; a gap means
	// the queue overflowed and the oldest events were dropped.
	Seq uint64
}

// Entry is the state of one registered container.
type Entry struct {
	Pid        int
	Name       string
	RSS        uint64 // bytes, measured at query time over every process
	Soft, Hard uint64
	Tasks      int // processes counted in RSS
	SoftWarned bool
	Killed     bool
	Exited     bool // init gone; the entry disappears at the next scan
}

// Client talks to /dev/container_monitor. Its methods are safe for
// concurrent use; ReadEvent is meant for one reader goroutine, because the
// module keeps one event queue that all readers share.
type Client struct {
	f    *os.File
	path string
}

// Open opens the monitor device and checks that the module speaks our ABI.
// Errors wrap ErrUnavailable or ErrVersionMismatch.
func Open(path string) (*Client, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		hint := ""
		if errors.Is(err, os.ErrNotExist) {
			hint = " (is the container_monitor module loaded? try: modprobe container_monitor)"
		}
		return nil, fmt.Errorf("%w: %w%s", ErrUnavailable, err, hint)
	}
	c := &Client{f: f, path: path}
	var v VersionInfo
	if err := c.ioctl(IocGetVersion, unsafe.Pointer(&v)); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOTTY) {
			return nil, fmt.Errorf("%w: %s does not answer GET_VERSION; it is not the container_monitor device or the module is too old", ErrVersionMismatch, path)
		}
		return nil, fmt.Errorf("%w: get version from %s: %w", ErrUnavailable, path, err)
	}
	if v.ABIVersion != ABIVersion || int(v.EventSize) != EventSize || v.NameLen != NameLen {
		f.Close()
		return nil, fmt.Errorf("%w: module at %s speaks ABI %d (event size %d), this jackfruit speaks ABI %d (event size %d); install matching versions",
			ErrVersionMismatch, path, v.ABIVersion, v.EventSize, ABIVersion, EventSize)
	}
	return c, nil
}

func (c *Client) ioctl(cmd uintptr, arg unsafe.Pointer) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, cmd, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// ValidName reports whether the module accepts name: 1 to 63 characters of
// [A-Za-z0-9_.-], the first one alphanumeric.
func ValidName(name string) error {
	if name == "" || len(name) >= NameLen {
		return fmt.Errorf("container name %q must have 1 to %d characters", name, NameLen-1)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		alnum := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("container name %q must start with a letter or digit", name)
		}
		if !alnum && ch != '_' && ch != '.' && ch != '-' {
			return fmt.Errorf("container name %q: character %q not allowed (use A-Z a-z 0-9 _ . -)", name, ch)
		}
	}
	return nil
}

// Register asks the module to watch pid (the host pid of a container's
// init) with the given limits in bytes; soft 0 means no soft limit.
// Kernel errors are returned wrapped, so errors.Is(err, unix.EEXIST) etc.
// work: EINVAL, ESRCH, EEXIST, ENOSPC, EPERM.
func (c *Client) Register(pid int, name string, soft, hard uint64) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("register pid %d: %w: %w", pid, unix.EINVAL, err)
	}
	if hard == 0 || soft > hard {
		return fmt.Errorf("register %s (pid %d): %w: need 0 < hard limit and soft <= hard, got soft=%d hard=%d",
			name, pid, unix.EINVAL, soft, hard)
	}
	a := RegisterArgs{Pid: int32(pid), SoftLimit: soft, HardLimit: hard}
	copy(a.Name[:], name)
	if err := c.ioctl(IocRegister, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("register %s (pid %d) with %s: %w", name, pid, c.path, err)
	}
	return nil
}

// Unregister stops watching pid. ENOENT (wrapped) if it is not registered.
func (c *Client) Unregister(pid int) error {
	a := UnregisterArgs{Pid: int32(pid)}
	if err := c.ioctl(IocUnregister, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("unregister pid %d with %s: %w", pid, c.path, err)
	}
	return nil
}

// Query returns the state of one registered container.
func (c *Client) Query(pid int) (Entry, error) {
	q := QueryArgs{Pid: int32(pid)}
	if err := c.ioctl(IocQuery, unsafe.Pointer(&q)); err != nil {
		return Entry{}, fmt.Errorf("query pid %d with %s: %w", pid, c.path, err)
	}
	return Entry{
		Pid:        int(q.Pid),
		Name:       cString(q.Name[:]),
		RSS:        q.RSS,
		Soft:       q.SoftLimit,
		Hard:       q.HardLimit,
		Tasks:      int(q.NrTasks),
		SoftWarned: q.Flags&QuerySoftWarned != 0,
		Killed:     q.Flags&QueryKilled != 0,
		Exited:     q.Flags&QueryExited != 0,
	}, nil
}

// Stats returns the module-wide counters.
func (c *Client) Stats() (Stats, error) {
	var s Stats
	if err := c.ioctl(IocStats, unsafe.Pointer(&s)); err != nil {
		return Stats{}, fmt.Errorf("stats from %s: %w", c.path, err)
	}
	return s, nil
}

// ReadEvent blocks until the module queues an event and returns it. After
// Close it returns an error wrapping os.ErrClosed.
func (c *Client) ReadEvent() (Event, error) {
	buf := make([]byte, EventSize)
	n, err := c.f.Read(buf)
	if err != nil {
		return Event{}, fmt.Errorf("read event from %s: %w", c.path, err)
	}
	if n != EventSize {
		return Event{}, fmt.Errorf("read event from %s: %w: got %d bytes, want %d", c.path, io.ErrUnexpectedEOF, n, EventSize)
	}
	return DecodeEvent(buf)
}

// DecodeEvent decodes one struct cm_event record.
func DecodeEvent(b []byte) (Event, error) {
	var r RawEvent
	if len(b) != EventSize {
		return Event{}, fmt.Errorf("event record has %d bytes, want %d", len(b), EventSize)
	}
	if err := binary.Read(bytes.NewReader(b), binary.NativeEndian, &r); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return Event{
		Type:  EventType(r.Type),
		Pid:   int(r.Pid),
		Name:  cString(r.Name[:]),
		RSS:   r.RSS,
		Limit: r.Limit,
		Time:  time.Unix(0, int64(r.TimeNs)),
		Seq:   r.Seq,
	}, nil
}

// Close releases the device; a blocked ReadEvent returns.
func (c *Client) Close() error {
	return c.f.Close()
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
