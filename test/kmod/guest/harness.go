// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// T is a minimal test context: Errorf records a failure, Fatalf also ends
// the test.
type T struct {
	name   string
	errors []string
}

type fatal struct{}

func (t *T) Logf(format string, a ...any) {
	fmt.Printf("KTEST-LOG %s: %s\n", t.name, fmt.Sprintf(format, a...))
}

func (t *T) Errorf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	t.errors = append(t.errors, msg)
	fmt.Printf("KTEST-LOG %s: error: %s\n", t.name, msg)
}

func (t *T) Fatalf(format string, a ...any) {
	t.Errorf(format, a...)
	panic(fatal{})
}

type testCase struct {
	name string
	fn   func(t *T)
}

// run runs one test, then checks the kernel log written meanwhile for
// complaints (any is a failure of that test).
func run(tc testCase, k *kmsg) bool {
	t := &T{name: tc.name}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					t.errors = append(t.errors, fmt.Sprintf("panic: %v", r))
				}
			}
		}()
		tc.fn(t)
	}()
	for _, m := range kernelComplaints(k.next()) {
		t.errors = append(t.errors, "kernel complained: "+m)
	}
	d := time.Since(start).Round(10 * time.Millisecond)
	if len(t.errors) == 0 {
		fmt.Printf("KTEST-RESULT %s PASS (%v)\n", tc.name, d)
		return true
	}
	fmt.Printf("KTEST-RESULT %s FAIL (%v): %s\n", tc.name, d, strings.Join(t.errors, "; "))
	return false
}

func runTests() int {
	k, err := openKmsg()
	if err != nil {
		fmt.Printf("KTEST-RESULT setup FAIL: %v\nKTEST-DONE pass=0 fail=1\n", err)
		return 1
	}
	k.next() // boot messages are judged by run.sh, not per test
	tests := []testCase{
		{"load", testLoad},
		{"version", testVersion},
		{"register-query-unregister", testRoundTrip},
		{"errnos", testErrnos},
		{"eperm-without-cap-kill", testEPERM},
		{"read-poll-nonblock", testReadPoll},
		{"queue-overflow-drops-oldest", testOverflow},
		{"hog-init-soft-then-hard", testHogInit},
		{"hog-child-of-init", testHogChild},
		{"soft-warns-once-per-crossing", testSoftRecross},
		{"exit-removes-entry", testExit},
		{"pid-reuse-not-hit", testPidReuse},
		{"unregister-after-reap-by-id", testUnregisterAfterReap},
		{"two-openers", testTwoOpeners},
		{"close-drops-entries-handover-keeps", testCloseDropsEntries},
		{"faulting-read-loses-nothing", testFaultingRead},
		{"reserved-fields-einval", testReservedFields},
		{"unprivileged-opener", testUnprivileged},
		{"query-all", testQueryAll},
		{"query-from-last-scan", testQueryFromScan},
		{"idle-no-scan", testIdleNoScan},
		{"concurrent-8-threads", testConcurrent},
		{"fuzz-10000-ioctls", testFuzz},
		{"rmmod-live-entries-and-reload", testRmmod},
	}
	var only *regexp.Regexp
	if o := os.Getenv("KTEST_ONLY"); o != "" {
		only = regexp.MustCompile(o)
	}
	pass, fail := 0, 0
	for _, tc := range tests {
		if only != nil && tc.name != "load" && !only.MatchString(tc.name) {
			continue
		}
		if run(tc, k) {
			pass++
		} else {
			fail++
			if tc.name == "load" {
				break // nothing else can work
			}
		}
	}
	fmt.Printf("KTEST-DONE pass=%d fail=%d\n", pass, fail)
	if fail > 0 {
		return 1
	}
	return 0
}
