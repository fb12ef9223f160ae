// SPDX-License-Identifier: Apache-2.0

package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
	"github.com/jackfruit/jackfruit/service/control/controltest"
)

// peercredEnv makes the test binary act as a client (run as another uid) instead of testing.
const peercredEnv = "JACKFRUIT_CONTROL_TEST_PEERCRED_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(peercredEnv); path != "" {
		os.Exit(peercredClient(path))
	}
	os.Exit(m.Run())
}

// peercredClient connects as whatever uid it runs as and tries a read and a write call.
func peercredClient(path string) int {
	c, err := control.Dial(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	if _, err := c.List(context.Background(), true); err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		return 3
	}
	_, err = c.Start(context.Background(), service.StartRequest{Name: "x", Command: []string{"/bin/true"}})
	if service.KindOf(err) != service.KindAccessDenied {
		fmt.Fprintln(os.Stderr, "start: want AccessDenied, got", err)
		return 4
	}
	fmt.Print("ok")
	return 0
}

type fixture struct {
	t    *testing.T
	m    *controltest.Manager
	srv  *control.Server
	path string
	done chan error
}

func newFixture(t *testing.T, opts ...func(*control.Server)) *fixture {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "jf.sock")
	l, err := control.ListenUnix(path, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, m: controltest.New(), path: path, done: make(chan error, 1)}
	f.srv = control.NewServer(f.m, nil)
	for _, o := range opts {
		o(f.srv)
	}
	go func() { f.done <- f.srv.Serve(l) }()
	t.Cleanup(func() {
		f.srv.Close()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return f
}

func (f *fixture) client() *control.Client {
	f.t.Helper()
	c, err := control.Dial(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// raw is a bare connection for speaking (and misspeaking) the wire protocol.
type raw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (f *fixture) raw() *raw {
	f.t.Helper()
	c, err := net.Dial("unix", f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return &raw{t: f.t, c: c, r: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

type wireReply struct {
	Parameters map[string]any `json:"parameters"`
	Continues  bool           `json:"continues"`
	Error      string         `json:"error"`
}

func (r *raw) recv() wireReply {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.r.ReadBytes(0)
	if err != nil {
		r.t.Fatalf("reading reply: %v (got %q)", err, b)
	}
	var rep wireReply
	if err := json.Unmarshal(b[:len(b)-1], &rep); err != nil {
		r.t.Fatalf("reply %q: %v", b, err)
	}
	return rep
}

// expectClosed checks that the server closed the connection.
func (r *raw) expectClosed() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.r.ReadBytes(0)
	// A reset is a close too: the server hung up on bytes it had not read (a request it
	// refused part-way), and the kernel tells the peer so.
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("want connection closed, got %q, %v", b, err)
	}
}

func startReq(name string) service.StartRequest {
	return service.StartRequest{Name: name, Command: []string{"/bin/sh", "-c", "echo hi"}, Env: []string{"A=1"},
		SoftLimit: 10 << 20, HardLimit: 20 << 20, StopTimeout: 3 * time.Second,
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"}, Network: "none"}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	ctx := context.Background()

	info, err := c.Start(ctx, startReq("web"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "web" || info.State != service.StateRunning || len(info.ID) != 64 || info.Pid == 0 ||
		info.SoftLimit != 10<<20 || info.HardLimit != 20<<20 || info.StopTimeout != 3*time.Second ||
		info.Env[0] != "A=1" || info.CreatedAt.IsZero() || !info.FinishedAt.IsZero() ||
		strings.Join(info.Capabilities, ",") != "NET_ADMIN,ALL" || info.Seccomp != "no-new-privileges" ||
		!info.NoNewPrivileges || info.Network != "none" {
		t.Fatalf("Start returned %+v", info)
	}
	got, err := c.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(info.CreatedAt) || got.ID != info.ID {
		t.Fatalf("Get = %+v, want %+v", got, info)
	}
	list, err := c.List(ctx, false)
	if err != nil || len(list) != 1 || list[0].Name != "web" {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := c.Kill(ctx, "web", syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	w, err := c.Wait(ctx, "web")
	if err != nil || w.State != service.StateKilled || w.Signal != "SIGINT" || w.ExitCode != 130 {
		t.Fatalf("Wait = %+v, %v", w, err)
	}
	if l, _ := c.List(ctx, false); len(l) != 0 {
		t.Fatalf("List(all=false) shows exited containers: %v", l)
	}
	if l, _ := c.List(ctx, true); len(l) != 1 {
		t.Fatalf("List(all=true) = %v", l)
	}
	if _, err := c.Stop(ctx, "web", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Version != service.Version || st.ContainerCount != 0 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	for _, cl := range f.m.Callers() {
		if cl.UID != uint32(os.Getuid()) || cl.PID != int32(os.Getpid()) {
			t.Fatalf("caller %+v, want uid %d pid %d", cl, os.Getuid(), os.Getpid())
		}
	}
}

func TestTopAndStatsRoundTrip(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	ctx := context.Background()
	info, err := c.Start(ctx, startReq("web"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.Top(ctx, "web")
	if err != nil || len(ps) != 1 || ps[0].Pid != 1 || ps[0].HostPid != info.Pid || ps[0].User != "root" ||
		strings.Join(ps[0].Args, " ") != strings.Join(info.Command, " ") || ps[0].Elapsed <= 0 {
		t.Fatalf("Top = %+v, %v", ps, err)
	}
	st, err := c.Stats(ctx, nil)
	if err != nil || len(st) != 1 || st[0].Name != "web" || st[0].State != service.StateRunning ||
		st[0].SoftLimit != 10<<20 || st[0].HardLimit != 20<<20 || st[0].Tasks != 1 || st[0].Time.IsZero() {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	if _, err := c.Stats(ctx, []string{"web", "nope"}); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("Stats of an unknown container: %v", err)
	}
	c.Kill(ctx, "web", syscall.SIGKILL)
	c.Wait(ctx, "web")
	if _, err := c.Top(ctx, "web"); service.KindOf(err) != service.KindInvalidState {
		t.Errorf("Top of a killed container: %v", err)
	}
	if st, err := c.Stats(ctx, []string{"web"}); err != nil || len(st) != 1 || st[0].State != service.StateKilled || st[0].Tasks != 0 {
		t.Errorf("Stats of a killed container: %+v, %v", st, err)
	}
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Stats","parameters":{"names":"web"}}` + "\x00")
	if rep := r.recv(); rep.Error != control.ErrInvalidParameter || rep.Parameters["parameter"] != "names" {
		t.Errorf("Stats with names not a list: %+v", rep)
	}
}

func TestErrorKindsRoundTrip(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	kinds := []service.Kind{service.KindNoSuchContainer, service.KindAlreadyExists, service.KindInvalidArgument,
		service.KindAccessDenied, service.KindMonitorUnavailable, service.KindInvalidState,
		service.KindCommandNotFound, service.KindCommandNotExecutable, service.KindInternal}
	for _, k := range kinds {
		f.m.FailWith[string(k)] = service.Errorf(k, "message for %s", k)
	}
	// An error without a Kind is reported as Internal, message intact.
	f.m.FailWith["plain"] = errors.New("disk on fire")
	for _, k := range kinds {
		_, err := c.Get(context.Background(), string(k))
		var se *service.Error
		if !errors.As(err, &se) || se.Kind != k || se.Msg != "message for "+string(k) {
			t.Errorf("kind %s: got %#v", k, err)
		}
	}
	_, err := c.Get(context.Background(), "plain")
	if service.KindOf(err) != service.KindInternal || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("plain error: %v", err)
	}
	// The exact wire name, as other varlink clients see it.
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"nope"}}` + "\x00")
	rep := r.recv()
	if rep.Error != "io.jackfruit.Jackfruit1.NoSuchContainer" || rep.Parameters["message"] != `no such container "nope"` {
		t.Errorf("wire error = %+v", rep)
	}
	// Real CommandNotFound from Start.
	_, err = c.Start(context.Background(), service.StartRequest{Name: "a", Command: []string{"notfound"}})
	if service.KindOf(err) != service.KindCommandNotFound {
		t.Errorf("Start notfound: %v", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, msg, wantErr string
		closes             bool
	}{
		{"not json", "{bad json\x00", control.ErrInvalidParameter, true},
		{"json array", "[1,2]\x00", control.ErrInvalidParameter, true},
		{"no method", `{"parameters":{}}` + "\x00", control.ErrInvalidParameter, true},
		{"unknown method", `{"method":"io.jackfruit.Jackfruit1.Explode"}` + "\x00", control.ErrMethodNotFound, false},
		{"unknown interface", `{"method":"com.example.Foo.Bar"}` + "\x00", control.ErrInterfaceNotFound, false},
		{"unqualified", `{"method":"Start"}` + "\x00", control.ErrInvalidParameter, false},
		{"wrong type", `{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":5}}` + "\x00", control.ErrInvalidParameter, false},
		{"unknown param", `{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"a","x":1}}` + "\x00", control.ErrInvalidParameter, false},
		{"params not object", `{"method":"io.jackfruit.Jackfruit1.Get","parameters":"a"}` + "\x00", control.ErrInvalidParameter, false},
		// A signal number out of range is the core's to refuse (InvalidArgument), not the adapter's.
		{"signal not a number", `{"method":"io.jackfruit.Jackfruit1.Kill","parameters":{"name":"a","signal":"HUP"}}` + "\x00", control.ErrInvalidParameter, false},
		{"bad since", `{"method":"io.jackfruit.Jackfruit1.Logs","parameters":{"name":"a","since":"yesterday"}}` + "\x00", control.ErrInvalidParameter, false},
		{"bad until", `{"method":"io.jackfruit.Jackfruit1.Logs","parameters":{"name":"a","until":"tomorrow"}}` + "\x00", control.ErrInvalidParameter, false},
		{"events without more", `{"method":"io.jackfruit.Jackfruit1.Events"}` + "\x00", control.ErrExpectedMore, false},
		{"follow without more", `{"method":"io.jackfruit.Jackfruit1.Logs","parameters":{"name":"a","follow":true}}` + "\x00", control.ErrExpectedMore, false},
		{"upgrade", `{"method":"io.jackfruit.Jackfruit1.Status","upgrade":true}` + "\x00", control.ErrInvalidParameter, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.raw()
			r.send(tc.msg)
			rep := r.recv()
			if rep.Error != tc.wantErr {
				t.Fatalf("error = %q (%v), want %q", rep.Error, rep.Parameters, tc.wantErr)
			}
			if tc.closes {
				r.expectClosed()
				return
			}
			// The connection stays usable after a call-level error.
			r.send(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00")
			if rep := r.recv(); rep.Error != "" {
				t.Fatalf("Status after error: %+v", rep)
			}
		})
	}
	// The wrong-type error names the parameter.
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":5}}` + "\x00")
	if rep := r.recv(); rep.Parameters["parameter"] != "name" {
		t.Errorf("InvalidParameter does not name the parameter: %+v", rep)
	}
	// The Go client maps it to InvalidArgument.
	f.m.FailWith["x"] = nil
	_, err := f.client().Get(context.Background(), "no/such")
	if service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("Get: %v", err)
	}
}

func TestOversizedRequest(t *testing.T) {
	f := newFixture(t)
	r := f.raw()
	big := `{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"` + strings.Repeat("a", control.MaxRequestSize+10) + `"}}` + "\x00"
	go r.c.Write([]byte(big)) // the server stops reading part-way; the write may fail
	rep := r.recv()
	if rep.Error != control.ErrInvalidParameter || !strings.Contains(fmt.Sprint(rep.Parameters["message"]), "larger than") {
		t.Fatalf("oversized: %+v", rep)
	}
	r.expectClosed()
	// A request just under the limit is served.
	r2 := f.raw()
	ok := `{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"` + strings.Repeat("a", control.MaxRequestSize-100) + `"}}` + "\x00"
	r2.send(ok)
	if rep := r2.recv(); rep.Error != "io.jackfruit.Jackfruit1.NoSuchContainer" {
		t.Fatalf("large valid request: %+v", rep.Error)
	}
	// The server is still fine for others.
	if _, err := f.client().Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestFramingSplitAndPipelined(t *testing.T) {
	f := newFixture(t)
	r := f.raw()
	msg := `{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00"
	for i := 0; i < len(msg); i++ {
		r.send(msg[i : i+1])
		if i%7 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if rep := r.recv(); rep.Error != "" || rep.Parameters["status"] == nil {
		t.Fatalf("split request: %+v", rep)
	}
	// Three requests in one write are answered in order.
	r.send(`{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"a"}}` + "\x00" +
		`{"method":"org.varlink.service.GetInfo"}` + "\x00" +
		`{"method":"io.jackfruit.Jackfruit1.List","parameters":{"all":true}}` + "\x00")
	if rep := r.recv(); rep.Error != "io.jackfruit.Jackfruit1.NoSuchContainer" {
		t.Fatalf("1st: %+v", rep)
	}
	if rep := r.recv(); rep.Parameters["vendor"] != "Jackfruit" {
		t.Fatalf("2nd: %+v", rep)
	}
	if rep := r.recv(); rep.Parameters["containers"] == nil {
		t.Fatalf("3rd: %+v", rep)
	}
}

func TestHalfSentRequestTimesOut(t *testing.T) {
	f := newFixture(t, func(s *control.Server) { s.RequestTimeout = 300 * time.Millisecond })
	r := f.raw()
	start := time.Now()
	r.send(`{"method":"io.jackfruit.Jack`)
	rep := r.recv()
	if rep.Error != control.ErrInvalidParameter || !strings.Contains(fmt.Sprint(rep.Parameters["message"]), "incomplete") {
		t.Fatalf("half-sent: %+v", rep)
	}
	r.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestIdleTimeoutSparesCallsInProgress(t *testing.T) {
	f := newFixture(t, func(s *control.Server) { s.IdleTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	if _, err := f.client().Start(ctx, startReq("long")); err != nil {
		t.Fatal(err)
	}
	// A Wait lasting several idle periods is not cut off.
	go func() {
		time.Sleep(time.Second)
		f.m.Exit("long", 0, 0)
	}()
	if info, err := f.client().Wait(ctx, "long"); err != nil || info.State != service.StateExited {
		t.Fatalf("Wait across idle timeouts: %+v, %v", info, err)
	}
	// A connection that sends nothing is closed.
	r := f.raw()
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle connection closed after %s", d)
	}
}

func TestOnewayAndHalfClose(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	if _, err := c.Start(context.Background(), startReq("o")); err != nil {
		t.Fatal(err)
	}
	r := f.raw()
	// A oneway call gets no reply; the next call's reply is the first thing read.
	r.send(`{"method":"io.jackfruit.Jackfruit1.Kill","parameters":{"name":"o","signal":15},"oneway":true}` + "\x00")
	// Half-close after the last request: the reply must still arrive.
	r.send(`{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"o"}}` + "\x00")
	r.c.(*net.UnixConn).CloseWrite()
	rep := r.recv()
	ctr, _ := rep.Parameters["container"].(map[string]any)
	if rep.Error != "" || ctr["state"] != "killed" {
		t.Fatalf("after oneway kill: %+v", rep)
	}
	r.expectClosed()
}

func TestConcurrentClients(t *testing.T) {
	f := newFixture(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := control.Dial(f.path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			ctx := context.Background()
			name := fmt.Sprintf("c%03d", i)
			if _, err := c.Start(ctx, startReq(name)); err != nil {
				errs <- err
				return
			}
			if info, err := c.Get(ctx, name); err != nil || info.Name != name {
				errs <- fmt.Errorf("get %s: %v %v", name, info.Name, err)
				return
			}
			if _, err := c.List(ctx, true); err != nil {
				errs <- err
				return
			}
			if _, err := c.Stop(ctx, name, 0); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l, err := f.client().List(context.Background(), true)
	if err != nil || len(l) != n {
		t.Fatalf("List: %d containers, %v", len(l), err)
	}
}

func TestLogsBinaryAndStreaming(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	ctx := context.Background()
	if _, err := c.Start(ctx, startReq("l")); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n', 'x', 0x80}
	f.m.Print("l", service.Stdout, []byte("hello"), false)
	f.m.Print("l", service.Stderr, bin, false)
	f.m.Print("l", service.Stdout, bytes.Repeat([]byte("é"), 8<<10), true)
	f.m.Print("l", service.Stdout, []byte("tail"), false)

	var got []service.LogLine
	if err := c.Logs(ctx, "l", service.LogOptions{}, func(l service.LogLine) error {
		got = append(got, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || string(got[0].Data) != "hello" || !bytes.Equal(got[1].Data, bin) ||
		got[1].Stream != service.Stderr || !got[2].Partial || len(got[2].Data) != 16<<10 || got[0].Time.IsZero() {
		t.Fatalf("logs = %+v", got)
	}
	// Tail.
	got = nil
	c.Logs(ctx, "l", service.LogOptions{Tail: 1}, func(l service.LogLine) error { got = append(got, l); return nil })
	if len(got) != 1 || string(got[0].Data) != "tail" {
		t.Fatalf("tail = %+v", got)
	}

	// Follow: lines printed later arrive, and the call ends when the container exits.
	lines := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- f.client().Logs(ctx, "l", service.LogOptions{Follow: true, Tail: 1}, func(l service.LogLine) error {
			lines <- string(l.Data)
			return nil
		})
	}()
	if s := <-lines; s != "tail" {
		t.Fatalf("first followed line %q", s)
	}
	for i := 0; i < 1000; i++ {
		f.m.Print("l", service.Stdout, []byte(fmt.Sprint(i)), false)
	}
	for i := 0; i < 1000; i++ {
		select {
		case s := <-lines:
			if s != fmt.Sprint(i) {
				t.Fatalf("line %d = %q", i, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d did not arrive", i)
		}
	}
	f.m.Exit("l", 0, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs follow did not end at exit")
	}
}

// The last line of a stream printed without a newline says so on the wire, so that clients
// can reproduce the output exactly; other lines do not carry the field at all.
func TestLogsNoNewline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.client().Start(ctx, startReq("n")); err != nil {
		t.Fatal(err)
	}
	f.m.Print("n", service.Stdout, []byte("with"), false)
	f.m.PrintLine("n", service.LogLine{Time: time.Now(), Stream: service.Stdout, Data: []byte("without\xff"), NoNewline: true})
	var got []service.LogLine
	if err := f.client().Logs(ctx, "n", service.LogOptions{}, func(l service.LogLine) error {
		got = append(got, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].NoNewline || !got[1].NoNewline || string(got[1].Data) != "without\xff" {
		t.Fatalf("logs = %+v", got)
	}
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Logs","parameters":{"name":"n"}}` + "\x00")
	rep := r.recv()
	lines, _ := rep.Parameters["lines"].([]any)
	if len(lines) != 2 {
		t.Fatalf("reply %+v", rep)
	}
	first, _ := lines[0].(map[string]any)
	last, _ := lines[1].(map[string]any)
	if _, ok := first["no_newline"]; ok || last["no_newline"] != true {
		t.Fatalf("no_newline on the wire: %v / %v", first, last)
	}
}

func TestCancellationReachesManager(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.client().Start(ctx, startReq("w")); err != nil {
		t.Fatal(err)
	}
	// Client context cancelled during Wait and Logs follow.
	for _, call := range []func(context.Context, *control.Client) error{
		func(ctx context.Context, c *control.Client) error { _, err := c.Wait(ctx, "w"); return err },
		func(ctx context.Context, c *control.Client) error {
			return c.Logs(ctx, "w", service.LogOptions{Follow: true}, func(service.LogLine) error { return nil })
		},
	} {
		before := f.m.Cancelled()
		c := f.client()
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := call(cctx, c)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want deadline exceeded, got %v", err)
		}
		// The client is unusable afterwards, with a clear error.
		if _, err := c.Status(ctx); err == nil {
			t.Fatal("client usable after a cancelled call")
		}
		waitFor(t, "server-side call cancelled", func() bool { return f.m.Cancelled() == before+1 })
	}
	// A raw client that disappears mid-Wait.
	before := f.m.Cancelled()
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Wait","parameters":{"name":"w"}}` + "\x00")
	time.Sleep(100 * time.Millisecond)
	r.c.Close()
	waitFor(t, "Wait cancelled after client vanished", func() bool { return f.m.Cancelled() == before+1 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	evs := make(chan service.Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- f.client().Events(ctx, func() { close(ready) }, func(e service.Event) error { evs <- e; return nil })
	}()
	<-ready
	c := f.client()
	if _, err := c.Start(ctx, startReq("e")); err != nil {
		t.Fatal(err)
	}
	c.Kill(ctx, "e", syscall.SIGKILL)
	for _, want := range []service.EventType{service.EventStarted, service.EventExited} {
		select {
		case e := <-evs:
			if e.Type != want || e.Container.Name != "e" || e.Time.IsZero() {
				t.Fatalf("event %+v, want %s", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Events after cancel: %v", err)
	}
	waitFor(t, "unsubscribed", func() bool { return f.m.Subscribers() == 0 })
}

func TestCloseEndsStreams(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.client().Start(ctx, startReq("s")); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	evDone := make(chan error, 1)
	go func() {
		evDone <- f.client().Events(ctx, func() { close(ready) }, func(service.Event) error { return nil })
	}()
	<-ready
	waitDone := make(chan error, 1)
	go func() { _, err := f.client().Wait(ctx, "s"); waitDone <- err }()
	logsDone := make(chan error, 1)
	go func() {
		logsDone <- f.client().Logs(ctx, "s", service.LogOptions{Follow: true}, func(service.LogLine) error { return nil })
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for what, ch := range map[string]chan error{"events": evDone, "wait": waitDone, "logs": logsDone} {
		select {
		case err := <-ch:
			t.Logf("%s ended: %v", what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still running after Close", what)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	if _, err := control.Dial(f.path); err == nil {
		t.Error("dial succeeded after Close")
	}
}

func TestPeerCredOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as nobody")
	}
	f := newFixture(t)
	// The test binary may live in a directory nobody cannot enter; copy it somewhere it can.
	dir, err := os.MkdirTemp("", "jf-peercred")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(f.path), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(f.path)), 0o755)
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Once with group 100 as a supplementary group, once after dropping it (setgroups):
	// the core must see the groups the process has, not what the group database says.
	for _, groups := range [][]uint32{{100}, {}} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), peercredEnv+"="+f.path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "ok" {
			t.Fatalf("client as nobody: %v: %s", err, out)
		}
	}
	callers := f.m.Callers()
	if len(callers) != 4 {
		t.Fatalf("the manager saw %d calls, want 4: %+v", len(callers), callers)
	}
	for i, c := range callers {
		want := fmt.Sprint([]uint32{100})
		if i >= 2 {
			want = fmt.Sprint([]uint32{})
		}
		if c.UID != 65534 || c.GID != 65534 || c.PID == 0 || !c.GroupsKnown || fmt.Sprint(c.Groups) != want {
			t.Errorf("call %d: the manager saw %+v, want uid/gid 65534, a pid and groups %s", i, c, want)
		}
	}
}

// TestInterfaceDescription parses the served IDL with the reference Go varlink parser and
// checks it names exactly the methods the server handles and every error kind.
func TestInterfaceDescription(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	desc, err := c.GetInterfaceDescription(context.Background(), control.InterfaceName)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := idl.New(desc)
	if err != nil {
		t.Fatalf("IDL does not parse: %v", err)
	}
	if parsed.Name != control.InterfaceName {
		t.Fatalf("IDL name %q", parsed.Name)
	}
	want := []string{"Start", "Run", "Stop", "Kill", "Remove", "Get", "List", "Wait", "Logs", "Events", "Status", "Exec", "Attach", "Top", "Stats"}
	var got []string
	for _, m := range parsed.Methods {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("IDL methods %v, want %v", got, want)
	}
	// Every IDL method is served (no MethodNotFound).
	r := f.raw()
	for _, m := range want {
		r.send(fmt.Sprintf(`{"method":"%s.%s","parameters":{},"oneway":false}`+"\x00", control.InterfaceName, m))
		if rep := r.recv(); rep.Error == control.ErrMethodNotFound {
			t.Errorf("%s: not served", m)
		}
	}
	var errs []string
	for _, e := range parsed.Errors {
		errs = append(errs, e.Name)
	}
	if len(errs) != 9 {
		t.Errorf("IDL errors %v", errs)
	}
	sd, err := c.GetInterfaceDescription(context.Background(), "org.varlink.service")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idl.New(sd); err != nil {
		t.Fatalf("org.varlink.service IDL: %v", err)
	}
	if _, err := c.GetInterfaceDescription(context.Background(), "com.example.Nope"); err == nil {
		t.Error("unknown interface described")
	}
}

// TestReferenceVarlinkClient talks to the server with the varlink project's own Go client,
// an independent implementation of the framing.
func TestReferenceVarlinkClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vc, err := varlink.NewConnection(ctx, "unix:"+f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	var vendor, product, version, url string
	var ifaces []string
	if err := vc.GetInfo(ctx, &vendor, &product, &version, &url, &ifaces); err != nil {
		t.Fatal(err)
	}
	if vendor != "Jackfruit" || len(ifaces) != 2 || ifaces[1] != control.InterfaceName {
		t.Fatalf("GetInfo: %s %s %s %v", vendor, product, version, ifaces)
	}
	var out struct {
		Container control.Container `json:"container"`
	}
	err = vc.Call(ctx, "io.jackfruit.Jackfruit1.Start", map[string]any{"name": "v", "command": []string{"/bin/true"}}, &out)
	if err != nil || out.Container.Name != "v" || out.Container.SoftLimit != service.DefaultSoftLimit {
		t.Fatalf("Start via reference client: %+v %v", out, err)
	}
	err = vc.Call(ctx, "io.jackfruit.Jackfruit1.Get", map[string]any{"name": "zzz"}, &out)
	var ve *varlink.Error
	if !errors.As(err, &ve) || ve.Name != "io.jackfruit.Jackfruit1.NoSuchContainer" {
		t.Fatalf("Get unknown via reference client: %v", err)
	}
	// Streaming with "more": Logs in batches ending with a reply without continues.
	f.m.Print("v", service.Stdout, []byte("one"), false)
	f.m.Exit("v", 0, 0)
	recv, err := vc.Send(ctx, "io.jackfruit.Jackfruit1.Logs", map[string]any{"name": "v", "follow": true}, varlink.More)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for {
		var lo struct {
			Lines []control.LogLine `json:"lines"`
		}
		flags, err := recv(ctx, &lo)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lo.Lines {
			texts = append(texts, l.Text)
		}
		if flags&varlink.Continues == 0 {
			break
		}
	}
	if strings.Join(texts, ",") != "one" {
		t.Fatalf("streamed lines %v", texts)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		f := newFixture(t)
		for i := 0; i < 20; i++ {
			c, err := control.Dial(f.path)
			if err != nil {
				t.Fatal(err)
			}
			c.Status(context.Background())
			c.Close()
		}
		f.srv.Close()
		<-f.done
		f.done <- nil // for the cleanup
	}()
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base+1 })
}

func TestDialErrorNamesSocket(t *testing.T) {
	_, err := control.Dial("/nonexistent/jf.sock")
	if err == nil {
		t.Fatal("dial succeeded")
	}
	var de *control.DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "/nonexistent/jf.sock") ||
		!strings.Contains(err.Error(), "systemctl start jackfruit.socket") {
		t.Fatalf("dial error: %v", err)
	}
}

func TestListenUnixRefusesLiveSocket(t *testing.T) {
	f := newFixture(t)
	if _, err := control.ListenUnix(f.path, 0o660); err == nil || !strings.Contains(err.Error(), "another supervisor") {
		t.Fatalf("second listen: %v", err)
	}
	file := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(file, nil, 0o644)
	if _, err := control.ListenUnix(file, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen on a file: %v", err)
	}
}

func TestClientReportsVanishedServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			bufio.NewReader(c).ReadBytes(0) // read the request, then hang up without a reply
			c.Close()
		}
	}()
	c, err := control.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "closed the connection during io.jackfruit.Jackfruit1.Status") {
		t.Fatalf("Status against a vanishing server: %v", err)
	}
}

// Connections beyond MaxConns are answered with an error and closed; the ones already open
// keep working, and a slot freed is taken again.
func TestMaxConns(t *testing.T) {
	f := newFixture(t, func(s *control.Server) { s.MaxConns = 2 })
	a, b := f.raw(), f.raw()
	a.send(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00")
	b.send(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00")
	a.recv()
	b.recv()
	c := f.raw()
	if rep := c.recv(); rep.Error != "io.jackfruit.Jackfruit1.Internal" || !strings.Contains(fmt.Sprint(rep.Parameters["message"]), "too many client connections (2)") {
		t.Fatalf("third connection: %+v", rep)
	}
	c.expectClosed()
	a.send(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00")
	if rep := a.recv(); rep.Error != "" {
		t.Fatalf("open connection after a refusal: %+v", rep)
	}
	a.c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// Until the server has seen a's close, it still refuses: it writes the refusal and
		// closes at once, so the write below may already fail (EPIPE) or the read find the
		// refusal or the close. Each of those means "not yet", not a failure.
		d := f.raw()
		d.c.SetDeadline(time.Now().Add(5 * time.Second))
		var rep wireReply
		_, err := d.c.Write([]byte(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00"))
		if err == nil {
			var b []byte
			if b, err = d.r.ReadBytes(0); err == nil {
				err = json.Unmarshal(b[:len(b)-1], &rep)
			}
		}
		if err == nil && rep.Error == "" {
			break
		}
		d.c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a freed slot is not reused: %+v, %v", rep, err)
		}
	}
}

// Partly received requests share one cap: past it a request is refused, and a small request
// (within its connection's first 4 KiB) is still served.
func TestBufferedBytesCap(t *testing.T) {
	f := newFixture(t, func(s *control.Server) { s.MaxBuffered = 256 << 10 })
	head := `{"method":"io.jackfruit.Jackfruit1.Get","parameters":{"name":"`
	// Two requests of 200 KiB that do not end: the cap holds one of them, not both.
	conns := []*raw{f.raw(), f.raw()}
	type got struct {
		i   int
		rep wireReply
	}
	replies := make(chan got, 2)
	for i, r := range conns {
		go r.c.Write([]byte(head + strings.Repeat("a", 200<<10)))
		go func() {
			r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := r.r.ReadBytes(0)
			var rep wireReply
			if len(b) > 0 {
				json.Unmarshal(b[:len(b)-1], &rep)
			}
			replies <- got{i, rep}
		}()
	}
	first := <-replies
	if first.rep.Error != "io.jackfruit.Jackfruit1.Internal" || !strings.Contains(fmt.Sprint(first.rep.Parameters["message"]), "too much unfinished request data") {
		t.Fatalf("one of two large unfinished requests: %+v", first.rep)
	}
	small := f.raw()
	small.send(`{"method":"io.jackfruit.Jackfruit1.Status"}` + "\x00")
	if rep := small.recv(); rep.Error != "" {
		t.Fatalf("small request while the cap is taken: %+v", rep)
	}
	// The other one completes its request and is answered.
	conns[1-first.i].send(`"}}` + "\x00")
	if second := <-replies; second.rep.Error != "io.jackfruit.Jackfruit1.NoSuchContainer" && second.rep.Error != "org.varlink.service.InvalidParameter" {
		t.Fatalf("the request within the cap: %+v", second.rep)
	}
	// Its buffer went back to the cap: another large request fits.
	third := f.raw()
	third.send(head + strings.Repeat("a", 200<<10) + `"}}` + "\x00")
	if rep := third.recv(); strings.Contains(fmt.Sprint(rep.Parameters["message"]), "unfinished") {
		t.Fatalf("the cap was not given back: %+v", rep)
	}
}

// A stream ended by a restart says so (the client reconnects); one ended by a stop does not.
func TestEventsEndOnRestart(t *testing.T) {
	for _, restart := range []bool{false, true} {
		f := newFixture(t)
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- f.client().Events(context.Background(), func() { close(ready) }, func(service.Event) error { return nil })
		}()
		<-ready
		if restart {
			f.srv.Restarting()
		}
		f.srv.Close()
		select {
		case err := <-done:
			if restart && !errors.Is(err, control.ErrSupervisorRestarting) || !restart && err != nil {
				t.Errorf("restart=%v: Events ended with %v", restart, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("restart=%v: Events still running after Close", restart)
		}
	}
}

// goroutinesIn lists the goroutines whose stacks mention any of funcs.
func goroutinesIn(funcs ...string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// When Close returns, every goroutine of every connection has returned: the dispatcher, its
// reader, and the hang-up watcher of a half-closed client with a call in progress. Checked
// at once, not eventually: "awaited" means nothing is left to finish later.
func TestCloseAwaitsConnectionGoroutines(t *testing.T) {
	// Repeated: a goroutine that merely ends soon after Close would slip through once.
	for i := 0; i < 30; i++ {
		t.Run(strconv.Itoa(i), closeAwaitsConnectionGoroutines)
		if t.Failed() {
			return
		}
	}
}

func closeAwaitsConnectionGoroutines(t *testing.T) {
	f := newFixture(t)
	if _, err := f.client().Start(context.Background(), startReq("w")); err != nil {
		t.Fatal(err)
	}
	f.raw() // idle
	partial := f.raw()
	partial.send(`{"method":"io.jackfruit.Jackfruit1.Sta`)
	waiting := f.raw()
	waiting.send(`{"method":"io.jackfruit.Jackfruit1.Wait","parameters":{"name":"w"}}` + "\x00")
	waiting.c.(*net.UnixConn).CloseWrite() // half-close: the reader hands over to watchHangup
	waitFor(t, "a hang-up watcher", func() bool { return len(goroutinesIn("control.watchHangup")) > 0 })
	f.srv.Close()
	if left := goroutinesIn("control.(*conn).readLoop", "control.watchHangup", "control.(*Server).serveConn"); len(left) > 0 {
		t.Fatalf("%d connection goroutines still running after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// Run is start, output and end in one call: the lines arrive as they are printed, the final
// reply carries the container in its final state, and with remove it is gone afterwards.
func TestRun(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	type result struct {
		info service.ContainerInfo
		err  error
	}
	lines := make(chan string, 100)
	done := make(chan result, 1)
	go func() {
		info, err := f.client().Run(ctx, service.StartRequest{Name: "r", Command: []string{"/bin/true"}, Remove: true}, func(service.ContainerInfo) { lines <- "started" }, func(l service.LogLine) error {
			lines <- string(l.Data)
			return nil
		})
		done <- result{info, err}
	}()
	c := f.client()
	select {
	case s := <-lines:
		if s != "started" {
			t.Fatalf("first callback %q, want started", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not report the start")
	}
	for i := 0; i < 100; i++ {
		f.m.Print("r", service.Stdout, []byte(fmt.Sprint(i)), false)
	}
	for i := 0; i < 100; i++ {
		select {
		case s := <-lines:
			if s != fmt.Sprint(i) {
				t.Fatalf("line %d = %q", i, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d did not arrive", i)
		}
	}
	f.m.Exit("r", 3, 0)
	select {
	case r := <-done:
		if r.err != nil || r.info.State != service.StateExited || r.info.ExitCode != 3 || r.info.Name != "r" {
			t.Fatalf("Run = %+v, %v", r.info, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end at exit")
	}
	if _, err := c.Get(ctx, "r"); service.KindOf(err) != service.KindNoSuchContainer {
		t.Errorf("after Run with remove: Get = %v", err)
	}

	// Errors of the start come back as they do from Start, and Run needs more.
	if _, err := c.Run(ctx, service.StartRequest{Name: "bad/name", Command: []string{"x"}}, func(service.ContainerInfo) {}, func(service.LogLine) error { return nil }); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("Run with a bad name: %v", err)
	}
	r := f.raw()
	r.send(`{"method":"io.jackfruit.Jackfruit1.Run","parameters":{"name":"x","command":["/bin/true"]}}` + "\x00")
	if rep := r.recv(); rep.Error != control.ErrExpectedMore {
		t.Errorf("Run without more: %+v", rep)
	}
}
