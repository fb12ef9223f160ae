// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

// DefaultJournalSocket is journald's native protocol socket.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// DefaultSendTimeout bounds how long one entry may wait for room in journald's queue before
// the journal is declared stalled (see Journal): long enough to ride out journald's pauses
// (file rotation, vacuuming, a loaded machine), short enough that a hung journald only
// delays containers once.
const DefaultSendTimeout = 5 * time.Second

// MaxLinePiece is the size at which a container's output line is split into pieces, as
// podman and docker do (their journald and k8s-file drivers use 16 KiB too).
const MaxLinePiece = 16 << 10

// Journal writes container output and lifecycle events to systemd-journald over its native
// protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/).
//
// Batching: the lines of one read from a container's pipe go to journald as one datagram
// holding several entries, each ended by an empty line. journald's native parser
// (server_process_native_message) has accepted such sequences since the protocol was
// introduced, although the protocol document only describes one entry per datagram. One
// datagram per line costs journald about twice the CPU time per line of its stream
// transport (wake-up, recvmsg and credential handling per entry); batched, about 1.3 times
// (docs/logging.md has the numbers). The host tests count every entry of 2 x 100000 batched lines in a real
// journald, so a journald that stopped accepting batches fails CI; SetBatching(false)
// switches back to one datagram per entry.
//
// It speaks the protocol itself instead of calling go-systemd's journal.Send because Send
// builds a map and a buffer per entry and blocks without a bound when journald's queue is
// full; container output must never wait on the journal indefinitely. The encoding is the
// same as go-systemd's and sd_journal_send's: NAME=value\n, or, for a value holding a
// newline, NAME\n + 64-bit little-endian length + value + \n. Values may hold any other bytes
// (NUL, invalid UTF-8): journald stores them as given.
//
// Back-pressure and failures: an entry waits at most the send timeout (DefaultSendTimeout
// unless OpenJournalAt says otherwise) for room in journald's
// queue. After a timeout the journal counts as stalled and later entries are tried without
// waiting and dropped (counted) while the queue is full, so a hung journald slows the
// container for at most one timeout. The first successful entry after that is followed by a
// notice entry (MESSAGE_ID MessageJournalDropped) saying how many entries were lost. A warning
// is logged once per failure streak. Callers (ContainerLog) always write the log file first,
// so the file copy never depends on the journal.
//
// A Journal is safe for concurrent use.
type Journal struct {
	socket  string
	timeout time.Duration
	logger  atomic.Pointer[slog.Logger]

	mu sync.RWMutex // write-locked only to replace fd after journald restarted
	fd int

	stalled atomic.Bool   // last send timed out: don't wait for room until one succeeds
	failing atomic.Bool   // a warning for the current failure streak was logged
	dropped atomic.Uint64 // entries lost since the last successful send
	total   atomic.Uint64 // entries lost since OpenJournal

	bufs  sync.Pool // *[]byte entry buffers for Line and Event
	batch bool      // ContainerLog sends several entries per datagram
}

// batchBytes is the size at which ContainerLog sends a batch; one more entry (at most
// MaxLinePiece plus fields) may follow, well below the socket's send buffer.
const batchBytes = 64 << 10

// SetBatching selects whether ContainerLog sends the lines of one read as one datagram
// (default) or one datagram per line. Call it before the journal is used.
func (j *Journal) SetBatching(on bool) { j.batch = on }

// OpenJournal connects to the system journal. It fails when journald is not running (no
// socket at DefaultJournalSocket), so the caller can warn once and carry on with log files.
func OpenJournal() (*Journal, error) {
	return OpenJournalAt(DefaultJournalSocket, DefaultSendTimeout)
}

// OpenJournalAt connects to the journald native socket at path; timeout <= 0 selects
// DefaultSendTimeout.
func OpenJournalAt(path string, timeout time.Duration) (*Journal, error) {
	if timeout <= 0 {
		timeout = DefaultSendTimeout
	}
	j := &Journal{socket: path, timeout: timeout, batch: true}
	j.logger.Store(slog.Default())
	fd, err := j.dial()
	if err != nil {
		return nil, err
	}
	j.fd = fd
	return j, nil
}

