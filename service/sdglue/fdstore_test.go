// SPDX-License-Identifier: Apache-2.0

package sdglue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/internal/testutil"
)

func TestFDStoreDisabledOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("FDSTORE", "")
	s := NewFDStore(10, nil, nil)
	if s.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if ok, err := s.Store("x.stdout", 0); ok || err != nil {
		t.Errorf("Store outside systemd: %v %v", ok, err)
	}
	if err := s.Remove("x.stdout"); err != nil {
		t.Errorf("Remove outside systemd: %v", err)
	}
}

func TestFDStoreSendsAndBounds(t *testing.T) {
	ns := testutil.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path)
	t.Setenv("FDSTORE", "")
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	s := NewFDStore(2, []string{"old.stdout"}, logger)
	if !s.Enabled() || s.Max() != 2 || s.Len() != 1 {
		t.Fatalf("store enabled=%v max=%d len=%d", s.Enabled(), s.Max(), s.Len())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if ok, err := s.Store("hog.stdout", int(r.Fd())); !ok || err != nil {
		t.Fatalf("Store: %v %v", ok, err)
	}
	ns.WaitFor(t, "FDNAME=hog.stdout", 0)
	if got := ns.StoredNames(); !slices.Equal(got, []string{"hog.stdout"}) {
		t.Fatalf("stored %q", got)
	}
	msgs := ns.Messages()
	if msgs[len(msgs)-1] != "FDSTORE=1\nFDNAME=hog.stdout\nFDPOLL=0" {
		t.Errorf("message %q", msgs[len(msgs)-1])
	}

	// The bound counts what was inherited too: old.stdout + hog.stdout = 2 = max.
	if ok, err := s.Store("hog.stderr", int(r.Fd())); ok || !errors.Is(err, ErrStoreFull) {
		t.Errorf("Store beyond the bound: %v %v", ok, err)
	}
	s.Store("more", int(r.Fd()))
	if n := strings.Count(logBuf.String(), "fd store is full"); n != 1 {
		t.Errorf("%d store-full warnings, want 1:\n%s", n, logBuf.String())
	}
	if err := s.Remove("old.stdout"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Store("hog.stderr", int(r.Fd())); !ok || err != nil {
		t.Errorf("Store after a removal: %v %v", ok, err)
	}
	// Replacing a name removes the old descriptor first, so one name is one descriptor.
	if ok, err := s.Store("hog.stdout", int(r.Fd())); !ok || err != nil {
		t.Errorf("Store of a stored name: %v %v", ok, err)
	}
	ns.WaitFor(t, "FDNAME=hog.stdout\nFDPOLL=0", len(msgs))
	if got := ns.StoredNames(); !slices.Equal(got, []string{"hog.stderr", "hog.stdout"}) {
		t.Errorf("stored %q", got)
	}
	if _, err := s.Store("bad:name", int(r.Fd())); err == nil {
		t.Error("a name with ':' was accepted")
	}

	// $FDSTORE (systemd >= 254) overrides the configured bound.
	t.Setenv("FDSTORE", "7")
	if m := NewFDStore(2, nil, nil).Max(); m != 7 {
		t.Errorf("max with FDSTORE=7: %d", m)
	}
}

// TestInheritSplitsSocketsAndStore runs this test binary again as a service manager would
// start it (stored descriptors and a listening socket at 3..), and checks what Inherit and
// Listen make of them there.
func TestInheritSplitsSocketsAndStore(t *testing.T) {
	if os.Getenv("JF_SDGLUE_CHILD") == "1" {
		inheritChild()
		return
	}
	ns := testutil.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path)
	s := NewFDStore(10, nil, nil)

	sock := filepath.Join(t.TempDir(), "ctl.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	uf, _ := ul.File()
	defer uf.Close()
	r, w, _ := os.Pipe()
	defer w.Close()
	// The order systemd uses: the socket unit's sockets first, then the store.
	if _, err := s.Store("jackfruit.socket", int(uf.Fd())); err != nil {
		t.Fatal(err)
	}
	s.Store("hog.stdout", int(r.Fd()))
	s.Store("dup", int(r.Fd()))
	r.Close()
	ns.WaitFor(t, "FDNAME=dup", 0)
	fmt.Fprintln(w, "written while nobody read")
	w.Close()

	cmd := ns.Command([]string{"JF_SDGLUE_CHILD=1"}, os.Args[0], "-test.run=^TestInheritSplitsSocketsAndStore$")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD OK") {
		t.Fatalf("child did not finish:\n%s", out)
	}
}

func inheritChild() {
	fail := func(f string, a ...any) { fmt.Printf("CHILD FAIL: "+f+"\n", a...); os.Exit(1) }
	in, dropped := Inherit()
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		fail("LISTEN_* left in the environment")
	}
	if len(dropped) != 0 {
		fail("dropped %q", dropped)
	}
	if len(in.Sockets) != 1 || len(in.Stored) != 2 {
		fail("%d sockets, stored %v", len(in.Sockets), in.Stored)
	}
	f := in.Take("hog.stdout")
	if f == nil || in.Take("hog.stdout") != nil {
		fail("Take")
	}
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "written while nobody read\n" {
		fail("stored pipe gave %q, %v", b, err)
	}
	l, activated, err := in.Listen("/nonexistent/ignored.sock", "")
	if err != nil || !activated {
		fail("Listen: %v activated=%v", err, activated)
	}
	l.Close()
	fmt.Println("CHILD OK")
}
