// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// inspect's template has podman's .Id and .State.* besides every field it had; ps's keeps
// .State a string, as podman's ps does.
func TestInspectPodmanPaths(t *testing.T) {
	e := startSupervisor(t)
	id := strings.TrimSpace(e.ok("start", "--name", "up", "--", "/bin/sleep", "1000").stdout)
	e.waitState("up", "running")

	// The old paths print what they printed: the same as ps's template, which is unchanged.
	old := "{{.Name}} {{.State}} {{.ID}} {{.Pid}} {{.SoftLimit}} {{.HardLimit}} {{.Cgroup}} {{.Command}} {{.StartedAt}} {{.LimitsEnforced}} {{json .State}}" +
		`{{if eq .State "running"}} eq{{end}}{{if ne .State "exited"}} ne{{end}}{{if eq .State "exited" "running"}} eq2{{end}}{{if lt .State "s"}} lt{{end}}`
	ins, ps := e.ok("inspect", "--format", old, "up"), e.ok("ps", "--format", old)
	if ins.stdout != ps.stdout || !strings.HasPrefix(ins.stdout, "up running "+id+" ") || !strings.HasSuffix(ins.stdout, ` "running" eq ne eq2 lt`+"\n") {
		t.Errorf("old paths: inspect printed %q, ps %q", ins.stdout, ps.stdout)
	}
	// {{json .}} is still the protocol's object, the one plain inspect prints.
	var tmpl, plain []map[string]any
	if err := json.Unmarshal([]byte("["+e.ok("inspect", "-f", "{{json .}}", "up").stdout+"]"), &tmpl); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "up").stdout), &plain); err != nil {
		t.Fatal(err)
	}
	if k1, k2 := keys(tmpl[0]), keys(plain[0]); !reflect.DeepEqual(k1, k2) || tmpl[0]["state"] != "running" || tmpl[0]["id"] != id {
		t.Errorf("{{json .}}: keys %v, want %v; %v", k1, k2, tmpl[0])
	}

	podman := "{{.Id}}|{{.State.Pid}}|{{.State.Status}}|{{.State.Running}}|{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.State.FinishedAt}}"
	c := e.inspect("up")
	want := id + "|" + strconv.Itoa(c.Pid) + "|running|true|0|false|0001-01-01 00:00:00 +0000 UTC\n"
	if r := e.ok("inspect", "--format", podman, "up"); c.Pid <= 0 || r.stdout != want {
		t.Errorf("podman paths while running: %q, want %q", r.stdout, want)
	}
	// StartedAt is a time, as podman's, with its methods.
	started, err := time.Parse(time.RFC3339Nano, c.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.ok("inspect", "-f", "{{.State.StartedAt.Unix}} {{.State.StartedAt}}", "up"); r.stdout != strconv.FormatInt(started.Unix(), 10)+" "+started.String()+"\n" {
		t.Errorf("{{.State.StartedAt}}: %q, want %v", r.stdout, started)
	}
	// ps's .State is the string it was.
	if r := e.ok("ps", "--format", `{{printf "%T" .State}}`); r.stdout != "string\n" {
		t.Errorf("ps .State type: %q", r.stdout)
	}
	if r := e.jf("ps", "--format", "{{.State.Pid}}"); r.code == 0 || !strings.Contains(r.stderr, "--format") {
		t.Errorf("ps {{.State.Pid}}: %s", r)
	}
	if r := e.jf("inspect", "--format", "{{eq .State 3}}", "up"); r.code == 0 || !strings.Contains(r.stderr, "incompatible types for comparison") {
		t.Errorf("inspect {{eq .State 3}}: %s", r)
	}

	// Once killed: exited in podman's words, with run's exit code, no pid, a finish time.
	e.ok("kill", "up")
	e.waitState("up", "killed")
	if r := e.ok("inspect", "--format", podman+"|{{.State}}", "up"); r.stdout != id+"|0|exited|false|137|false|"+finished(t, e, "up")+"|killed\n" {
		t.Errorf("podman paths once killed: %q", r.stdout)
	}
	if r := e.jf("run", "--name", "three", "--", "/bin/sh", "-c", "exit 3"); r.code != 3 {
		t.Fatalf("run three: %s", r)
	}
	if r := e.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}} {{.State}}", "three", "up"); r.stdout != "exited 3 false exited\nexited 137 false killed\n" {
		t.Errorf("two containers: %q", r.stdout)
	}
}

// finished is the container's FinishedAt as Go prints a time.
func finished(t *testing.T, e *env, name string) string {
	t.Helper()
	f, err := time.Parse(time.RFC3339Nano, e.inspect(name).FinishedAt)
	if err != nil {
		t.Fatal(err)
	}
	return f.String()
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The states no host test reaches (the memory monitor's kill needs the module or a cgroup v2
// memory controller): .State as podman has it for each.
func TestInspectViewStates(t *testing.T) {
	start := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		info service.ContainerInfo
		want inspectState
	}{
		{service.ContainerInfo{State: service.StateOOMKill, Pid: 7, Signal: "SIGKILL", StartedAt: start, FinishedAt: start.Add(time.Second)},
			inspectState{state: service.StateOOMKill, Status: "exited", ExitCode: 137, OOMKilled: true, StartedAt: start, FinishedAt: start.Add(time.Second)}},
		{service.ContainerInfo{State: service.StateStopping, Pid: 7, StartedAt: start},
			inspectState{state: service.StateStopping, Status: "stopping", Running: true, Pid: 7, StartedAt: start}},
		{service.ContainerInfo{State: service.StateCreated, Pid: 7},
			inspectState{state: service.StateCreated, Status: "created"}},
		{service.ContainerInfo{State: service.StateKilled, Signal: "SIGTERM"},
			inspectState{state: service.StateKilled, Status: "exited", ExitCode: 143}},
	} {
		if got := newInspectView(tc.info).State; got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.info.State, got, tc.want)
		}
		if s := newInspectView(tc.info).State.String(); s != string(tc.info.State) {
			t.Errorf("%s prints as %q", tc.info.State, s)
		}
	}
}
