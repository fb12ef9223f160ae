// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// hogMain allocates -step-mib every -interval, touching every page, and
// reports its resident size after each step as
// "HOG step=N rss=BYTES t=UNIXNANO". It is the guest's own hog so the bench
// does not depend on cmd/memory_hog and can time the crossing exactly.
func hogMain(args []string) {
	fs := flag.NewFlagSet("hog", flag.ExitOnError)
	step := fs.Int("step-mib", 4, "MiB per step")
	interval := fs.Duration("interval", 200*time.Millisecond, "pause between steps")
	maxMiB := fs.Int("max-mib", 0, "stop growing at this size (0: never) and hold")
	cycleMiB := fs.Int("cycle-mib", 0, "on reaching this size free everything and grow again (0: never)")
	_ = fs.Parse(args)

	out := bufio.NewWriter(os.Stdout)
	total := 0
	var held [][]byte
	for n := 1; ; n++ {
		if *cycleMiB > 0 && total >= *cycleMiB {
			for _, m := range held {
				_ = unix.Munmap(m)
			}
			held, total = nil, 0
		}
		if *maxMiB == 0 || total < *maxMiB {
			// The start of each step bounds when the limit was crossed:
			// the kill may land before the step's own report.
			fmt.Fprintf(out, "HOG start=%d t=%d\n", n, time.Now().UnixNano())
			out.Flush()
			mem, err := unix.Mmap(-1, 0, *step*mib, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				fmt.Fprintf(os.Stderr, "hog: mmap: %v\n", err)
				os.Exit(1)
			}
			for i := 0; i < len(mem); i += os.Getpagesize() {
				mem[i] = 1
			}
			held = append(held, mem)
			total += *step
		}
		fmt.Fprintf(out, "HOG step=%d rss=%d t=%d\n", n, selfRSS(), time.Now().UnixNano())
		out.Flush()
		time.Sleep(*interval)
	}
}

func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// hogReport is one line of the hog: a step's start (Start true, no RSS) or
// its end with the resident size reached.
type hogReport struct {
	Step  int
	Start bool
	RSS   int64
	T     time.Time
}

// hogProc is a running hog (or a shell running one) and its reports.
type hogProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	reports []hogReport
	done    chan struct{}
	state   *os.ProcessState
	waitErr error
}

// startHog starts the hog as the init of a new PID namespace. With viaShell
// the init is `sh -c "ktest hog ...; echo"`, so the hog is the init's child.
func startHog(viaShell bool, hogArgs ...string) (*hogProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if viaShell {
		// The trailing command keeps sh from exec'ing the hog directly.
		script := self + " hog " + strings.Join(hogArgs, " ") + "; echo hog-ended"
		cmd = exec.Command("/bin/sh", "-c", script)
	} else {
		cmd = exec.Command(self, append([]string{"hog"}, hogArgs...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &hogProc{cmd: cmd, done: make(chan struct{})}
	go h.collect(stdout)
	return h, nil
}

func (h *hogProc) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rep hogReport
		var ns int64
		if _, err := fmt.Sscanf(sc.Text(), "HOG step=%d rss=%d t=%d", &rep.Step, &rep.RSS, &ns); err != nil {
			if _, err := fmt.Sscanf(sc.Text(), "HOG start=%d t=%d", &rep.Step, &ns); err != nil {
				continue
			}
			rep.Start = true
		}
		rep.T = time.Unix(0, ns)
		h.mu.Lock()
		h.reports = append(h.reports, rep)
		h.mu.Unlock()
	}
	h.state, h.waitErr = h.cmd.Process.Wait()
	close(h.done)
}

func (h *hogProc) Reports() []hogReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hogReport(nil), h.reports...)
}

// Allocated reports whether the hog finished its first step.
func (h *hogProc) Allocated() bool {
	for _, r := range h.Reports() {
		if !r.Start {
			return true
		}
	}
	return false
}

// Wait waits up to d for the process to end and returns its status.
func (h *hogProc) Wait(d time.Duration) (*os.ProcessState, bool) {
	select {
	case <-h.done:
		return h.state, true
	case <-time.After(d):
		return nil, false
	}
}

func (h *hogProc) Kill() {
	_ = h.cmd.Process.Kill()
	h.Wait(10 * time.Second)
}

// crossingStart returns when the step that took the hog over limit
// started: the first step whose end report exceeds limit or, if the kill
// came before that report, the last step started. Kill latency measured from
// there is an upper bound (it includes the time spent touching that step's
// pages).
func crossingStart(reps []hogReport, limit uint64) (time.Time, bool) {
	starts := map[int]time.Time{}
	var last time.Time
	for _, r := range reps {
		if r.Start {
			starts[r.Step] = r.T
			last = r.T
			continue
		}
		if r.RSS > int64(limit) {
			t, ok := starts[r.Step]
			return t, ok
		}
	}
	return last, !last.IsZero()
}
