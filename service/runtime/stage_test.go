// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// Spec.Overlay: the setup stage mounts the overlay in the container's namespace only. The
// container sees the base and writes into the upper layer; the caller's namespace never has
// a mount there, during or after; with Volatile too.
func TestSpecOverlay(t *testing.T) {
	rootfs := testRootfs(t)
	dir := overlayTempDir(t)
	for i, volatile := range []bool{false, true} {
		d := filepath.Join(dir, strconv.Itoa(i))
		o := &Overlay{Lower: rootfs, Upper: filepath.Join(d, "upper"), Work: filepath.Join(d, "work"), Volatile: volatile}
		target := filepath.Join(d, "rootfs")
		for _, p := range []string{o.Upper, o.Work, target} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		spec := sh(target, "echo written > /etc/written; cat /etc/hostname; grep -c ' / / .* - overlay ' /proc/self/mountinfo; exec sleep 1000")
		spec.Overlay = o
		p, err := Start(spec)
		if err != nil {
			t.Fatalf("volatile=%v: %v", volatile, err)
		}
		// Two lines, then the container sleeps with its overlay mounted.
		br := bufio.NewReader(p.Stdout)
		var out string
		for i := 0; i < 2; i++ {
			l, err := br.ReadString('\n')
			out += l
			if err != nil {
				break
			}
		}
		if m, err := isMountPoint(target); err != nil || m {
			t.Errorf("volatile=%v: %s is a mount point in the caller's namespace (%v)", volatile, target, err)
		}
		p.Signal(syscall.SIGKILL)
		r := finish(t, p)
		if out != "jackfruit\n1\n" {
			t.Errorf("volatile=%v: container printed %q (stderr %q)", volatile, out, r.stderr)
		}
		if b, err := os.ReadFile(filepath.Join(o.Upper, "etc/written")); err != nil || string(b) != "written\n" {
			t.Errorf("volatile=%v: upper layer holds %q, %v", volatile, b, err)
		}
		if _, err := os.Stat(filepath.Join(rootfs, "etc/written")); !os.IsNotExist(err) {
			t.Errorf("volatile=%v: the write reached the base: %v", volatile, err)
		}
	}
	// Paths the mount options cannot carry are refused before anything starts.
	spec := sh(dir, "true")
	spec.Overlay = &Overlay{Lower: rootfs, Upper: filepath.Join(dir, "a,b"), Work: filepath.Join(dir, "w")}
	if _, err := Start(spec); err == nil || !strings.Contains(err.Error(), "must not contain") {
		t.Errorf("overlay path with a comma: %v", err)
	}
}
