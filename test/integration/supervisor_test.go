// SPDX-License-Identifier: Apache-2.0

// Package integration runs the real jackfruit binary the way systemd and users do: socket
// activation through systemd-socket-activate, sd_notify on a NOTIFY_SOCKET the test listens
// on, the control socket, SIGTERM shutdown.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/cgroup"
	"github.com/jackfruit/jackfruit/service/control"
)

func TestMain(m *testing.M) {
	// Container output of the daemons started here goes to a private journald, not the host's.
	os.Exit(testutil.RunInPrivateJournal(m))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// binary builds ./cmd/jackfruit once per test run.
func binary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the supervisor creates namespaces and mounts")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "jackfruit-integration-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "jackfruit")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/jackfruit/jackfruit/cmd/jackfruit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Skipf("cmd/jackfruit does not build (yet), so the binary cannot be tested: %v", buildErr)
	}
	return binPath
}

type daemon struct {
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	exited chan struct{}
	err    error
}

func startDaemon(t *testing.T, env []string, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(name, args...), stderr: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.stderr.String())
		}
	})
	return d
}

// terminate sends SIGTERM and expects a clean exit within timeout.
func (d *daemon) terminate(t *testing.T, timeout time.Duration) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("supervisor exited with %v after SIGTERM, want status 0", d.err)
		}
	case <-time.After(timeout):
		t.Fatalf("supervisor still running %v after SIGTERM", timeout)
	}
}

