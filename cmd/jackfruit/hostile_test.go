// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// dialMany opens n connections to path, retrying while the listen backlog is full, and
// closes them at the end of the test.
func dialMany(t *testing.T, path string, n int, first []byte) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for len(conns) < n {
		c, err := net.Dial("unix", path)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("dial %d: %v", len(conns), err)
			}
			time.Sleep(time.Millisecond) // the backlog is full: let the supervisor accept
			continue
		}
		if first != nil {
			c.Write(first)
		}
		conns = append(conns, c)
	}
	return conns
}

// refused counts connections the supervisor answered with "too many client connections".
func refused(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		b, _ := bufio.NewReader(c).ReadString(0)
		if strings.Contains(b, "too many client connections") {
			n++
		}
	}
	return n
}

// Many more idle clients than the supervisor has descriptors: the connections beyond the
// limit are refused, and a container start on a connection made before still succeeds.
// The supervisor runs with a descriptor limit of 256, so 3,000 clients are the same flood
// for it as 20,000 would be with the default hard limit.
func TestIdleClientsCannotExhaustDescriptors(t *testing.T) {
	e := startSupervisorWrapped(t, []string{"prlimit", "--nofile=256:256"}, nil, "--no-dbus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c0, err := control.Dial(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	flood := dialMany(t, e.socket, 3000, nil)
	// Whatever the supervisor has accepted by now, a start needs descriptors (pipes, pidfd,
	// log file, state file) and must find them.
	if _, err := c0.Start(ctx, service.StartRequest{Name: "busy", Command: []string{"true"}}); err != nil {
		t.Fatalf("start with 3,000 idle clients connected: %v\nsupervisor log:\n%s", err, e.supLog)
	}
	info, err := c0.Wait(ctx, "busy")
	if err != nil || info.State != service.StateExited || info.ExitCode != 0 {
		t.Fatalf("wait: %+v %v", info, err)
	}
	n := refused(flood)
	t.Logf("3,000 idle clients against a descriptor limit of 256: %d refused with an error, the start succeeded", n)
	if n < 3000-256 {
		t.Errorf("only %d of 3,000 connections were refused; the limit is 128 (half of 256)", n)
	}
	if got := strings.Count(e.supLog.String(), "connection limit reached"); got != 1 {
		t.Errorf("the connection limit is reported %d times, want once:\n%s", got, e.supLog)
	}
	for _, c := range flood {
		c.Close()
	}
	// Once they are gone, new clients are served again.
	e.eventually(func(r result) bool { return r.code == 0 }, "ps", "-a")
}

// vmKiB reads a field (VmRSS, VmHWM) of /proc/PID/status in KiB.
func vmKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// Clients that send a byte and stop, and clients that send 1 MiB without ever ending the
// request, cost the supervisor a bounded amount of memory (before: 276 MB for 5,000
// one-byte clients, 29 -> 363 MB for 200 unterminated 1 MiB requests).
func TestHostileClientsMemoryBounded(t *testing.T) {
	e := startSupervisor(t)
	pid := e.sup.Process.Pid
	e.ok("ps") // warm up: the first call allocates what every call needs
	base := vmKiB(t, pid, "VmRSS")

	oneByte := dialMany(t, e.socket, 5000, []byte("{"))
	// The supervisor holds as many as it takes once a new client is refused.
	e.eventually(func(r result) bool { return strings.Contains(r.stderr, "too many client connections") }, "ps")
	afterOne := vmKiB(t, pid, "VmRSS")
	for _, c := range oneByte {
		c.Close()
	}

	big := dialMany(t, e.socket, 200, nil)
	head := []byte(`{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"`)
	filler := []byte(strings.Repeat("a", 64<<10))
	var wg sync.WaitGroup
	for _, c := range big {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			c.Write(head)
			for sent := len(head); sent < 1<<20; sent += len(filler) {
				if _, err := c.Write(filler); err != nil {
					return // refused and closed by the supervisor, or it stopped reading
				}
			}
		}(c)
	}
	wg.Wait()
	afterBig := vmKiB(t, pid, "VmRSS")
	peak := vmKiB(t, pid, "VmHWM")
	t.Logf("supervisor RSS: %d KiB at rest, %d KiB with 5,000 one-byte clients, %d KiB after 200 unterminated 1 MiB requests; peak %d KiB",
		base, afterOne, afterBig, peak)
	const bound = 96 << 10 // KiB: the buffered-bytes cap is 16 MiB; leave room for the GC
	if peak-base > bound {
		t.Errorf("peak RSS grew by %d KiB, more than %d KiB", peak-base, bound)
	}
	for _, c := range big {
		c.Close()
	}
	e.eventually(func(r result) bool { return r.code == 0 }, "ps")
}

// eventually runs `jackfruit ARGS` until ok accepts its result (10 s at most).
func (e *env) eventually(ok func(result) bool, args ...string) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := e.jf(args...)
		if ok(r) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("jackfruit %s: %s", strings.Join(args, " "), r)
		}
	}
}
