// SPDX-License-Identifier: Apache-2.0

package testutil

// # A notify socket with an fd store
//
// NotifySocket plays the part of systemd's notification socket for a service under test: it
// records every sd_notify message and keeps the descriptors sent with FDSTORE=1 (under
// FDNAME=, honouring FDSTOREREMOVE=1) the way the service manager's fd store does. Command
// then starts the next run of the service as systemd would: the stored descriptors at 3, 4,
// ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set (LISTEN_PID through a sh that execs
// the program, as the pid is only known after the fork).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifyWait bounds WaitFor.
const notifyWait = 30 * time.Second

// NotifySocket is a test NOTIFY_SOCKET with an fd store.
type NotifySocket struct {
	Path string

	conn *net.UnixConn
	mu   sync.Mutex
	cond *sync.Cond
	msgs []string
	// store is kept in the order the descriptors arrived, as systemd's is.
	store []storedFD
	done  chan struct{}
}

type storedFD struct {
	name string
	f    *os.File
}

// NewNotifySocket listens on a fresh datagram socket; it is closed (with every stored
// descriptor) when the test ends.
func NewNotifySocket(t testing.TB) *NotifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	n := &NotifySocket{Path: path, conn: conn, done: make(chan struct{})}
	n.cond = sync.NewCond(&n.mu)
	go n.serve()
	t.Cleanup(func() {
		conn.Close()
		<-n.done
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, s := range n.store {
			s.f.Close()
		}
		n.store = nil
	})
	return n
}

func (n *NotifySocket) serve() {
	defer close(n.done)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(253*4))
	for {
		k, oobn, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			n.mu.Lock()
			n.cond.Broadcast()
			n.mu.Unlock()
			return
		}
		var fds []int
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if r, err := unix.ParseUnixRights(&c); err == nil {
					fds = append(fds, r...)
				}
			}
		}
		n.handle(string(buf[:k]), fds)
	}
}

func (n *NotifySocket) handle(msg string, fds []int) {
	kv := map[string]string{}
	for _, line := range strings.Split(msg, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.cond.Broadcast()
	n.msgs = append(n.msgs, msg)
	name := kv["FDNAME"]
	if name == "" {
		name = "stored" // systemd's default name for a stored descriptor
	}
	if kv["FDSTOREREMOVE"] == "1" {
		kept := n.store[:0]
		for _, s := range n.store {
			if s.name == name {
				s.f.Close()
			} else {
				kept = append(kept, s)
			}
		}
		n.store = kept
	}
	for _, fd := range fds {
		if kv["FDSTORE"] == "1" {
			unix.CloseOnExec(fd)
			n.store = append(n.store, storedFD{name: name, f: os.NewFile(uintptr(fd), name)})
		} else {
			unix.Close(fd) // systemd closes descriptors sent without FDSTORE=1
		}
	}
}

// Messages returns every message received so far.
func (n *NotifySocket) Messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// WaitFor waits until a received message contains sub (e.g. "READY=1") and returns it.
// It fails the test after a timeout.
func (n *NotifySocket) WaitFor(t testing.TB, sub string, from int) (string, int) {
	t.Helper()
	timer := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-stop:
		case <-time.After(notifyWait):
			close(timer)
			n.mu.Lock()
			n.cond.Broadcast()
			n.mu.Unlock()
		}
	}()
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		for i := from; i < len(n.msgs); i++ {
			if strings.Contains(n.msgs[i], sub) {
				return n.msgs[i], i + 1
			}
		}
		select {
		case <-timer:
			t.Fatalf("no notify message with %q within %v; got %q", sub, notifyWait, n.msgs)
		default:
		}
		n.cond.Wait()
	}
}

// StoredNames lists the names in the fd store, sorted.
func (n *NotifySocket) StoredNames() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	for _, s := range n.store {
		names = append(names, s.name)
	}
	sort.Strings(names)
	return names
}

// Command returns a command that runs name with args as the next run of the service: the
// stored descriptors at 3, 4, ... in store order, LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID and
// NOTIFY_SOCKET set, besides env. The store keeps its own copies, as systemd's does.
func (n *NotifySocket) Command(env []string, name string, args ...string) *exec.Cmd {
	n.mu.Lock()
	var files []*os.File
	var names []string
	for _, s := range n.store {
		files = append(files, s.f)
		names = append(names, s.name)
	}
	n.mu.Unlock()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, name}, args...)...)
	cmd.Env = append(append(os.Environ(), env...),
		"NOTIFY_SOCKET="+n.Path,
		fmt.Sprintf("LISTEN_FDS=%d", len(files)),
		"LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.ExtraFiles = files
	return cmd
}
