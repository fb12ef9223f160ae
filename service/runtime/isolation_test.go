// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseCap(t *testing.T) {
	for _, n := range []string{"NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "cap_net_admin", " Cap_Net_Admin "} {
		if c, err := ParseCap(n); err != nil || c != unix.CAP_NET_ADMIN {
			t.Errorf("ParseCap(%q) = %v, %v; want CAP_NET_ADMIN", n, c, err)
		}
	}
	for _, n := range []string{"", "ALL", "NET_ADMINS", "CAP_", "12"} {
		if _, err := ParseCap(n); err == nil || !strings.Contains(err.Error(), "unknown capability") {
			t.Errorf("ParseCap(%q) = %v, want an unknown capability error", n, err)
		}
	}
	// The table must agree with the kernel's numbering (x/sys mirrors capability.h).
	for num, name := range map[int]string{unix.CAP_CHOWN: "CHOWN", unix.CAP_SYS_ADMIN: "SYS_ADMIN",
		unix.CAP_SETFCAP: "SETFCAP", unix.CAP_SYSLOG: "SYSLOG", unix.CAP_BPF: "BPF",
		unix.CAP_CHECKPOINT_RESTORE: "CHECKPOINT_RESTORE"} {
		if capNames[num] != name {
			t.Errorf("capNames[%d] = %s, want %s", num, capNames[num], name)
		}
	}
}

func TestDefaultCapabilitiesValue(t *testing.T) {
	// The OCI default set, as /proc/PID/status shows it under runc, crun and podman.
	if got := DefaultCapabilities.String(); got != "00000000a80425fb" {
		t.Fatalf("DefaultCapabilities = %s, want 00000000a80425fb", got)
	}
	want := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
		"CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}
	if got := DefaultCapabilities.Names(); !slices.Equal(got, want) {
		t.Fatalf("DefaultCapabilities.Names() = %v, want %v", got, want)
	}
}

func TestResolveCapabilities(t *testing.T) {
	bit := func(c int) CapSet { return 1 << c }
	for _, tc := range []struct {
		add, drop []string
		want      CapSet
	}{
		{nil, nil, DefaultCapabilities},
		{[]string{"NET_ADMIN"}, []string{"cap_chown"}, (DefaultCapabilities | bit(unix.CAP_NET_ADMIN)) &^ bit(unix.CAP_CHOWN)},
		{nil, []string{"ALL"}, 0},
		{[]string{"net_bind_service"}, []string{"all"}, bit(unix.CAP_NET_BIND_SERVICE)},
		{[]string{"ALL"}, []string{"SYS_ADMIN"}, AllCapabilities() &^ bit(unix.CAP_SYS_ADMIN)},
		{[]string{"CHOWN"}, nil, DefaultCapabilities}, // already there
	} {
		got, err := ResolveCapabilities(tc.add, tc.drop)
		if err != nil || got != tc.want {
			t.Errorf("ResolveCapabilities(%q, %q) = %s, %v; want %s", tc.add, tc.drop, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		add, drop []string
		msg       string
	}{
		{[]string{"NET_ADMINZ"}, nil, `cap-add: unknown capability "NET_ADMINZ"`},
		{nil, []string{"bogus"}, `cap-drop: unknown capability "bogus"`},
		{[]string{"ALL"}, []string{"ALL"}, "contradict"},
		{[]string{"NET_ADMIN"}, []string{"CAP_NET_ADMIN"}, "CAP_NET_ADMIN are both added and dropped"},
	} {
		if _, err := ResolveCapabilities(tc.add, tc.drop); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ResolveCapabilities(%q, %q) = %v, want an error containing %q", tc.add, tc.drop, err, tc.msg)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]Network{"": NetworkHost, "host": NetworkHost, "none": NetworkNone} {
		if got, err := ParseNetwork(in); err != nil || got != want {
			t.Errorf("ParseNetwork(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"bridge", "Host", "none "} {
		if _, err := ParseNetwork(in); err == nil || !strings.Contains(err.Error(), "unknown network mode") {
			t.Errorf("ParseNetwork(%q) = %v, want an unknown network mode error", in, err)
		}
	}
}

// probeResults runs script in a container and parses its "key=value" lines.
func probeResults(t *testing.T, spec Spec) map[string]string {
	t.Helper()
	r := run(t, spec)
	if r.exit.Code != 0 {
		t.Fatalf("probe script: %v\nstdout: %s\nstderr: %s", r.exit, r.stdout, r.stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("probe script printed %q, want key=value lines\nall output: %s\nstderr: %s", line, r.stdout, r.stderr)
		}
		got[k] = v
	}
	return got
}

// expect checks probe results: every key must have been printed (so a probe that did not
// run cannot pass) with exactly the wanted value.
func expect(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		v, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: the probe did not report (did it run?); all results: %v", k, got)
		case v != want[k]:
			t.Errorf("%s = %q, want %q", k, v, want[k])
		}
	}
}

// hostDisk returns major and minor of a block device of the host worth stealing: the one
// under "/" if "/" is on a disk, else any disk in /sys/block. ok is false on a host without
// one (an initramfs VM).
func hostDisk(t *testing.T) (major, minor uint32, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			if _, err := fmt.Sscanf(f[2], "%d:%d", &major, &minor); err == nil && major != 0 {
				return major, minor, true
			}
		}
	}
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		dev, err := os.ReadFile(filepath.Join("/sys/block", n, "dev"))
		if err == nil {
			if _, err := fmt.Sscanf(strings.TrimSpace(string(dev)), "%d:%d", &major, &minor); err == nil {
				return major, minor, true
			}
		}
	}
	return 0, 0, false
}

