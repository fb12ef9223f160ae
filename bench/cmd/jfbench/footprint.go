// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memSample is the supervisor's memory at one moment. Helper processes (children of the
// supervisor that live in its own PID namespace, i.e. not container inits) count toward
// the supervisor: a shim per container would be a per-container cost.
type memSample struct {
	RSSKiB    int64 `json:"rss_kib"`
	PssKiB    int64 `json:"pss_kib"`
	HelperKiB int64 `json:"helper_rss_kib"`
	Helpers   int   `json:"helpers"`
	Threads   int64 `json:"threads"`
}

func sampleSupervisor(pid int) (memSample, error) {
	var m memSample
	var err error
	if m.RSSKiB, err = statusKiB(pid, "VmRSS"); err != nil {
		return m, err
	}
	if m.PssKiB, err = pssKiB(pid); err != nil {
		return m, err
	}
	m.Threads, _ = kibField(fmt.Sprintf("/proc/%d/status", pid), "Threads")
	for _, ch := range children(pid) {
		if inChildPidNS(ch) {
			continue
		}
		if rss, err := statusKiB(ch, "VmRSS"); err == nil {
			m.HelperKiB += rss
			m.Helpers++
		}
	}
	return m, nil
}

type level struct {
	Containers int         `json:"containers"`
	Samples    []memSample `json:"samples"`
	RSS        Summary     `json:"rss_kib"`
	Pss        Summary     `json:"pss_kib"`
	Total      Summary     `json:"rss_plus_helpers_kib"`
}

// itemFootprint: item 3. A fresh supervisor, one warm-up container (so one-time costs such
// as the first overlay mount are not billed to the idle containers), then the supervisor's
// memory at each level of idle `sleep` containers.
func (b *bench) itemFootprint(ctx context.Context, p *peers) {
	const item = "3 footprint"
	c := b.cfg
	b.logf("item 3: supervisor memory with %v idle containers", c.footprint)
	sup, err := startSupervisor(ctx, c, "footprint")
	if err != nil {
		b.report.skip(item, "jackfruit supervisor", err.Error())
	} else {
		b.footprintJackfruit(ctx, sup)
		b.footprintInit(ctx, sup)
		sup.stop()
	}
	b.footprintCrun(ctx, p)
	b.footprintConmon(ctx, p)
	// The increments were written before the peers were measured; add the comparison now.
	crun := "unmeasured"
	if b.crunPerContainerKiB != nil {
		crun = fmtNum(*b.crunPerContainerKiB)
	}
	for _, i := range b.pendingIncrements {
		b.report.Rows[i].Versus = fmt.Sprintf("crun %s KiB; podman (crun+conmon) %s KiB", crun, b.conmonMedianStr())
	}
}

func (b *bench) footprintJackfruit(ctx context.Context, sup *supervisor) {
	const item = "3 footprint"
	c := b.cfg
	goal := "<= 64 KiB per idle container (0->100)"
	if out, err := sup.cli(ctx, "run", "--rm", "jfb-fp-warmup", "--", "/bin/true").CombinedOutput(); err != nil {
		b.report.skip(item, "jackfruit", "warm-up container failed: "+errString(err, out))
		return
	}
	levels := append([]int(nil), c.footprint...)
	sort.Ints(levels)
	started := 0
	var got []level
	for _, n := range levels {
		if err := b.startIdle(ctx, sup, started, n); err != nil {
			b.report.skip(item, fmt.Sprintf("jackfruit @%d", n), err.Error())
			break
		}
		started = n
		// Let the Go runtime settle (background GC, scavenger) before sampling.
		time.Sleep(2 * time.Second)
		lv := level{Containers: n}
		var rss, pss, tot []float64
		for i := 0; i < c.samples; i++ {
			m, err := sampleSupervisor(sup.pid())
			if err != nil {
				b.report.skip(item, fmt.Sprintf("jackfruit @%d", n), "reading supervisor memory: "+err.Error())
				return
			}
			lv.Samples = append(lv.Samples, m)
			rss = append(rss, float64(m.RSSKiB))
			pss = append(pss, float64(m.PssKiB))
			tot = append(tot, float64(m.RSSKiB+m.HelperKiB))
			time.Sleep(300 * time.Millisecond)
		}
		lv.RSS, lv.Pss, lv.Total = summarize(rss), summarize(pss), summarize(tot)
		got = append(got, lv)
		lvc := lv
		b.report.add(Row{Item: item, Subject: "jackfruit supervisor", Metric: fmt.Sprintf("RSS (+helpers) @ %d idle", n),
			Unit: "KiB", Summary: &lvc.Total, Spread: fmt.Sprintf("%s..%s; Pss %s (n=%d)", fmtNum(lv.Total.Min), fmtNum(lv.Total.Max), fmtNum(lv.Pss.Median), lv.Total.N)})
	}
	b.report.Details["footprint_jackfruit"] = got
	b.report.how("footprint: fresh `jackfruit supervisor`, one `run --rm` warm-up, then `jackfruit start NAME -- sleep 1000000` up to each level (4 CLI clients in parallel), 2 s settle, %d samples of VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) 300 ms apart; per-container = difference of medians / difference of counts", c.samples)
	// Per-container increments between consecutive levels and over the whole range.
	for i := 1; i < len(got); i++ {
		b.addIncrement(item, got[i-1], got[i], goal)
	}
	if len(got) > 2 {
		b.addIncrement(item, got[0], got[len(got)-1], goal)
	}
}

