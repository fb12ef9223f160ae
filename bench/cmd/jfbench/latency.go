// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// subject is one runtime under comparison. cmd builds a fresh invocation for container id.
type subject struct {
	name string
	how  string
	err  error
	cmd  func(ctx context.Context, id string) *exec.Cmd
}

// mainSupervisor is the supervisor shared by the latency and throughput items; it is already
// running when the clock starts, as the issue asks.
func (b *bench) mainSupervisor(ctx context.Context) (*supervisor, error) {
	if b.mainSup != nil || b.mainSupErr != nil {
		return b.mainSup, b.mainSupErr
	}
	b.mainSup, b.mainSupErr = startSupervisor(ctx, b.cfg, "main", b.profileFlags()...)
	if b.mainSupErr == nil {
		b.report.how("jackfruit supervisor: `%s` (inside the same private namespaces; state dir on %s, socket and run dir on tmpfs; no D-Bus; journal = the private journald; the kernel monitor is %s)",
			strings.Join(b.mainSup.argv, " "), fsName(b.mainSup.stateDir), monitorState())
		b.startProfile(ctx, b.mainSup, "main")
	}
	return b.mainSup, b.mainSupErr
}

func (b *bench) subjects(ctx context.Context, p *peers, jfArgs func(id string) []string, peerBundle, label string) []subject {
	jf := subject{name: "jackfruit"}
	if sup, err := b.mainSupervisor(ctx); err != nil {
		jf.err = err
	} else {
		jf.how = fmt.Sprintf("jackfruit: `JACKFRUIT_SOCKET=%s %s %s` (a CLI process per container, talking to the running supervisor)",
			sup.socket, b.cfg.jackfruit, strings.Join(jfArgs("ID"), " "))
		jf.cmd = func(ctx context.Context, id string) *exec.Cmd { return sup.cli(ctx, jfArgs(id)...) }
	}
	cr := subject{name: "crun", err: p.crunOK}
	cr.how = fmt.Sprintf("crun: `%s` (cgroups disabled: crun refuses hybrid hosts; %s)",
		strings.Join(p.crunArgv("run", "--bundle", peerBundle, "ID"), " "), label)
	cr.cmd = func(ctx context.Context, id string) *exec.Cmd {
		a := p.crunArgv("run", "--bundle", peerBundle, id)
		return exec.CommandContext(ctx, a[0], a[1:]...)
	}
	rc := subject{name: "runc", err: p.runcOK}
	rc.how = fmt.Sprintf("runc: `%s` (runc has no switch to skip cgroups: its default cgroupfs driver creates and removes one cgroup per container in the private cgroup2 mount, no controllers enabled there; %s)",
		strings.Join(p.runcArgv("run", "--bundle", peerBundle, "ID"), " "), label)
	rc.cmd = func(ctx context.Context, id string) *exec.Cmd {
		a := p.runcArgv("run", "--bundle", peerBundle, id)
		return exec.CommandContext(ctx, a[0], a[1:]...)
	}
	return []subject{jf, cr, rc}
}

// timeCmd measures from just before fork to just after the child is reaped: the latency a
// user typing the command sees, minus shell start-up.
func timeCmd(cmd *exec.Cmd) (time.Duration, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, errors.New(errString(err, out.Bytes()))
	}
	return d, nil
}

