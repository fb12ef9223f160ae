// SPDX-License-Identifier: Apache-2.0

// Package testutil holds helpers shared by jackfruit's host tests: a private systemd-journald
// (this file) and a private dbus-daemon (dbus.go).
//
// # Private journald
//
// Tests that check journal entries must not write to, or read from, the host's journal. A
// package opts in from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testutil.RunInPrivateJournal(m)) }
//
// RunInPrivateJournal re-executes the test binary (same arguments) in a new mount namespace.
// The child makes every mount private (nothing it mounts reaches the host), mounts tmpfs on
// /run/systemd and /run/log, writes a journald drop-in under /run/systemd/journald.conf.d
// (volatile storage, no rate limit, no forwarding, no kernel log), starts
// /usr/lib/systemd/systemd-journald (in its own network namespace whose
// net.unix.max_dgram_qlen is 512, as systemd sets it on a booted host), waits for /run/systemd/journal/socket, runs the tests
// and stops journald. The parent only waits and passes on the exit code. Everything vanishes
// with the namespace: the host's /run, /var and journal are never touched.
//
// When the private journal cannot be set up (not root, no systemd-journald binary, no mount
// namespaces) the tests still run, in the original process; JournalUnavailable returns the
// reason and RequireJournal skips the calling test with it, so journal-less machines report
// skips instead of failures.
//
// Inside, JournalCtl runs journalctl against the private journal, JournalSync waits until
// journald has written everything sent so far, and JournalEntries returns the matching
// entries as maps (binary field values decoded to their raw bytes).
package testutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackfruit/jackfruit/internal/journalconf"
)

// privateJournalEnv marks the re-executed child; its value is the reason the parent gave up
// ("" or unset: not attempted yet).
const privateJournalEnv = "JACKFRUIT_TEST_PRIVATE_JOURNAL"

// JournalSocket is where journald's native protocol socket lives (same path on the host and
// in the private namespace).
const JournalSocket = "/run/systemd/journal/socket"

const journaldBinary = "/usr/lib/systemd/systemd-journald"

// unavailable is the reason the private journal is missing in this process ("" when it runs).
// It is process state by nature: the namespace belongs to the whole test binary.
var unavailable = "RunInPrivateJournal was not called from TestMain"

// RunInPrivateJournal runs m's tests with a private systemd-journald and returns the exit code
// for os.Exit. See the package documentation.
func RunInPrivateJournal(m *testing.M) int {
	switch v, ok := os.LookupEnv(privateJournalEnv); {
	case ok && v == "child":
		return runChild(m)
	case ok:
		// The parent already failed to set up; run plainly.
		unavailable = v
		return m.Run()
	}
	if reason := journalPrerequisites(); reason != "" {
		unavailable = reason
		return m.Run()
	}
	exe, err := os.Executable()
	if err != nil {
		unavailable = fmt.Sprintf("cannot find the test binary to re-execute: %v", err)
		return m.Run()
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), privateJournalEnv+"=child")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		// Could not even start in a new namespace: run here, journal tests skip.
		unavailable = fmt.Sprintf("cannot re-execute the tests in a private mount namespace: %v", err)
		return m.Run()
	}
	return 0
}

func journalPrerequisites() string {
	if os.Geteuid() != 0 {
		return "a private journald needs root (mount namespaces and tmpfs mounts)"
	}
	if _, err := os.Stat(journaldBinary); err != nil {
		return fmt.Sprintf("%s not found (install the systemd package): %v", journaldBinary, err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		return "journalctl not found (install the systemd package)"
	}
	return ""
}

func runChild(m *testing.M) int {
	if err := startPrivateJournald(); err != nil {
		unavailable = "private journald: " + err.Error()
		fmt.Fprintf(os.Stderr, "testutil: %s; journal tests will be skipped\n", unavailable)
		return m.Run()
	}
	unavailable = ""
	code := m.Run()
	if err := journald.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testutil: stopping private journald: %v\n", err)
	}
	return code
}

// startPrivateJournald runs in the fresh mount namespace. The first mount call must be the
// propagation change: until then the namespace still shares mount events with the host.
func startPrivateJournald() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, d := range []string{"/run/systemd", "/run/log"} {
		// /run is a tmpfs on every systemd host; an empty mount point there is harmless.
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating mount point %s: %w", d, err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1g"); err != nil {
			return fmt.Errorf("mounting tmpfs on %s: %w", d, err)
		}
	}
	if err := journalconf.Write("50-jackfruit-test", "512M"); err != nil {
		return err
	}
	p, err := spawnJournald()
	if err != nil {
		return err
	}
	journald = p
	return nil
}

// journaldProc is a running private journald.
type journaldProc struct {
	cmd    *exec.Cmd
	exited chan error
}

// journald is the private journald of this test process (nil outside the namespace).
var journald *journaldProc

// spawnJournald starts journald and waits for its native socket.
func spawnJournald() (*journaldProc, error) {
	// A socket file left by a previous journald would end the wait below too early.
	_ = os.Remove(JournalSocket)
	logf, err := os.OpenFile("/run/systemd/journald-test.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// journald gets its own network namespace only to raise net.unix.max_dgram_qlen to 512
	// for its sockets, as systemd (PID 1) does on every host where journald normally runs;
	// the kernel default of 10 makes every sender stall after ten queued entries. AF_UNIX
	// sockets bound to paths work across network namespaces, so clients are unaffected.
	cmd := exec.Command("/bin/sh", "-c", `echo 512 >/proc/sys/net/unix/max_dgram_qlen ||
		echo "testutil: cannot raise net.unix.max_dgram_qlen; journald runs with the kernel default" >&2
		exec "$0"`, journaldBinary)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Without NOTIFY_SOCKET/WATCHDOG_USEC journald does not try to talk to a service manager.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL=warning"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", journaldBinary, err)
	}
	p := &journaldProc{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(JournalSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p, nil
		}
		select {
		case err := <-p.exited:
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("systemd-journald exited early (%v): %s", err, bytes.TrimSpace(out))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.exited
			return nil, fmt.Errorf("systemd-journald did not create %s within 15s", JournalSocket)
		}
	}
}

