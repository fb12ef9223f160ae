// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/internal/journalconf"
)

// journald is a private systemd-journald on the private tmpfs /run/systemd and /run/log, so
// both sides of the log item write into the same, otherwise idle, journal and the host's
// journal never sees a million bench lines.
type journald struct {
	cmd  *exec.Cmd
	dir  string // where the journal files are
	done chan struct{}
	log  string
}

func startJournald(work string) (*journald, error) {
	bin := "/usr/lib/systemd/systemd-journald"
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("systemd-journald not found at %s: %w", bin, err)
	}
	if err := journalconf.Write("jfbench", "3G"); err != nil {
		return nil, err
	}
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return nil, fmt.Errorf("journald needs /etc/machine-id: %w", err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	j := &journald{
		dir:  filepath.Join("/run/log/journal", strings.TrimSpace(string(mid))),
		done: make(chan struct{}),
		log:  filepath.Join(work, "journald.log"),
	}
	lf, err := os.Create(j.log)
	if err != nil {
		return nil, err
	}
	j.cmd = exec.Command(bin)
	j.cmd.Stdout, j.cmd.Stderr = lf, lf
	j.cmd.Env = filterEnv(os.Environ(), "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")
	if err := j.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting journald: %w", err)
	}
	lf.Close()
	go func() { _ = j.cmd.Wait(); close(j.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
			if _, err := os.Stat("/run/systemd/journal/stdout"); err == nil {
				return j, nil
			}
		}
		select {
		case <-j.done:
			b, _ := os.ReadFile(j.log)
			return nil, fmt.Errorf("journald exited at start: %s", trimLines(string(b), 5))
		case <-time.After(50 * time.Millisecond):
		}
	}
	j.stop()
	return nil, errors.New("journald sockets did not appear within 10s")
}

func (j *journald) stop() {
	if j == nil || j.cmd == nil || j.cmd.Process == nil {
		return
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		_ = j.cmd.Process.Kill()
		<-j.done
	}
}

func (j *journald) pid() int { return j.cmd.Process.Pid }

// reset archives the active journal files and deletes every archived one, so each log run
// starts on fresh, small files: journald slows down as files and their hash tables grow,
// which would otherwise penalise whichever side runs later. Only files in the private
// journal directory are touched (journalctl --vacuum-* would also act on /var/log/journal).
func (j *journald) reset(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, "journalctl", "--rotate").CombinedOutput(); err != nil {
		return fmt.Errorf("journalctl --rotate: %s", errString(err, out))
	}
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.Contains(name, "@") && (strings.HasSuffix(name, ".journal") || strings.HasSuffix(name, ".journal~")) {
			if err := os.Remove(filepath.Join(j.dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// sync returns once journald has written out everything queued before the call.
func (j *journald) sync(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "journalctl", "--sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("journalctl --sync: %s", errString(err, out))
	}
	return nil
}

// tail returns the MESSAGEs of the newest n entries matching filter (cheap: journalctl
// seeks to the end).
func (j *journald) tail(ctx context.Context, n int, filter ...string) ([]string, error) {
	args := append([]string{"--directory", j.dir, "--no-pager", "-q", "-n", fmt.Sprint(n), "-o", "cat"}, filter...)
	out, err := exec.CommandContext(ctx, "journalctl", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("journalctl %s: %w", strings.Join(filter, " "), err)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n"), nil
}

// check feeds the MESSAGE of every entry matching filter to sc.
func (j *journald) check(ctx context.Context, sc *seqCheck, filter ...string) error {
	args := append([]string{"--directory", j.dir, "--no-pager", "-q", "-o", "cat", "--output-fields=MESSAGE"}, filter...)
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc2 := bufio.NewScanner(stdout)
	sc2.Buffer(make([]byte, 1<<20), 1<<20)
	for sc2.Scan() {
		sc.add(sc2.Bytes())
	}
	rerr := sc2.Err()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("journalctl %s: %s", strings.Join(filter, " "), errString(err, stderr.Bytes()))
	}
	return rerr
}

// seqCheck verifies the output of `seq 1 N`: which numbers arrived, how many twice, and how
// many other lines (lifecycle events share the container's journal fields) were seen.
type seqCheck struct {
	seen     []bool
	Distinct int `json:"distinct"`
	Dups     int `json:"duplicates"`
	Other    int `json:"other_lines"`
}

func newSeqCheck(n int) *seqCheck { return &seqCheck{seen: make([]bool, n+1)} }

func (s *seqCheck) add(line []byte) {
	v := 0
	for _, ch := range line {
		if ch < '0' || ch > '9' || v > len(s.seen) {
			s.Other++
			return
		}
		v = v*10 + int(ch-'0')
	}
	if len(line) == 0 || v < 1 || v >= len(s.seen) {
		s.Other++
		return
	}
	if s.seen[v] {
		s.Dups++
		return
	}
	s.seen[v] = true
	s.Distinct++
}
