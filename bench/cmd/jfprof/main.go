// SPDX-License-Identifier: Apache-2.0

// Command jfprof runs jackfruit's supervisor core in-process under Go's runtime/pprof, for
// the places where `make bench` misses a goal: the supervisor exposes no pprof switch, and
// perf sees machine code but not which Go allocation keeps an idle container's memory.
//
//	jfprof -mode heap -n 200   start N idle `sleep` containers, write an in-use heap profile
//	jfprof -mode cpu  -n 300   run --rm N `/bin/true` containers (RunContainer), write a CPU profile
//
// Like jfbench it must run inside bench/run.sh's private namespaces (it mounts overlays);
// `bench/run.sh --profile` runs it and prints `go tool pprof -top` of both profiles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/jackfruit/jackfruit/service"
	jfruntime "github.com/jackfruit/jackfruit/service/runtime"
	"github.com/jackfruit/jackfruit/service/supervisor"
)

func main() {
	// The container setup stage re-executes this binary; it must branch off first.
	jfruntime.Init()
	mode := flag.String("mode", "heap", "heap or cpu")
	n := flag.Int("n", 200, "containers")
	rootfs := flag.String("rootfs", "build/rootfs", "base rootfs")
	work := flag.String("work", "", "private tmpfs work directory")
	out := flag.String("out", "", "profile output file")
	flag.Parse()
	if err := run(*mode, *n, *rootfs, *work, *out); err != nil {
		fmt.Fprintln(os.Stderr, "jfprof:", err)
		os.Exit(1)
	}
}

func run(mode string, n int, rootfs, work, out string) error {
	if os.Getenv("JFBENCH_PRIVATE_NS") != "1" {
		return errors.New("run inside bench/run.sh's private namespaces (bench/run.sh --profile)")
	}
	if work == "" || out == "" {
		return errors.New("-work and -out are required")
	}
	dir := filepath.Join(work, "jfprof-"+mode)
	sup, err := supervisor.New(supervisor.Config{
		StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		BaseRootfs: rootfs, MonitorDevice: supervisor.MonitorDisabled,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	defer func() {
		for _, pid := range childPids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = sup.Close()
	}()
	ctx := context.Background()
	root := service.Caller{UID: 0}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()

	switch mode {
	case "heap":
		for i := 0; i < n; i++ {
			if _, err := sup.Start(ctx, root, service.StartRequest{Name: fmt.Sprintf("idle-%d", i),
				Command: []string{"sleep", "1000000"}}); err != nil {
				return fmt.Errorf("start idle-%d: %w", i, err)
			}
		}
		time.Sleep(time.Second)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("jfprof heap: %d idle containers: HeapInuse %d KiB, StackInuse %d KiB, goroutines %d -> per container ~%d KiB heap+stack\n",
			n, ms.HeapInuse>>10, ms.StackInuse>>10, runtime.NumGoroutine(), (ms.HeapInuse+ms.StackInuse)>>10/uint64(n))
		return pprof.Lookup("heap").WriteTo(f, 0)
	case "cpu":
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("true-%d", i)
			// What `jackfruit run --rm` asks for: one RunContainer with Remove.
			if _, err := sup.RunContainer(ctx, root, service.StartRequest{Name: name, Command: []string{"/bin/true"}, Remove: true},
				func(service.ContainerInfo) {}, func(service.LogLine) error { return nil }); err != nil {
				pprof.StopCPUProfile()
				return fmt.Errorf("run %s: %w", name, err)
			}
		}
		pprof.StopCPUProfile()
		fmt.Printf("jfprof cpu: %d run --rm of /bin/true in-process: %.2f ms each (no CLI, no socket)\n",
			n, float64(time.Since(t0).Microseconds())/1000/float64(n))
		return nil
	}
	return fmt.Errorf("-mode %q: want heap or cpu", mode)
}

func childPids() []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid, ppid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// ppid is the second field after the parenthesised comm.
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == ')' {
				var state string
				if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err == nil && ppid == self {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}