// itemLatency: item 1, start-to-exit of /bin/true, interleaved A B C so drift (thermal,
// other tenants) hits every runtime alike.
func (b *bench) itemLatency(ctx context.Context, p *peers) {
	const item = "1 start-to-exit"
	c := b.cfg
	b.logf("item 1: start-to-exit latency, %d warm-up + %d interleaved runs per runtime", c.warmup, c.runs)
	subs := b.subjects(ctx, p, func(id string) []string { return []string{"run", "--rm", id, "--", "/bin/true"} },
		p.trueBundle, "OCI bundle "+p.trueBundle)
	if p.configNote != "" {
		b.report.how("OCI bundle for crun and runc: %s", p.configNote)
	}
	// A reference point for where jackfruit's time goes: the same CLI doing one socket round
	// trip without a container (Go start-up of the client + connect + one call).
	if subs[0].err == nil {
		sup := b.mainSup
		subs = append(subs, subject{name: "jackfruit ps (no container)",
			how: "jackfruit ps (no container): `jackfruit ps` against the same supervisor, timed like the others: the client's share of a run",
			cmd: func(ctx context.Context, id string) *exec.Cmd { return sup.cli(ctx, "ps") }})
	}
	// What the confinement costs per start: the same run with every capability and no seccomp
	// filter (the masked and read-only paths cannot be switched off, so they stay in both).
	if subs[0].err == nil {
		sup := b.mainSup
		subs = append(subs, subject{name: "jackfruit, unconfined",
			how: "jackfruit, unconfined: the same `run --rm` with `--cap-add ALL --security-opt seccomp=unconfined`: the difference to the jackfruit row is what capabilities + seccomp cost per start",
			cmd: func(ctx context.Context, id string) *exec.Cmd {
				return sup.cli(ctx, "run", "--rm", "--cap-add", "ALL", "--security-opt", "seccomp=unconfined", id, "--", "/bin/true")
			}})
	}
	if subs[0].err == nil {
		if s, stop := b.tmpfsSubject(ctx, "tmpfs"); stop != nil {
			defer stop()
			subs = append(subs, s)
		}
	}
	samples := map[string][]float64{}
	failures := map[string][]string{}
	seq := 0
	for i := 0; i < c.warmup+c.runs; i++ {
		for si := range subs {
			s := &subs[si]
			if s.err != nil {
				continue
			}
			seq++
			id := fmt.Sprintf("jfb-lat-%d", seq)
			cctx, cancel := context.WithTimeout(ctx, c.cmdTimeout)
			d, err := timeCmd(s.cmd(cctx, id))
			cancel()
			if err != nil {
				failures[s.name] = append(failures[s.name], err.Error())
				if len(failures[s.name]) >= 3 {
					s.err = fmt.Errorf("%d failed runs, last: %v", len(failures[s.name]), err)
				}
				continue
			}
			if i >= c.warmup {
				samples[s.name] = append(samples[s.name], ms(d))
			}
		}
	}
	b.report.Details["latency_ms"] = samples
	if len(failures) > 0 {
		b.report.Details["latency_failures"] = failures
	}
	b.emitComparison(item, "start-to-exit", "ms", subs, samples, c.runs,
		"median <= crun's, >= 2.5x faster than runc")
}

// emitComparison writes one row per subject with its ratio to crun (and runc for jackfruit).
func (b *bench) emitComparison(item, metric, unit string, subs []subject, samples map[string][]float64, want int, goal string) {
	sums := map[string]Summary{}
	for _, s := range subs {
		if len(samples[s.name]) > 0 {
			sums[s.name] = summarize(samples[s.name])
		}
	}
	for _, s := range subs {
		g := ""
		if s.name == "jackfruit" {
			g = goal
		}
		if s.how != "" && !b.howSeen[s.how] {
			b.report.how("%s", s.how)
			b.howSeen[s.how] = true
		}
		sum, ok := sums[s.name]
		if s.err != nil || !ok {
			reason := "no successful run"
			if s.err != nil {
				reason = s.err.Error()
			}
			b.report.skip(item, s.name, reason)
			b.report.Rows[len(b.report.Rows)-1].Metric = metric
			b.report.Rows[len(b.report.Rows)-1].Goal = g
			continue
		}
		row := Row{Item: item, Subject: s.name, Metric: metric, Unit: unit, Summary: &sum, Goal: g}
		var vs []string
		if crun, ok := sums["crun"]; ok && s.name != "crun" {
			vs = append(vs, ratio(sum.Median, crun.Median, "crun", true))
		}
		if runc, ok := sums["runc"]; ok && strings.HasPrefix(s.name, "jackfruit") && !strings.HasPrefix(s.name, "jackfruit ps") {
			vs = append(vs, ratio(sum.Median, runc.Median, "runc", true))
		}
		if s.name == "crun" {
			vs = append(vs, "reference")
		}
		if strings.HasPrefix(s.name, "jackfruit ps") {
			vs = nil
			if jf, ok := sums["jackfruit"]; ok {
				vs = append(vs, fmt.Sprintf("%.0f%% of jackfruit's median", 100*sum.Median/jf.Median))
			}
		}
		if sum.N < want {
			vs = append(vs, fmt.Sprintf("only %d/%d runs succeeded", sum.N, want))
		}
		row.Versus = strings.Join(vs, "; ")
		b.report.add(row)
	}
}

