// SPDX-License-Identifier: Apache-2.0

package seccomp

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestDefaultOCI: the runtime-spec form holds the rules moby's own
// resolution keeps, on the native architecture only, and compiling it back
// gives exactly Default's program.
func TestDefaultOCI(t *testing.T) {
	for name, caps := range capSets {
		oci, err := DefaultOCI(caps)
		if err != nil {
			t.Fatal(err)
		}
		moby := mobyResolved(t, caps)
		if !reflect.DeepEqual(oci.Syscalls, moby.Syscalls) {
			t.Errorf("%s: DefaultOCI's rules differ from moby's resolution", name)
		}
		if want := []specs.Arch{specArches[runtime.GOARCH]}; !reflect.DeepEqual(oci.Architectures, want) {
			t.Errorf("%s: architectures %v, want %v", name, oci.Architectures, want)
		}
		back := &profiles.Seccomp{LinuxSeccomp: specs.LinuxSeccomp{DefaultAction: oci.DefaultAction, DefaultErrnoRet: oci.DefaultErrnoRet}}
		for _, s := range oci.Syscalls {
			back.Syscalls = append(back.Syscalls, &profiles.Syscall{LinuxSyscall: s})
		}
		f, err := Compile(back, Config{Caps: caps})
		if err != nil {
			t.Fatal(err)
		}
		d, err := Default(caps)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Marshal(), d.Marshal()) {
			t.Errorf("%s: DefaultOCI compiles to another program than Default", name)
		}
	}
}

// TestRuncEnforcesDefaultOCI runs a container with runc under DefaultOCI and
// without it: under it the process is in seccomp mode 2 and unshare -U (which
// needs no capability, so only the filter refuses it) fails; without it the
// same command succeeds.
func TestRuncEnforcesDefaultOCI(t *testing.T) {
	needRoot(t)
	rootfs := os.Getenv("JACKFRUIT_TEST_ROOTFS")
	if rootfs == "" {
		t.Skip("JACKFRUIT_TEST_ROOTFS is not set: run `make rootfs` and set it to build/rootfs")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed")
	}
	script := "grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?"
	run := func(withFilter bool) string {
		t.Helper()
		dir := t.TempDir()
		bundle, state := filepath.Join(dir, "bundle"), filepath.Join(dir, "state")
		if err := os.Mkdir(bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("runc", "spec")
		cmd.Dir = bundle
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("runc spec: %v: %s", err, out)
		}
		path := filepath.Join(bundle, "config.json")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var spec specs.Spec
		if err := json.Unmarshal(raw, &spec); err != nil {
			t.Fatal(err)
		}
		spec.Root = &specs.Root{Path: rootfs, Readonly: true}
		spec.Process.Terminal = false
		spec.Process.Args = []string{"/bin/sh", "-c", script}
		if withFilter {
			if spec.Linux.Seccomp, err = DefaultOCI(spec.Process.Capabilities.Bounding); err != nil {
				t.Fatal(err)
			}
		}
		if raw, err = json.Marshal(&spec); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		id := "jf-seccomp-test-" + strings.ReplaceAll(filepath.Base(dir), "_", "-")
		out, err := exec.Command("runc", "--root", state, "run", "--bundle", bundle, id).CombinedOutput()
		if err != nil {
			t.Fatalf("runc run (filter %v): %v: %s", withFilter, err, out)
		}
		return string(out)
	}
	without := run(false)
	if !strings.Contains(without, "Seccomp:\t0") || !strings.Contains(without, "unshare=0") {
		t.Skipf("without a filter the probe does not succeed, so it cannot show the filter: %q", without)
	}
	with := run(true)
	t.Logf("without the filter: %q; under DefaultOCI: %q", without, with)
	if !strings.Contains(with, "Seccomp:\t2") || !strings.Contains(with, "unshare=1") || !strings.Contains(with, "Operation not permitted") {
		t.Fatalf("under DefaultOCI: %q, want Seccomp 2 and unshare refused with EPERM", with)
	}
}