func (b *bench) addIncrement(item string, lo, hi level, goal string) {
	dn := float64(hi.Containers - lo.Containers)
	if dn <= 0 {
		return
	}
	v := (hi.Total.Median - lo.Total.Median) / dn
	// The spread bounds the increment by the extreme samples of both levels.
	minV := (hi.Total.Min - lo.Total.Max) / dn
	maxV := (hi.Total.Max - lo.Total.Min) / dn
	pss := (hi.Pss.Median - lo.Pss.Median) / dn
	row := Row{Item: item, Subject: "jackfruit supervisor",
		Metric: fmt.Sprintf("per container, %d->%d idle", lo.Containers, hi.Containers), Unit: "KiB",
		Value: &v, Spread: fmt.Sprintf("%s..%s; Pss %s", fmtNum(minV), fmtNum(maxV), fmtNum(pss)), Goal: goal}
	b.pendingIncrements = append(b.pendingIncrements, len(b.report.Rows))
	b.report.add(row)
}

// startIdle brings the number of idle containers from have to want.
func (b *bench) startIdle(ctx context.Context, sup *supervisor, have, want int) error {
	if want <= have {
		return nil
	}
	jobs := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				cctx, cancel := context.WithTimeout(ctx, b.cfg.cmdTimeout)
				out, err := sup.cli(cctx, "start", fmt.Sprintf("jfb-idle-%d", i), "--", "sleep", "1000000").CombinedOutput()
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("starting idle container %d: %s", i, errString(err, out))
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := have; i < want; i++ {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// footprintCrun: crun exits once a detached container runs, so nothing of crun stays
// resident; what remains per container is its state directory (on tmpfs, i.e. memory) and
// the container's own process, which is the same for jackfruit and therefore not counted.
func (b *bench) footprintCrun(ctx context.Context, p *peers) {
	const item = "3 footprint"
	c := b.cfg
	if p.crunOK != nil {
		b.report.skip(item, "crun", p.crunOK.Error())
		return
	}
	n := c.crunIdle
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = exec.Command("crun", "--root", p.crunRoot, "--cgroup-manager=disabled", "delete", "--force", id).Run()
		}
	}()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("jfb-crun-idle-%d", i)
		a := p.crunArgv("run", "--detach", "--bundle", p.sleepBundle, id)
		out, err := runDetaching(ctx, a, filepath.Join(c.work, id+".out"))
		if err != nil {
			b.report.skip(item, "crun", fmt.Sprintf("`%s`: %s", strings.Join(a, " "), errString(err, out)))
			return
		}
		ids = append(ids, id)
	}
	time.Sleep(500 * time.Millisecond)
	crunProcs := 0
	for _, pid := range allPids() {
		if _, comm, err := procStat(pid); err == nil && comm == "crun" {
			crunProcs++
		}
	}
	// tmpfs bills whole pages: count allocated blocks, not file sizes.
	var stateBytes, allocBytes int64
	_ = filepath.Walk(p.crunRoot, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			stateBytes += info.Size()
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				allocBytes += st.Blocks * 512
			}
		}
		return nil
	})
	perKiB := float64(allocBytes) / 1024 / float64(n)
	b.crunPerContainerKiB = &perKiB
	b.report.Details["footprint_crun"] = map[string]any{
		"containers": n, "crun_processes_left": crunProcs, "state_bytes_total": stateBytes, "state_allocated_bytes_total": allocBytes,
	}
	b.report.add(Row{Item: item, Subject: "crun (detached)", Metric: fmt.Sprintf("resident per container (%d idle)", n),
		Unit: "KiB", Value: &perKiB,
		Spread: fmt.Sprintf("%d crun processes left; tmpfs pages of its state files", crunProcs)})
	b.report.how("crun footprint: `%s` x%d; counted: crun processes still alive (none expected) + bytes of its state files on the tmpfs --root; the container's own sleep is not counted for anyone",
		strings.Join(p.crunArgv("run", "--detach", "--bundle", p.sleepBundle, "ID"), " "), n)
}

