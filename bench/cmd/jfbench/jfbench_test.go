// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	xs := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	s := summarize(xs)
	if s.N != 10 || s.Min != 1 || s.Max != 10 || s.Median != 5.5 || s.Mean != 5.5 {
		t.Fatalf("summary %+v", s)
	}
	// numpy.percentile([1..10], 95) == 9.55 (linear interpolation)
	if math.Abs(s.P95-9.55) > 1e-9 || math.Abs(s.P5-1.45) > 1e-9 {
		t.Fatalf("p5 %v p95 %v, want 1.45 9.55", s.P5, s.P95)
	}
	if one := summarize([]float64{3}); one.Median != 3 || one.P95 != 3 {
		t.Fatalf("single sample %+v", one)
	}
	if empty := summarize(nil); empty.N != 0 {
		t.Fatalf("empty %+v", empty)
	}
}

func record(data string, partial bool) []byte {
	h := make([]byte, 16)
	h[0] = 0xA5
	if partial {
		h[1] = 2
	}
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[8:16], 12345)
	return append(h, data...)
}

func TestRecordCounterSplitFeeds(t *testing.T) {
	file := []byte("JFLOG01\n")
	file = append(file, record("1", false)...)
	file = append(file, record("long line piece", true)...)
	file = append(file, record(" end", false)...)
	file = append(file, record("", false)...)
	// Feed in every possible pair of chunks: the tail reader sees arbitrary boundaries.
	for cut := 0; cut <= len(file); cut++ {
		var rc recordCounter
		rc.feed(file[:cut])
		rc.feed(file[cut:])
		if rc.broken != nil || rc.lines != 3 {
			t.Fatalf("cut %d: lines %d err %v, want 3 lines", cut, rc.lines, rc.broken)
		}
	}
	var rc recordCounter
	rc.feed([]byte("NOTALOG!"))
	if rc.broken == nil {
		t.Fatal("a file without the magic was accepted")
	}
}

func TestKbenchMetricRow(t *testing.T) {
	line := `{"kernel":"6.1.0-56-amd64","metric":"scan_time_us","containers":1000,"unit":"us","samples":30,"median":2032.5,"p10":1786.3,"p90":8324.3,"min":1749.4,"max":15082.3}`
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	b := newBench(&config{})
	b.kbenchRows("5 monitor", m)
	if len(b.report.Rows) != 1 {
		t.Fatalf("rows %+v", b.report.Rows)
	}
	r := b.report.Rows[0]
	if r.Summary.Median != 2032.5 || r.Unit != "us" || !strings.Contains(r.Goal, "1 ms") || !strings.Contains(r.Metric, "@1000") {
		t.Fatalf("row %+v", r)
	}
}

func TestRatioWording(t *testing.T) {
	if got := ratio(10, 20, "crun", true); got != "2.00x faster than crun" {
		t.Fatal(got)
	}
	if got := ratio(30, 15, "crun", true); got != "2.00x slower than crun" {
		t.Fatal(got)
	}
	if got := ratio(80, 100, "systemd-cat", false); got != "80% of systemd-cat" {
		t.Fatal(got)
	}
}

func TestSeqCheck(t *testing.T) {
	sc := newSeqCheck(5)
	for _, l := range []string{"1", "2", "2", "5", "Container x exited with code 0", "", "6", "0", "99999999999999999999"} {
		sc.add([]byte(l))
	}
	if sc.Distinct != 3 || sc.Dups != 1 || sc.Other != 5 {
		t.Fatalf("%+v, want 3 distinct, 1 duplicate, 5 other", *sc)
	}
	// The file check sees record data the same way.
	file := []byte("JFLOG01\n")
	for _, l := range []string{"1", "3", "4"} {
		file = append(file, record(l, false)...)
	}
	fc := newSeqCheck(5)
	rc := recordCounter{check: fc}
	rc.feed(file)
	if fc.Distinct != 3 || rc.lines != 3 {
		t.Fatalf("file check %+v lines %d", *fc, rc.lines)
	}
}

