// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// topEntry is a process as `top --format json` prints it.
type topEntry struct {
	Pid     int      `json:"pid"`
	PPid    int      `json:"ppid"`
	HostPid int      `json:"host_pid"`
	User    string   `json:"user"`
	TTY     string   `json:"tty"`
	Elapsed int64    `json:"elapsed_ns"`
	Args    []string `json:"args"`
}

// nsPid reads the innermost pid of a host pid from /proc/PID/status.
func nsPid(t *testing.T, hostPid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(hostPid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(v)
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", hostPid)
	return 0
}

func TestTopAndStatsCLI(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "box", "--", "sleep", "1000")
	ctx, cancel := context.WithCancel(context.Background())
	execDone := make(chan result, 1)
	go func() { execDone <- e.jfCtx(ctx, "exec", "-u", "nobody", "box", "--", "sleep", "777") }()
	defer func() { cancel(); <-execDone }()

	// The exec'd process is one of the container's, with its pid inside the container.
	var ps []topEntry
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.ok("top", "box", "--format", "json")
		ps = nil
		if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
			t.Fatalf("top --format json: %v: %s", err, r)
		}
		if len(ps) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ps) != 2 || strings.Join(ps[0].Args, " ") != "sleep 1000" || ps[0].Pid != 1 ||
		strings.Join(ps[1].Args, " ") != "sleep 777" || ps[1].User != "nobody" || ps[1].PPid != 0 {
		t.Fatalf("top: %+v", ps)
	}
	if in := nsPid(t, ps[1].HostPid); in != ps[1].Pid || in <= 1 {
		t.Errorf("exec'd process: top says pid %d, its /proc/%d/status NSpid ends in %d", ps[1].Pid, ps[1].HostPid, in)
	}
	r := e.ok("top", "box")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "USER PID PPID %CPU ELAPSED TTY TIME COMMAND" {
		t.Fatalf("top table: %s", r)
	}
	if f := strings.Fields(lines[2]); f[0] != "nobody" || f[1] != strconv.Itoa(ps[1].Pid) || f[2] != "0" || f[5] != "?" ||
		strings.Join(f[7:], " ") != "sleep 777" {
		t.Errorf("top row of the exec'd process: %q", lines[2])
	}

	// One frame of stats, as JSON: numbers that agree with each other and with inspect.
	e.ok("start", "busy", "--soft-mib", "8", "--hard-mib", "16", "--", "sh", "-c", "while :; do :; done")
	r = e.ok("stats", "--no-stream", "--format", "json")
	var st []struct {
		Name        string   `json:"name"`
		State       string   `json:"state"`
		RSS         uint64   `json:"rss"`
		SoftLimit   uint64   `json:"soft_limit"`
		HardLimit   uint64   `json:"hard_limit"`
		CPUTimeNs   int64    `json:"cpu_time_ns"`
		CPUPercent  *float64 `json:"cpu_percent"`
		SoftPercent float64  `json:"soft_percent"`
		HardPercent float64  `json:"hard_percent"`
		Tasks       int      `json:"tasks"`
		Processes   int      `json:"processes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st) != 2 {
		t.Fatalf("stats --no-stream --format json: %v: %s", err, r)
	}
	box, busy := st[0], st[1]
	if box.Name != "box" || box.State != "running" || box.SoftLimit != 40<<20 || box.HardLimit != 64<<20 ||
		box.Processes != 2 || box.Tasks < 2 || box.CPUPercent == nil || *box.CPUPercent > 50 {
		t.Errorf("stats of box: %+v", box)
	}
	// The busy loop's CPU over the 0.5 s: a good share of one CPU, never more than all of them.
	if busy.Name != "busy" || busy.CPUPercent == nil || *busy.CPUPercent < 20 || *busy.CPUPercent > 100*float64(runtime.NumCPU()) || busy.CPUTimeNs <= 0 {
		t.Errorf("stats of busy: %+v", busy)
	}
	for _, s := range st {
		if s.RSS > 0 && (s.SoftPercent != 100*float64(s.RSS)/float64(s.SoftLimit) || s.HardPercent != 100*float64(s.RSS)/float64(s.HardLimit)) {
			t.Errorf("percentages of %s: %+v", s.Name, s)
		}
	}
	r = e.ok("stats", "--no-stream", "busy")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "CPU %") ||
		!strings.Contains(lines[0], "SOFT %") || !strings.Contains(lines[1], "busy") || !strings.Contains(lines[1], "8M/16M") {
		t.Errorf("stats table: %s", r)
	}

	for _, args := range [][]string{{"top", "nope"}, {"stats", "--no-stream", "box", "nope"}} {
		if r := e.jf(args...); r.code != 1 || !strings.Contains(r.stderr, `no such container "nope"`) {
			t.Errorf("jackfruit %v: %s", args, r)
		}
	}
	for _, args := range [][]string{{"top"}, {"top", "a", "b"}, {"top", "--format", "xml", "box"}, {"stats", "--format", "xml"}} {
		if r := e.jf(args...); r.code != 1 || !strings.Contains(r.stderr, "--help") {
			t.Errorf("jackfruit %v: %s", args, r)
		}
	}
	e.ok("stop", "-t", "0", "busy")
	if r := e.jf("top", "busy"); r.code != 1 || !strings.Contains(r.stderr, `container "busy" is not running (killed)`) {
		t.Errorf("top of a stopped container: %s", r)
	}
	if r := e.jf("stats", "--no-stream", "busy"); r.code != 1 || !strings.Contains(r.stderr, `container "busy" is not running (killed)`) {
		t.Errorf("stats of a stopped container: %s", r)
	}
	// Without names, only running containers.
	r = e.ok("stats", "--no-stream")
	if strings.Contains(r.stdout, "busy") || !strings.Contains(r.stdout, "box") {
		t.Errorf("stats of the running containers: %s", r)
	}
}

// The live view refreshes in place on a real terminal and gives the terminal back as it was
// (cursor shown again) when interrupted.
func TestStatsLiveTerminal(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "box", "--", "sleep", "1000")
	tm := newTmux(t, e)
	tm.line("jf stats")
	tm.waitFor("CONTAINER ID")
	if c := strings.TrimSpace(tm.run("display", "-p", "-t", "t", "#{cursor_flag}")); c != "0" {
		t.Errorf("cursor shown during the live view (cursor_flag %s)", c)
	}
	time.Sleep(2500 * time.Millisecond) // two refreshes or more
	s := tm.screen()
	if strings.Count(s, "CONTAINER ID") != 1 || strings.Count(s, "box") != 1 || strings.Contains(s, "host$") {
		t.Errorf("the view was not redrawn in place:\n%s", s)
	}
	e.ok("start", "late", "--", "sleep", "1000")
	tm.waitFor("late")
	tm.keys("C-c")
	tm.waitFor("host$") // the view cleared the screen: this is the prompt after it
	if c := strings.TrimSpace(tm.run("display", "-p", "-t", "t", "#{cursor_flag}")); c != "1" {
		t.Errorf("cursor not shown again after ctrl-c (cursor_flag %s)", c)
	}
	tm.line("echo still-$((6*7))")
	tm.waitFor("still-42")
}