// SetLogger sets where the journal reports dropped entries and failures (default: slog.Default()).
func (j *Journal) SetLogger(l *slog.Logger) {
	if l != nil {
		j.logger.Store(l)
	}
}

// Dropped returns how many entries could not be delivered since OpenJournal.
func (j *Journal) Dropped() uint64 { return j.total.Load() }

// Close releases the socket. Sends after Close fail.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fd < 0 {
		return nil
	}
	err := unix.Close(j.fd)
	j.fd = -1
	return err
}

// dial opens a datagram socket connected to journald. Connecting (rather than sendto per
// entry, as go-systemd does) resolves the path once and makes the kernel apply the send
// timeout while journald's receive queue is full.
func (j *Journal) dial() (int, error) {
	fi, err := os.Stat(j.socket)
	if err != nil {
		return -1, fmt.Errorf("journald is not available: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return -1, fmt.Errorf("journald is not available: %s is not a socket", j.socket)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("creating journal socket: %w", err)
	}
	tv := unix.NsecToTimeval(j.timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setting journal socket send timeout: %w", err)
	}
	// Room for many 16 KiB pieces in flight; the kernel caps it at net.core.wmem_max.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: j.socket}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("journald is not available: connecting to %s: %w", j.socket, err)
	}
	return fd, nil
}

// reconnect replaces a socket whose peer went away (journald restarted).
func (j *Journal) reconnect(old int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fd != old {
		return nil // another sender already reconnected
	}
	if j.fd < 0 {
		return errors.New("journal is closed")
	}
	fd, err := j.dial()
	if err != nil {
		return err
	}
	unix.Close(j.fd)
	j.fd = fd
	return nil
}

// send delivers a datagram holding n encoded entries, applying the back-pressure policy
// described on Journal.
func (j *Journal) send(dgram []byte, n int) error {
	err := j.sendOnce(dgram)
	if err == nil {
		if j.stalled.Load() || j.failing.Load() {
			j.recovered()
		}
		return nil
	}
	j.dropped.Add(uint64(n))
	j.total.Add(uint64(n))
	if !j.failing.Swap(true) {
		j.logger.Load().Warn("journal: cannot write entries; container output still goes to the log files",
			"socket", j.socket, "error", err)
	}
	return err
}

func (j *Journal) sendOnce(entry []byte) error {
	for attempt := 0; ; attempt++ {
		j.mu.RLock()
		fd := j.fd
		flags := unix.MSG_NOSIGNAL
		if j.stalled.Load() {
			flags |= unix.MSG_DONTWAIT
		}
		var err error
		if fd < 0 {
			err = errors.New("journal is closed")
		} else {
			err = unix.Sendto(fd, entry, flags, nil)
		}
		j.mu.RUnlock()
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			j.stalled.Store(true)
			return fmt.Errorf("journald's queue stayed full for %v: entry dropped", j.timeout)
		case err == unix.EMSGSIZE || err == unix.ENOBUFS:
			return j.sendMemfd(fd, entry)
		case (err == unix.ECONNREFUSED || err == unix.ENOTCONN || err == unix.ECONNRESET) && attempt == 0:
			if rerr := j.reconnect(fd); rerr != nil {
				return rerr
			}
			continue
		default:
			return fmt.Errorf("writing to journald: %w", err)
		}
	}
}

