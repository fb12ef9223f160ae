package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
			".flat.txt":    {"report", "-i", p.data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.5"},
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

// monitorState says whether the kernel monitor is present on this host (it is not on the
// build machines, whose kernel cannot load modules; the supervisor then runs without it).
func monitorState() string {
	if _, err := os.Stat("/dev/container_monitor"); err == nil {
		return "present"
	}
	return "absent here (no /dev/container_monitor; the host kernel cannot load modules), so no per-container registration cost is included"
}
