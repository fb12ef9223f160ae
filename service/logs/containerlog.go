// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// DefaultMaxBytes is the size cap of one log file when OpenContainerLog gets maxBytes 0.
const DefaultMaxBytes = 8 << 20

// MinMaxBytes is the smallest accepted size cap.
const MinMaxBytes = 4 << 10

// readChunk is how much Copy reads from a container's pipe at once while output flows. All
// lines of one read become one file write and one journal datagram, which is what makes short
// lines cheap.
const readChunk = 64 << 10

// idleChunk is the read buffer a stream holds while it is quiet. Most containers print little
// and then wait; holding readChunk+MaxLinePiece per stream for them would cost 160 KiB per
// container (two streams) for nothing, so the large buffer is only borrowed from bigReadBufs
// while reads keep coming back full.
const idleChunk = 4 << 10

// bigReadBufs lends readChunk+MaxLinePiece read buffers to the streams that are busy right now.
// It is shared by all containers on purpose: only the streams with output flowing hold one, and
// the garbage collector frees what stays unused.
var bigReadBufs = sync.Pool{New: func() any {
	b := make([]byte, readChunk+MaxLinePiece)
	return &b
}}

// copyScratch holds Copy's per-read working memory. It is taken from copyScratches after each
// read and given back before the next one, so a quiet stream holds none of it (its slices
// grow with the largest read seen, up to a few hundred KiB for a read of empty lines).
type copyScratch struct {
	pieces []piece
	recs   []byte
	ends   []int
	entry  []byte
}

var copyScratches = sync.Pool{New: func() any { return new(copyScratch) }}

// ContainerLog is one container's output log: a size-capped file (path, rotated to path.1)
// that `jackfruit logs` reads, mirrored line by line into the journal when one is given.
//
// Copy is called once per output stream, concurrently; Read may be called any number of
// times, concurrently with Copy; Close is called once both Copy calls returned and ends every
// following Read once it has delivered everything.
type ContainerLog struct {
	path    string
	max     int64
	fields  Fields
	journal *Journal
	prefix  [2][]byte // encoded journal fields for stdout and stderr entries
	logger  atomic.Pointer[slog.Logger]

	mu     sync.Mutex
	f      *os.File // current file, written with WriteAt at size
	size   int64    // bytes of whole records in f; readers never read past it
	gen    uint64   // incremented by each rotation
	closed bool
	notify chan struct{} // closed and replaced whenever size, gen or closed change
	ferr   bool          // a file write failure was already reported
	// transient: the log is deleted with its container right after the container ends
	// (`run --rm`), so Close does not fsync it.
	transient bool
}

// OpenContainerLog opens (or creates) the log file at path. An existing file is appended to
// (a torn last record from a crash is cut off); a file that is not a jackfruit log is an
// error, never overwritten. maxBytes caps each of path and path.1 (0: DefaultMaxBytes).
// j may be nil: then only the file is written.
func OpenContainerLog(path string, maxBytes int64, f Fields, j *Journal) (*ContainerLog, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	switch {
	case maxBytes == 0:
		maxBytes = DefaultMaxBytes
	case maxBytes < MinMaxBytes:
		return nil, service.Errorf(service.KindInvalidArgument, "log size cap %d bytes is below the minimum of %d", maxBytes, MinMaxBytes)
	}
	file, size, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	c := &ContainerLog{
		path:    path,
		max:     maxBytes,
		fields:  f,
		journal: j,
		f:       file,
		size:    size,
		notify:  make(chan struct{}),
	}
	c.prefix[0] = appendContainerFields(nil, f, priorityOf(service.Stdout), f.Name)
	c.prefix[1] = appendContainerFields(nil, f, priorityOf(service.Stderr), f.Name)
	c.logger.Store(slog.Default())
	return c, nil
}

// SetLogger sets where file write failures are reported (default: slog.Default()).
func (c *ContainerLog) SetLogger(l *slog.Logger) {
	if l != nil {
		c.logger.Store(l)
	}
}

// Path returns the current log file's path.
func (c *ContainerLog) Path() string { return c.path }

// openLogFile opens path for writing, creating it with the format header, or validating an
// existing one and returning the offset after its last whole record.
func openLogFile(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("opening container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening container log: %w", err)
	}
	if fi.Size() == 0 {
		if _, err := f.WriteAt([]byte(fileMagic), 0); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("writing container log header: %w", err)
		}
		return f, headerLen, nil
	}
	if err := checkMagic(f); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening container log: %w", err)
	}
	end, err := scanRecords(f, headerLen, fi.Size(), false, func(record, []byte) error { return nil })
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening container log: %w", err)
	}
	if end != fi.Size() {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cutting torn record off %s: %w", path, err)
		}
	}
	return f, end, nil
}

// piece is one line or 16 KiB piece of a line inside Copy's read buffer.
type piece struct {
	off, n  int
	partial bool
	noEOL   bool // the output ended here without a newline
}