func TestParseVMBenchAndRows(t *testing.T) {
	out := []byte(`run.sh: booting
VMBENCH {"info":{"kernel":"6.1.0-1-amd64","cpus":2,"runs":3}}
  [ 3:10] noise VMBENCH {"subject":"jackfruit","role":"main","cmd":"jackfruit run --rm NAME -- /bin/true","failed":0,"us":[1000,2000,3000]}
VMBENCH {"subject":"podman","role":"peer","cmd":"podman run","failed":0,"us":[4000,4000,4000]}
VMBENCH {"subject":"systemd-nspawn","role":"peer","cmd":"systemd-nspawn","error":"exited with 1: no"}
VMBENCH {"subject":"jackfruit ps","role":"part","cmd":"jackfruit ps","failed":1,"first_error":"exit 1: x","us":[1000,1000]}
VMBENCH {broken
`)
	info, subs, bad := parseVMBench(out)
	if info["kernel"] != "6.1.0-1-amd64" || len(subs) != 4 || len(bad) != 1 {
		t.Fatalf("info %v, %d subjects, bad %v", info, len(subs), bad)
	}
	b := newBench(&config{})
	b.systemdRows("6", subs, 3)
	rows := b.report.Rows
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	if rows[0].Summary.Median != 2 || !strings.Contains(rows[0].Versus, "2.00x faster than podman") || !strings.Contains(rows[0].Versus, "; fastest") {
		t.Errorf("jackfruit row %+v", rows[0])
	}
	if !strings.Contains(rows[1].Versus, "50% of it") {
		t.Errorf("podman row %+v", rows[1])
	}
	if rows[2].NotMeasured != "exited with 1: no" || rows[2].Metric == "" {
		t.Errorf("nspawn row %+v", rows[2])
	}
	if !strings.Contains(rows[3].Versus, "50% of jackfruit's median") || !strings.Contains(rows[3].Versus, "only 2/3") {
		t.Errorf("part row %+v", rows[3])
	}
}

func TestTraceTimeline(t *testing.T) {
	times := []byte("t1 100.000000 101.000000 rc=0\n")
	bus := []byte(`{"type":"method_call","destination":"org.freedesktop.systemd1","member":"StartTransientUnit","timestamp-realtime":100100000,"payload":{"data":["jackfruit-t1.service","fail"]}}
{"type":"signal","member":"JobRemoved","timestamp-realtime":100500000,"payload":{"data":[1,"/job/1","jackfruit-t1.service","done"]}}
{"type":"method_call","destination":"org.freedesktop.machine1","member":"RegisterMachine","timestamp-realtime":100550000,"payload":{"data":["t1"]}}
{"type":"signal","member":"ContainerStarted","timestamp-realtime":100600000,"payload":{"data":["t1","/x"]}}
{"type":"method_call","destination":"org.freedesktop.systemd1","member":"Get","path":"/org/freedesktop/systemd1/unit/jackfruit_2dt1_2eservice","timestamp-realtime":100650000,"payload":{"data":["org.freedesktop.systemd1.Unit","ActiveState"]}}
{"type":"method_call","destination":"org.freedesktop.systemd1","member":"Get","path":"/org/freedesktop/systemd1/unit/jackfruit_2dt1_2eservice","timestamp-realtime":100700000,"payload":{"data":["org.freedesktop.systemd1.Service","ExecMainExitTimestampMonotonic"]}}
{"type":"method_call","destination":"org.freedesktop.systemd1","member":"StopUnit","timestamp-realtime":100800000,"payload":{"data":["jackfruit-t1.service","replace"]}}
`)
	phases, calls, err := traceTimeline(times, bus)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{100, 400, 100, 100, 300}
	for i, w := range want {
		if len(phases[i]) != 1 || math.Abs(phases[i][0]-w) > 1e-6 {
			t.Errorf("phase %d (%s): %v, want %v", i, tracePhases[i], phases[i], w)
		}
	}
	if len(calls) != 1 || calls[0] != 5 {
		t.Errorf("calls %v, want [5]", calls)
	}
	if _, _, err := traceTimeline(times, bus[:200]); err == nil {
		t.Error("a trace without its marks was accepted")
	}
	if got := sddbusEscape("jackfruit-my_app.service"); got != "jackfruit_2dmy_5fapp_2eservice" {
		t.Errorf("escape: %s", got)
	}
}
