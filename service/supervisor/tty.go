// SPDX-License-Identifier: Apache-2.0

// Containers on a terminal (start -t, run -it) and attaching to them.

package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/service"
)

const (
	// ttyReplay is how much of a terminal's latest output a new attachment with Replay gets
	// first, so that `run -it` shows the shell's first prompt although it attaches a moment
	// after the shell printed it.
	ttyReplay = 8 << 10
	// attachBacklog bounds the output chunks queued for one attached client; a client that
	// falls this far behind is detached rather than slowing the container or the log down.
	attachBacklog = 256
)

// ttyHub owns a container's pty master: the log copier reads the master through it, and it
// hands every chunk read to the attached clients as well. The supervisor is the only reader
// of the master, so the log and the journal see all of a terminal container's output
// whoever is attached.
type ttyHub struct {
	master *os.File

	mu     sync.Mutex
	recent []byte // the last ttyReplay bytes of output
	subs   map[*ttySub]struct{}
	closed bool
}

// ttySub is one attached client: a goroutine writes its queue into a pipe the client reads.
type ttySub struct {
	ch chan []byte
	w  *os.File
}

func newTtyHub(master *os.File) *ttyHub {
	return &ttyHub{master: master, subs: map[*ttySub]struct{}{}}
}

// Read reads the master for the log copier and fans the output out. EIO (every process has
// closed the slave) is the end of the stream: EOF, and every attached client gets EOF too.
func (h *ttyHub) Read(p []byte) (int, error) {
	n, err := h.master.Read(p)
	if n > 0 {
		h.broadcast(p[:n])
	}
	if err != nil && errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		h.close()
	}
	return n, err
}

// SetReadDeadline lets the supervisor's Detach stop the copier like the pipe copiers.
func (h *ttyHub) SetReadDeadline(t time.Time) error { return h.master.SetReadDeadline(t) }

// Close closes the master (after the copier is done with it).
func (h *ttyHub) Close() error {
	h.close()
	return h.master.Close()
}

func (h *ttyHub) broadcast(b []byte) {
	chunk := append([]byte(nil), b...)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recent = append(h.recent, chunk...)
	if len(h.recent) > ttyReplay {
		h.recent = append([]byte(nil), h.recent[len(h.recent)-ttyReplay:]...)
	}
	for s := range h.subs {
		select {
		case s.ch <- chunk:
		default:
			// Too slow: drop the client, never the container's output.
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

func (h *ttyHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}

// attach adds a client; the returned pipe's read end carries the output from now on (with
// replay, first the latest ttyReplay bytes). detach removes it.
func (h *ttyHub) attach(replay bool) (out *os.File, detach func(), err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	s := &ttySub{ch: make(chan []byte, attachBacklog), w: w}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		r.Close()
		w.Close()
		return nil, nil, errHubClosed
	}
	if replay && len(h.recent) > 0 {
		s.ch <- append([]byte(nil), h.recent...)
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		defer w.Close()
		for chunk := range s.ch {
			if _, err := w.Write(chunk); err != nil {
				// The client closed its end: stop queueing for it.
				h.remove(s)
				for range s.ch {
				}
				return
			}
		}
	}()
	return r, func() { h.remove(s) }, nil
}

func (h *ttyHub) remove(s *ttySub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// input returns a duplicate of the master for a client to type into and resize (TIOCSWINSZ).
func (h *ttyHub) input() (*os.File, error) {
	rc, err := h.master.SyscallConn()
	if err != nil {
		return nil, err
	}
	dfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { dfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(dfd), "pty-master"), nil
}

var errHubClosed = errors.New("the terminal has closed")

// Attach connects a client to a terminal container: Output carries what the container
// writes to its terminal from now on (with replay, preceded by the latest output), Input is
// the pty master to type into and resize. The container's output keeps going to its log and
// the journal whoever is attached. Attaching may type into the container: it is a write.
func (s *Supervisor) Attach(ctx context.Context, caller service.Caller, name string, replay bool) (service.Attachment, error) {
	if err := s.authorise(caller, "attach to containers"); err != nil {
		return service.Attachment{}, err
	}
	c, err := s.lookup(name)
	if err != nil {
		return service.Attachment{}, err
	}
	s.mu.Lock()
	state, tty := c.rec.State, c.rec.Tty
	hub := c.tty
	s.mu.Unlock()
	if !tty {
		return service.Attachment{}, service.Errorf(service.KindInvalidState,
			"container %q has no terminal (start it with -t); its output is in `jackfruit logs -f %s`", name, name)
	}
	if state.Final() || hub == nil {
		return service.Attachment{}, service.Errorf(service.KindInvalidState, "container %q is not running (%s)", name, state)
	}
	out, detach, err := hub.attach(replay)
	if err != nil {
		if errors.Is(err, errHubClosed) {
			return service.Attachment{}, service.Errorf(service.KindInvalidState, "container %q is not running (its terminal has closed)", name)
		}
		return service.Attachment{}, internal(err, "attach to container %q", name)
	}
	in, err := hub.input()
	if err != nil {
		detach()
		out.Close()
		return service.Attachment{}, internal(err, "attach to container %q", name)
	}
	return service.Attachment{Output: out, Input: in, Detach: detach}, nil
}