// Copy reads r until EOF and logs every line: split at '\n' and into MaxLinePiece pieces
// (all but the last of a long line marked partial), written to the file first and then to
// the journal. Output left without a final newline at EOF (or at a read error) is logged as
// a last, complete line marked as having no newline, so readers can reproduce it exactly.
// Copy keeps draining r even when the file or the journal cannot be written, so the container
// never blocks on its logs; it returns the read error or the first file write error once r is
// exhausted.
//
// A quiet stream waits in Read with an idleChunk buffer. A read that fills the buffer it was
// given means more output is waiting: the next reads use a readChunk+MaxLinePiece buffer from
// bigReadBufs, which goes back to the pool after the first read that comes back short (the
// pipe was drained) once the unfinished line left over fits the small buffer again.
func (c *ContainerLog) Copy(r io.Reader, s service.Stream) error {
	_, err := c.CopyFrom(r, s, nil)
	return err
}

// ErrDetached is returned by CopyFrom when it stopped because r's read deadline expired.
var ErrDetached = errors.New("stopped copying: the supervisor lets go of the stream")

// CopyFrom is Copy for a stream that outlives the supervisor. carry is the unfinished line
// a previous supervisor held back when it let go of the stream (at most MaxLinePiece bytes;
// nil if none): it is logged as the start of the first line. When r's read deadline expires
// (os.ErrDeadlineExceeded: the supervisor is letting go of the stream for the next one to
// continue) CopyFrom logs the complete lines it read and returns the unfinished line it
// holds, unlogged, with ErrDetached; everything else is as for Copy, and rest is nil.
func (c *ContainerLog) CopyFrom(r io.Reader, s service.Stream, carry []byte) (rest []byte, err error) {
	if s != service.Stdout && s != service.Stderr {
		return nil, service.Errorf(service.KindInvalidArgument, "unknown output stream %q", s)
	}
	if len(carry) > MaxLinePiece {
		return nil, service.Errorf(service.KindInvalidArgument, "carried unfinished line of %d bytes exceeds %d", len(carry), MaxLinePiece)
	}
	stderr := s == service.Stderr
	small := make([]byte, idleChunk)
	buf := small
	var big *[]byte // borrowed from bigReadBufs while output flows
	defer func() {
		if big != nil {
			bigReadBufs.Put(big)
		}
	}()
	var (
		start   int // bytes of an unfinished line kept at the front of buf
		fileErr error
	)
	if len(carry) > idleChunk/2 {
		big = bigReadBufs.Get().(*[]byte)
		buf = *big
	}
	start = copy(buf, carry)
	for {
		room := buf[start:]
		n, rerr := r.Read(room)
		data := buf[:start+n]
		detached := rerr != nil && errors.Is(rerr, os.ErrDeadlineExceeded)
		sc := copyScratches.Get().(*copyScratch)
		p, err := c.logRead(sc, data, stderr, rerr != nil && !detached)
		copyScratches.Put(sc)
		if err != nil && fileErr == nil {
			fileErr = err
		}
		if detached {
			if fileErr != nil {
				return bytes.Clone(data[p:]), errors.Join(ErrDetached, fileErr)
			}
			return bytes.Clone(data[p:]), ErrDetached
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil, fileErr
			}
			return nil, errors.Join(fmt.Errorf("reading container %s %s: %w", c.fields.Name, s, rerr), fileErr)
		}
		rest := data[p:]
		// Full read: more output is likely queued. Short read: the pipe is drained for now.
		// A leftover of more than half the small buffer stays in (or moves to) the big one,
		// so a read into the small buffer always has room for at least half of it.
		full := n == len(room)
		switch {
		case big == nil && (full || len(rest) > idleChunk/2):
			big = bigReadBufs.Get().(*[]byte)
			buf = *big
			start = copy(buf, rest)
		case big != nil && !full && len(rest) <= idleChunk/2:
			buf = small
			start = copy(buf, rest) // before the Put: rest lives in the big buffer
			bigReadBufs.Put(big)
			big = nil
		default:
			start = copy(buf, rest)
		}
	}
}

