// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// abiProbe prints every constant, size and offset of kmod/monitor_ioctl.h as
// "key value" lines; TestABIMatchesHeader compares them with the Go mirror.
const abiProbe = `#include <stdio.h>
#include <stddef.h>
#include "monitor_ioctl.h"

#define C(x) printf("%s %llu\n", #x, (unsigned long long)(x))
#define S(t) printf("sizeof(%s) %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offsetof(%s.%s) %zu\n", #t, #f, offsetof(struct t, f))

int main(void)
{
	C(CM_ABI_VERSION); C(CM_NAME_LEN); C(CM_IOC_MAGIC);
	C(CM_QUERY_SOFT_WARNED); C(CM_QUERY_KILLED); C(CM_QUERY_EXITED);
	C(CM_EVENT_REGISTERED); C(CM_EVENT_SOFT); C(CM_EVENT_HARD); C(CM_EVENT_EXITED);
	C(CM_IOC_GET_VERSION); C(CM_IOC_REGISTER); C(CM_IOC_UNREGISTER);
	C(CM_IOC_QUERY); C(CM_IOC_STATS);
	printf("device %s\n", "/dev/" CM_DEVICE_NAME);
%s
	return 0;
}
`

// layouts lists, per C struct, the Go mirror and the field names in order.
var layouts = []struct {
	cname  string
	goval  any
	fields []string
}{
	{"cm_version", VersionInfo{}, []string{"abi_version", "event_size", "name_len", "reserved"}},
	{"cm_register", RegisterArgs{}, []string{"pid", "flags", "soft_limit", "hard_limit", "name"}},
	{"cm_unregister", UnregisterArgs{}, []string{"pid", "reserved"}},
	{"cm_query", QueryArgs{}, []string{"pid", "flags", "rss", "soft_limit", "hard_limit", "nr_tasks", "reserved", "name"}},
	{"cm_stats", Stats{}, []string{"entries", "max_entries", "scan_interval_ms", "events_queued", "scans",
		"scan_ns_total", "last_scan_ns", "max_scan_ns", "events_dropped", "kills"}},
	{"cm_event", RawEvent{}, []string{"type", "pid", "seq", "rss", "limit", "time_ns", "name"}},
}

func goLayout(t *testing.T) map[string]uint64 {
	t.Helper()
	want := map[string]uint64{
		"CM_ABI_VERSION":       ABIVersion,
		"CM_NAME_LEN":          NameLen,
		"CM_IOC_MAGIC":         IocMagic,
		"CM_QUERY_SOFT_WARNED": QuerySoftWarned,
		"CM_QUERY_KILLED":      QueryKilled,
		"CM_QUERY_EXITED":      QueryExited,
		"CM_EVENT_REGISTERED":  uint64(EventRegistered),
		"CM_EVENT_SOFT":        uint64(EventSoft),
		"CM_EVENT_HARD":        uint64(EventHard),
		"CM_EVENT_EXITED":      uint64(EventExited),
		"CM_IOC_GET_VERSION":   uint64(IocGetVersion),
		"CM_IOC_REGISTER":      uint64(IocRegister),
		"CM_IOC_UNREGISTER":    uint64(IocUnregister),
		"CM_IOC_QUERY":         uint64(IocQuery),
		"CM_IOC_STATS":         uint64(IocStats),
	}
	for _, l := range layouts {
		want["sizeof("+l.cname+")"] = uint64(sizeOf(l.goval))
		offs := fieldOffsets(l.goval)
		if len(offs) != len(l.fields) {
			t.Fatalf("Go struct for %s has %d fields, the C one %d", l.cname, len(offs), len(l.fields))
		}
		for i, f := range l.fields {
			want["offsetof("+l.cname+"."+f+")"] = uint64(offs[i])
		}
	}
	return want
}

func TestABIMatchesHeader(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatalf("this test compiles kmod/monitor_ioctl.h and needs a C compiler: %v (apt-get install gcc)", err)
	}
	_, self, _, _ := runtime.Caller(0)
	kmod := filepath.Join(filepath.Dir(self), "..", "..", "kmod")
	if _, err := os.Stat(filepath.Join(kmod, "monitor_ioctl.h")); err != nil {
		t.Fatalf("ABI header not found: %v", err)
	}

	var probes strings.Builder
	for _, l := range layouts {
		fmt.Fprintf(&probes, "\tS(%s);\n", l.cname)
		for _, f := range l.fields {
			fmt.Fprintf(&probes, "\tO(%s, %s);\n", l.cname, f)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "probe.c")
	if err := os.WriteFile(src, []byte(strings.Replace(abiProbe, "%s\n\treturn", probes.String()+"\treturn", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command(cc, "-std=c11", "-Wall", "-Werror", "-I", kmod, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compiling the ABI probe against %s/monitor_ioctl.h: %v\n%s", kmod, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the ABI probe: %v", err)
	}

	want := goLayout(t)
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("bad probe line %q", sc.Text())
		}
		if key == "device" {
			if val != DefaultDevice {
				t.Errorf("device: C %s, Go %s", val, DefaultDevice)
			}
			continue
		}
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			t.Fatalf("bad probe value in %q: %v", sc.Text(), err)
		}
		w, ok := want[key]
		if !ok {
			t.Errorf("%s is in the C header probe but not mirrored in Go", key)
			continue
		}
		seen[key] = true
		if n != w {
			t.Errorf("%s: C %d (%#x), Go %d (%#x)", key, n, n, w, w)
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("%s not printed by the C probe", k)
		}
	}
	if EventSize != int(unsafe.Sizeof(RawEvent{})) {
		t.Errorf("EventSize %d != sizeof RawEvent", EventSize)
	}
}
