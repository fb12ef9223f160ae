// SPDX-License-Identifier: Apache-2.0

package sdglue

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Inherited is what the service manager passed at start through LISTEN_FDS and
// LISTEN_FDNAMES: the listening sockets of the socket unit, and the descriptors a previous
// run of the service kept in its fd store (FDSTORE=1), by the name it gave them.
type Inherited struct {
	// Sockets are the passed sockets, in order; Listen picks the control socket among them.
	Sockets []*os.File
	// Stored are the passed descriptors that are not sockets (pipes, devices): what a
	// previous run stored. The store only ever holds what jackfruit put there, and jackfruit
	// stores no sockets, so the type tells them apart whatever the socket unit named its
	// sockets (FileDescriptorName= defaults to the socket unit's name).
	Stored map[string]*os.File
}

// Inherit takes the descriptors passed by the service manager and clears LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES, so children never see them. Call it once, early.
// A stored name given twice keeps the first descriptor; dropped lists the names of
// descriptors Inherit closed (duplicates and unnamed non-sockets), for a warning.
func Inherit() (in Inherited, dropped []string) {
	in.Stored = make(map[string]*os.File)
	for _, f := range activation.Files(true) {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			dropped = append(dropped, f.Name())
			f.Close()
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			in.Sockets = append(in.Sockets, f)
			continue
		}
		name := f.Name()
		// activation.Files names a descriptor without a name LISTEN_FD_<n>.
		if _, dup := in.Stored[name]; dup || strings.HasPrefix(name, "LISTEN_FD_") {
			dropped = append(dropped, name)
			f.Close()
			continue
		}
		in.Stored[name] = f
	}
	return in, dropped
}

// Take removes the stored descriptor called name from in and returns it (nil if there is
// none); the caller owns it.
func (in *Inherited) Take(name string) *os.File {
	f := in.Stored[name]
	delete(in.Stored, name)
	return f
}

// FDStore keeps descriptors in the service manager's fd store (sd_pid_notify_with_fds with
// FDSTORE=1): systemd holds them while the service restarts or crashes and passes them to
// the next run (see Inherit). It is how a container's output pipes and the monitor device
// outlive the supervisor. Outside systemd (no NOTIFY_SOCKET) it is disabled and Store and
// Remove do nothing.
//
// The store is bounded by the unit's FileDescriptorStoreMax=. systemd 252 closes a
// descriptor beyond it and only logs that, so FDStore counts what it stored itself and
// refuses past the bound, warning once: the descriptor is then simply not kept, and what it
// belongs to would not survive a restart.
type FDStore struct {
	addr string // NOTIFY_SOCKET; empty: disabled
	max  int
	log  *slog.Logger

	mu     sync.Mutex
	names  map[string]bool // stored by us or inherited, not yet removed
	warned bool
}

// ErrStoreFull is returned by Store when FileDescriptorStoreMax is reached.
var ErrStoreFull = errors.New("systemd fd store is full (FileDescriptorStoreMax=)")

// NewFDStore returns the fd store of the service this process runs as. max is the
// configured bound, used when systemd does not say ($FDSTORE, set by systemd 254 and
// later, wins). inherited lists the names already in the store (Inherited.Stored from this
// start). logger gets the one "store full" warning.
func NewFDStore(max int, inherited []string, logger *slog.Logger) *FDStore {
	if logger == nil {
		logger = slog.Default()
	}
	if v, err := strconv.Atoi(os.Getenv("FDSTORE")); err == nil && v >= 0 {
		max = v
	}
	s := &FDStore{addr: os.Getenv("NOTIFY_SOCKET"), max: max, log: logger, names: make(map[string]bool)}
	for _, n := range inherited {
		s.names[n] = true
	}
	return s
}

// Enabled reports whether there is a service manager to keep descriptors.
func (s *FDStore) Enabled() bool { return s != nil && s.addr != "" && s.max > 0 }

// Max is the bound in use.
func (s *FDStore) Max() int { return s.max }

// Len is how many descriptors are stored now, as far as this process knows.
func (s *FDStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.names)
}

// Has reports whether name is in the store.
func (s *FDStore) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name]
}

// Store hands a duplicate of fd to the service manager under name, with FDPOLL=0: by
// default systemd drops a stored descriptor once it reports POLLHUP, which for a pipe whose
// writer exited while nobody read it would throw its unread output away. It returns false
// (and no error) when the store is disabled, ErrStoreFull at the bound; a name already
// stored is replaced.
func (s *FDStore) Store(name string, fd int) (bool, error) {
	if !s.Enabled() {
		return false, nil
	}
	if err := checkFDName(name); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] {
		// systemd would keep both under one name; the old one is stale.
		if err := s.send("FDSTOREREMOVE=1\nFDNAME="+name, -1); err != nil {
			return false, err
		}
		delete(s.names, name)
	}
	if len(s.names) >= s.max {
		if !s.warned {
			s.warned = true
			s.log.Warn("the systemd fd store is full: what is started from now on keeps running, but would not survive a restart of the supervisor; raise FileDescriptorStoreMax= of jackfruit.service",
				"max", s.max)
		}
		return false, ErrStoreFull
	}
	if err := s.send("FDSTORE=1\nFDNAME="+name+"\nFDPOLL=0", fd); err != nil {
		return false, err
	}
	s.names[name] = true
	return true, nil
}

// Remove asks the service manager to close every stored descriptor called name. Removing
// a name that is not stored is harmless.
func (s *FDStore) Remove(name string) error {
	if !s.Enabled() {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.send("FDSTOREREMOVE=1\nFDNAME="+name, -1); err != nil {
		return err
	}
	delete(s.names, name)
	if len(s.names) < s.max {
		s.warned = false // full again later: say so again
	}
	return nil
}

// send writes one notification datagram, with fd attached as SCM_RIGHTS when fd >= 0.
func (s *FDStore) send(msg string, fd int) error {
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fd store: socket: %w", err)
	}
	defer unix.Close(sock)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// SockaddrUnix maps a leading '@' to the abstract namespace, as sd_notify does.
	if err := unix.Sendmsg(sock, []byte(msg), oob, &unix.SockaddrUnix{Name: s.addr}, 0); err != nil {
		return fmt.Errorf("fd store: send %q to NOTIFY_SOCKET %s: %w", firstLine(msg), s.addr, err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkFDName applies systemd's rule for FDNAME= (fdname_is_valid): 1 to 255 printable
// ASCII characters without ':', which separates names in LISTEN_FDNAMES.
func checkFDName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("fd store: name %q must have 1 to 255 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c > '~' || c == ':' {
			return fmt.Errorf("fd store: name %q has a character systemd does not accept (%q)", name, c)
		}
	}
	return nil
}
