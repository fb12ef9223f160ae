// SPDX-License-Identifier: Apache-2.0

package control

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Descriptor passing (SCM_RIGHTS), as systemd's varlink does it: descriptors travel as
// ancillary data with the bytes of the message they belong to. Exec takes the client's
// stdin, stdout and stderr this way, and its first reply hands back a pty master.

// maxFdsPerConn bounds the descriptors a peer can make us hold before a call takes them.
const maxFdsPerConn = 16

// fdReader reads a UNIX stream socket and keeps the descriptors that arrive, each tagged
// with the stream offset of the last byte of the read that brought it. The kernel ends a
// read at the message (skb) carrying descriptors, and a sender writes each message with its
// descriptors in one sendmsg, so that byte belongs to the message the descriptors came with.
type fdReader struct {
	c   *net.UnixConn
	oob []byte

	mu      sync.Mutex
	off     int64 // bytes read so far
	pending []taggedFd
}

type taggedFd struct {
	pos int64 // offset of the last byte of the read that brought f
	f   *os.File
}

func newFdReader(c *net.UnixConn) *fdReader {
	return &fdReader{c: c, oob: make([]byte, unix.CmsgSpace(maxFdsPerConn*4))}
}

func (r *fdReader) Read(b []byte) (int, error) {
	n, oobn, _, _, err := r.c.ReadMsgUnix(b, r.oob)
	if n < 0 {
		n = 0 // a failed recvmsg reports -1
	}
	if n == 0 && err == nil && len(b) > 0 {
		// Unlike Read, ReadMsgUnix reports the peer's close as an empty read.
		err = io.EOF
	}
	var fds []int
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(r.oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	r.mu.Lock()
	r.off += int64(n)
	for _, fd := range fds {
		unix.CloseOnExec(fd) // Go asks for MSG_CMSG_CLOEXEC; be sure anyway
		if len(r.pending) >= maxFdsPerConn || n == 0 {
			unix.Close(fd)
			continue
		}
		r.pending = append(r.pending, taggedFd{pos: r.off - 1, f: os.NewFile(uintptr(fd), "passed-fd")})
	}
	r.mu.Unlock()
	return n, err
}

// take removes and returns the descriptors that arrived with bytes before offset end (the
// end of a message just parsed), in order.
func (r *fdReader) take(end int64) []*os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*os.File
	i := 0
	for ; i < len(r.pending) && r.pending[i].pos < end; i++ {
		out = append(out, r.pending[i].f)
	}
	r.pending = r.pending[i:]
	return out
}

// closeAll closes every descriptor no call took.
func (r *fdReader) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.pending {
		t.f.Close()
	}
	r.pending = nil
}

// writeWithFds writes b in one sendmsg carrying files (then the rest, if the kernel took
// only part of b).
func writeWithFds(c *net.UnixConn, b []byte, files []*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	n, _, err := c.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	if err != nil {
		return err
	}
	if n < len(b) {
		if _, err := c.Write(b[n:]); err != nil {
			return fmt.Errorf("writing the rest of a message with descriptors: %w", err)
		}
	}
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
