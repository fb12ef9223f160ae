// SPDX-License-Identifier: Apache-2.0

package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fakeRoot builds a small rootfs for resolution tests; it needs no privileges.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string, mode os.FileMode) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("bin/busybox", 0o755)
	mk("usr/bin/tool", 0o755)
	mk("usr/local/bin/data", 0o644) // earlier in PATH than a runnable one below
	mk("usr/bin/data", 0o755)
	mk("sbin/noexec", 0o644)
	if err := os.MkdirAll(filepath.Join(root, "opt/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	link("/bin/busybox", "bin/sh")           // absolute: must mean root/bin/busybox
	link("../../bin/busybox", "usr/bin/rel") // relative
	link("/../../../../bin/busybox", "usr/bin/escape")
	link("/usr/bin/env", "bin/hostenv") // exists on most hosts, never in this root
	link("loop2", "bin/loop1")
	link("loop1", "bin/loop2")
	link("/usr", "u")                  // directory link in the middle of a path
	link("/bin/sh", "usr/bin/chained") // link to a link
	return root
}

func TestResolveCommand(t *testing.T) {
	root := fakeRoot(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"sh", "-c", "x"}, nil, "/bin/sh"},
		{[]string{"tool"}, nil, "/usr/bin/tool"},
		{[]string{"rel"}, nil, "/usr/bin/rel"},
		{[]string{"escape"}, nil, "/usr/bin/escape"},
		{[]string{"chained"}, nil, "/usr/bin/chained"},
		{[]string{"/bin/sh"}, nil, "/bin/sh"},
		{[]string{"bin/sh"}, nil, "/bin/sh"}, // relative to the working directory "/"
		{[]string{"/u/bin/tool"}, nil, "/u/bin/tool"},
		{[]string{"/usr/../bin/sh"}, nil, "/usr/../bin/sh"},
		{[]string{"/u/../bin/sh"}, nil, "/u/../bin/sh"}, // ".." after the link: /usr/.. = /
		{[]string{"data"}, nil, "/usr/bin/data"},        // a non-executable earlier match is skipped
		{[]string{"tool"}, []string{"PATH=/nowhere:/usr/bin"}, "/usr/bin/tool"},
		{[]string{"tool"}, []string{"PATH=/bin", "PATH=/usr/bin"}, "/usr/bin/tool"}, // last wins
	} {
		got, err := ResolveCommand(root, tc.args, tc.env)
		if err != nil || got != tc.want {
			t.Errorf("ResolveCommand(%q, env %q) = %q, %v; want %q", tc.args, tc.env, got, err, tc.want)
		}
	}
}

func TestResolveCommandErrors(t *testing.T) {
	root := fakeRoot(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want error
		msg  string
		code int
	}{
		{[]string{"nope"}, nil, ErrCommandNotFound, `executable file "nope" not found in $PATH: no such file or directory`, 127},
		{[]string{"/bin/nope"}, nil, ErrCommandNotFound, `executable file "/bin/nope" not found: no such file or directory`, 127},
		{[]string{"hostenv"}, nil, ErrCommandNotFound, `executable file "hostenv" not found in $PATH: no such file or directory`, 127},
		{[]string{"/bin/loop1"}, nil, ErrCommandNotFound, `executable file "/bin/loop1" not found: too many levels of symbolic links`, 127},
		{[]string{"/bin/loop1/../sh"}, nil, ErrCommandNotFound, `executable file "/bin/loop1/../sh" not found: too many levels of symbolic links`, 127},
		{[]string{"/bin/sh/x"}, nil, ErrCommandNotFound, `executable file "/bin/sh/x" not found: not a directory`, 127},
		{[]string{"tool"}, []string{"PATH=/bin"}, ErrCommandNotFound, `executable file "tool" not found in $PATH: no such file or directory`, 127},
		{[]string{"noexec"}, nil, ErrCommandNotExecutable, `executable file "/sbin/noexec" cannot be run: permission denied`, 126},
		{[]string{"/opt/dir"}, nil, ErrCommandNotExecutable, `executable file "/opt/dir" cannot be run: is a directory`, 126},
		{[]string{"dir"}, []string{"PATH=/opt"}, ErrCommandNotExecutable, `executable file "/opt/dir" cannot be run: is a directory`, 126},
		{nil, nil, ErrCommandNotFound, "no command given", 127},
		{[]string{""}, nil, ErrCommandNotFound, "no command given", 127},
	} {
		_, err := ResolveCommand(root, tc.args, tc.env)
		var ce *CommandError
		if !errors.Is(err, tc.want) || !errors.As(err, &ce) {
			t.Errorf("ResolveCommand(%q) = %v, want %v", tc.args, err, tc.want)
			continue
		}
		if err.Error() != tc.msg || ce.ExitCode() != tc.code {
			t.Errorf("ResolveCommand(%q): message %q code %d, want %q code %d", tc.args, err, ce.ExitCode(), tc.msg, tc.code)
		}
	}
}

func TestBuildEnv(t *testing.T) {
	got := buildEnv([]string{"TERM=dumb", "A=1", "A=2", "B="})
	want := []string{"PATH=" + DefaultPath, "HOME=/root", "TERM=dumb", "A=2", "B="}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("buildEnv = %q, want %q", got, want)
	}
}

func TestExitString(t *testing.T) {
	if s := (Exit{Code: 137, Signal: 9}).String(); s != "killed by signal 9 (SIGKILL), code 137" {
		t.Errorf("got %q", s)
	}
	if s := (Exit{Code: 3}).String(); s != "exited with code 3" {
		t.Errorf("got %q", s)
	}
}