// logRead logs the complete lines (and the whole pieces of an overlong unfinished line) at the
// front of data, one read's worth, and returns how many bytes of data it consumed; the rest is
// an unfinished line shorter than MaxLinePiece. At eof the rest is logged as a line without a
// newline, so everything is consumed. The error is a file write error; journal failures are
// counted and reported by the Journal.
func (c *ContainerLog) logRead(sc *copyScratch, data []byte, stderr, eof bool) (int, error) {
	pieces := sc.pieces[:0]
	p := 0
	for {
		i := bytes.IndexByte(data[p:], '\n')
		if i < 0 {
			break
		}
		pieces = splitLine(pieces, p, i)
		p += i + 1
	}
	// An unfinished line is held back unless it already exceeds one piece: then whole
	// pieces go out now, so a line without newlines never grows the buffer.
	rest := len(data) - p
	for rest > MaxLinePiece {
		pieces = append(pieces, piece{off: p, n: MaxLinePiece, partial: true})
		p += MaxLinePiece
		rest -= MaxLinePiece
	}
	if eof && rest > 0 {
		pieces = append(pieces, piece{off: p, n: rest, noEOL: true})
		p += rest
	}
	sc.pieces = pieces
	if len(pieces) == 0 {
		return p, nil
	}
	now := time.Now().UnixNano()
	recs, ends := sc.recs[:0], sc.ends[:0]
	for _, pc := range pieces {
		recs = appendRecord(recs, stderr, pc.partial, pc.noEOL, now, data[pc.off:pc.off+pc.n])
		ends = append(ends, len(recs))
	}
	sc.recs, sc.ends = recs, ends
	err := c.commit(recs, ends)
	if c.journal != nil {
		prefix := c.prefix[0]
		if stderr {
			prefix = c.prefix[1]
		}
		entry := sc.entry[:0]
		n := 0
		for _, pc := range pieces {
			entry = appendLineEntry(append(entry, prefix...), pc.partial, data[pc.off:pc.off+pc.n])
			n++
			if !c.journal.batch || len(entry) >= batchBytes {
				_ = c.journal.send(entry, n)
				entry, n = entry[:0], 0
			} else {
				entry = append(entry, '\n') // entry separator
			}
		}
		if n > 0 {
			_ = c.journal.send(entry, n)
		}
		sc.entry = entry
	}
	return p, err
}

// splitLine appends the pieces of the line at data[off:off+n] (newline excluded).
func splitLine(pieces []piece, off, n int) []piece {
	for n > MaxLinePiece {
		pieces = append(pieces, piece{off: off, n: MaxLinePiece, partial: true})
		off += MaxLinePiece
		n -= MaxLinePiece
	}
	return append(pieces, piece{off: off, n: n})
}

// commit appends encoded records (ends[i] is the end of record i in recs) to the file,
// rotating whenever the next record would push the file past the cap, and wakes readers.
func (c *ContainerLog) commit(recs []byte, ends []int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("container log is closed")
	}
	defer c.wakeLocked()
	off, i := 0, 0
	for off < len(recs) {
		// Take as many whole records as fit; a file always takes at least one.
		room := c.max - c.size
		k := i
		for k < len(ends) && int64(ends[k]-off) <= room {
			k++
		}
		if k == i {
			if c.size > headerLen {
				if err := c.rotateLocked(); err != nil {
					return c.fileFailed(err)
				}
				continue
			}
			k = i + 1
		}
		end := ends[k-1]
		if _, err := c.f.WriteAt(recs[off:end], c.size); err != nil {
			// Whatever part was written lies beyond size: readers ignore it and the next
			// write overwrites it.
			return c.fileFailed(fmt.Errorf("writing %s: %w", c.f.Name(), err))
		}
		c.size += int64(end - off)
		off, i = end, k
		if c.ferr {
			c.ferr = false
			c.logger.Load().Warn("container log: writing works again", "container", c.fields.Name, "path", c.path)
		}
	}
	return nil
}

func (c *ContainerLog) fileFailed(err error) error {
	if !c.ferr {
		c.ferr = true
		c.logger.Load().Warn("container log: cannot write the log file; output still goes to the journal",
			"container", c.fields.Name, "error", err)
	}
	return err
}

// rotateLocked moves the full file to path.1 (replacing the previous one) and starts a new
// one. The new file is prepared first, so a failure leaves the current file in place.
func (c *ContainerLog) rotateLocked() error {
	tmp := c.path + ".new"
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotating container log: %w", err)
	}
	if _, err := nf.WriteAt([]byte(fileMagic), 0); err != nil {
		nf.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotating container log: %w", err)
	}
	if err := os.Rename(c.path, c.path+".1"); err != nil {
		nf.Close()
		os.Remove(tmp)
		return fmt.Errorf("rotating container log: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		// Put the current file back: it keeps taking output past its cap rather than lose it.
		nf.Close()
		os.Remove(tmp)
		_ = os.Rename(c.path+".1", c.path)
		return fmt.Errorf("rotating container log: %w", err)
	}
	c.f.Close()
	c.f = nf
	c.size = headerLen
	c.gen++
	return nil
}

func (c *ContainerLog) wakeLocked() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// SetTransient marks the log as one that is deleted with its container as soon as the
// container ends (`run --rm`): Close then skips the fsync, which nothing would gain from.
func (c *ContainerLog) SetTransient() {
	c.mu.Lock()
	c.transient = true
	c.mu.Unlock()
}

// Close ends the log: the file is synced (unless transient) and closed, later Copy calls
// fail, and following readers return once they have delivered everything.
func (c *ContainerLog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.wakeLocked()
	// One fsync per container lifetime: lines are not synced individually.
	var serr error
	if !c.transient {
		serr = c.f.Sync()
	}
	cerr := c.f.Close()
	if cerr != nil {
		return fmt.Errorf("closing container log: %w", cerr)
	}
	if serr != nil {
		return fmt.Errorf("syncing container log: %w", serr)
	}
	return nil
}
