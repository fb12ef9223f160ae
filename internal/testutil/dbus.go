// SPDX-License-Identifier: Apache-2.0

package testutil

// # Private dbus-daemon
//
// StartDBus runs a dbus-daemon configured like Debian's system bus (type system, EXTERNAL
// authentication only, the same default policy that denies owning names and sending method
// calls unless a service's policy file punches holes) plus jackfruit's own policy file
// units/io.jackfruit.Jackfruit1.conf, included from the repository as it will be installed.
// It listens on a unix socket in a fresh directory that uid nobody can reach, so tests can
// check what an unprivileged client may do. The host's system bus is never touched.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Bus is a running private dbus-daemon.
type Bus struct {
	Address    string // "unix:path=<Socket>", as busctl --address and gdbus --address take it
	Socket     string
	ConfigPath string
	PolicyPath string // the jackfruit policy file the daemon included

	daemon string
	stop   func() // stops the running daemon process; set by run
}

// systemLikeConfig mirrors /usr/share/dbus-1/system.conf (dbus 1.14, Debian 12) minus what
// needs the real system (user switch, fork, pid file, service helper, syslog).
const systemLikeConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include ignore_missing="no">%s</include>
</busconfig>
`

// RepoRoot finds the repository root (the directory holding go.mod) from the working
// directory, which go test sets to the package's directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartDBus starts the private bus and stops it when the test ends. It fails the test (with
// what to install) when dbus-daemon is missing: the D-Bus tests are meant to run in CI.
func StartDBus(t testing.TB) *Bus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("dbus-daemon not found (apt-get install dbus; test/deps.sh installs it): %v", err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("locating the repository: %v", err)
	}
	policy := filepath.Join(root, "units", "io.jackfruit.Jackfruit1.conf")
	if _, err := os.Stat(policy); err != nil {
		t.Fatalf("bus policy file: %v", err)
	}
	// Not t.TempDir(): its parents are 0700, and uid nobody must reach the socket.
	dir, err := os.MkdirTemp("", "jackfruit-dbus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Bus{Socket: filepath.Join(dir, "system_bus_socket"), ConfigPath: filepath.Join(dir, "system.conf"), PolicyPath: policy}
	if err := os.WriteFile(b.ConfigPath, fmt.Appendf(nil, systemLikeConfig, b.Socket, policy), 0o644); err != nil {
		t.Fatal(err)
	}

	b.daemon = daemon
	// Registered first, so a daemon that started but never served is stopped too; it stops
	// whichever daemon runs at the end (Restart replaces it).
	t.Cleanup(func() {
		if b.stop != nil {
			b.stop()
		}
	})
	b.run(t)
	b.Address = "unix:path=" + b.Socket
	return b
}

// run starts the daemon on b's config and socket and waits until it serves.
func (b *Bus) run(t testing.TB) {
	t.Helper()
	cmd := exec.Command(b.daemon, "--nofork", "--nopidfile", "--nosyslog", "--config-file="+b.ConfigPath, "--print-address")
	// Its complaints (policy parse errors, refused messages) help when a test fails; exec
	// waits for the copy to finish, so reading the buffer after Wait is race-free.
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	// Restart calls it, then the test's cleanup again: only the first call acts.
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			t.Logf("dbus-daemon stderr:\n%s", s)
		}
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatalf("dbus-daemon exited without printing its address (config %s)", b.ConfigPath)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not print its address within 10s")
	}
	// The daemon creates the socket under our umask; the system bus socket is 0666 so that
	// every user can connect (the policy, not the file mode, decides what they may do).
	if err := os.Chmod(b.Socket, 0o666); err != nil {
		t.Fatalf("making the bus socket world-accessible: %v", err)
	}
}

// Restart stops the daemon, as a restart of dbus.service does (every connection to it ends),
// and starts a fresh one on the same socket.
func (b *Bus) Restart(t testing.TB) {
	t.Helper()
	b.stop()
	// The old daemon leaves its socket file behind; the new one must be able to bind.
	_ = os.Remove(b.Socket)
	b.run(t)
}

// Conn opens a new connection to the bus as the test process (root), closed at test end.
func (b *Bus) Conn(t testing.TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connecting to the private bus %s: %v", b.Address, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Nobody returns the credentials of the unprivileged user tests run clients as.
func Nobody(t testing.TB) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("looking up user nobody: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// Result is what a command-line client printed.
type Result struct {
	Stdout, Stderr string
	Err            error // non-nil when the command failed (exit status != 0)
}

// Command runs a client program (busctl, gdbus, dbus-send) with a 30 s limit; cred nil runs
// it as the test's user (root), otherwise as cred.
func Command(t testing.TB, cred *syscall.Credential, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=cat", "SYSTEMD_COLORS=0", "LC_ALL=C.UTF-8")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}