// footprintConmon runs conmon as podman does (daemonised, one per container, driving crun),
// then samples each conmon's memory.
func (b *bench) footprintConmon(ctx context.Context, p *peers) {
	const item = "3 footprint"
	c := b.cfg
	if _, err := exec.LookPath("conmon"); err != nil {
		b.report.skip(item, "podman's conmon", "conmon not installed (test/deps.sh installs it)")
		return
	}
	if p.crunOK != nil {
		b.report.skip(item, "podman's conmon", "crun unusable: "+p.crunOK.Error())
		return
	}
	dir := filepath.Join(c.work, "conmon")
	exits := filepath.Join(dir, "exits")
	socks := filepath.Join(dir, "socks")
	for _, d := range []string{exits, socks} {
		_ = os.MkdirAll(d, 0o755)
	}
	var ids []string
	var conmonPids []int
	defer func() {
		for _, id := range ids {
			_ = exec.Command("crun", "--root", p.crunRoot, "--cgroup-manager=disabled", "kill", id, "KILL").Run()
		}
		for _, pid := range conmonPids {
			waitGone(pid, 5*time.Second)
		}
		for _, id := range ids {
			_ = exec.Command("crun", "--root", p.crunRoot, "--cgroup-manager=disabled", "delete", "--force", id).Run()
		}
	}()
	var argv0 []string
	for i := 0; i < c.conmonCount; i++ {
		id := fmt.Sprintf("jfb-conmon-%d", i)
		cdir := filepath.Join(dir, id)
		_ = os.MkdirAll(cdir, 0o755)
		argv := []string{"conmon", "--api-version", "1", "-c", id, "-u", id, "-n", id,
			"-r", mustLook("crun"), "-b", p.sleepBundle,
			"-p", filepath.Join(cdir, "pid"), "-P", filepath.Join(cdir, "conmon.pid"),
			"-l", "k8s-file:" + filepath.Join(cdir, "ctr.log"),
			"--exit-dir", exits, "--socket-dir-path", socks,
			"--runtime-arg", "--cgroup-manager=disabled", "--runtime-arg", "--root=" + p.crunRoot,
			"--log-level", "warning"}
		if argv0 == nil {
			argv0 = argv
		}
		out, err := runDetaching(ctx, argv, filepath.Join(cdir, "conmon.out"))
		if err != nil {
			b.report.skip(item, "podman's conmon", fmt.Sprintf("`%s`: %s", strings.Join(argv, " "), errString(err, out)))
			return
		}
		// conmon daemonises before crun create finishes; wait for both pid files.
		cpid, err := waitPidFile(filepath.Join(cdir, "conmon.pid"), 10*time.Second)
		if err == nil {
			_, err = waitPidFile(filepath.Join(cdir, "pid"), 10*time.Second)
		}
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(cdir, "ctr.log"))
			b.report.skip(item, "podman's conmon", fmt.Sprintf("conmon for %s: %v %s", id, err, trimLines(string(log), 3)))
			return
		}
		ids = append(ids, id)
		conmonPids = append(conmonPids, cpid)
		if err := runOnce(ctx, p.crunArgv("start", id)); err != nil {
			b.report.skip(item, "podman's conmon", err.Error())
			return
		}
	}
	time.Sleep(1 * time.Second)
	var rss, pss []float64
	for _, pid := range conmonPids {
		r, err1 := statusKiB(pid, "VmRSS")
		ps, err2 := pssKiB(pid)
		if err1 != nil || err2 != nil {
			b.report.skip(item, "podman's conmon", fmt.Sprintf("conmon %d vanished: %v %v", pid, err1, err2))
			return
		}
		rss = append(rss, float64(r))
		pss = append(pss, float64(ps))
	}
	rs, pssS := summarize(rss), summarize(pss)
	b.conmonRSS, b.conmonPss = &rs, &pssS
	b.report.Details["footprint_conmon"] = map[string]any{"rss_kib": rs, "pss_kib": pssS}
	b.report.add(Row{Item: "3 footprint", Subject: "podman's conmon", Metric: fmt.Sprintf("RSS per container (%d running)", len(conmonPids)),
		Unit: "KiB", Summary: &rs, Spread: fmt.Sprintf("%s..%s; Pss %s", fmtNum(rs.P5), fmtNum(rs.P95), fmtNum(pssS.Median))})
	b.report.how("conmon footprint: `%s` (daemonises like under podman), then `crun start ID`; VmRSS and Pss of each conmon", strings.Join(argv0, " "))
}

func (b *bench) conmonMedianStr() string {
	if b.conmonRSS == nil {
		return "unmeasured"
	}
	v := b.conmonRSS.Median
	if b.crunPerContainerKiB != nil {
		v += *b.crunPerContainerKiB
	}
	return fmtNum(v)
}

// runDetaching runs a command that leaves a daemon or container behind. Its output goes to
// a file, not a pipe: the process left behind inherits the descriptors and would keep a
// pipe open forever.
func runDetaching(ctx context.Context, argv []string, outPath string) ([]byte, error) {
	f, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(outPath)
	return out, err
}

func mustLook(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name
	}
	return p
}

func waitPidFile(path string, tmo time.Duration) (int, error) {
	deadline := time.Now().Add(tmo)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s not written within %s", path, tmo)
}

func waitGone(pid int, tmo time.Duration) {
	deadline := time.Now().Add(tmo)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