func hostSysctl(t *testing.T, name string) string {
	t.Helper()
	return readTrim("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
}

// readTrim returns the file's content without surrounding space, "" when unreadable.
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TestEscapesRefused is the battery in manual mode: from inside a default container,
// each way of reaching the host is tried for real and must fail for the expected reason,
// while the ordinary things a root shell does keep working.
func TestEscapesRefused(t *testing.T) {
	rootfs := testRootfs(t)
	ratelimit := hostSysctl(t, "kernel.printk_ratelimit")
	if ratelimit == "" {
		t.Fatal("cannot read the host's kernel.printk_ratelimit")
	}
	major, minor, haveDisk := hostDisk(t)
	// A process outside the container, alive on the host during the whole test.
	outside := exec.Command("/bin/sleep", "1000")
	if err := outside.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = outside.Process.Kill(); _ = outside.Wait() }()
	script := fmt.Sprintf(`
		p() { k=$1; shift; echo "$k=$(jfprobe "$@" 2>&1)"; }
		# First, while the container's pid numbers are still small: a host process's pid
		# names nothing inside (were it a pid in use inside, say so instead of probing).
		if [ -e /proc/%[2]d ]; then echo ptrace-host=pid-in-use-inside; else p ptrace-host ptrace %[2]d; fi
		for s in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp; do
			echo "$s=$(grep "^$s:" /proc/self/status | cut -f2)"
		done
		p mount-tmpfs mount tmpfs tmpfs /tmp
		p remount-proc-sys remount-rw /proc/sys
		p remount-sb-proc-sys remount-sb-rw /proc/sys
		p umount-proc-sys umount /proc/sys
		p remount-sys remount-rw /sys
		p remount-sb-sys remount-sb-rw /sys
		p remount-root remount-rw /
		p sysctl-write write /proc/sys/kernel/printk_ratelimit %[1]s
		p sysrq write /proc/sysrq-trigger h
		p sethostname sethostname evil
		p syslog syslog
		p init-module init-module
		p bpf bpf
		p keyctl keyctl
		p add-key add-key
		echo "unshare-user=$(unshare -U true 2>&1 && echo ok)"
		echo "unshare-mnt=$(unshare -m true 2>&1 && echo ok)"
		p ptrace-child ptrace-child
		p kcore read /proc/kcore
		echo "keys=$(wc -c < /proc/keys)"
		echo "firmware=$(ls -A /sys/firmware | wc -l)"
		p mknod-dev mknod /dev/sda-copy c 1 1
		p open-dev-mem read /dev/sda-copy
		p mknod-shm mknod /dev/shm/mem c 1 1
		p open-shm-mem read /dev/shm/mem
		echo "devs=$(ls /dev | tr '\n' ' ')"
		# Ordinary workloads.
		p raw-socket raw-socket
		p bind-80 bind-tcp 80
		p chroot chroot /tmp
		touch /dev/shm/f && chown 1:1 /dev/shm/f && echo "chown=$(stat -c %%u:%%g /dev/shm/f)"
		echo "su=$(su -s /bin/sh daemon -c 'id -u' 2>&1)"
		ping -c1 -W2 127.0.0.1 >/dev/null 2>&1 && echo ping=ok || echo ping=failed
		echo "null=$(echo x > /dev/null && head -c 4 /dev/zero | wc -c)"
		echo "nodev-missing=$(grep -v -e ' - devpts ' /proc/self/mountinfo | awk '$6 !~ /(^|,)nodev(,|$)/ {print $5}' | while read m; do [ -c "$m" ] || echo "$m"; done | tr '\n' ' ')"
	`, ratelimit, outside.Process.Pid)
	if haveDisk {
		script += fmt.Sprintf(`
		p mknod-disk mknod /dev/shm/disk b %d %d
		p read-disk read /dev/shm/disk
		p mount-disk mount ext4 /dev/shm/disk /tmp
		`, major, minor)
	}
	got := probeResults(t, sh(rootfs, script))

	caps := DefaultCapabilities.String()
	want := map[string]string{
		"CapInh": caps, "CapPrm": caps, "CapEff": "00000000a80425fb", "CapBnd": caps,
		"CapAmb": "0000000000000000", "NoNewPrivs": "0", "Seccomp": "2",
		"mount-tmpfs": "EPERM", "remount-proc-sys": "EPERM", "remount-sb-proc-sys": "EPERM",
		"umount-proc-sys": "EPERM", "remount-sys": "EPERM", "remount-sb-sys": "EPERM",
		"remount-root": "EPERM",
		// Read-only bind mounts: the write is refused before the kernel looks at the value.
		"sysctl-write": "EROFS",
		"sethostname":  "EPERM",
		"bpf":          "EPERM",
		// Refused by the seccomp filter (keyrings are not namespaced; user namespaces are
		// the kernel's largest attack surface reachable without privileges).
		"keyctl": "EPERM", "add-key": "EPERM", "syslog": "EPERM", "init-module": "EPERM",
		"unshare-user": "unshare: unshare(0x10000000): Operation not permitted",
		"unshare-mnt":  "unshare: unshare(0x20000): Operation not permitted",
		// The pid namespace: the test's own pid names nothing inside; a child can be traced.
		"ptrace-host": "ESRCH", "ptrace-child": "ok",
		"keys": "0", "firmware": "0",
		// CAP_MKNOD is kept (OCI default), but every writable mount is nodev.
		"mknod-dev": "ok", "open-dev-mem": "EACCES", "mknod-shm": "ok", "open-shm-mem": "EACCES",
		"devs":       "fd full mqueue null ptmx pts random sda-copy shm stderr stdin stdout tty urandom zero ",
		"raw-socket": "ok", "bind-80": "ok", "chroot": "ok", "chown": "1:1", "su": "1",
		"null":          "4",
		"nodev-missing": "",
	}
	// ping of the host's 127.0.0.1 needs the host's lo up (an initramfs VM leaves it down).
	if flags, err := strconv.ParseUint(readTrim("/sys/class/net/lo/flags"), 0, 32); err == nil && flags&unix.IFF_UP != 0 {
		want["ping"] = "ok"
	} else {
		t.Log("the host's lo is down: ping is checked only by TestNetworkNone")
	}
	if _, err := os.Stat("/proc/sysrq-trigger"); err == nil {
		want["sysrq"] = "EROFS" // kernels with CONFIG_MAGIC_SYSRQ
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		want["kcore"] = "ok" // /dev/null: opens, reads nothing
	}
	if haveDisk {
		want["mknod-disk"], want["read-disk"], want["mount-disk"] = "ok", "EACCES", "EPERM"
	} else {
		t.Log("no block device on this host: the host-disk mknod checks are skipped")
	}
	expect(t, got, want)
}