// sendMemfd passes an entry too large for one datagram as a sealed memfd, as
// sd_journal_sendv does.
func (j *Journal) sendMemfd(fd int, entry []byte) error {
	mfd, err := unix.MemfdCreate("journal-entry", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("journal entry of %d bytes: creating memfd: %w", len(entry), err)
	}
	defer unix.Close(mfd)
	for off := 0; off < len(entry); {
		n, err := unix.Write(mfd, entry[off:])
		if err != nil {
			return fmt.Errorf("journal entry of %d bytes: writing memfd: %w", len(entry), err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS,
		unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("journal entry of %d bytes: sealing memfd: %w", len(entry), err)
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.fd != fd || fd < 0 {
		return errors.New("journal socket changed while sending a large entry")
	}
	if err := unix.Sendmsg(fd, nil, unix.UnixRights(mfd), nil, unix.MSG_NOSIGNAL); err != nil {
		return fmt.Errorf("journal entry of %d bytes: passing memfd: %w", len(entry), err)
	}
	return nil
}

// recovered ends a failure streak: report how much was lost, in the journal itself too.
func (j *Journal) recovered() {
	j.stalled.Store(false)
	n := j.dropped.Swap(0)
	if !j.failing.Swap(false) || n == 0 {
		return
	}
	j.logger.Load().Warn("journal: writing works again", "dropped_entries", n)
	b := j.getBuf()
	e := appendField(*b, "PRIORITY", "4")
	e = appendField(e, "SYSLOG_IDENTIFIER", "jackfruit")
	e = appendField(e, "MESSAGE_ID", MessageJournalDropped)
	e = appendField(e, "DROPPED", strconv.FormatUint(n, 10))
	e = appendField(e, "MESSAGE", fmt.Sprintf("%d container log entries could not be written to the journal (they are in the containers' log files)", n))
	_ = j.sendOnce(e)
	j.putBuf(b, e)
}

func (j *Journal) getBuf() *[]byte {
	if b, ok := j.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (j *Journal) putBuf(b *[]byte, used []byte) {
	if cap(used) > 64<<10 {
		return // don't keep one huge line's buffer alive
	}
	*b = used[:0]
	j.bufs.Put(b)
}

// Line writes one output line (or piece) of a container. Data may hold any bytes; a newline
// in it is carried in the protocol's binary form.
func (j *Journal) Line(f Fields, l service.LogLine) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b := j.getBuf()
	e := appendLineEntry(appendContainerFields((*b)[:0], f, priorityOf(l.Stream), f.Name), l.Partial, l.Data)
	err := j.send(e, 1)
	j.putBuf(b, e)
	return err
}

func priorityOf(s service.Stream) byte {
	if s == service.Stderr {
		return '3' // LOG_ERR, as podman and docker log stderr
	}
	return '6' // LOG_INFO
}

// appendContainerFields writes the fields every entry about a container carries, PRIORITY
// first (prio is an ASCII digit). ident is the SYSLOG_IDENTIFIER: the container name, for
// output lines and lifecycle events alike.
func appendContainerFields(b []byte, f Fields, prio byte, ident string) []byte {
	b = append(b, "PRIORITY="...)
	b = append(b, prio, '\n')
	b = appendField(b, "CONTAINER", f.Name)
	b = appendField(b, "CONTAINER_NAME", f.Name)
	b = appendField(b, "CONTAINER_ID", f.ID[:12])
	b = appendField(b, "CONTAINER_ID_FULL", f.ID)
	return appendField(b, "SYSLOG_IDENTIFIER", ident)
}

// appendLineEntry completes an output-line entry: partial marker and message.
func appendLineEntry(b []byte, partial bool, data []byte) []byte {
	if partial {
		b = append(b, "CONTAINER_PARTIAL_MESSAGE=true\n"...)
	}
	return appendFieldBytes(b, "MESSAGE", data)
}

// appendField encodes NAME=value (see Journal for the two forms).
func appendField(b []byte, name, value string) []byte {
	for i := 0; i < len(value); i++ {
		if value[i] == '\n' {
			return appendBinaryField(b, name, []byte(value))
		}
	}
	b = append(b, name...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, '\n')
}

func appendFieldBytes(b []byte, name string, value []byte) []byte {
	for _, c := range value {
		if c == '\n' {
			return appendBinaryField(b, name, value)
		}
	}
	b = append(b, name...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, '\n')
}

func appendBinaryField(b []byte, name string, value []byte) []byte {
	b = append(b, name...)
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}
