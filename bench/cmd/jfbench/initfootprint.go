// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"time"
)

// containerMem is the memory of one container's processes.
type containerMem struct {
	Processes int   `json:"processes"`
	RSSKiB    int64 `json:"rss_kib"`
	PssKiB    int64 `json:"pss_kib"`
}

// footprintInit: what --init costs per container. The same idle command runs in n containers
// with --init (tini as PID 1, the command its child) and in n without; the memory of each
// container's processes (found with `jackfruit top`: its PID namespace) is summed, and the
// difference of the medians is tini's cost. RSS counts tini's pages in full for every
// container; Pss shares its static binary's pages among all the tinis, which is what the
// machine really pays for the n-th one. The supervisor's own memory does not change with
// --init (tini is exec'd by the container's setup stage, no helper stays behind).
func (b *bench) footprintInit(ctx context.Context, sup *supervisor) {
	const item = "3 footprint"
	n := b.cfg.initContainers
	if n <= 0 {
		return
	}
	b.logf("item 3: --init (tini) memory, %d containers with and %d without", n, n)
	groups := map[bool][]containerMem{}
	for _, withInit := range []bool{false, true} {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("jfb-init-%v-%d", withInit, i)
			args := []string{"start", name}
			if withInit {
				args = append(args, "--init")
			}
			args = append(args, "--", "sleep", "1000000")
			cctx, cancel := context.WithTimeout(ctx, b.cfg.cmdTimeout)
			out, err := sup.cli(cctx, args...).CombinedOutput()
			cancel()
			if err != nil {
				b.report.skip(item, "jackfruit --init", fmt.Sprintf("starting %s: %s", name, errString(err, out)))
				return
			}
		}
	}
	time.Sleep(2 * time.Second) // let the containers settle, as for the idle levels
	for _, withInit := range []bool{false, true} {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("jfb-init-%v-%d", withInit, i)
			m, err := b.containerMemory(ctx, sup, name)
			if err != nil {
				b.report.skip(item, "jackfruit --init", err.Error())
				return
			}
			want := 1
			if withInit {
				want = 2
			}
			if m.Processes != want {
				b.report.skip(item, "jackfruit --init", fmt.Sprintf("%s has %d processes, want %d", name, m.Processes, want))
				return
			}
			groups[withInit] = append(groups[withInit], m)
		}
	}
	med := func(ms []containerMem, pss bool) (float64, float64, float64) {
		xs := make([]float64, 0, len(ms))
		for _, m := range ms {
			if pss {
				xs = append(xs, float64(m.PssKiB))
			} else {
				xs = append(xs, float64(m.RSSKiB))
			}
		}
		sort.Float64s(xs)
		return xs[len(xs)/2], xs[0], xs[len(xs)-1]
	}
	for _, pss := range []bool{false, true} {
		with, wMin, wMax := med(groups[true], pss)
		without, oMin, oMax := med(groups[false], pss)
		d := with - without
		metric := "RSS"
		if pss {
			metric = "Pss"
		}
		b.report.add(Row{Item: item, Subject: "jackfruit --init (tini)",
			Metric: fmt.Sprintf("%s per container, --init minus without (%d each)", metric, n), Unit: "KiB", Value: &d,
			Spread: fmt.Sprintf("with %s (%s..%s), without %s (%s..%s)", fmtNum(with), fmtNum(wMin), fmtNum(wMax), fmtNum(without), fmtNum(oMin), fmtNum(oMax))})
	}
	b.report.Details["footprint_init"] = map[string]any{"with_init": groups[true], "without_init": groups[false]}
	b.report.how("--init footprint: %d containers `start --init NAME -- sleep 1000000` and %d without --init, 2 s settle; per container the sum of VmRSS and of Pss (smaps_rollup) over its processes (host pids from `jackfruit top --format json`); the row is the median with --init minus the median without", n, n)
}

// containerMemory sums the memory of a container's processes.
func (b *bench) containerMemory(ctx context.Context, sup *supervisor, name string) (containerMem, error) {
	cctx, cancel := context.WithTimeout(ctx, b.cfg.cmdTimeout)
	defer cancel()
	cmd := sup.cli(cctx, "top", "--format", "json", name)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return containerMem{}, fmt.Errorf("top %s: %s", name, errString(err, stderr))
	}
	var ps []struct {
		HostPid int `json:"host_pid"`
	}
	if err := json.Unmarshal(out, &ps); err != nil {
		return containerMem{}, fmt.Errorf("top %s: %w", name, err)
	}
	var m containerMem
	for _, p := range ps {
		rss, err := statusKiB(p.HostPid, "VmRSS")
		if err != nil {
			return containerMem{}, fmt.Errorf("%s: pid %d: %w", name, p.HostPid, err)
		}
		pss, err := pssKiB(p.HostPid)
		if err != nil {
			return containerMem{}, fmt.Errorf("%s: pid %d: %w", name, p.HostPid, err)
		}
		m.Processes++
		m.RSSKiB += rss
		m.PssKiB += pss
	}
	return m, nil
}
