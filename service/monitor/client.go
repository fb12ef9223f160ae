// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
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
	Type EventType
	ID   uint64 // as returned by Register
	Pid  int    // the init's pid as the registrant saw it at Register (informational)
	Name string
	RSS  uint64 // bytes, at the time of the event
	// Limit is the limit crossed (soft or hard); the hard limit otherwise.
	Limit uint64
	Time  time.Time     // CLOCK_REALTIME
	Mono  time.Duration // CLOCK_MONOTONIC, for intervals that clock steps cannot distort
	// Seq numbers this open file's events from 1; a gap means its queue
	// overflowed and the oldest events were dropped.
	Seq uint64
}

// Entry is the state of one registered container, as of the module's latest scan.
type Entry struct {
	ID         uint64
	Pid        int
	Name       string
	RSS        uint64 // bytes, summed over every process at the latest scan
	Soft, Hard uint64
	Tasks      int           // processes counted in RSS
	Sampled    time.Duration // CLOCK_MONOTONIC time of the sample
	SoftWarned bool
	Killed     bool
	Exited     bool // init gone; the entry disappears at the next scan
}

// Client talks to /dev/container_monitor through one open file, which owns
// the registrations made through it and their event queue: closing the last
// descriptor of that file (in any process) drops them. Its methods are safe
// for concurrent use; ReadEvent is meant for one reader goroutine.
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
	c, err := FromFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// FromFile makes a Client of an already open monitor file, for example one
// kept in systemd's file descriptor store across a restart or received over
// a unix socket: its registrations and queued events are still there. It
// checks the ABI version like Open; on error the caller still owns f.
func FromFile(f *os.File) (*Client, error) {
	path := f.Name()
	c := &Client{f: f, path: path}
	var v VersionInfo
	if err := c.ioctl(IocGetVersion, unsafe.Pointer(&v)); err != nil {
		if errors.Is(err, unix.ENOTTY) {
			return nil, fmt.Errorf("%w: %s does not answer GET_VERSION; it is not the container_monitor device or the module is too old", ErrVersionMismatch, path)
		}
		return nil, fmt.Errorf("%w: get version from %s: %w", ErrUnavailable, path, err)
	}
	if v.ABIVersion != ABIVersion || int(v.EventSize) != EventSize || v.NameLen != NameLen {
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

// File returns the open file behind the Client, to hand it to another
// process or to systemd's file descriptor store. The Client still owns it.
func (c *Client) File() *os.File { return c.f }

// Register asks the module to watch the process pidfd refers to (a
// container's init) with the given limits in bytes; soft 0 means no soft
// limit. The pidfd names that process even if its pid number is reused, and
// may be closed afterwards. It returns the id that Unregister, Query and
// events use. Kernel errors are returned wrapped, so errors.Is(err,
// unix.EEXIST) etc. work: EINVAL, EBADF, ESRCH, EEXIST, ENOSPC, EPERM.
func (c *Client) Register(pidfd int, name string, soft, hard uint64) (uint64, error) {
	if err := ValidName(name); err != nil {
		return 0, fmt.Errorf("register %q: %w: %w", name, unix.EINVAL, err)
	}
	if hard == 0 || soft > hard {
		return 0, fmt.Errorf("register %s: %w: need 0 < hard limit and soft <= hard, got soft=%d hard=%d",
			name, unix.EINVAL, soft, hard)
	}
	if pidfd < 0 {
		return 0, fmt.Errorf("register %s: %w: no pidfd (%d)", name, unix.EBADF, pidfd)
	}
	a := RegisterArgs{Pidfd: int32(pidfd), SoftLimit: soft, HardLimit: hard}
	copy(a.Name[:], name)
	if err := c.ioctl(IocRegister, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("register %s with %s: %w", name, c.path, err)
	}
	return a.ID, nil
}

// Unregister stops watching id. ENOENT (wrapped) if this file has no such
// entry (never registered here, or removed after the process exited).
func (c *Client) Unregister(id uint64) error {
	a := UnregisterArgs{ID: id}
	if err := c.ioctl(IocUnregister, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("unregister id %d with %s: %w", id, c.path, err)
	}
	return nil
}

// Query returns the state of one container registered through this file.
func (c *Client) Query(id uint64) (Entry, error) {
	q := QueryArgs{ID: id}
	if err := c.ioctl(IocQuery, unsafe.Pointer(&q)); err != nil {
		return Entry{}, fmt.Errorf("query id %d with %s: %w", id, c.path, err)
	}
	return entryOf(&q), nil
}

// QueryAll returns every container registered through this file, in
// registration order, with one ioctl (two if entries were added meanwhile).
func (c *Client) QueryAll() ([]Entry, error) {
	buf := make([]QueryArgs, 16)
	for {
		// The kernel writes into buf through an address inside a struct, which the
		// compiler cannot see: pin it (which also keeps it off the movable stack).
		var pin runtime.Pinner
		pin.Pin(&buf[0])
		a := QueryAllArgs{Entries: uint64(uintptr(unsafe.Pointer(&buf[0]))), Count: uint32(len(buf))}
		err := c.ioctl(IocQueryAll, unsafe.Pointer(&a))
		pin.Unpin()
		if err != nil {
			return nil, fmt.Errorf("query all with %s: %w", c.path, err)
		}
		if a.Total > a.Count {
			buf = make([]QueryArgs, a.Total+a.Total/4)
			continue
		}
		out := make([]Entry, a.Count)
		for i := range out {
			out[i] = entryOf(&buf[i])
		}
		return out, nil
	}
}

func entryOf(q *QueryArgs) Entry {
	return Entry{
		ID:         q.ID,
		Pid:        int(q.Pid),
		Name:       cString(q.Name[:]),
		RSS:        q.RSS,
		Soft:       q.SoftLimit,
		Hard:       q.HardLimit,
		Tasks:      int(q.NrTasks),
		Sampled:    time.Duration(q.SampleNs),
		SoftWarned: q.Flags&QuerySoftWarned != 0,
		Killed:     q.Flags&QueryKilled != 0,
		Exited:     q.Flags&QueryExited != 0,
	}
}

// Stats returns the counters of the module and of this open file.
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
		ID:    r.ID,
		Pid:   int(r.Pid),
		Name:  cString(r.Name[:]),
		RSS:   r.RSS,
		Limit: r.Limit,
		Time:  time.Unix(0, int64(r.TimeNs)),
		Mono:  time.Duration(r.MonoNs),
		Seq:   r.Seq,
	}, nil
}

// Close closes this descriptor; a blocked ReadEvent returns. The module drops
// the registrations once no process holds the open file any more.
func (c *Client) Close() error {
	return c.f.Close()
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
