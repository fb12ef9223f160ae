// SPDX-License-Identifier: Apache-2.0

package sdglue

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenBindsAndGuards(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "j.sock")
	var in Inherited
	l, activated, err := in.Listen(path, "no-such-group-jackfruit-test")
	if err != nil || activated {
		t.Fatalf("Listen: %v activated=%v", err, activated)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v, want a 0660 socket", fi.Mode(), err)
	}
	// A live socket is never taken over.
	if _, err := Listen(path, ""); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Errorf("second Listen on a served socket: %v", err)
	}
	l.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}

	// A stale socket (nobody listening) is replaced.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	l, err = Listen(path, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()

	// Anything that is not a socket is left alone.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	if _, err := Listen(file, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file was touched")
	}
}

func TestNotifyAndWatchdog(t *testing.T) {
	// Outside systemd everything is a silent no-op.
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET: sent=%v err=%v", sent, err)
	}
	if err := Watchdog(context.Background(), nil); err != nil {
		t.Errorf("Watchdog without WATCHDOG_USEC: %v", err)
	}

	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000")
	read := func() string {
		t.Helper()
		buf := make([]byte, 1024)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("no datagram: %v", err)
		}
		return string(buf[:n])
	}
	if err := Ready("0 containers (0 running)"); err != nil {
		t.Fatal(err)
	}
	if m := read(); m != "READY=1\nSTATUS=0 containers (0 running)" {
		t.Errorf("Ready sent %q", m)
	}
	Status("1 container (1 running)")
	if m := read(); m != "STATUS=1 container (1 running)" {
		t.Errorf("Status sent %q", m)
	}
	Stopping("stopping")
	if m := read(); !strings.HasPrefix(m, "STOPPING=1\n") {
		t.Errorf("Stopping sent %q", m)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	alive := true
	go func() { done <- Watchdog(ctx, func() bool { return alive }) }()
	for i := 0; i < 3; i++ {
		if m := read(); m != "WATCHDOG=1" {
			t.Errorf("watchdog ping %d: %q", i, m)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watchdog: %v", err)
	}
}
