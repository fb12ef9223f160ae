// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// supervisor is one `jackfruit supervisor` instance with its own state, run and socket paths.
// Items that measure memory or logs get a fresh one so earlier items do not colour them.
type supervisor struct {
	bin      string
	dir      string
	socket   string
	stateDir string
	runDir   string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	argv     []string
}

func startSupervisor(ctx context.Context, c *config, tag string, extra ...string) (*supervisor, error) {
	if _, err := os.Stat(c.jackfruit); err != nil {
		return nil, fmt.Errorf("jackfruit binary: %w (run `make build`)", err)
	}
	if _, err := os.Stat(filepath.Join(c.rootfs, "bin", "busybox")); err != nil {
		return nil, fmt.Errorf("rootfs %s has no bin/busybox: %w (run `make rootfs`)", c.rootfs, err)
	}
	dir := filepath.Join(c.work, "jackfruit-"+tag)
	// The state directory (state.json, overlay upper/work, container.log) is on disk like
	// /var/lib/jackfruit, so its fsyncs cost what they cost for a user; socket and overlay
	// mount points are on tmpfs like /run/jackfruit.
	stateDir := filepath.Join(dir, "state")
	if c.stateBase != "" {
		stateDir = filepath.Join(c.stateBase, tag)
	}
	s := &supervisor{
		bin:      c.jackfruit,
		dir:      dir,
		socket:   filepath.Join(dir, "jackfruit.sock"),
		stateDir: stateDir,
		runDir:   filepath.Join(dir, "run"),
		logPath:  filepath.Join(dir, "supervisor.log"),
		done:     make(chan struct{}),
	}
	for _, d := range []string{s.stateDir, s.runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.argv = append([]string{c.jackfruit, "supervisor",
		"--socket", s.socket, "--state-dir", s.stateDir, "--run-dir", s.runDir,
		"--base-rootfs", c.rootfs, "--no-dbus"}, extra...)
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// No NOTIFY_SOCKET or LISTEN_FDS leak in from a systemd-run parent: this is the
	// "run by hand" mode the brief describes.
	s.cmd.Env = filterEnv(os.Environ(), "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JACKFRUIT_SOCKET")
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting supervisor: %w", err)
	}
	logf.Close()
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()

	deadline := time.Now().Add(c.supervisorTO)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("supervisor exited during start-up (%v): %s", s.waitErr, trimLines(s.log(), 8))
		default:
		}
		if _, err := os.Stat(s.socket); err == nil {
			out, err := s.cli(ctx, "ps").CombinedOutput()
			if err == nil {
				return s, nil
			}
			lastErr = errors.New(errString(err, out))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	if lastErr == nil {
		lastErr = fmt.Errorf("socket %s never appeared", s.socket)
	}
	return nil, fmt.Errorf("supervisor not serving after %s: %v; log: %s", c.supervisorTO, lastErr, trimLines(s.log(), 8))
}

func (s *supervisor) pid() int { return s.cmd.Process.Pid }

func (s *supervisor) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// cli builds a client invocation; the socket goes through JACKFRUIT_SOCKET so the command
// line stays exactly the documented one (`jackfruit run --rm NAME -- /bin/true`).
func (s *supervisor) cli(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(filterEnv(os.Environ(), "JACKFRUIT_SOCKET"), "JACKFRUIT_SOCKET="+s.socket)
	return cmd
}

func (s *supervisor) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop kills the containers first (an idle `sleep` as PID 1 of its namespace ignores
// SIGTERM, so a graceful stop of 500 of them would take the whole stop timeout), then asks
// the supervisor to exit, then insists.
func (s *supervisor) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if s.alive() {
		for _, pid := range descendants(s.pid()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
}

func filterEnv(env []string, drop ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// procStat returns ppid and comm from /proc/PID/stat.
func procStat(pid int) (ppid int, comm string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	// comm may hold spaces and parentheses: it ends at the last ')'.
	i := bytes.IndexByte(b, '(')
	j := bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return 0, "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	comm = string(b[i+1 : j])
	fields := strings.Fields(string(b[j+1:]))
	if len(fields) < 2 {
		return 0, "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ppid, err = strconv.Atoi(fields[1])
	return ppid, comm, err
}

func allPids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func children(pid int) []int {
	var out []int
	for _, p := range allPids() {
		if pp, _, err := procStat(p); err == nil && pp == pid {
			out = append(out, p)
		}
	}
	return out
}

func descendants(pid int) []int {
	parent := map[int]int{}
	for _, p := range allPids() {
		if pp, _, err := procStat(p); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// statusKiB reads a "Key:   N kB" line from /proc/PID/status.
func statusKiB(pid int, key string) (int64, error) {
	return kibField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// pssKiB reads the proportional set size, which splits shared pages (the binary's text)
// between the processes that map them, so a per-process number is not inflated by code that
// every jackfruit client also maps.
func pssKiB(pid int) (int64, error) {
	return kibField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
}

func kibField(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line[len(key)+1:])
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// inChildPidNS tells a container init (its NSpid has two or more levels) from a helper
// process the supervisor may have forked in its own namespace.
func inChildPidNS(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "NSpid:") {
			return len(strings.Fields(line[len("NSpid:"):])) > 1
		}
	}
	return false
}