// itemThroughput: item 2, N containers started at once and waited for; the wall time of the
// whole batch divided by N is the per-container cost under concurrency.
func (b *bench) itemThroughput(ctx context.Context, p *peers) {
	const item = "2 start throughput"
	c := b.cfg
	b.logf("item 2: %d concurrent /bin/true containers, %d interleaved rounds per runtime", c.concurrency, c.rounds)
	subs := b.subjects(ctx, p, func(id string) []string { return []string{"run", "--rm", id, "--", "/bin/true"} },
		p.trueBundle, "OCI bundle "+p.trueBundle)
	// On a disk whose inodes cost what those of an ext4 without a journal cost under churn
	// (docs/bench.md), the difference to this row is the state directory's filesystem.
	if subs[0].err == nil {
		if s, stop := b.tmpfsSubject(ctx, "tmpfs-tp"); stop != nil {
			defer stop()
			subs = append(subs, s)
		}
	}
	samples := map[string][]float64{}
	failures := map[string][]string{}
	for round := 0; round < c.rounds; round++ {
		for si := range subs {
			s := &subs[si]
			if s.err != nil {
				continue
			}
			wall, errs := b.batch(ctx, s, fmt.Sprintf("jfb-tp-%d-%d", si, round), c.concurrency)
			if len(errs) > 0 {
				failures[s.name] = append(failures[s.name], errs...)
				s.err = fmt.Errorf("%d of %d concurrent starts failed in round %d, first: %s", len(errs), c.concurrency, round+1, errs[0])
				continue
			}
			samples[s.name] = append(samples[s.name], ms(wall)/float64(c.concurrency))
		}
	}
	b.report.Details["throughput_ms_per_container"] = samples
	if len(failures) > 0 {
		b.report.Details["throughput_failures"] = failures
	}
	b.report.how("throughput: the same commands, %d started at once (one goroutine each, released together), wall time until all are reaped / %d; %d rounds per runtime, interleaved",
		c.concurrency, c.concurrency, c.rounds)
	b.emitComparison(item, fmt.Sprintf("wall/container (%d at once)", c.concurrency), "ms", subs, samples, c.rounds, "<= 1.2x crun's")
}

// tmpfsSubject is "jackfruit, state on tmpfs": jackfruit keeps its state on disk (as
// /var/lib/jackfruit), crun and runc keep theirs on tmpfs (/run); the same client against a
// supervisor of its own (tag) whose state directory is on tmpfs shows what the disk costs.
// stop is nil when there is no such subject (no disk state directory, or it failed to start).
func (b *bench) tmpfsSubject(ctx context.Context, tag string) (subject, func()) {
	if b.cfg.stateBase == "" {
		return subject{}, nil
	}
	tc := *b.cfg
	tc.stateBase = ""
	tsup, err := startSupervisor(ctx, &tc, tag)
	if err != nil {
		b.logf("supervisor with state on tmpfs: %v", err)
		return subject{}, nil
	}
	return subject{name: "jackfruit, state on tmpfs",
		how: fmt.Sprintf("jackfruit, state on tmpfs: the same `run --rm` against a second supervisor whose --state-dir %s is on tmpfs like crun's and runc's --root", tsup.stateDir),
		cmd: func(ctx context.Context, id string) *exec.Cmd {
			return tsup.cli(ctx, "run", "--rm", id, "--", "/bin/true")
		}}, tsup.stop
}

func (b *bench) batch(ctx context.Context, s *subject, prefix string, n int) (time.Duration, []string) {
	cctx, cancel := context.WithTimeout(ctx, 5*b.cfg.cmdTimeout)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	outs := make([]bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = s.cmd(cctx, fmt.Sprintf("%s-%d", prefix, i))
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	release := make(chan struct{})
	for i := range cmds {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-release
			if err := cmds[i].Run(); err != nil {
				mu.Lock()
				errs = append(errs, errString(err, outs[i].Bytes()))
				mu.Unlock()
			}
		}(i)
	}
	time.Sleep(20 * time.Millisecond) // let every goroutine park on the release channel
	t0 := time.Now()
	close(release)
	wg.Wait()
	return time.Since(t0), errs
}

// fsName names the filesystem type of path for the "how it was run" lines.
func fsName(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "an unknown filesystem"
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		if !ext4Journaled(path) {
			// Without a journal ext4 skips recently deleted inode numbers, so every inode
			// created costs more the more were deleted in the last minutes (docs/bench.md).
			return "ext4 without a journal (disk)"
		}
		return "ext4 (disk)"
	case unix.XFS_SUPER_MAGIC:
		return "xfs (disk)"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs (disk)"
	}
	return fmt.Sprintf("filesystem %#x", st.Type)
}

// ext4Journaled reports whether the ext4 holding path has a journal: its jbd2 thread is in
// /sys/fs/ext4/DEV/journal_task ("<none>" without one). When that cannot be told, it says
// true, which is what the plain "ext4 (disk)" has always meant.
func ext4Journaled(path string) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return true
	}
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return true
	}
	for _, l := range strings.Split(string(uevent), "\n") {
		if dev, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			task, err := os.ReadFile(filepath.Join("/sys/fs/ext4", dev, "journal_task"))
			return err != nil || strings.TrimSpace(string(task)) != "<none>"
		}
	}
	return true
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
