// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenStageLookup(t *testing.T) {
	write := func(p string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	// Nothing next to the binary: no stage, no error (Start re-executes /proc/self/exe).
	if f, err := openStageNear(filepath.Join(root, "empty", "jackfruit")); f != nil || err != nil {
		t.Errorf("no stage: got %v, %v", f, err)
	}
	// The package layout: /usr/bin/jackfruit, /usr/libexec/jackfruit/jackfruit-init.
	write(filepath.Join(root, "usr", "libexec", "jackfruit", StageName), 0o755)
	f, err := openStageNear(filepath.Join(root, "usr", "bin", "jackfruit"))
	if err != nil || f == nil {
		t.Fatalf("package layout: %v, %v", f, err)
	}
	if !strings.HasSuffix(f.Name(), "/libexec/jackfruit/"+StageName) {
		t.Errorf("package layout: opened %s", f.Name())
	}
	f.Close()
	// A build tree: bin/jackfruit next to bin/jackfruit-init wins over libexec.
	write(filepath.Join(root, "usr", "bin", StageName), 0o755)
	f, err = openStageNear(filepath.Join(root, "usr", "bin", "jackfruit"))
	if err != nil || f == nil || f.Name() != filepath.Join(root, "usr", "bin", StageName) {
		t.Fatalf("same directory: %v, %v", f, err)
	}
	if got := stagePath(f); !strings.HasPrefix(got, "/proc/self/fd/") {
		t.Errorf("stagePath = %q", got)
	}
	f.Close()
	// Something there that cannot be executed is an error, not a silent fallback.
	write(filepath.Join(root, "odd", StageName), 0o644)
	if f, err := openStageNear(filepath.Join(root, "odd", "jackfruit")); err == nil || f != nil {
		t.Errorf("non-executable stage: %v, %v", f, err)
	}
	if got := stagePath(nil); got != "/proc/self/exe" {
		t.Errorf("stagePath(nil) = %q", got)
	}
}

// buildStage builds cmd/jackfruit-init for a test, or skips where there is no Go toolchain
// (the QEMU initramfs runs the test binary alone).
func buildStage(t *testing.T) *os.File {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if _, err := os.Stat("/usr/local/go/bin/go"); err != nil {
			t.Skip("no Go toolchain to build cmd/jackfruit-init")
		}
		gobin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(t.TempDir(), StageName)
	cmd := exec.Command(gobin, "build", "-o", out, "../../cmd/jackfruit-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", StageName, err, b)
	}
	f, err := openStageNear(filepath.Join(filepath.Dir(out), "jackfruit"))
	if err != nil || f == nil {
		t.Fatalf("opening the built stage: %v, %v", f, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A container started from the dedicated stage binary is the same container: PID 1 is the
// command, the confinement is in force, and a file that is not a stage fails the start.
func TestStartWithStageBinary(t *testing.T) {
	rootfs := testRootfs(t)
	stage := buildStage(t)
	spec := sh(rootfs, `echo pid=$$; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; hostname`)
	spec.Stage = stage
	r := run(t, spec)
	if r.exit.Code != 0 {
		t.Fatalf("exit %v, stderr %q", r.exit, r.stderr)
	}
	def, err := DefaultSecurity()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pid=1\n", "Seccomp:\t2\n", "CapEff:\t" + (def.Capabilities & BoundingSet()).String() + "\n", spec.Name + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout %q lacks %q", r.stdout, want)
		}
	}

	// The stage really is that file: busybox (no setup stage at all) exits without
	// reporting, and the start fails with the half-made container reaped.
	bogus, err := os.Open(filepath.Join(rootfs, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	defer bogus.Close()
	spec.Stage = bogus
	if p, err := Start(spec); err == nil {
		finish(t, p)
		t.Fatal("a start from busybox as the setup stage succeeded")
	} else if !strings.Contains(err.Error(), "setup stage exited before reporting") {
		t.Errorf("start from a non-stage: %v", err)
	}
	assertNoChildren(t)
}