func TestCapAddDrop(t *testing.T) {
	rootfs := testRootfs(t)
	set, err := ResolveCapabilities([]string{"NET_ADMIN"}, []string{"CHOWN", "NET_RAW"})
	if err != nil {
		t.Fatal(err)
	}
	spec := sh(rootfs, `
		echo "CapEff=$(grep ^CapEff: /proc/self/status | cut -f2)"
		echo "CapBnd=$(grep ^CapBnd: /proc/self/status | cut -f2)"
		touch /dev/shm/f; echo "chown=$(chown 1 /dev/shm/f 2>/dev/null && echo ok || echo refused)"
		echo "raw-socket=$(jfprobe raw-socket)"
		echo "link-down=$(jfprobe link-down lo)"`)
	// NET_ADMIN only inside a network namespace of its own: on the host's it could take the
	// host's lo down if the test failed.
	spec.Security = &Security{Capabilities: set, Network: NetworkNone}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Security.Capabilities != set {
		t.Errorf("Process.Security.Capabilities = %s, want %s", p.Security.Capabilities, set)
	}
	r := finish(t, p)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	expect(t, got, map[string]string{
		"CapEff": set.String(), "CapBnd": set.String(),
		"chown": "refused", "raw-socket": "EPERM", "link-down": "ok",
	})

	// cap-drop ALL: nothing at all, and root is an ordinary user to the kernel.
	spec = sh(rootfs, `
		echo "CapEff=$(grep ^CapEff: /proc/self/status | cut -f2)"
		echo "CapBnd=$(grep ^CapBnd: /proc/self/status | cut -f2)"
		echo "bind-80=$(jfprobe bind-tcp 80)"`)
	spec.Security = &Security{}
	got = probeResults(t, spec)
	expect(t, got, map[string]string{
		"CapEff": "0000000000000000", "CapBnd": "0000000000000000",
		"bind-80": "EACCES",
	})
}

