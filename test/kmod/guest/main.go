// SPDX-License-Identifier: Apache-2.0

// Command ktest is the test program that runs inside the QEMU guest booted by
// test/kmod/run.sh. It is statically linked (CGO_ENABLED=0) and started by the
// initramfs /init as `ktest test` or `ktest bench`; it loads the module
// itself so that it can also test rmmod and insmod.
//
// Output protocol on the serial console (parsed by run.sh):
//
//	KTEST-RESULT <name> PASS|FAIL <detail>   one line per test
//	KTEST-LOG <name>: <text>                 diagnostics
//	KLOG <kernel message>                    kernel log lines quoted as evidence
//	KTEST-METRIC <key>=<value> ...           measurements from the tests
//	KBENCH {json}                            benchmark results (bench mode)
//	KTEST-DONE pass=N fail=M                 last line; absent means the run died
//
// Helper modes re-executed by the tests: `ktest hog ...` (paced memory hog)
// `ktest eperm PID` (tries REGISTER without CAP_KILL), `ktest noperm-fd ID PID` (the same
// on an inherited open file) and `ktest holder` (receives an open file over SCM_RIGHTS).
package main

import (
	"fmt"
	"os"
)

const modulePath = "/lib/container_monitor.ko"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ktest test|bench|hog|eperm")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "test":
		os.Exit(runTests())
	case "bench":
		os.Exit(runBench())
	case "hog":
		hogMain(os.Args[2:])
	case "eperm":
		epermMain(os.Args[2:])
	case "noperm-fd":
		nopermFdMain(os.Args[2:])
	case "holder":
		holderMain()
	default:
		fmt.Fprintf(os.Stderr, "ktest: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
