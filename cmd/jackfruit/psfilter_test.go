// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/service/control"
)

// TestPsFilter: ps --filter selects by name (regular expression), ID prefix, status and exit
// code, ORing values of a key and ANDing keys, in every output form; a status filter lists
// ended containers without -a; bad filters are usage errors naming the filter.
func TestPsFilter(t *testing.T) {
	e := startSupervisor(t)
	e.ok("start", "web1", "/bin/sleep", "1000")
	e.ok("start", "web2", "/bin/sleep", "1000")
	t.Cleanup(func() { e.jf("rm", "-f", "-t", "0", "web1", "web2") })
	if r := e.jf("run", "ok0", "/bin/true"); r.code != 0 {
		t.Fatalf("run ok0: %s", r)
	}
	if r := e.jf("run", "bad3", "--", "/bin/sh", "-c", "exit 3"); r.code != 3 {
		t.Fatalf("run bad3: %s", r)
	}
	e.ok("start", "victim", "/bin/sleep", "1000")
	e.ok("kill", "victim")
	e.ok("wait", "victim")
	id := e.inspect("web2").ID

	// names lists the containers ps --format '{{.Name}}' ARGS prints, sorted.
	names := func(args ...string) []string {
		t.Helper()
		r := e.ok(append([]string{"ps", "--format", "{{.Name}}"}, args...)...)
		got := strings.Fields(r.stdout)
		slices.Sort(got)
		return got
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		// The old forms are unchanged.
		{nil, []string{"web1", "web2"}},
		{[]string{"-a"}, []string{"bad3", "ok0", "victim", "web1", "web2"}},
		// name: a regular expression, matched anywhere.
		{[]string{"--filter", "name=web"}, []string{"web1", "web2"}},
		{[]string{"--filter", "name=^web1$"}, []string{"web1"}},
		{[]string{"-a", "--filter", "name=^(ok|bad)"}, []string{"bad3", "ok0"}},
		{[]string{"--filter", "name=nothing"}, nil},
		// Without -a, ended containers stay hidden for non-status filters, as in podman.
		{[]string{"--filter", "name=ok0"}, nil},
		// Same key: ORed.
		{[]string{"-f", "name=web1", "-f", "name=web2"}, []string{"web1", "web2"}},
		// id: a prefix of the full ID.
		{[]string{"--filter", "id=" + id[:5]}, []string{"web2"}},
		{[]string{"--filter", "id=" + strings.ToUpper(id)}, []string{"web2"}},
		// status: implies -a; exited is every ended container, killed ones too.
		{[]string{"--filter", "status=exited"}, []string{"bad3", "ok0", "victim"}},
		{[]string{"--filter", "status=killed"}, []string{"victim"}},
		{[]string{"--filter", "status=running"}, []string{"web1", "web2"}},
		{[]string{"--filter", "status=created"}, nil},
		{[]string{"-f", "status=running", "-f", "status=killed"}, []string{"victim", "web1", "web2"}},
		// exited: the code run and wait return (137 for SIGKILL); only ended containers.
		{[]string{"-a", "--filter", "exited=3"}, []string{"bad3"}},
		{[]string{"-a", "--filter", "exited=137"}, []string{"victim"}},
		{[]string{"-a", "--filter", "exited=0"}, []string{"ok0"}},
		{[]string{"--filter", "exited=0"}, nil},
		{[]string{"--filter", "status=exited", "--filter", "exited=0", "--filter", "exited=3"}, []string{"bad3", "ok0"}},
		// Different keys: ANDed.
		{[]string{"--filter", "status=exited", "--filter", "name=^v"}, []string{"victim"}},
		{[]string{"--filter", "status=running", "--filter", "name=ok"}, nil},
	} {
		if got := names(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("ps %q: got %q, want %q", c.args, got, c.want)
		}
	}

	// -q, the table and json filter alike.
	if r := e.ok("ps", "-q", "--filter", "name=web2"); strings.TrimSpace(r.stdout) != id[:12] {
		t.Errorf("ps -q --filter name=web2: %s", r)
	}
	if r := e.ok("ps", "-q", "--no-trunc", "--filter", "id="+id[:12]); strings.TrimSpace(r.stdout) != id {
		t.Errorf("ps -q --no-trunc --filter id=: %s", r)
	}
	table := e.ok("ps", "--filter", "status=exited", "--filter", "exited=3").stdout
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "CONTAINER ID") ||
		!strings.Contains(lines[1], "bad3") || !strings.Contains(lines[1], "Exited (3)") {
		t.Errorf("ps table with filters:\n%s", table)
	}
	if table := e.ok("ps", "--filter", "name=none").stdout; strings.TrimSpace(table) == "" || strings.Contains(table, "web") {
		t.Errorf("ps table matching nothing should be the header alone:\n%s", table)
	}
	var list []control.Container
	if err := json.Unmarshal([]byte(e.ok("ps", "--format", "json", "--filter", "status=killed").stdout), &list); err != nil ||
		len(list) != 1 || list[0].Name != "victim" {
		t.Errorf("ps --format json --filter status=killed: %v %+v", err, list)
	}
	if out := e.ok("ps", "--format", "json", "--filter", "name=none").stdout; strings.TrimSpace(out) != "[]" {
		t.Errorf("ps --format json matching nothing: %q, want []", out)
	}

	// Bad filters: usage errors (exit 1, "See ... --help") naming the filter.
	for _, c := range []struct {
		filter, want string
	}{
		{"name", `invalid --filter "name": use KEY=VALUE`},
		{"label=a=b", `unknown key "label"`},
		{"name=(", `invalid --filter "name=(": not a regular expression`},
		{"id=xyz", `invalid --filter "id=xyz"`},
		{"id=", `invalid --filter "id="`},
		{"status=paused", `invalid --filter "status=paused": unknown status (use created, exited, killed, killed-by-memory-limit, running, stopping)`},
		{"exited=one", `invalid --filter "exited=one": an exit code is a number`},
		{"exited=-1", `invalid --filter "exited=-1"`},
		{"exited=256", `invalid --filter "exited=256"`},
	} {
		r := e.jf("ps", "--filter", c.filter)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "See 'jackfruit ps --help'") || r.stdout != "" {
			t.Errorf("ps --filter %q: %s; want exit 1 and %q", c.filter, r, c.want)
		}
	}
}
