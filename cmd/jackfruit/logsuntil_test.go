// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
	"time"
)

// TestLogsUntil: logs --until keeps the lines printed before it, with --since and --tail, for
// ended and running containers; with -f it stops following at --until while the container
// runs on; a bad --until is a usage error.
func TestLogsUntil(t *testing.T) {
	e := startSupervisor(t)
	if r := e.jf("run", "stamped", "--", "/bin/sh", "-c", "echo one; sleep 0.1; echo two; sleep 0.1; echo three >&2"); r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	// The time each line was printed, from logs -t (stdout and stderr lines alike).
	stamps := map[string]string{}
	all := e.ok("logs", "-t", "stamped")
	for _, l := range strings.Split(strings.TrimSpace(all.stdout+all.stderr), "\n") {
		ts, text, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("logs -t line %q", l)
		}
		stamps[text] = ts
	}
	if len(stamps) != 3 {
		t.Fatalf("logs -t: %s", all)
	}
	for _, c := range []struct {
		args        []string
		out, errOut string
	}{
		// Until is exclusive: the line printed at --until is not shown.
		{[]string{"--until", stamps["three"]}, "one\ntwo\n", ""},
		{[]string{"--until", stamps["two"]}, "one\n", ""},
		{[]string{"--since", stamps["two"], "--until", stamps["three"]}, "two\n", ""},
		{[]string{"--until", stamps["three"], "--tail", "1"}, "two\n", ""},
		{[]string{"--until", stamps["one"]}, "", ""},
		{[]string{"--until", "1h"}, "", ""},
		{[]string{"--until", "0"}, "", ""},
		{[]string{"--until", time.Now().Add(time.Hour).Format(time.RFC3339)}, "one\ntwo\n", "three\n"},
		{[]string{"--until", "0s"}, "one\ntwo\n", "three\n"},
		// -f on an ended container: its lines before --until, at once.
		{[]string{"-f", "--until", stamps["three"]}, "one\ntwo\n", ""},
		// The old forms are unchanged.
		{nil, "one\ntwo\n", "three\n"},
		{[]string{"--since", stamps["two"]}, "two\n", "three\n"},
	} {
		r := e.ok(append(append([]string{"logs"}, c.args...), "stamped")...)
		if r.stdout != c.out || r.stderr != c.errOut {
			t.Errorf("logs %q stamped: stdout %q stderr %q, want %q and %q", c.args, r.stdout, r.stderr, c.out, c.errOut)
		}
	}

	// A running container: --until a moment ago shows what it printed before, -f --until
	// ahead follows until then and returns although the container goes on.
	e.ok("start", "ticker", "--", "/bin/sh", "-c", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.05; done`)
	t.Cleanup(func() { e.jf("rm", "-f", "-t", "0", "ticker") })
	time.Sleep(300 * time.Millisecond)
	mark := time.Now()
	time.Sleep(300 * time.Millisecond)
	before := e.ok("logs", "-t", "--until", mark.Format(time.RFC3339Nano), "ticker")
	checkBefore := func(what, out string, until time.Time) int {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines {
			ts, _, _ := strings.Cut(l, " ")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil || !at.Before(until) {
				t.Errorf("%s: line %q is not from before %s", what, l, until.Format(time.RFC3339Nano))
			}
		}
		return len(lines)
	}
	if n := checkBefore("logs --until a moment ago", before.stdout, mark); n < 2 || !strings.Contains(before.stdout, " tick 0\n") {
		t.Errorf("logs --until a moment ago on a running container: %s", before)
	}

	until := time.Now().Add(700 * time.Millisecond)
	start := time.Now()
	r := e.ok("logs", "-f", "-t", "--until", until.Format(time.RFC3339Nano), "ticker")
	took := time.Since(start)
	if took > 10*time.Second || time.Now().Before(until) {
		t.Errorf("logs -f --until 700ms ahead returned after %v", took)
	}
	if n := checkBefore("logs -f --until", r.stdout, until); n < 5 || !strings.Contains(r.stdout, " tick 0\n") {
		t.Errorf("logs -f --until: too few lines: %s", r)
	}
	if st := e.inspect("ticker").State; st != "running" {
		t.Errorf("ticker is %s after logs -f --until, want running", st)
	}

	// Bad values: usage errors naming --until.
	for _, c := range []struct{ arg, want string }{
		{"yesterday", `invalid --until "yesterday": use an RFC 3339 time`},
		{"9999999999999", "invalid --until 9999999999999: Unix seconds after the year 9999"},
		{"-5m", `invalid --until "-5m"`},
	} {
		r := e.jf("logs", "--until", c.arg, "stamped")
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "See 'jackfruit logs --help'") {
			t.Errorf("logs --until %s: %s; want exit 1 and %q", c.arg, r, c.want)
		}
	}
}
