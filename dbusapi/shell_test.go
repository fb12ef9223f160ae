// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
)

// readUntil reads f until want appears or the deadline passes.
func readUntil(t *testing.T, f *os.File, want string) string {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(got.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from the pty; got %q", want, got.String())
		}
		_ = f.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _ := f.Read(buf)
		got.Write(buf[:n])
	}
	return got.String()
}

// TestRealOpenShell: a D-Bus client gets a pty master and a pid, types a command into the
// container's shell and reads its output back, through both the manager and the object.
func TestRealOpenShell(t *testing.T) {
	e := setupReal(t)
	if err := e.mgr.Call(dbusapi.ManagerInterface+".StartContainer", 0, "box", "", []string{"sleep", "1000"},
		uint64(0), uint64(0), map[string]dbus.Variant{}).Err; err != nil {
		t.Fatal(err)
	}
	open := func(call *dbus.Call) (*os.File, uint32) {
		t.Helper()
		var fd dbus.UnixFD
		var pid uint32
		if err := call.Store(&fd, &pid); err != nil {
			t.Fatalf("open shell: %v", err)
		}
		if fd < 0 || pid == 0 {
			t.Fatalf("open shell: fd %d pid %d", fd, pid)
		}
		// Non-blocking, so that reads honour deadlines.
		if err := syscall.SetNonblock(int(fd), true); err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(fd), "pty"), pid
	}
	master, pid := open(e.mgr.Call(dbusapi.ManagerInterface+".OpenContainerShell", 0, "box", "", []string{"/bin/sh"}, []string{"SHELLVAR=shell"}))
	defer master.Close()
	if _, err := master.WriteString("echo $(hostname)-$((6*7))-$SHELLVAR; tty\n"); err != nil {
		t.Fatal(err)
	}
	if out := readUntil(t, master, "/dev/pts/"); !strings.Contains(out, "box-42-shell") {
		t.Errorf("shell output %q", out)
	}
	if _, err := master.WriteString("exit 0\n"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, int(pid))

	obj := e.client.Object(dbusapi.BusName, dbusapi.ContainerPath("box"))
	master2, _ := open(obj.Call(dbusapi.ContainerInterface+".OpenShell", 0, "nobody", []string{"id", "-u"}, []string{}))
	defer master2.Close()
	readUntil(t, master2, "65534")

	for _, c := range []struct {
		name, user string
		cmd        []string
		want       string
	}{
		{"nope", "", []string{"/bin/sh"}, "NoSuchContainer"},
		{"box", "", []string{}, "InvalidArgument"},
		{"box", "nosuchuser", []string{"/bin/sh"}, "InvalidArgument"},
		{"box", "", []string{"/no/such/shell"}, "CommandNotFound"},
	} {
		err := e.mgr.Call(dbusapi.ManagerInterface+".OpenContainerShell", 0, c.name, c.user, c.cmd, []string{}).Err
		if err == nil || !strings.HasSuffix(err.(dbus.Error).Name, "."+c.want) {
			t.Errorf("OpenContainerShell(%q, %q, %q): %v, want %s", c.name, c.user, c.cmd, err, c.want)
		}
	}
}

// waitGone waits until pid no longer exists (the core reaps exec'd commands itself).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still there after exit", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