func dial(t *testing.T, path string) *control.Client {
	t.Helper()
	c, err := control.Dial(path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func supervisorArgs(dir, rootfs string) []string {
	return []string{"supervisor",
		"--state-dir", filepath.Join(dir, "state"),
		"--run-dir", filepath.Join(dir, "run"),
		"--base-rootfs", rootfs,
		"--monitor-device", filepath.Join(dir, "no-such-monitor"),
		"--admin-group", "",
	}
}

func TestNotifyReadyStatusStopping(t *testing.T) {
	bin := binary(t)
	rootfs := testutil.Rootfs(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "jackfruit.sock")
	notifyPath := filepath.Join(dir, "notify")
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := nl.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	expect := func(what string, timeout time.Duration, match func(string) bool) string {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed while waiting for %s", what)
				}
				if match(m) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s on NOTIFY_SOCKET within %v", what, timeout)
			}
		}
	}

	// No bus at this address: the supervisor must say so once and serve the socket anyway.
	args := append(supervisorArgs(dir, rootfs), "--socket", sock, "--dbus-address", "unix:path="+filepath.Join(dir, "no-bus"))
	d := startDaemon(t, []string{"NOTIFY_SOCKET=" + notifyPath, "WATCHDOG_USEC=400000"}, bin, args...)

	ready := expect("READY=1", 30*time.Second, func(m string) bool { return strings.Contains(m, "READY=1") })
	// READY=1 only once the socket serves: a client right now must get an answer.
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.List(ctx, true); err != nil {
		t.Fatalf("List right after READY=1: %v", err)
	}
	if !strings.Contains(ready, "STATUS=0 containers (0 running)") {
		t.Errorf("READY datagram %q lacks the initial STATUS", ready)
	}
	expect("WATCHDOG=1", 2*time.Second, func(m string) bool { return m == "WATCHDOG=1" })
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket %s: mode %v, %v; want a socket with mode 0660", sock, fi.Mode(), err)
	}

	if _, err := c.Start(ctx, service.StartRequest{Name: "n1", Command: []string{"sh", "-c", `trap "exit 0" TERM; echo hello-from-binary; sleep 1000 & wait`}}); err != nil {
		t.Fatal(err)
	}
	expect("STATUS with one running container", 10*time.Second, func(m string) bool { return m == "STATUS=1 container (1 running)" })
	// The trap is set once the line is out; a TERM before that would be ignored by pid 1.
	found := fmt.Errorf("found")
	err = c.Logs(ctx, "n1", service.LogOptions{Follow: true}, func(l service.LogLine) error {
		if string(l.Data) == "hello-from-binary" {
			return found
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "found") {
		t.Fatalf("logs -f of n1: %v", err)
	}

	d.terminate(t, 20*time.Second)
	expect("STOPPING=1", 5*time.Second, func(m string) bool { return strings.Contains(m, "STOPPING=1") })

	// The container was stopped by the shutdown, and its final state persisted.
	b, err := os.ReadFile(filepath.Join(dir, "state", "containers", "n1", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info service.ContainerInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if info.State != service.StateExited || info.ExitCode != 0 {
		t.Errorf("n1 after supervisor shutdown: %s code %d, want exited 0", info.State, info.ExitCode)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("self-bound socket %s left behind after exit", sock)
	}

	log := d.stderr.String()
	warnings := []string{"memory limits are not enforced", "no D-Bus"}
	if cgroup.Check(cgroup.DefaultMount) != nil {
		// A hybrid or v1 host (this project's build host): no cgroups for containers, said once.
		warnings = append(warnings, "containers get no cgroup")
	}
	for _, warn := range warnings {
		if n := strings.Count(log, warn); n != 1 {
			t.Errorf("warning %q given %d times, want once:\n%s", warn, n, log)
		}
	}

	if testutil.JournalUnavailable() == "" {
		var lines []string
		for _, e := range testutil.JournalEntries(t, "CONTAINER=n1") {
			if e["CONTAINER_ID"] != info.ID[:12] {
				t.Errorf("journal entry for n1 with CONTAINER_ID %q, want %q", e["CONTAINER_ID"], info.ID[:12])
			}
			lines = append(lines, e["MESSAGE"])
		}
		if !strings.Contains(strings.Join(lines, "\n"), "hello-from-binary") {
			t.Errorf("journalctl CONTAINER=n1 lacks the container's output: %q", lines)
		}
	}
}

func TestSocketActivation(t *testing.T) {
	bin := binary(t)
	rootfs := testutil.Rootfs(t)
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate not installed (package systemd)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "activated.sock")
	unused := filepath.Join(dir, "self-bound.sock")
	args := append([]string{"-l", sock, bin}, supervisorArgs(dir, rootfs)...)
	args = append(args, "--socket", unused, "--no-dbus")
	d := startDaemon(t, nil, sa, args...)

	// systemd-socket-activate listens at once and execs the supervisor on the first connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate did not create %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status over the activated socket: %v", err)
	}
	if st.MonitorAvailable || st.Version == "" {
		t.Errorf("status %+v", st)
	}
	info, err := c.Start(ctx, service.StartRequest{Name: "act", Command: []string{"echo", "activated"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err = c.Wait(ctx, info.Name)
	if err != nil || info.State != service.StateExited || info.ExitCode != 0 {
		t.Errorf("container over the activated socket: %+v %v", info, err)
	}
	if _, err := os.Stat(unused); err == nil {
		t.Errorf("the supervisor bound %s although systemd passed it a socket", unused)
	}
	if !strings.Contains(d.stderr.String(), "socket_activated=true") {
		t.Errorf("supervisor did not report socket activation:\n%s", d.stderr.String())
	}
	d.terminate(t, 20*time.Second)
	// A socket passed by systemd belongs to systemd: it stays.
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("activated socket removed by the supervisor: %v", err)
	}
}

func TestRefusesSecondSupervisor(t *testing.T) {
	bin := binary(t)
	rootfs := testutil.Rootfs(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	args := append(supervisorArgs(dir, rootfs), "--socket", sock, "--no-dbus")
	d := startDaemon(t, nil, bin, args...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first supervisor never served %s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir2 := t.TempDir()
	args2 := append(supervisorArgs(dir2, rootfs), "--socket", sock, "--no-dbus")
	out, err := exec.Command(bin, args2...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already listening") {
		t.Errorf("second supervisor on the same socket: %v\n%s", err, out)
	}
	d.terminate(t, 20*time.Second)

	// A stale socket file (nobody listening) is replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	d = startDaemon(t, nil, bin, args...)
	deadline = time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor did not replace the stale socket:\n%s", d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.terminate(t, 20*time.Second)
}
