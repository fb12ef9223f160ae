// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunInPrivateJournal(m)) }

// testFields returns unique fields per test so journal queries see only that test's entries.
func testFields(t testing.TB) Fields {
	sum := sha256.Sum256([]byte(t.Name() + time.Now().String()))
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return Fields{Name: name + "-" + hex.EncodeToString(sum[:3]), ID: hex.EncodeToString(sum[:])}
}

func openJournal(t testing.TB) *Journal {
	t.Helper()
	testutil.RequireJournal(t)
	j, err := OpenJournal()
	if err != nil {
		t.Fatalf("OpenJournal: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func openLog(t testing.TB, max int64, f Fields, j *Journal) (*ContainerLog, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "container.log")
	c, err := OpenContainerLog(path, max, f, j)
	if err != nil {
		t.Fatalf("OpenContainerLog: %v", err)
	}
	return c, path
}

// readAll returns every piece Read delivers.
func readAll(t testing.TB, c *ContainerLog, o service.LogOptions) []service.LogLine {
	t.Helper()
	var out []service.LogLine
	if err := c.Read(context.Background(), o, func(l service.LogLine) error {
		out = append(out, l)
		return nil
	}); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

// joined re-joins pieces into whole lines per stream.
func joined(t testing.TB, pieces []service.LogLine) []service.LogLine {
	t.Helper()
	var out []service.LogLine
	join, flush := JoinPartial(0, func(l service.LogLine) error { out = append(out, l); return nil })
	for _, p := range pieces {
		if err := join(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

func texts(lines []service.LogLine) []string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = string(l.Data)
	}
	return s
}

func TestJournalFieldsAndPriority(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	c, _ := openLog(t, 0, f, j)
	if err := c.Copy(strings.NewReader("hello stdout\n\nlast without newline"), service.Stdout); err != nil {
		t.Fatal(err)
	}
	if err := c.Copy(strings.NewReader("oops on stderr\n"), service.Stderr); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	entries := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	if len(entries) != 4 {
		t.Fatalf("want 4 journal entries, got %d: %v", len(entries), entries)
	}
	want := []struct{ msg, prio string }{
		{"hello stdout", "6"}, {"", "6"}, {"last without newline", "6"}, {"oops on stderr", "3"},
	}
	for i, e := range entries {
		for k, v := range map[string]string{
			"MESSAGE":           want[i].msg,
			"PRIORITY":          want[i].prio,
			"CONTAINER":         f.Name,
			"CONTAINER_NAME":    f.Name,
			"CONTAINER_ID":      f.ID[:12],
			"CONTAINER_ID_FULL": f.ID,
			"SYSLOG_IDENTIFIER": f.Name,
		} {
			if e[k] != v {
				t.Errorf("entry %d: %s=%q, want %q", i, k, e[k], v)
			}
		}
		if _, ok := e["CONTAINER_PARTIAL_MESSAGE"]; ok {
			t.Errorf("entry %d: unexpected CONTAINER_PARTIAL_MESSAGE", i)
		}
	}
	// The same lines from the file.
	lines := readAll(t, c, service.LogOptions{})
	got := texts(lines)
	wantText := []string{"hello stdout", "", "last without newline", "oops on stderr"}
	if fmt.Sprint(got) != fmt.Sprint(wantText) {
		t.Fatalf("file lines %q, want %q", got, wantText)
	}
	if lines[3].Stream != service.Stderr || lines[0].Stream != service.Stdout {
		t.Fatalf("streams wrong: %+v", lines)
	}
}

func TestLongLineSplitAndReassembled(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	c, _ := openLog(t, 4<<20, f, j)
	line := make([]byte, 1<<20)
	for i := range line {
		line[i] = 'a' + byte(i%26)
	}
	copy(line[len(line)-10:], "0123456789")
	input := append(append([]byte("before\n"), line...), []byte("\nafter\n")...)
	// A reader returning small odd-sized chunks exercises pieces spanning reads.
	if err := c.Copy(&chunkReader{r: bytes.NewReader(input), n: 7000}, service.Stdout); err != nil {
		t.Fatal(err)
	}
	c.Close()

	pieces := readAll(t, c, service.LogOptions{})
	if len(pieces) != 2+64 {
		t.Fatalf("want 66 pieces (1 MiB = 64 x 16 KiB), got %d", len(pieces))
	}
	for i, p := range pieces[1:65] {
		if len(p.Data) != MaxLinePiece || p.Partial != (i < 63) {
			t.Fatalf("piece %d: len %d partial %v", i, len(p.Data), p.Partial)
		}
	}
	whole := joined(t, pieces)
	if len(whole) != 3 || !bytes.Equal(whole[1].Data, line) || whole[1].Partial ||
		string(whole[0].Data) != "before" || string(whole[2].Data) != "after" {
		t.Fatalf("re-joined lines wrong: %d lines", len(whole))
	}

	entries := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	if len(entries) != 66 {
		t.Fatalf("want 66 journal entries, got %d", len(entries))
	}
	var got []byte
	for i, e := range entries[1:65] {
		partial, has := e["CONTAINER_PARTIAL_MESSAGE"]
		if (i < 63) != has || (has && partial != "true") {
			t.Fatalf("journal piece %d: CONTAINER_PARTIAL_MESSAGE=%q present=%v", i, partial, has)
		}
		got = append(got, e["MESSAGE"]...)
	}
	if !bytes.Equal(got, line) {
		t.Fatalf("journal pieces do not re-join to the line (got %d bytes)", len(got))
	}
}

func TestExactPieceSizeHasNoEmptyPiece(t *testing.T) {
	c, _ := openLog(t, 0, testFields(t), nil)
	line := bytes.Repeat([]byte("x"), 2*MaxLinePiece)
	if err := c.Copy(bytes.NewReader(append(line, '\n')), service.Stdout); err != nil {
		t.Fatal(err)
	}
	c.Close()
	p := readAll(t, c, service.LogOptions{})
	if len(p) != 2 || !p[0].Partial || p[1].Partial || len(p[1].Data) != MaxLinePiece {
		t.Fatalf("a 32 KiB line must be 2 pieces, the last final: %d pieces", len(p))
	}
}

func TestBinaryOutputSurvives(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	c, path := openLog(t, 0, f, j)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	// stdout carries the 256 values once; stderr twice with a NUL-only line between.
	if err := c.Copy(bytes.NewReader(all), service.Stdout); err != nil {
		t.Fatal(err)
	}
	errInput := append(append(append([]byte{}, all...), 0, 0, '\n'), all...)
	if err := c.Copy(bytes.NewReader(errInput), service.Stderr); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// File: joining a stream's lines with '\n' gives back exactly what was written.
	streams := map[service.Stream][]byte{}
	err := ReadFile(context.Background(), path, service.LogOptions{}, func(l service.LogLine) error {
		if b, ok := streams[l.Stream]; ok {
			streams[l.Stream] = append(append(b, '\n'), l.Data...)
		} else {
			streams[l.Stream] = append([]byte{}, l.Data...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(streams[service.Stdout], all) || !bytes.Equal(streams[service.Stderr], errInput) {
		t.Fatalf("file lost bytes:\nstdout %x\nstderr %x", streams[service.Stdout], streams[service.Stderr])
	}

	// Journal: the same, from MESSAGE fields (binary values come back as byte arrays).
	entries := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	js := map[string][]string{}
	for _, e := range entries {
		js[e["PRIORITY"]] = append(js[e["PRIORITY"]], e["MESSAGE"])
	}
	if got := strings.Join(js["6"], "\n"); got != string(all) {
		t.Fatalf("journal stdout differs: %x", got)
	}
	if got := strings.Join(js["3"], "\n"); got != string(errInput) {
		t.Fatalf("journal stderr differs: %x", got)
	}
}

func TestJournalLineWithNewlineUsesBinaryForm(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	msg := "two\nlines\x00and a NUL"
	if err := j.Line(f, service.LogLine{Stream: service.Stderr, Data: []byte(msg), Partial: true}); err != nil {
		t.Fatal(err)
	}
	e := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	if len(e) != 1 || e[0]["MESSAGE"] != msg || e[0]["PRIORITY"] != "3" || e[0]["CONTAINER_PARTIAL_MESSAGE"] != "true" {
		t.Fatalf("entry %v", e)
	}
	if err := j.Line(Fields{Name: "x", ID: "abc"}, service.LogLine{}); service.KindOf(err) != service.KindInvalidArgument {
		t.Fatalf("bad ID accepted: %v", err)
	}
}

func TestOpenJournalAbsent(t *testing.T) {
	_, err := OpenJournalAt(filepath.Join(t.TempDir(), "no-socket"), 0)
	if err == nil || !strings.Contains(err.Error(), "journald is not available") {
		t.Fatalf("want a clear error, got %v", err)
	}
}

func TestTailSinceFollow(t *testing.T) {
	c, _ := openLog(t, 0, testFields(t), nil)
	var b strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := c.Copy(strings.NewReader(b.String()), service.Stdout); err != nil {
		t.Fatal(err)
	}
	if got := texts(readAll(t, c, service.LogOptions{Tail: 3})); fmt.Sprint(got) != "[line 7 line 8 line 9]" {
		t.Fatalf("tail 3: %q", got)
	}
	if got := readAll(t, c, service.LogOptions{Tail: 100}); len(got) != 10 {
		t.Fatalf("tail 100 of 10: %d lines", len(got))
	}
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	if err := c.Copy(strings.NewReader("late 1\nlate 2\n"), service.Stderr); err != nil {
		t.Fatal(err)
	}
	if got := texts(readAll(t, c, service.LogOptions{Since: mark})); fmt.Sprint(got) != "[late 1 late 2]" {
		t.Fatalf("since: %q", got)
	}
	if got := texts(readAll(t, c, service.LogOptions{Since: mark, Tail: 1})); fmt.Sprint(got) != "[late 2]" {
		t.Fatalf("since+tail: %q", got)
	}
	// Tail applies to whole lines: a 40 KiB line is 3 pieces, all delivered.
	long := strings.Repeat("L", 40<<10)
	if err := c.Copy(strings.NewReader(long+"\nshort\n"), service.Stdout); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, c, service.LogOptions{Tail: 2})
	if len(got) != 4 || !got[0].Partial || string(joined(t, got)[0].Data) != long {
		t.Fatalf("tail over a long line: %d pieces", len(got))
	}

	// Follow: history, then new lines as written, then the end at Close.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lines := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Read(ctx, service.LogOptions{Tail: 1, Follow: true}, func(l service.LogLine) error {
			lines <- string(l.Data)
			return nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("follow got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("follow: %q not delivered", want)
		}
	}
	expect("short")
	pr, pw := io.Pipe()
	copyDone := make(chan error, 1)
	go func() { copyDone <- c.Copy(pr, service.Stdout) }()
	for i := 0; i < 3; i++ {
		fmt.Fprintf(pw, "live %d\n", i)
		expect(fmt.Sprintf("live %d", i))
	}
	select {
	case err := <-done:
		t.Fatalf("follow ended before Close: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	pw.Write([]byte("unterminated"))
	pw.Close()
	if err := <-copyDone; err != nil {
		t.Fatal(err)
	}
	c.Close()
	expect("unterminated")
	if err := <-done; err != nil {
		t.Fatalf("follow after Close: %v", err)
	}

	// A follower of a closed log ends at once; ctx ends a follower of an open one.
	if got := readAll(t, c, service.LogOptions{Follow: true}); len(got) < 10 {
		t.Fatalf("follow of closed log: %d", len(got))
	}
	c2, _ := openLog(t, 0, testFields(t), nil)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := c2.Read(ctx2, service.LogOptions{Follow: true}, func(service.LogLine) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("follow with ctx deadline returned %v", err)
	}
	stop := errors.New("stop")
	if err := c.Read(context.Background(), service.LogOptions{}, func(service.LogLine) error { return stop }); err != stop {
		t.Fatalf("fn error not returned: %v", err)
	}
}

func TestRotation(t *testing.T) {
	const max = 8 << 10
	c, path := openLog(t, max, testFields(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var followed []string
	var nfollowed atomic.Int64
	followDone := make(chan error, 1)
	go func() {
		followDone <- c.Read(ctx, service.LogOptions{Follow: true}, func(l service.LogLine) error {
			followed = append(followed, string(l.Data))
			nfollowed.Add(1)
			return nil
		})
	}()
	pr, pw := io.Pipe()
	copyDone := make(chan error, 1)
	go func() { copyDone <- c.Copy(pr, service.Stdout) }()
	const n = 2000
	for i := 0; i < n; i++ {
		fmt.Fprintf(pw, "rotating line %05d\n", i)
		// Each file holds about 200 lines. A follower more than two rotations behind may
		// lose lines by design, so let it catch up every 50 lines: the test is about
		// following across rotations, not about a race with the writer.
		if i%50 == 49 {
			for deadline := time.Now().Add(20 * time.Second); nfollowed.Load() < int64(i+1); {
				if time.Now().After(deadline) {
					t.Fatalf("follower stuck at %d of %d lines", nfollowed.Load(), i+1)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	pw.Close()
	if err := <-copyDone; err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > max {
			t.Fatalf("%s is %d bytes, over the cap %d", p, fi.Size(), max)
		}
	}
	got := texts(readAll(t, c, service.LogOptions{}))
	if len(got) == 0 || len(got) >= n || got[len(got)-1] != fmt.Sprintf("rotating line %05d", n-1) {
		t.Fatalf("after rotation: %d lines, last %q", len(got), got[len(got)-1])
	}
	first := 0
	fmt.Sscanf(got[0], "rotating line %d", &first)
	for i, l := range got {
		if want := fmt.Sprintf("rotating line %05d", first+i); l != want {
			t.Fatalf("line %d = %q, want %q (not contiguous)", i, l, want)
		}
	}
	c.Close()
	if err := <-followDone; err != nil {
		t.Fatal(err)
	}
	if len(followed) != n {
		t.Fatalf("follower across rotations saw %d of %d lines", len(followed), n)
	}
	for i, l := range followed {
		if want := fmt.Sprintf("rotating line %05d", i); l != want {
			t.Fatalf("followed line %d = %q, want %q", i, l, want)
		}
	}
	// ReadFile sees the same as Read.
	var fromFile []string
	if err := ReadFile(context.Background(), path, service.LogOptions{}, func(l service.LogLine) error {
		fromFile = append(fromFile, string(l.Data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fromFile) != fmt.Sprint(got) {
		t.Fatal("ReadFile differs from Read")
	}
}

func TestConcurrentStreamsLoseNothing(t *testing.T) {
	const n = 100000
	testutil.RequireJournal(t)
	// This test is about order and completeness, not about a stalled journald: give journald
	// ample time even on an overloaded machine rather than the default 5 s after which lines drop.
	j, err := OpenJournalAt(DefaultJournalSocket, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	f := testFields(t)
	c, _ := openLog(t, 256<<20, f, j)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []service.Stream{service.Stdout, service.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); errs <- c.Copy(r, s); r.Close() }()
		go func() {
			defer wg.Done()
			defer w.Close()
			var b bytes.Buffer
			for i := 0; i < n; i++ {
				fmt.Fprintf(&b, "%s %06d\n", s, i)
				if b.Len() > 3000 || i == n-1 {
					w.Write(b.Bytes())
					b.Reset()
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	next := map[service.Stream]int{}
	for _, l := range readAll(t, c, service.LogOptions{}) {
		if want := fmt.Sprintf("%s %06d", l.Stream, next[l.Stream]); string(l.Data) != want {
			t.Fatalf("file: got %q, want %q", l.Data, want)
		}
		next[l.Stream]++
	}
	if next[service.Stdout] != n || next[service.Stderr] != n {
		t.Fatalf("file: %v lines, want %d per stream", next, n)
	}
	if err := testutil.JournalSync(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []service.Stream{service.Stdout, service.Stderr} {
		out, err := testutil.JournalCtl("-o", "cat", "CONTAINER="+f.Name, "PRIORITY="+string(priorityOf(s)))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != n {
			t.Fatalf("journal %s: %d lines, want %d (dropped %d)", s, len(lines), n, j.Dropped())
		}
		for i, l := range lines {
			if want := fmt.Sprintf("%s %06d", s, i); l != want {
				t.Fatalf("journal %s line %d = %q, want %q", s, i, l, want)
			}
		}
	}
}

// printed reproduces what a stream wrote from its pieces: a newline after each piece that
// is neither partial nor the stream's last line without one (the rule `jackfruit logs` uses).
func printed(lines []service.LogLine) map[service.Stream]string {
	out := map[service.Stream]string{}
	for _, l := range lines {
		out[l.Stream] += string(l.Data)
		if !l.Partial && !l.NoNewline {
			out[l.Stream] += "\n"
		}
	}
	return out
}

func TestNoNewlineAtEnd(t *testing.T) {
	c, path := openLog(t, 0, testFields(t), nil)
	long := strings.Repeat("y", MaxLinePiece+3)
	inputs := map[service.Stream]string{
		service.Stdout: "one\n\nno newline",
		service.Stderr: "err\n" + long, // ends without a newline after a partial piece
	}
	for _, s := range []service.Stream{service.Stdout, service.Stderr} {
		if err := c.Copy(strings.NewReader(inputs[s]), s); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	lines := readAll(t, c, service.LogOptions{})
	got := printed(lines)
	if fmt.Sprint(got) != fmt.Sprint(inputs) {
		t.Fatalf("output not reproduced: %q", got)
	}
	n := 0
	for _, l := range lines {
		if l.NoNewline {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d lines marked NoNewline, want 2 (one per stream end without newline): %+v", n, lines)
	}
	// Joined lines keep the mark; Tail and ReadFile deliver it too.
	for _, l := range joined(t, lines) {
		if l.Stream == service.Stderr && string(l.Data) == long && !l.NoNewline {
			t.Errorf("joined long line lost NoNewline")
		}
	}
	if tl := readAll(t, c, service.LogOptions{Tail: 1}); len(tl) != 2 || printed(tl)[service.Stderr] != long || !tl[1].NoNewline {
		t.Errorf("tail 1: %d pieces, %+v", len(tl), printed(tl))
	}
	var fromFile []service.LogLine
	if err := ReadFile(context.Background(), path, service.LogOptions{}, func(l service.LogLine) error {
		fromFile = append(fromFile, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(printed(fromFile)) != fmt.Sprint(got) {
		t.Errorf("ReadFile differs: %q", printed(fromFile))
	}
}

// A file written before the no-newline flag existed reads as before: every final piece ends
// a line.
func TestOldFileWithoutNoNewlineFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.log")
	rec := func(flags byte, data string) []byte {
		b := []byte{0xA5, flags, 0, 0}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
		b = binary.LittleEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
		return append(b, data...)
	}
	file := []byte("JFLOG01\n")
	file = append(file, rec(0, "out")...)
	file = append(file, rec(1, "err")...)
	file = append(file, rec(2, "part")...)
	file = append(file, rec(0, "ial")...)
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []service.LogLine
	if err := ReadFile(context.Background(), path, service.LogOptions{}, func(l service.LogLine) error {
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := printed(lines); got[service.Stdout] != "out\npartial\n" || got[service.Stderr] != "err\n" {
		t.Fatalf("old file read as %q", got)
	}
}

func TestReopenAppendsAndCutsTornRecord(t *testing.T) {
	f := testFields(t)
	c, path := openLog(t, 0, f, nil)
	c.Copy(strings.NewReader("one\ntwo\n"), service.Stdout)
	c.Close()
	// Simulate a crash in the middle of a record.
	torn := appendRecord(nil, false, false, false, time.Now().UnixNano(), []byte("torn record"))
	fh, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	fh.Write(torn[:20])
	fh.Close()
	c2, err := OpenContainerLog(path, 0, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Copy(strings.NewReader("three\n"), service.Stderr)
	c2.Close()
	if got := texts(readAll(t, c2, service.LogOptions{})); fmt.Sprint(got) != "[one two three]" {
		t.Fatalf("after reopen: %q", got)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("not a log, keep me\n"), 0o644)
	if _, err := OpenContainerLog(other, 0, testFields(t), nil); err == nil || !strings.Contains(err.Error(), "not a jackfruit log file") {
		t.Fatalf("foreign file: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "not a log, keep me\n" {
		t.Fatal("foreign file was modified")
	}
	if _, err := OpenContainerLog(filepath.Join(dir, "a.log"), 100, testFields(t), nil); service.KindOf(err) != service.KindInvalidArgument {
		t.Fatalf("tiny cap: %v", err)
	}
	if _, err := OpenContainerLog(filepath.Join(dir, "b.log"), 0, Fields{Name: "bad\nname", ID: strings.Repeat("a", 64)}, nil); service.KindOf(err) != service.KindInvalidArgument {
		t.Fatalf("bad name: %v", err)
	}
	c, _ := openLog(t, 0, testFields(t), nil)
	if err := c.Copy(strings.NewReader("x\n"), "stdin"); service.KindOf(err) != service.KindInvalidArgument {
		t.Fatalf("bad stream: %v", err)
	}
	if err := ReadFile(context.Background(), filepath.Join(dir, "missing.log"), service.LogOptions{}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestEventsAndCatalog(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	info := service.ContainerInfo{
		Name: f.Name, ID: f.ID, Pid: 4242, Command: []string{"/memory_hog", "80"}, Rootfs: "/var/lib/jackfruit/rootfs",
		SoftLimit: 40 << 20, HardLimit: 64 << 20, LimitsEnforced: true,
	}
	exited := info
	exited.State, exited.ExitCode, exited.Signal, exited.PeakRSS = service.StateOOMKill, 137, "SIGKILL", 67<<20
	events := []service.Event{
		{Type: service.EventStarted, Container: info},
		{Type: service.EventChanged, Container: info}, // not journaled
		{Type: service.EventSoftLimit, Container: info, RSS: 42598400, Limit: 41943040},
		{Type: service.EventHardLimit, Container: info, RSS: 67174400, Limit: 67108864},
		{Type: service.EventExited, Container: exited},
		{Type: service.EventRemoved, Container: exited},
	}
	for _, ev := range events {
		if err := j.Event(f, ev); err != nil {
			t.Fatalf("Event(%s): %v", ev.Type, err)
		}
	}
	entries := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	want := []map[string]string{
		{"MESSAGE_ID": MessageContainerStarted, "PRIORITY": "6", "CONTAINER_PID": "4242", "CONTAINER_COMMAND": "/memory_hog 80", "SOFT_LIMIT": "41943040", "HARD_LIMIT": "67108864"},
		{"MESSAGE_ID": MessageSoftLimit, "PRIORITY": "4", "RSS": "42598400", "LIMIT": "41943040"},
		{"MESSAGE_ID": MessageHardLimit, "PRIORITY": "3", "RSS": "67174400", "LIMIT": "67108864"},
		{"MESSAGE_ID": MessageContainerExited, "PRIORITY": "3", "CONTAINER_STATE": "killed-by-memory-limit", "EXIT_CODE": "137", "SIGNAL": "SIGKILL", "PEAK_RSS": "70254592"},
		{"MESSAGE_ID": MessageContainerRemoved, "PRIORITY": "6"},
	}
	if len(entries) != len(want) {
		t.Fatalf("want %d event entries, got %d: %v", len(want), len(entries), entries)
	}
	for i, w := range want {
		w["CONTAINER"], w["CONTAINER_NAME"], w["CONTAINER_ID"], w["CONTAINER_ID_FULL"] = f.Name, f.Name, f.ID[:12], f.ID
		w["SYSLOG_IDENTIFIER"] = f.Name // as on the output lines: journalctl -t NAME shows events too
		for k, v := range w {
			if entries[i][k] != v {
				t.Errorf("event %d: %s=%q, want %q", i, k, entries[i][k], v)
			}
		}
		if !strings.Contains(entries[i]["MESSAGE"], f.Name) {
			t.Errorf("event %d: MESSAGE %q does not name the container", i, entries[i]["MESSAGE"])
		}
	}

	// journalctl -x explains each entry from units/jackfruit.catalog.
	testutil.InstallCatalog(t, "../../units/jackfruit.catalog")
	out, err := testutil.JournalCtl("-x", "CONTAINER="+f.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"Subject: Container " + f.Name + " started",
		"Subject: Container " + f.Name + " exceeded its soft memory limit",
		"resident set size of 42598400 bytes",
		"Subject: Container " + f.Name + " was killed at its hard memory limit",
		"Subject: Container " + f.Name + " has finished (killed-by-memory-limit)",
		"Subject: Container " + f.Name + " removed",
		"Defined-By: jackfruit",
	} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("journalctl -x output lacks %q:\n%s", s, out)
		}
	}
	if bytes.Contains(out, []byte("@CONTAINER")) {
		t.Errorf("unsubstituted catalog variable in:\n%s", out)
	}
}

func TestCatalogFile(t *testing.T) {
	// Every MESSAGE_ID has exactly one section with the headers journalctl -x shows.
	data, err := os.ReadFile("../../units/jackfruit.catalog")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	var id string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "-- ") {
			id = strings.TrimPrefix(line, "-- ")
			if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Fatalf("bad catalog id line %q", line)
			}
			if _, dup := sections[id]; dup {
				t.Fatalf("duplicate catalog id %s", id)
			}
			sections[id] = ""
			continue
		}
		if id != "" {
			sections[id] += line + "\n"
		}
	}
	for _, mid := range []string{MessageContainerStarted, MessageContainerExited, MessageSoftLimit,
		MessageHardLimit, MessageContainerRemoved, MessageJournalDropped} {
		s, ok := sections[mid]
		if !ok {
			t.Errorf("catalog lacks MESSAGE_ID %s", mid)
			continue
		}
		if !strings.HasPrefix(s, "Subject: ") || !strings.Contains(s, "\nDefined-By: jackfruit\n") {
			t.Errorf("catalog section %s lacks Subject/Defined-By headers", mid)
		}
	}
	if len(sections) != 6 {
		t.Errorf("catalog has %d sections, want 6", len(sections))
	}
}

func TestStalledJournalDoesNotBlockTheFile(t *testing.T) {
	testutil.RequireJournal(t)
	pid := testutil.JournaldPID()
	j, err := OpenJournalAt(DefaultJournalSocket, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetBatching(false) // one datagram per line fills journald's queue (512) quickly
	f := testFields(t)
	c, _ := openLog(t, 0, f, j)

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)

	const n = 3000
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "stalled %d\n", i)
	}
	start := time.Now()
	if err := c.Copy(strings.NewReader(b.String()), service.Stdout); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Copy took %v with journald stopped; it must not wait on the journal", d)
	}
	if got := len(readAll(t, c, service.LogOptions{})); got != n {
		t.Fatalf("file has %d of %d lines", got, n)
	}
	dropped := j.Dropped()
	if dropped == 0 || dropped >= n {
		t.Fatalf("dropped %d entries, want some but not all (journald's queue holds 512)", dropped)
	}
	resume()
	// Give journald time to drain its queue; the next line goes through and is followed
	// by the notice about the lost ones.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Copy(strings.NewReader("after\n"), service.Stdout); err != nil {
			t.Fatal(err)
		}
		// "after" lines sent before journald drained its queue are dropped too.
		if e := testutil.JournalEntries(t, "MESSAGE_ID="+MessageJournalDropped); len(e) > 0 {
			if got, _ := strconv.ParseUint(e[len(e)-1]["DROPPED"], 10, 64); got < dropped {
				t.Fatalf("notice says %d entries dropped, want at least %d", got, dropped)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notice about %d dropped entries in the journal", dropped)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	entries := testutil.JournalEntries(t, "CONTAINER="+f.Name)
	if want := n - int(dropped); len(entries) < want+1 {
		t.Fatalf("journal has %d entries, want at least %d", len(entries), want+1)
	}
	if entries[0]["MESSAGE"] != "stalled 0" {
		t.Fatalf("first entry %q", entries[0]["MESSAGE"])
	}
}

func TestTailWithInterleavedStreams(t *testing.T) {
	c, _ := openLog(t, 0, testFields(t), nil)
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	done := make(chan error, 2)
	go func() { done <- c.Copy(outR, service.Stdout) }()
	go func() { done <- c.Copy(errR, service.Stderr) }()
	waitRecords := func(n int) {
		t.Helper()
		for i := 0; i < 1000; i++ {
			if len(readAll(t, c, service.LogOptions{})) >= n {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("log never reached %d records", n)
	}
	head := strings.Repeat("h", MaxLinePiece)
	// stdout: a line whose first piece is logged before stderr's e1, its end after.
	outW.Write([]byte(head + "tail-part"))
	waitRecords(1)
	errW.Write([]byte("e1\n"))
	waitRecords(2)

	// While the stdout line is unfinished it counts as the newest line.
	got := readAll(t, c, service.LogOptions{Tail: 1})
	if len(got) != 1 || !got[0].Partial || got[0].Stream != service.Stdout {
		t.Fatalf("tail 1 with an unfinished line: %+v", texts(got))
	}

	outW.Write([]byte("\n"))
	waitRecords(3)
	errW.Write([]byte("e2\n"))
	waitRecords(4)
	outW.Close()
	errW.Close()
	<-done
	<-done
	c.Close()

	for _, tc := range []struct {
		tail int
		want []string
	}{
		{1, []string{"e2"}},
		{2, []string{head, "tail-part", "e2"}},
		{3, []string{head, "e1", "tail-part", "e2"}},
		{0, []string{head, "e1", "tail-part", "e2"}},
	} {
		if got := texts(readAll(t, c, service.LogOptions{Tail: tc.tail})); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("tail %d: got %.40q, want %.40q", tc.tail, got, tc.want)
		}
	}
}

func TestJournalSurvivesJournaldRestart(t *testing.T) {
	j := openJournal(t)
	f := testFields(t)
	c, _ := openLog(t, 0, f, j)
	if err := c.Copy(strings.NewReader("before restart\n"), service.Stdout); err != nil {
		t.Fatal(err)
	}
	testutil.RestartJournald(t)
	if err := c.Copy(strings.NewReader("after restart\n"), service.Stdout); err != nil {
		t.Fatal(err)
	}
	if err := j.Event(f, service.Event{Type: service.EventRemoved}); err != nil {
		t.Fatalf("event after restart: %v", err)
	}
	c.Close()
	var msgs []string
	for _, e := range testutil.JournalEntries(t, "CONTAINER="+f.Name) {
		msgs = append(msgs, e["MESSAGE"])
	}
	if len(msgs) != 3 || msgs[0] != "before restart" || msgs[1] != "after restart" {
		t.Fatalf("journal after a journald restart: %q (dropped %d)", msgs, j.Dropped())
	}
}

// A stream handed from one supervisor to the next: the first stops at its read deadline with
// an unfinished line, the second carries it on; the log shows every line once, whole.
func TestCopyFromDetachAndCarry(t *testing.T) {
	c, _ := openLog(t, 0, testFields(t), nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fmt.Fprint(w, "1\n2\nthree is spl")
	done := make(chan struct{})
	var rest []byte
	var cerr error
	go func() {
		defer close(done)
		rest, cerr = c.CopyFrom(r, service.Stdout, nil)
	}()
	// Let it read what is there, then let go of the stream.
	deadline := time.Now().Add(5 * time.Second)
	for len(readAll(t, c, service.LogOptions{Tail: -1})) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.SetReadDeadline(time.Now())
	<-done
	if !errors.Is(cerr, ErrDetached) || string(rest) != "three is spl" {
		t.Fatalf("CopyFrom at the deadline: rest %q, %v", rest, cerr)
	}
	fmt.Fprint(w, "it\n4\n")
	w.Close()
	r.SetReadDeadline(time.Time{})
	if rest2, err := c.CopyFrom(r, service.Stdout, rest); err != nil || rest2 != nil {
		t.Fatalf("CopyFrom to EOF: %q %v", rest2, err)
	}
	if got := texts(readAll(t, c, service.LogOptions{})); fmt.Sprint(got) != fmt.Sprint([]string{"1", "2", "three is split", "4"}) {
		t.Errorf("log holds %q", got)
	}
	if _, err := c.CopyFrom(strings.NewReader(""), service.Stdout, make([]byte, MaxLinePiece+1)); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("oversized carry: %v", err)
	}
}

// TestUntil: Until keeps the lines read before it, combines with Since and Tail (Tail counts
// the lines Until keeps), and ends a follow at that time although the log stays open.
func TestUntil(t *testing.T) {
	c, _ := openLog(t, 0, testFields(t), nil)
	write := func(s string) {
		t.Helper()
		if err := c.Copy(strings.NewReader(s), service.Stdout); err != nil {
			t.Fatal(err)
		}
	}
	// mark returns a time strictly between the lines written before and after it.
	mark := func() time.Time {
		time.Sleep(5 * time.Millisecond)
		m := time.Now()
		time.Sleep(5 * time.Millisecond)
		return m
	}
	write("a 1\na 2\na 3\n")
	m1 := mark()
	write("b 1\nb 2\n")
	m2 := mark()
	write("c 1\n")
	for _, c2 := range []struct {
		o    service.LogOptions
		want string
	}{
		{service.LogOptions{Until: m1}, "[a 1 a 2 a 3]"},
		{service.LogOptions{Until: m2}, "[a 1 a 2 a 3 b 1 b 2]"},
		{service.LogOptions{Since: m1, Until: m2}, "[b 1 b 2]"},
		{service.LogOptions{Until: m1, Tail: 2}, "[a 2 a 3]"},
		{service.LogOptions{Since: m1, Until: m2, Tail: 1}, "[b 2]"},
		{service.LogOptions{Until: m1.Add(-time.Hour)}, "[]"},
		{service.LogOptions{Since: m2, Until: m1}, "[]"},
		{service.LogOptions{Until: time.Now().Add(time.Hour)}, "[a 1 a 2 a 3 b 1 b 2 c 1]"},
	} {
		if got := texts(readAll(t, c, c2.o)); fmt.Sprint(got) != c2.want {
			t.Errorf("%+v: %q, want %s", c2.o, got, c2.want)
		}
	}

	// Follow with an Until in the past: the history before it, and no waiting.
	start := time.Now()
	if got := texts(readAll(t, c, service.LogOptions{Until: m1, Follow: true})); fmt.Sprint(got) != "[a 1 a 2 a 3]" {
		t.Errorf("follow until the past: %q", got)
	}
	// Follow with an Until ahead: lines written before it, then the end at Until while the
	// log is still open; a line written after Until is not delivered.
	until := time.Now().Add(300 * time.Millisecond)
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Read(context.Background(), service.LogOptions{Since: m2, Until: until, Follow: true}, func(l service.LogLine) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, string(l.Data))
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond)
	write("d 1\n")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow until: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end at Until")
	}
	if time.Now().Before(until) {
		t.Errorf("follow ended before Until")
	}
	write("e 1\n")
	mu.Lock()
	if fmt.Sprint(got) != "[c 1 d 1]" {
		t.Errorf("follow until: %q, want [c 1 d 1]", got)
	}
	mu.Unlock()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("follow until took %v", d)
	}
}
