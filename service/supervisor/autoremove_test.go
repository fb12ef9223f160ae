// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
)

// RunContainer with Remove: the output from the first line, the final state, and once it
// returns the container is gone (registry, state directory, overlay) and its name is free.
func TestRunContainerRemove(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, unsub := e.s.Subscribe()
	defer unsub()
	for i := 0; i < 2; i++ { // the second run reuses the name
		var started service.ContainerInfo
		var lines []service.LogLine
		info, err := e.s.RunContainer(ctx, root, service.StartRequest{Name: "once", Command: []string{"sh", "-c", "echo one; echo two >&2; exit 3"}, Remove: true},
			func(i service.ContainerInfo) { started = i },
			func(l service.LogLine) error {
				l.Data = append([]byte(nil), l.Data...)
				lines = append(lines, l)
				return nil
			})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if started.State != service.StateRunning || started.ID == "" || started.ID != info.ID {
			t.Errorf("run %d: started %+v, final id %s", i, started, info.ID)
		}
		if info.State != service.StateExited || info.ExitCode != 3 || strings.HasPrefix(info.Message, service.MsgNotRemoved) {
			t.Errorf("run %d: final %+v", i, info)
		}
		if len(lines) != 2 || stdoutText(lines) != "one\n" {
			t.Errorf("run %d: output %+v", i, lines)
		}
		if _, err := e.s.Get(ctx, root, "once"); service.KindOf(err) != service.KindNoSuchContainer {
			t.Errorf("run %d: after RunContainer, Get = %v", i, err)
		}
		assertEmpty(t, e)
	}
	// Exited before removed, each time.
	var types []string
	for done := false; !done; {
		select {
		case ev := <-ch:
			if ev.Type == service.EventExited || ev.Type == service.EventRemoved {
				types = append(types, string(ev.Type))
			}
		case <-time.After(500 * time.Millisecond):
			done = true
		}
	}
	if got := strings.Join(types, ","); got != "exited,removed,exited,removed" {
		t.Errorf("exited and removed events: %s", got)
	}

	// Without Remove the container stays, final, as after Start and Wait.
	info, err := e.s.RunContainer(ctx, root, service.StartRequest{Name: "kept", Command: []string{"true"}}, func(service.ContainerInfo) {}, func(service.LogLine) error { return nil })
	if err != nil || info.State != service.StateExited {
		t.Fatalf("run without remove: %+v %v", info, err)
	}
	if got, err := e.s.Get(ctx, root, "kept"); err != nil || got.ID != info.ID {
		t.Errorf("kept: %+v %v", got, err)
	}
	// A refused start is the same error as from Start, and nothing is left.
	if _, err := e.s.RunContainer(ctx, root, service.StartRequest{Name: "bad name", Command: []string{"true"}, Remove: true}, func(service.ContainerInfo) {}, func(service.LogLine) error { return nil }); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("bad name: %v", err)
	}
}

