// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// abiProbe prints every constant, size and offset of kmod/monitor_ioctl.h as
// "key value" lines; TestABIMatchesHeader compares them with the Go mirror. The
// constants and structs probed are read from the header itself (headerABI), so a
// definition added there without a Go mirror fails the test.
const abiProbe = `#include <stdio.h>
#include <stddef.h>
#include "monitor_ioctl.h"

#define C(x) printf("%s %llu\n", #x, (unsigned long long)(x))
#define S(t) printf("sizeof(%s) %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offsetof(%s.%s) %zu\n", #t, #f, offsetof(struct t, f))

int main(void)
{
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
	{"cm_register", RegisterArgs{}, []string{"pidfd", "flags", "soft_limit", "hard_limit", "id", "reserved", "name"}},
	{"cm_unregister", UnregisterArgs{}, []string{"id", "flags", "reserved"}},
	{"cm_query", QueryArgs{}, []string{"id", "flags", "pid", "rss", "soft_limit", "hard_limit", "sample_ns", "nr_tasks", "reserved", "name"}},
	{"cm_query_all", QueryAllArgs{}, []string{"entries", "count", "total", "flags", "reserved"}},
	{"cm_stats", Stats{}, []string{"entries", "max_entries", "scan_interval_ms", "events_queued", "scans",
		"scan_ns_total", "last_scan_ns", "max_scan_ns", "events_dropped", "kills",
		"file_entries", "event_queue_len", "scan_pending", "reserved"}},
	{"cm_event", RawEvent{}, []string{"type", "pid", "id", "seq", "rss", "limit", "time_ns", "mono_ns", "name"}},
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
		"CM_IOC_QUERY_ALL":     uint64(IocQueryAll),
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

var (
	defineRe = regexp.MustCompile(`^#define\s+(CM_[A-Z0-9_]+)\s+\S`)
	structRe = regexp.MustCompile(`^struct\s+(cm_[a-z0-9_]+)\s*\{`)
	fieldRe  = regexp.MustCompile(`^\s*(?:__[us](?:8|16|32|64)|char)\s+([a-z0-9_]+)(?:\[[^\]]*\])?;`)
)

// headerABI lists the numeric CM_* constants of the header (not the include guard nor
// the device name string) and the fields of every struct, in order.
func headerABI(t *testing.T, path string) (defines []string, structs map[string][]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	structs = map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		if m := defineRe.FindStringSubmatch(line); m != nil && m[1] != "CM_DEVICE_NAME" {
			defines = append(defines, m[1])
		}
		if m := structRe.FindStringSubmatch(line); m != nil {
			cur = m[1]
			structs[cur] = nil
			continue
		}
		if cur == "" {
			continue
		}
		if strings.HasPrefix(line, "};") {
			cur = ""
			continue
		}
		if m := fieldRe.FindStringSubmatch(line); m != nil {
			structs[cur] = append(structs[cur], m[1])
		}
	}
	if len(defines) == 0 || len(structs) == 0 {
		t.Fatalf("no CM_* constants or cm_* structs found in %s", path)
	}
	return defines, structs
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

	defines, structs := headerABI(t, filepath.Join(kmod, "monitor_ioctl.h"))
	var probes strings.Builder
	for _, d := range defines {
		fmt.Fprintf(&probes, "\tC(%s);\n", d)
	}
	mirrored := map[string]bool{}
	for _, l := range layouts {
		mirrored[l.cname] = true
		if got := structs[l.cname]; strings.Join(got, ",") != strings.Join(l.fields, ",") {
			t.Errorf("struct %s: header fields %v, Go mirror lists %v", l.cname, got, l.fields)
		}
		fmt.Fprintf(&probes, "\tS(%s);\n", l.cname)
		for _, f := range l.fields {
			fmt.Fprintf(&probes, "\tO(%s, %s);\n", l.cname, f)
		}
	}
	for name := range structs {
		if !mirrored[name] {
			t.Errorf("struct %s is in the header but has no Go mirror in layouts", name)
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