func TestNetworkNone(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, `
		echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')"
		echo "lo-flags=$(cat /sys/class/net/lo/flags)"
		echo "netns=$(readlink /proc/self/ns/net)"
		ping -c1 -W2 127.0.0.1 >/dev/null 2>&1 && echo ping=ok || echo ping=failed
		echo "link-down=$(jfprobe link-down lo)"
		echo "proc-net-dev=$(tail -n +3 /proc/net/dev | cut -d: -f1 | xargs)"`)
	spec.Security = &Security{Capabilities: DefaultCapabilities, Network: NetworkNone}
	got := probeResults(t, spec)
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got["netns"] == "" || got["netns"] == host {
		t.Errorf("--network none: net namespace %q, want one other than the host's %q", got["netns"], host)
	}
	expect(t, got, map[string]string{
		"ifaces": "lo ", "lo-flags": "0x9", "ping": "ok", "link-down": "EPERM", "proc-net-dev": "lo",
	})

	if _, err := ParseNetwork("bridge"); err == nil {
		t.Fatal("bridge accepted")
	}
	spec.Security = &Security{Network: "bridge"}
	if p, err := Start(spec); err == nil || !strings.Contains(err.Error(), `unknown network mode "bridge"`) {
		if p != nil {
			finish(t, p)
		}
		t.Fatalf("Start with network bridge: %v, want a clear error", err)
	}
}

// TestWithoutSeccomp: seccomp=unconfined leaves the capability checks, which still refuse
// what needs a capability the container lacks.
func TestWithoutSeccomp(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, `
		echo "Seccomp=$(grep ^Seccomp: /proc/self/status | cut -f2)"
		echo "CapEff=$(grep ^CapEff: /proc/self/status | cut -f2)"
		echo "syslog=$(jfprobe syslog)"
		echo "init-module=$(jfprobe init-module)"
		echo "mount=$(jfprobe mount tmpfs tmpfs /tmp)"
		echo "bpf=$(jfprobe bpf)"`)
	spec.Security = &Security{Capabilities: DefaultCapabilities}
	want := map[string]string{"Seccomp": "0", "CapEff": "00000000a80425fb", "mount": "EPERM", "bpf": "EPERM"}
	// dmesg: without CAP_SYSLOG the kernel refuses when kernel.dmesg_restrict is 1 (Debian's
	// default); with 0 anyone may read it, as on the host.
	if hostSysctl(t, "kernel.dmesg_restrict") == "1" {
		want["syslog"] = "EPERM"
	}
	// init_module: EPERM from the capability check; a kernel built without modules has no
	// such system call at all (these build machines).
	want["init-module"] = "EPERM"
	if _, err := os.Stat("/proc/modules"); err != nil {
		want["init-module"] = "ENOSYS"
	}
	expect(t, probeResults(t, spec), want)
}