// A caller that gives up leaves the container to end by itself; it is removed then all the
// same (Start with Remove is the same without a caller waiting).
func TestAutoRemoveWithoutCaller(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.s.Start(ctx, root, service.StartRequest{Name: "bg", Command: []string{"sh", "-c", "sleep 0.2"}, Remove: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(e.cfg.StateDir, "containers", "bg", stateFile))
	if err != nil || !strings.Contains(string(b), `"auto_remove": true`) {
		t.Errorf("state.json of an auto-remove container: %v\n%s", err, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.s.Get(ctx, root, "bg"); service.KindOf(err) == service.KindNoSuchContainer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container was not removed after it ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertEmpty(t, e)
}

// What a previous supervisor (or a crash) left of auto-remove containers is removed at start:
// a final one, one that was running, and a directory whose state.json never reached the disk
// (missing or empty, as an unsynced file can be after a crash). Other containers stay.
func TestAutoRemoveLeftovers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, "kept", "true")
	e.wait(t, "kept")
	e.s.Close()

	dirs := filepath.Join(e.cfg.StateDir, "containers")
	mk := func(name string, rec *record) {
		t.Helper()
		d := filepath.Join(dirs, name)
		if err := os.MkdirAll(filepath.Join(d, "upper"), 0o700); err != nil {
			t.Fatal(err)
		}
		if rec == nil {
			if err := os.WriteFile(filepath.Join(d, stateFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := save(d, *rec); err != nil {
			t.Fatal(err)
		}
	}
	id := strings.Repeat("ef", 32)
	mk("ended", &record{ContainerInfo: service.ContainerInfo{Name: "ended", ID: id, State: service.StateExited, CreatedAt: time.Now()}, AutoRemove: true})
	orphan := exec.Command("sleep", "1000")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { orphan.Wait(); close(reaped) }()
	st, err := procStartTime(orphan.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	mk("wasrunning", &record{ContainerInfo: service.ContainerInfo{Name: "wasrunning", ID: id, State: service.StateRunning, Pid: orphan.Process.Pid, CreatedAt: time.Now()},
		InitStartTime: st, BootID: bootID(), AutoRemove: true})
	mk("emptystate", nil)

	s2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, name := range []string{"ended", "wasrunning", "emptystate"} {
		if _, err := s2.Get(ctx, root, name); service.KindOf(err) != service.KindNoSuchContainer {
			t.Errorf("%s after restart: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dirs, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: directory left: %v", name, err)
		}
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Error("the init of the auto-remove container that was running was not killed")
	}
	if _, err := s2.Get(ctx, root, "kept"); err != nil {
		t.Errorf("kept: %v", err)
	}
}

// Remove moves the directory out of the way at once and deletes it in the background;
// Close waits for that, and a supervisor deletes what a previous one left in the trash.
func TestRemoveTrash(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.start(t, "gone", "sh", "-c", "echo x > /written")
	e.wait(t, "gone")
	if err := e.s.Remove(ctx, root, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container directory after Remove: %v", err)
	}
	e.start(t, "gone", "true") // the name is free at once
	e.wait(t, "gone")
	e.s.Close()
	if ents, err := os.ReadDir(filepath.Join(e.cfg.StateDir, "trash")); err != nil || len(ents) != 0 {
		t.Errorf("trash after Close: %v %v", ents, err)
	}

	left := filepath.Join(e.cfg.StateDir, "trash", "c-left", "dir", "upper")
	if err := os.MkdirAll(left, 0o755); err != nil {
		t.Fatal(err)
	}
	s2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if ents, err := os.ReadDir(filepath.Join(e.cfg.StateDir, "trash")); err != nil || len(ents) != 0 {
		t.Errorf("trash a previous supervisor left, after a new one ran: %v %v", ents, err)
	}
}

// An AutoRemove container's first state is written in place (no temporary file), a later
// one replaces it atomically, and a state larger than a page (which one write could leave
// torn) goes through the temporary file too. Each leaves only state.json, readable.
func TestSaveAutoRemoveState(t *testing.T) {
	dir := t.TempDir()
	rec := record{ContainerInfo: service.ContainerInfo{Name: filepath.Base(dir), ID: strings.Repeat("ab", 32), State: service.StateRunning, CreatedAt: time.Now()}, AutoRemove: true}
	check := func(what string, want service.State, wantCmd int) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 || ents[0].Name() != stateFile {
			t.Fatalf("%s: directory holds %v (%v), want only %s", what, ents, err, stateFile)
		}
		got, err := load(dir)
		if err != nil || got.State != want || len(got.Command) != wantCmd {
			t.Fatalf("%s: load = %v, %d args, %v; want %s, %d args", what, got.State, len(got.Command), err, want, wantCmd)
		}
		if fi, err := os.Stat(filepath.Join(dir, stateFile)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", what, fi, err)
		}
	}
	if err := save(dir, rec); err != nil {
		t.Fatal(err)
	}
	check("first save", service.StateRunning, 0)
	rec.State = service.StateExited
	if err := save(dir, rec); err != nil {
		t.Fatal(err)
	}
	check("second save", service.StateExited, 0)

	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	rec.Command = make([]string, 1000)
	for i := range rec.Command {
		rec.Command[i] = "argument"
	}
	if err := save(dir, rec); err != nil {
		t.Fatal(err)
	}
	check("first save, more than a page", service.StateExited, 1000)
}

// mountPointsIn finds the mount points at or below a directory in a mountinfo table,
// octal escapes undone, and nothing that merely shares a prefix with it.
func TestMountPointsIn(t *testing.T) {
	table := `22 1 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:40 / /var/lib/jf/containers/a rw - tmpfs tmpfs rw
31 30 0:41 / /var/lib/jf/containers/a/upper rw shared:5 - tmpfs tmpfs rw
32 1 0:42 / /var/lib/jf/containers/ab rw - tmpfs tmpfs rw
33 1 0:43 / /var/lib/jf/containers/a\040b/x rw - tmpfs tmpfs rw
34 1 0:44 / /var/lib/jf/containers/a\134/y rw - tmpfs tmpfs rw
35 1 0:45 /short
`
	for _, c := range []struct {
		dir  string
		want []string
	}{
		{"/var/lib/jf/containers/a", []string{"/var/lib/jf/containers/a", "/var/lib/jf/containers/a/upper"}},
		{"/var/lib/jf/containers/a/", []string{"/var/lib/jf/containers/a", "/var/lib/jf/containers/a/upper"}},
		{"/var/lib/jf/containers/a b", []string{"/var/lib/jf/containers/a b/x"}},
		{`/var/lib/jf/containers/a\`, []string{`/var/lib/jf/containers/a\/y`}},
		{"/var/lib/jf/containers/b", nil},
		{"/", []string{"/proc", "/var/lib/jf/containers/a", "/var/lib/jf/containers/a/upper", "/var/lib/jf/containers/ab", "/var/lib/jf/containers/a b/x", `/var/lib/jf/containers/a\/y`}},
	} {
		if got := mountPointsIn([]byte(table), c.dir); !slices.Equal(got, c.want) {
			t.Errorf("mountPointsIn(%q) = %q, want %q", c.dir, got, c.want)
		}
	}
}
