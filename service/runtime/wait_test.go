// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threads returns the number of OS threads of the test process.
func threads(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// TestWaitHoldsNoThread checks that waiting for many processes parks in the netpoller: a
// blocking waitid per container would cost the supervisor one OS thread (and its stacks) for
// each running container. It also checks the exit statuses that come back.
func TestWaitHoldsNoThread(t *testing.T) {
	const n = 40
	var pids, fds []int
	for i := 0; i < n; i++ {
		fd := -1
		// The first one is killed below: it must still be running then, however slow the
		// forks of the others were on a loaded machine.
		secs := "1"
		if i == 0 {
			secs = "100"
		}
		pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", secs}, &syscall.ProcAttr{
			Sys: &syscall.SysProcAttr{PidFD: &fd},
		})
		if err != nil {
			t.Fatalf("starting sleep: %v", err)
		}
		if fd < 0 {
			t.Skip("this kernel hands out no pidfd from clone")
		}
		pids, fds = append(pids, pid), append(fds, fd)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	before := threads(t)
	type result struct {
		info siginfoChild
		err  error
	}
	results := make([]chan result, n)
	for i, fd := range fds {
		results[i] = make(chan result, 1)
		go func() {
			var r result
			r.err = waitPidfd(fd, &r.info, nil)
			results[i] <- r
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if during := threads(t); during-before >= n/2 {
		t.Errorf("%d waiters took %d more OS threads (%d -> %d); waiting must not block a thread", n, during-before, before, during)
	}
	if err := unix.Kill(pids[0], unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range fds {
		r := <-results[i]
		switch {
		case r.err != nil:
			t.Errorf("pid %d: %v", pids[i], r.err)
		case int(r.info.Pid) != pids[i]:
			t.Errorf("pid %d: waitid reported pid %d", pids[i], r.info.Pid)
		case i == 0 && (r.info.Code != cldKilled || r.info.Status != int32(unix.SIGKILL)):
			t.Errorf("pid %d: code %d status %d, want killed by SIGKILL", pids[i], r.info.Code, r.info.Status)
		case i > 0 && (r.info.Code != cldExited || r.info.Status != 0):
			t.Errorf("pid %d: code %d status %d, want exited 0", pids[i], r.info.Code, r.info.Status)
		}
	}
}
