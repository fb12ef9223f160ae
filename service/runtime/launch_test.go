// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spawnEnv makes the test binary a spawn stage (the part of `jackfruit spawn` that is
// runtime's): SpawnSetup, then the setup stage's pid on descriptor 3, then exit.
const spawnEnv = "JACKFRUIT_TEST_SPAWN_STAGE"

func init() {
	if os.Getenv(spawnEnv) != "1" {
		return
	}
	pid, pidfd, err := SpawnSetup(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		os.Exit(1)
	}
	unix.Close(pidfd)
	report := os.NewFile(3, "report")
	fmt.Fprintln(report, pid)
	os.Exit(0)
}

// subreaperLauncher plays systemd's part for a test: it runs the spawn stage as its child
// and, as the child subreaper, becomes the parent of the orphaned setup stage, whose exit
// it collects with waitid, as systemd does for a unit's main process.
type subreaperLauncher struct {
	t        *testing.T
	launched int
	args     []string
}

func (l *subreaperLauncher) Launch(args []string, boot *os.File) (int, error) {
	l.args = args
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = []string{spawnEnv + "=1"}
	// The spawn stage's own output is the test's; the container's comes through boot.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = boot, os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{wr}
	err = cmd.Start()
	wr.Close()
	if err != nil {
		return 0, err
	}
	b := make([]byte, 32)
	n, _ := rd.Read(b)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("spawn stage: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0, fmt.Errorf("spawn stage reported %q", b[:n])
	}
	l.launched = pid
	return pid, nil
}

func (l *subreaperLauncher) Exit(pid int) (Exit, error) {
	if pid != l.launched {
		return Exit{}, fmt.Errorf("Exit(%d), launched %d", pid, l.launched)
	}
	var info siginfoChild
	if err := unix.Waitid(unix.P_PID, pid, (*unix.Siginfo)(unsafe.Pointer(&info)), unix.WEXITED, nil); err != nil {
		return Exit{}, err
	}
	switch info.Code {
	case cldExited:
		return Exit{Code: int(info.Status)}, nil
	case cldKilled, cldDumped:
		sig := syscall.Signal(info.Status)
		return Exit{Code: 128 + int(sig), Signal: sig}, nil
	}
	return Exit{}, fmt.Errorf("code %d", info.Code)
}

// becomeSubreaper makes the test process the reaper of orphaned descendants for the test.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// A setup stage started by a Launcher (a unit's spawn stage in the supervisor) is the same
// container: same namespaces and output, its exit status comes from the Launcher, signals
// reach it through the pidfd, and the overlay it mounts itself is invisible to the caller.
func TestLauncher(t *testing.T) {
	rootfs := testRootfs(t)
	becomeSubreaper(t)
	dir := overlayTempDir(t)
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{merged, filepath.Join(dir, "upper"), filepath.Join(dir, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := &subreaperLauncher{t: t}
	ov := &Overlay{Lower: rootfs, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	spec := Spec{Name: "launched", Rootfs: merged, Overlay: ov, Launcher: l, Security: &Security{Network: NetworkNone},
		Args: []string{"/bin/sh", "-c", "echo pid $$; cat /proc/net/dev | grep -c :; echo out > /etc/written; echo err >&2; exit 7"}}
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if l.args[0] != "launched" || l.args[1] != "none" {
		t.Errorf("spawn args %q", l.args)
	}
	if mountsMentioning(t, merged) != 0 {
		t.Errorf("the overlay shows in the caller's mount namespace")
	}
	res := finish(t, p)
	if res.exit != (Exit{Code: 7}) {
		t.Errorf("exit %v, want code 7", res.exit)
	}
	if res.stdout != "pid 1\n1\n" || res.stderr != "err\n" {
		t.Errorf("stdout %q stderr %q, want pid 1, only lo, err", res.stdout, res.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(ov.Upper, "etc/written")); err != nil || string(b) != "out\n" {
		t.Errorf("upper layer: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc/written")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the write reached the base rootfs: %v", err)
	}

	// Killed through the pidfd, reported by the launcher.
	p, err = Start(Spec{Name: "launched2", Rootfs: rootfs, Launcher: l, Args: []string{"sleep", "600"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res := finish(t, p); res.exit.Signal != syscall.SIGKILL || res.exit.Code != 137 {
		t.Errorf("exit %v, want SIGKILL", res.exit)
	}
	assertNoChildren(t)
}

// The spawn stage refuses to run without the setup socket as stdin (by hand).
func TestSpawnSetupRefusesWithoutSocket(t *testing.T) {
	cmd := exec.Command("/proc/self/exe", "x", "host")
	cmd.Env = []string{spawnEnv + "=1"}
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stdin is not the supervisor's boot socket") {
		t.Fatalf("spawn stage without a socket: %v, %q", err, out)
	}
	cmd = exec.Command("/proc/self/exe", "x", "bridge")
	cmd.Env = []string{spawnEnv + "=1"}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bridge") {
		t.Fatalf("spawn stage with a bad network: %v, %q", err, out)
	}
}