// TestFloor: Security.Floor is installed under the container's own filter (two filters), and
// refuses what jackfruit.service's system-call section refuses and the default profile lets
// through: ptrace and a set-user-ID bit.
func TestFloor(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, `
		echo "filters=$(grep ^Seccomp_filters: /proc/self/status | cut -f2)"
		echo "ptrace=$(jfprobe ptrace 1)"
		touch /tmp/f
		echo "chmod-suid=$(chmod u+s /tmp/f 2>/dev/null && echo ok || echo refused)"
		echo "chmod-plain=$(chmod 0750 /tmp/f 2>/dev/null && echo ok || echo refused)"`)
	sec, err := DefaultSecurity()
	if err != nil {
		t.Fatal(err)
	}
	if sec.Floor, err = FloorFilter(); err != nil {
		t.Fatal(err)
	}
	spec.Security = &sec
	expect(t, probeResults(t, spec), map[string]string{"filters": "2", "ptrace": "EPERM", "chmod-suid": "refused", "chmod-plain": "ok"})

	// Without the floor the same container gets one filter, and the profile lets both through.
	spec.Security.Floor = nil
	expect(t, probeResults(t, spec), map[string]string{"filters": "1", "chmod-suid": "ok", "chmod-plain": "ok"})
}

func TestNoNewPrivileges(t *testing.T) {
	rootfs := testRootfs(t)
	spec := sh(rootfs, `echo "NoNewPrivs=$(grep ^NoNewPrivs: /proc/self/status | cut -f2)"`)
	spec.Security = &Security{Capabilities: DefaultCapabilities, NoNewPrivileges: true}
	expect(t, probeResults(t, spec), map[string]string{"NoNewPrivs": "1"})
}

// TestNoNewPrivilegesInherited: a supervisor that runs with no_new_privs (jackfruit.service has
// NoNewPrivileges=yes) passes it to every container, and Process.Security says so even when
// the container did not ask for it.
func TestNoNewPrivilegesInherited(t *testing.T) {
	rootfs := testRootfs(t)
	// Never unlocked: no_new_privs cannot be cleared, so the thread must end with this test
	// (a goroutine that exits locked takes its thread with it). Start forks from this thread.
	goruntime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_NO_NEW_PRIVS: %v", err)
	}
	spec := sh(rootfs, `echo "NoNewPrivs=$(grep ^NoNewPrivs: /proc/self/status | cut -f2)"`)
	spec.Security = &Security{Capabilities: DefaultCapabilities}
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !p.Security.NoNewPrivileges {
		t.Errorf("Process.Security.NoNewPrivileges = false under an inherited no_new_privs")
	}
	r := finish(t, p)
	if strings.TrimSpace(r.stdout) != "NoNewPrivs=1" {
		t.Errorf("container printed %q (stderr %q), want NoNewPrivs=1", r.stdout, r.stderr)
	}
}

func TestBoundingSet(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:\t"); ok {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil || CapSet(n) != BoundingSet() {
				t.Fatalf("BoundingSet() = %s, /proc/self/status says %s", BoundingSet(), v)
			}
			return
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
}

// TestExecConfined: a command run with Exec is confined exactly as the container's init:
// default capabilities and filter for a default container, nothing for cap-drop ALL.
func TestExecConfined(t *testing.T) {
	script := `for s in CapEff CapBnd CapInh NoNewPrivs Seccomp; do echo "$s=$(grep "^$s:" /proc/self/status | cut -f2)"; done; echo "mount=$(jfprobe mount tmpfs tmpfs /tmp)"; echo "userns=$(unshare -U true 2>&1 && echo ok)"`
	parse := func(out string) map[string]string {
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(l, "=")
			got[k] = v
		}
		return got
	}
	p := startSleeper(t, "exec-confined")
	exit, out, errOut, err := execOut(t, p, ExecSpec{Args: []string{"/bin/sh", "-c", script}})
	if err != nil || exit.Code != 0 {
		t.Fatalf("exec: %v %v %s", exit, err, errOut)
	}
	caps := DefaultCapabilities.String()
	expect(t, parse(out), map[string]string{"CapEff": caps, "CapBnd": caps, "CapInh": caps, "NoNewPrivs": "0", "Seccomp": "2",
		"mount": "EPERM", "userns": "unshare: unshare(0x10000000): Operation not permitted"})

	spec := Spec{Name: "exec-bare", Rootfs: testRootfs(t), Args: []string{"/bin/sleep", "1000"},
		Security: &Security{NoNewPrivileges: true}}
	bare, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bare.Signal(syscall.SIGKILL); finish(t, bare) }()
	exit, out, errOut, err = execOut(t, bare, ExecSpec{Args: []string{"/bin/sh", "-c", script}})
	if err != nil || exit.Code != 0 {
		t.Fatalf("exec: %v %v %s", exit, err, errOut)
	}
	expect(t, parse(out), map[string]string{"CapEff": "0000000000000000", "CapBnd": "0000000000000000",
		"CapInh": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "0", "mount": "EPERM"})
}