func (p *journaldProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("systemd-journald ignored SIGTERM for 10s; killed it")
	}
}

// RestartJournald stops the private journald and starts a new one on the same journal
// files, for tests of clients that must survive a journald restart. The journal's entries
// stay (Storage=volatile keeps them in /run/log).
func RestartJournald(t testing.TB) {
	t.Helper()
	RequireJournal(t)
	if err := journald.stop(); err != nil {
		t.Fatal(err)
	}
	p, err := spawnJournald()
	if err != nil {
		unavailable = "private journald did not come back after a restart: " + err.Error()
		t.Fatal(unavailable)
	}
	journald = p
}

// JournaldPID returns the private journald's pid, e.g. to measure its CPU time or to stop
// it (SIGSTOP) in a test of a stalled journal; 0 without a private journald.
func JournaldPID() int {
	if journald == nil {
		return 0
	}
	return journald.cmd.Process.Pid
}

// JournalUnavailable returns why this test process has no private journald ("" if it has).
func JournalUnavailable() string { return unavailable }

// RequireJournal skips t unless the private journald is running.
func RequireJournal(t testing.TB) {
	t.Helper()
	if unavailable != "" {
		t.Skipf("no private journald: %s", unavailable)
	}
}

// JournalCtl runs `journalctl --no-pager ARGS...` against the private journal and returns
// its standard output; the error includes standard error.
func JournalCtl(args ...string) ([]byte, error) {
	if unavailable != "" {
		return nil, errors.New("no private journald: " + unavailable)
	}
	cmd := exec.Command("journalctl", append([]string{"--no-pager"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("journalctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// JournalSync returns once journald has processed and written every entry sent before the
// call (`journalctl --sync`, which journald answers only after draining its sockets).
func JournalSync() error {
	_, err := JournalCtl("--sync")
	return err
}

// JournalEntries syncs the journal and returns the entries matching the journalctl matches
// (e.g. "CONTAINER=hog", "MESSAGE_ID=..."), oldest first. Each entry maps a field name to its
// value; journalctl's JSON encodes values that are not printable UTF-8 as arrays of byte
// values, which are decoded back to the raw bytes here. A field that occurs more than once in
// an entry keeps its first value. It fails t on any error.
func JournalEntries(t testing.TB, match ...string) []map[string]string {
	t.Helper()
	if err := JournalSync(); err != nil {
		t.Fatalf("journal sync: %v", err)
	}
	// --all: without it the JSON output replaces values over 4096 bytes by null.
	out, err := JournalCtl(append([]string{"-o", "json", "--all", "--output-fields="}, match...)...)
	if err != nil {
		// --output-fields= (empty) is accepted by every journalctl we know; retry without it
		// rather than fail on a version quirk.
		out, err = JournalCtl(append([]string{"-o", "json", "--all"}, match...)...)
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
	entries, err := ParseJournalJSON(out)
	if err != nil {
		t.Fatalf("parsing journalctl -o json output: %v", err)
	}
	return entries
}

// ParseJournalJSON decodes `journalctl -o json` output (one JSON object per line).
func ParseJournalJSON(out []byte) ([]map[string]string, error) {
	var entries []map[string]string
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("bad entry %.200q: %w", line, err)
		}
		e := make(map[string]string, len(raw))
		for k, v := range raw {
			s, err := decodeJournalValue(v)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", k, err)
			}
			e[k] = s
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// decodeJournalValue handles the three shapes journalctl emits: "text", [bytes...] for binary
// data, and [value, value...] for a field present several times; null (value too large,
// only without --all) becomes "".
func decodeJournalValue(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(v, &arr); err != nil {
		if string(v) == "null" {
			return "", nil
		}
		return "", err
	}
	if len(arr) == 0 {
		return "", nil
	}
	var b byte
	if json.Unmarshal(arr[0], &b) == nil {
		buf := make([]byte, len(arr))
		for i, x := range arr {
			if err := json.Unmarshal(x, &buf[i]); err != nil {
				return "", fmt.Errorf("byte array element %d: %w", i, err)
			}
		}
		return string(buf), nil
	}
	return decodeJournalValue(arr[0])
}

// InstallCatalog makes the catalog file at path visible to `journalctl -x` inside the private
// namespace: it mounts tmpfs over /usr/lib/systemd/catalog and /var/lib/systemd/catalog
// (namespace-local, the host's stay untouched), copies the file in and runs
// `journalctl --update-catalog`. Only valid in the process that runs in the private journal.
func InstallCatalog(t testing.TB, path string) {
	t.Helper()
	RequireJournal(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading catalog: %v", err)
	}
	for _, d := range []string{"/usr/lib/systemd/catalog", "/var/lib/systemd/catalog"} {
		if _, err := os.Stat(d); err != nil {
			t.Skipf("%s is missing on this host; cannot overlay it: %v", d, err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0755,size=16m"); err != nil {
			t.Fatalf("mounting tmpfs on %s: %v", d, err)
		}
		d := d
		t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
	}
	if err := os.WriteFile(filepath.Join("/usr/lib/systemd/catalog", filepath.Base(path)), data, 0o644); err != nil {
		t.Fatalf("installing catalog: %v", err)
	}
	if out, err := JournalCtl("--update-catalog"); err != nil {
		t.Fatalf("journalctl --update-catalog: %v\n%s", err, out)
	}
}
