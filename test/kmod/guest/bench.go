// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"time"

	"github.com/jackfruit/jackfruit/service/monitor"
	"golang.org/x/sys/unix"
)

// Bench output: one line per metric,
//
//	KBENCH {"kernel":"6.1.0-56-amd64","metric":"scan_time_us","containers":100,
//	        "unit":"us","samples":30,"median":..,"p10":..,"p90":..,"min":..,"max":..}
//
// metrics: scan_time_us (per scan, for 1, 100 and 1000 registered
// containers), scan_interval_ms (measured time between scans, configured
// 100 ms), kill_latency_ms (start of the hog step that crosses the hard limit
// -> HARD event, an upper bound) and
// kill_latency_scan_intervals (the same divided by scan_interval_ms).
// The guest runs under QEMU TCG (no KVM), so absolute times are slower than
// on hardware; compare runs with each other.

type benchResult struct {
	Kernel     string  `json:"kernel"`
	Metric     string  `json:"metric"`
	Containers int     `json:"containers,omitempty"`
	Unit       string  `json:"unit"`
	Samples    int     `json:"samples"`
	Median     float64 `json:"median"`
	P10        float64 `json:"p10"`
	P90        float64 `json:"p90"`
	Min        float64 `json:"min"`
	Max        float64 `json:"max"`
}

func summarize(kernel, metric, unit string, containers int, xs []float64) benchResult {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	r := benchResult{Kernel: kernel, Metric: metric, Unit: unit, Containers: containers, Samples: len(s)}
	if len(s) == 0 {
		return r
	}
	q := func(p float64) float64 { return s[int(p*float64(len(s)-1)+0.5)] }
	r.Median, r.P10, r.P90, r.Min, r.Max = q(0.5), q(0.1), q(0.9), s[0], s[len(s)-1]
	return r
}

func emit(r benchResult) {
	b, _ := json.Marshal(r)
	fmt.Printf("KBENCH %s\n", b)
}

func kernelRelease() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

func runBench() int {
	if err := insmod("scan_interval_ms=100 max_entries=1024"); err != nil {
		fmt.Printf("KBENCH-ERROR %v\n", err)
		return 1
	}
	kv := kernelRelease()
	c, err := monitor.Open(monitor.DefaultDevice)
	if err != nil {
		fmt.Printf("KBENCH-ERROR %v\n", err)
		return 1
	}
	defer c.Close()
	// Registrations go through drainer, whose event queue it empties (events belong to the
	// open file that registered).
	drainer, err := openRaw(true)
	if err != nil {
		fmt.Printf("KBENCH-ERROR %v\n", err)
		return 1
	}
	defer drainer.Close()
	var ids []uint64

	var sleepers []*exec.Cmd
	defer func() {
		for _, s := range sleepers {
			stopProc(s)
		}
	}()
	registered := 0
	for _, n := range []int{1, 100, 1000} {
		for len(sleepers) < n {
			s, err := spawnSleeper()
			if err != nil {
				fmt.Printf("KBENCH-ERROR spawning sleeper %d: %v\n", len(sleepers), err)
				return 1
			}
			sleepers = append(sleepers, s)
		}
		for ; registered < n; registered++ {
			id, e := drainer.register(sleepers[registered].Process.Pid, fmt.Sprintf("bench%d", registered), 1<<30, 2<<30)
			if e != 0 {
				fmt.Printf("KBENCH-ERROR register: %v\n", e)
				return 1
			}
			ids = append(ids, id)
			if registered%200 == 199 {
				drainer.drain()
			}
		}
		drainer.drain()
		times, intervals := sampleScans(c, 30)
		emit(summarize(kv, "scan_time_us", "us", n, times))
		if n == 1 {
			emit(summarize(kv, "scan_interval_ms", "ms", n, intervals))
		}
	}
	for _, id := range ids {
		_ = drainer.unregister(id)
	}
	drainer.drain()

	var lat, latIv []float64
	for i := 0; i < 5; i++ {
		l, err := killLatency(drainer, fmt.Sprintf("benchhog%d", i))
		if err != nil {
			fmt.Printf("KBENCH-ERROR kill latency run %d: %v\n", i, err)
			continue
		}
		lat = append(lat, float64(l)/float64(time.Millisecond))
		latIv = append(latIv, float64(l)/float64(100*time.Millisecond))
	}
	emit(summarize(kv, "kill_latency_ms", "ms", 1, lat))
	emit(summarize(kv, "kill_latency_scan_intervals", "intervals", 1, latIv))
	fmt.Println("KBENCH-DONE")
	return 0
}

// sampleScans records the duration of n consecutive scans (from STATS) and
// the wall time between them.
func sampleScans(c *monitor.Client, n int) (times, intervals []float64) {
	st, _ := c.Stats()
	last := st.Scans
	var lastAt time.Time
	deadline := time.Now().Add(time.Duration(n) * 2 * time.Second)
	for len(times) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		st, err := c.Stats()
		if err != nil || st.Scans == last {
			continue
		}
		now := time.Now()
		if st.Scans == last+1 {
			times = append(times, float64(st.LastScanNs)/1e3)
			if !lastAt.IsZero() {
				intervals = append(intervals, float64(now.Sub(lastAt))/float64(time.Millisecond))
			}
			lastAt = now
		} else {
			lastAt = time.Time{} // missed one: the interval would be wrong
		}
		last = st.Scans
	}
	return times, intervals
}

// killLatency runs a paced hog (4 MiB / 200 ms) as a container init and
// returns the time from the start of the step that crossed the hard limit
// to the HARD event's timestamp.
func killLatency(d *rawDev, name string) (time.Duration, error) {
	h, err := startHog(false, "-step-mib", "4", "-interval", "200ms")
	if err != nil {
		return 0, err
	}
	defer h.Kill()
	if _, e := d.register(h.cmd.Process.Pid, name, 0, 32*mib); e != 0 {
		return 0, fmt.Errorf("register: %v", e)
	}
	evs, err := d.readEvents(60*time.Second, func(e []monitor.Event) bool {
		return len(e) > 0 && e[len(e)-1].Type == monitor.EventExited
	})
	if err != nil {
		return 0, err
	}
	h.Wait(10 * time.Second)
	for _, e := range evs {
		if e.Type == monitor.EventHard {
			cross, ok := crossingStart(h.Reports(), 32*mib)
			if !ok {
				return 0, fmt.Errorf("hog reported no step")
			}
			return e.Time.Sub(cross), nil
		}
	}
	return 0, fmt.Errorf("no hard event in %s", eventsString(evs))
}
