// SPDX-License-Identifier: Apache-2.0

package logs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

// Benchmarks for `make bench` (bench/run.sh): each op logs benchLines short lines, the
// lines/s metric is what to compare. The journal benchmarks include the time journald needs
// to have written everything (journalctl --sync), because that is the real cost of a line;
// BenchmarkSystemdCat is the yardstick: the same bytes piped into systemd-cat, i.e. journald's
// stream transport, the cheapest way into the journal.
//
//	go test -run '^$' -bench . -benchtime 3x ./service/logs

const benchLines = 100000

func benchInput() []byte {
	var b bytes.Buffer
	for i := 0; i < benchLines; i++ {
		fmt.Fprintf(&b, "container output line %06d with some text\n", i)
	}
	return b.Bytes()
}

// feed writes data into a pipe in 4 KiB writes, as a container would, and returns the read end.
// copyThrough pushes data through one fresh ContainerLog (file, and journal when j is not nil),
// the way a container's stdout reaches the supervisor.
func copyThrough(b *testing.B, path string, f Fields, j *Journal, data []byte) {
	c, err := OpenContainerLog(path, 1<<30, f, j)
	if err != nil {
		b.Fatal(err)
	}
	r := feed(b, data)
	if err := c.Copy(r, service.Stdout); err != nil {
		b.Fatal(err)
	}
	r.Close()
	c.Close()
}

func feed(b *testing.B, data []byte) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer w.Close()
		for len(data) > 0 {
			n := min(len(data), 4096)
			if _, err := w.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
		}
	}()
	return r
}

func reportLines(b *testing.B, start time.Time) {
	b.ReportMetric(float64(benchLines*b.N)/time.Since(start).Seconds(), "lines/s")
}

// cpuMeter reports CPU time per line of journald and of the sender, which says more than
// lines/s on a machine shared with other work.
type cpuMeter struct {
	journald, self time.Duration
	children       time.Duration
}

func readCPU(b *testing.B) cpuMeter {
	var m cpuMeter
	if pid := testutil.JournaldPID(); pid > 0 {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the parenthesised command: utime and stime are the 12th and 13th.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		m.journald = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	m.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	m.children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return m
}

func (m cpuMeter) report(b *testing.B, sender string) {
	now := readCPU(b)
	lines := float64(benchLines * b.N)
	b.ReportMetric(float64((now.journald-m.journald).Microseconds())/lines, "journald-µs/line")
	d := now.self - m.self
	if sender == "children" {
		d = now.children - m.children
	}
	b.ReportMetric(float64(d.Microseconds())/lines, "sender-µs/line")
}

func BenchmarkCopyFileOnly(b *testing.B) {
	data := benchInput()
	f := Fields{Name: "bench", ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	dir := b.TempDir()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		copyThrough(b, filepath.Join(dir, fmt.Sprintf("c%d.log", i)), f, nil, data)
	}
	reportLines(b, start)
}

func BenchmarkCopyFileAndJournal(b *testing.B) { benchJournal(b, true) }

// BenchmarkCopyFileAndJournalUnbatched shows what batching saves: one datagram per line.
func BenchmarkCopyFileAndJournalUnbatched(b *testing.B) { benchJournal(b, false) }

func benchJournal(b *testing.B, batch bool) {
	testutil.RequireJournal(b)
	j, err := OpenJournal()
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	j.SetBatching(batch)
	data := benchInput()
	dir := b.TempDir()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	if err := testutil.JournalSync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := readCPU(b)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f := Fields{Name: fmt.Sprintf("bench%d", i), ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
		copyThrough(b, filepath.Join(dir, fmt.Sprintf("c%d.log", i)), f, j, data)
		if err := testutil.JournalSync(); err != nil {
			b.Fatal(err)
		}
	}
	reportLines(b, start)
	cpu.report(b, "self")
	b.StopTimer()
	if d := j.Dropped(); d > 0 {
		b.Fatalf("%d journal entries dropped", d)
	}
}

func BenchmarkSystemdCat(b *testing.B) {
	testutil.RequireJournal(b)
	if _, err := exec.LookPath("systemd-cat"); err != nil {
		b.Skip("systemd-cat not installed")
	}
	data := benchInput()
	b.SetBytes(int64(len(data)))
	if err := testutil.JournalSync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := readCPU(b)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("systemd-cat", "-t", fmt.Sprintf("bench-cat%d", i))
		r := feed(b, data)
		cmd.Stdin = r
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		r.Close()
		if err := testutil.JournalSync(); err != nil {
			b.Fatal(err)
		}
	}
	reportLines(b, start)
	cpu.report(b, "children")
}
