// SPDX-License-Identifier: Apache-2.0

// What a hostile or careless client may cost the supervisor: a bounded number of
// connections, no buffer while a connection is idle, and a server-wide cap on the bytes
// held for requests still arriving.

package control

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Defaults of the Server's limits.
const (
	// DefaultMaxConns bounds concurrent client connections (`jackfruit supervisor
	// --max-connections`). Connections beyond it are answered with an error and closed.
	DefaultMaxConns = 256
	// DefaultMaxBuffered caps the bytes held across all connections for requests that have
	// not fully arrived, beyond each connection's first smallBuffer bytes.
	DefaultMaxBuffered = 16 << 20
	// smallBuffer is what a connection reads into once bytes arrive; it grows (doubling, up
	// to MaxRequestSize+1) only for a request that does not fit, charging the growth to the
	// server-wide cap. An idle connection holds no buffer at all.
	smallBuffer = 4 << 10
)

// fdShareForClients is the part of the process's descriptor limit client connections may
// use; the rest stays for the core (container pipes, pidfds, log files, state writes), so
// clients can never make a container start fail with EMFILE. Each connection may hold its
// own descriptor and up to maxFdsPerConn passed to it.
const fdShareForClients = 2 // one half

// maxConnsFor returns how many connections may be open at once: want, but never more than
// the clients' share of the descriptor limit allows.
func maxConnsFor(want int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur != unix.RLIM_INFINITY {
		if share := int(rl.Cur / fdShareForClients / (1 + maxFdsPerConn)); share < want {
			return max(share, 1)
		}
	}
	return want
}

// budget is the server-wide cap on buffered request bytes.
type budget struct {
	limit int64
	used  atomic.Int64
}

func (b *budget) take(n int) bool {
	if b.used.Add(int64(n)) > b.limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *budget) give(n int) { b.used.Add(-int64(n)) }

var errBusy = errors.New("too many bytes of unfinished requests buffered")

// msgReader reads NUL-terminated messages. It waits for a request without holding a buffer,
// reads into a small one once bytes are there, grows it only while one request is larger,
// and lets go of it whenever nothing is left unread.
type msgReader struct {
	src     io.Reader // the connection, or an fdReader on it
	raw     syscall.RawConn
	budget  *budget
	buf     []byte
	r, w    int // buf[r:w] is read but not yet consumed
	charged int // bytes of buf charged to budget
}

func newMsgReader(c net.Conn, src io.Reader, b *budget) (*msgReader, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &msgReader{src: src, raw: raw, budget: b}, nil
}

// wait blocks until the connection is readable (data, EOF or an error) or its read deadline
// passes, without a buffer: a peek of one byte into the stack. It returns io.EOF on a clean
// end of the stream.
func (m *msgReader) wait() error {
	if m.r < m.w {
		return nil
	}
	var eof bool
	var rerr error
	err := m.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return false // park in the netpoller until readable
		case err != nil:
			rerr = err
		case n == 0:
			eof = true
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return rerr
	case eof:
		return io.EOF
	}
	return nil
}

// next returns the next message without its NUL. The slice is valid until the next call.
func (m *msgReader) next(max int) ([]byte, error) {
	scanned := m.r
	for {
		for i := scanned; i < m.w; i++ {
			if m.buf[i] == 0 {
				msg := m.buf[m.r:i]
				m.r = i + 1
				return msg, nil
			}
		}
		if m.w-m.r > max {
			return nil, errTooLarge
		}
		scanned = m.w
		if m.buf == nil {
			m.buf = make([]byte, smallBuffer)
		}
		if m.w == len(m.buf) {
			if err := m.grow(max + 1); err != nil {
				return nil, err
			}
			scanned = m.w
		}
		n, err := m.src.Read(m.buf[m.w:])
		if n == 0 && err == nil {
			err = io.EOF // a reader that reports the peer's close as an empty read
		}
		m.w += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				if m.w > m.r {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, io.EOF
			}
			if n == 0 {
				return nil, err
			}
		}
	}
}

// grow makes room at the end of buf: by moving the unconsumed bytes to the front, or by
// doubling (charged to the budget) up to limit bytes.
func (m *msgReader) grow(limit int) error {
	if m.r > 0 {
		m.w = copy(m.buf, m.buf[m.r:m.w])
		m.r = 0
		return nil
	}
	if len(m.buf) >= limit {
		return errTooLarge
	}
	size := min(2*len(m.buf), limit)
	extra := size - smallBuffer - m.charged
	if !m.budget.take(extra) {
		return errBusy
	}
	m.charged += extra
	nb := make([]byte, size)
	m.w = copy(nb, m.buf[m.r:m.w])
	m.r = 0
	m.buf = nb
	return nil
}

// release drops the buffer when nothing is left unread, so an idle connection holds none.
func (m *msgReader) release() {
	if m.r < m.w {
		return
	}
	m.buf, m.r, m.w = nil, 0, 0
	m.budget.give(m.charged)
	m.charged = 0
}

// close returns what the reader still holds to the budget.
func (m *msgReader) close() {
	m.budget.give(m.charged)
	m.charged = 0
	m.buf = nil
}
