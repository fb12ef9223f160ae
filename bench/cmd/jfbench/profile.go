// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// profile is a `perf record` attached to one supervisor while an item runs (-profile).
// perf works here (software cpu-clock event); bench/run.sh -profile builds an unstripped
// jackfruit so the Go symbols resolve.
type profile struct {
	tag  string
	data string
	cmd  *exec.Cmd
	done chan struct{}
}

// profileFlags would add a pprof switch to the supervisor; jackfruit's supervisor exposes
// none, so profiling goes through perf and this stays empty.
func (b *bench) profileFlags() []string { return nil }

func (b *bench) startProfile(ctx context.Context, sup *supervisor, tag string) {
	if !b.cfg.profile {
		return
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.report.Notes = append(b.report.Notes, "-profile: perf not installed (apt-get install linux-perf)")
		return
	}
	p := &profile{tag: tag, data: filepath.Join(b.cfg.work, "perf-"+tag+".data"), done: make(chan struct{})}
	p.cmd = exec.Command("perf", "record", "-F", "999", "-g", "-p", fmt.Sprint(sup.pid()), "-o", p.data)
	logf, _ := os.Create(p.data + ".log")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		b.report.Notes = append(b.report.Notes, "-profile: perf record: "+err.Error())
		return
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	b.profiles = append(b.profiles, p)
	time.Sleep(300 * time.Millisecond) // perf attaches asynchronously
}

// stopProfiles ends every recording and writes a flat and a caller report next to the JSON.
func (b *bench) stopProfiles(ctx context.Context) {
	for _, p := range b.profiles {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		base := filepath.Join(b.cfg.results, b.report.Started.Format("20060102T150405Z")+"-perf-"+p.tag)
		_ = os.MkdirAll(b.cfg.results, 0o755)
		for suffix, args := range map[string][]string{
			".flat.txt":    {"report", "-i", p.data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.5", "-g", "none"},
			".callers.txt": {"report", "-i", p.data, "--stdio", "--children", "--sort", "symbol", "--percent-limit", "3", "-g", "none"},
		} {
			out, err := exec.CommandContext(ctx, "perf", args...).Output()
			if err != nil {
				b.report.Notes = append(b.report.Notes, fmt.Sprintf("perf report %s: %v", p.tag, err))
				continue
			}
			_ = os.WriteFile(base+suffix, out, 0o644)
		}
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("supervisor CPU profile (%s item): %s.{flat,callers}.txt", p.tag, base))
	}
	b.profiles = nil
}

// runJfprof profiles the supervisor core in-process (bench/cmd/jfprof): the in-use heap
// with idle containers (item 3's cost) and CPU of start-wait-remove (item 1's), the latter
// also under a system-wide perf so the container setup stage (comm "jackfruit-init" once it
// has named itself; before, the number of the descriptor it was executed through, or "exe"
// for the re-executed jackfruit binary) and the kernel show up next to the supervisor.
func (b *bench) runJfprof(ctx context.Context) {
	c := b.cfg
	if c.jfprof == "" {
		return
	}
	base := filepath.Join(c.results, b.report.Started.Format("20060102T150405Z")+"-jfprof")
	run := func(mode string, n int, wrap ...string) {
		prof := filepath.Join(c.work, "jfprof-"+mode+".pprof")
		argv := append(wrap, c.jfprof, "-mode", mode, "-n", fmt.Sprint(n), "-rootfs", c.rootfs, "-work", c.work, "-out", prof)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf("jfprof %s: %s", mode, errString(err, out)))
			return
		}
		b.report.Notes = append(b.report.Notes, firstLineWith(string(out), "jfprof "))
		args := []string{"tool", "pprof", "-top", "-nodecount", "25"}
		if mode == "cpu" {
			args = append(args, "-cum")
		}
		top, err := exec.CommandContext(ctx, "go", append(args, c.jfprof, prof)...).CombinedOutput()
		if err == nil {
			_ = os.WriteFile(base+"-"+mode+".top.txt", top, 0o644)
			b.report.Notes = append(b.report.Notes, fmt.Sprintf("pprof -top of the %s profile: %s-%s.top.txt", mode, base, mode))
		}
	}
	run("heap", 200)
	if _, err := exec.LookPath("perf"); err != nil {
		run("cpu", 200)
		return
	}
	data := filepath.Join(c.work, "perf-jfprof.data")
	run("cpu", 200, "perf", "record", "-a", "-F", "1999", "-o", data, "--")
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children",
		"--comms", "jfprof,exe,true", "--sort", "comm,dso", "-g", "none").Output()
	if err == nil {
		_ = os.WriteFile(base+"-cpu.perf-comm.txt", out, 0o644)
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("system-wide perf of the same loop by process (jackfruit-init = container setup stage): %s-cpu.perf-comm.txt", base))
	}
}

func firstLineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return strings.TrimSpace(s)
}

// monitorState says whether the kernel monitor is present on this host (it is not on the
// build machines, whose kernel cannot load modules; the supervisor then runs without it).
func monitorState() string {
	if _, err := os.Stat("/dev/container_monitor"); err == nil {
		return "present"
	}
	return "absent here (no /dev/container_monitor; the host kernel cannot load modules), so no per-container registration cost is included"
}
