// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// procRSS measures memory without the kernel monitor: the sum of VmRSS of every process in
// the pid namespace of each given init, read from /proc in one pass. Shared pages count once
// per process, as ps's RSS column does; it is a display value, not an enforced limit.
func procRSS(inits []int) map[int]uint64 {
	out := make(map[int]uint64, len(inits))
	if len(inits) == 0 {
		return out
	}
	nsOf := make(map[string]int, len(inits)) // pid namespace link -> init pid
	for _, pid := range inits {
		if ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid"); err == nil {
			nsOf[ns] = pid
		}
	}
	if len(nsOf) == 0 {
		return out
	}
	d, err := os.Open("/proc")
	if err != nil {
		return out
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return out
	}
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		ns, err := os.Readlink("/proc/" + n + "/ns/pid")
		if err != nil {
			continue
		}
		init, ok := nsOf[ns]
		if !ok {
			continue
		}
		out[init] += vmRSS("/proc/" + n + "/status")
	}
	return out
}

func vmRSS(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
