// SPDX-License-Identifier: Apache-2.0

// Command memory_hog allocates memory in paced steps and touches every page, so its resident
// set grows by a known amount per step. It is the test load for jackfruit's memory limits and
// ships, statically linked, in the test rootfs as /usr/bin/memory_hog.
//
// Each step prints one line to stdout (so container logs show the growth):
//
//	memory_hog: step 3: +4 MiB, total 12 MiB
//
// Memory comes from anonymous mmap rather than the Go heap, so the garbage collector neither
// doubles nor returns it and RSS tracks the reported total closely.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const mib = 1 << 20

func main() {
	stepMiB := flag.Int("step-mib", 4, "MiB to allocate and touch per step (>= 1)")
	interval := flag.Duration("interval", 200*time.Millisecond, "pause between steps")
	maxMiB := flag.Int("max-mib", 0, "stop allocating at this total; 0 means never stop")
	hold := flag.Bool("hold", false, "after reaching -max-mib, keep the memory until signalled instead of exiting")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM and SIGINT (to test stop escalation to SIGKILL)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nAllocates and touches memory in paced steps.\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fail("unexpected argument %q", flag.Arg(0))
	}
	if *stepMiB < 1 {
		fail("-step-mib must be at least 1, got %d", *stepMiB)
	}
	if *maxMiB < 0 {
		fail("-max-mib must not be negative, got %d", *maxMiB)
	}
	if *interval < 0 {
		fail("-interval must not be negative, got %v", *interval)
	}
	if *hold && *maxMiB == 0 {
		fail("-hold needs -max-mib (without a maximum the hog never stops allocating)")
	}

	// An explicit handler matters when we are PID 1 of a container: init gets no default
	// signal actions, so without one SIGTERM would do nothing at all.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	onSignal := func(s os.Signal, total int) {
		if *ignoreTerm {
			fmt.Printf("memory_hog: ignoring %v\n", s)
			return
		}
		fmt.Printf("memory_hog: got %v with %d MiB allocated, exiting\n", s, total)
		os.Exit(0)
	}

	var regions [][]byte // kept reachable so the mappings stay for the process's lifetime
	total := 0
	ticker := time.NewTicker(max(*interval, time.Millisecond))
	defer ticker.Stop()
	for step := 1; *maxMiB == 0 || total < *maxMiB; step++ {
		n := *stepMiB
		if *maxMiB > 0 && total+n > *maxMiB {
			n = *maxMiB - total
		}
		b, err := syscall.Mmap(-1, 0, n*mib, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != nil {
			fail("step %d: allocating %d MiB: %v", step, n, err)
		}
		// Touch one byte per page: that is what makes the pages resident.
		for i := 0; i < len(b); i += os.Getpagesize() {
			b[i] = byte(step)
		}
		regions = append(regions, b)
		total += n
		fmt.Printf("memory_hog: step %d: +%d MiB, total %d MiB\n", step, n, total)
		if *maxMiB > 0 && total >= *maxMiB {
			break
		}
		if *interval > 0 {
			select {
			case <-ticker.C:
			case s := <-sigs:
				onSignal(s, total)
			}
		}
	}
	fmt.Printf("memory_hog: reached %d MiB\n", total)
	if *hold {
		fmt.Println("memory_hog: holding memory until signalled")
		for {
			onSignal(<-sigs, total)
		}
	}
	_ = regions
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "memory_hog: "+format+"\n", args...)
	os.Exit(2)
}
