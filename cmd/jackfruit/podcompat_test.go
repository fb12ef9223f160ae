// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"strings"
	"testing"
)

// podman's --name: the same containers as the positional NAME, and the mistakes a mix of
// the two forms can make refused naming the conflict.
func TestPodmanName(t *testing.T) {
	e := startSupervisor(t)
	// run --rm with a ROOTFS and --, as with a positional NAME.
	for _, args := range [][]string{
		{"run", "--rm", "--name", "t", e.rootfs, "--", "/bin/sh", "-c", "echo out; exit 3"},
		{"run", "--rm", "t", e.rootfs, "--", "/bin/sh", "-c", "echo out; exit 3"},
		// A ROOTFS without --, and --name between other flags.
		{"run", "--rm", "--name", "t", "--hostname", "h", e.rootfs, "/bin/sh", "-c", "echo out; exit 3"},
	} {
		if r := e.jf(args...); r.code != 3 || r.stdout != "out\n" {
			t.Errorf("jackfruit %s: %s", strings.Join(args, " "), r)
		}
	}
	// run -d and start, with the -- that cobra takes before any argument.
	r := e.ok("run", "--name", "web", "-d", "--", "/bin/sleep", "100")
	if id := strings.TrimSpace(r.stdout); len(id) != 64 {
		t.Errorf("run --name -d printed %q, want an ID", r.stdout)
	}
	e.ok("start", "--name", "web2", "--", "/bin/sleep", "100")
	e.ok("start", "--name", "web3", "/bin/sleep", "100")
	for _, n := range []string{"web", "web2", "web3"} {
		if c := e.inspect(n); c.State != "running" || strings.Join(c.Command, " ") != "/bin/sleep 100" || !c.Overlay {
			t.Errorf("%s: %+v", n, c)
		}
	}
	// With --name, the first argument is never a name: `--name sh sh ...` runs sh.
	if r := e.jf("run", "--rm", "--name", "sh", "sh", "-c", "exit 4"); r.code != 4 {
		t.Errorf("run --name sh sh: %s", r)
	}
	// After --, even a directory is the command, not the rootfs.
	if r := e.jf("run", "--rm", "--name", "dir", "--", e.rootfs); r.code != 126 && r.code != 127 {
		t.Errorf("run --name dir -- DIR: %s", r)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"start", "--name", "", "--", "/bin/true"}, 1, `--name "": the container needs a name`},
		{[]string{"run", "--name", "", "--", "/bin/true"}, 125, `--name "": the container needs a name`},
		{[]string{"start", "a", "--name", "b", "--", "/bin/true"}, 1, `NAME "a" and --name "b": give the container's name once`},
		{[]string{"run", "a", "--name", "a", "/bin/true"}, 125, `NAME "a" and --name "a"`},
		// The one ambiguous spot: before --, only a directory is a rootfs.
		{[]string{"run", "--name", "a", "a", "--", "/bin/true"}, 125, `unexpected argument "a" before --: the name is given with --name "a"`},
		{[]string{"start", "--name", "a", "b", "--", "/bin/true"}, 1, `unexpected argument "b" before --: the name is given with --name "a"`},
		{[]string{"start", "--name", "a", "--rootfs", e.rootfs, "b", "--", "/bin/true"}, 1, `unexpected argument "b" before --`},
		{[]string{"start", "--name", "a", "./nope", "--", "/bin/true"}, 1, `rootfs "./nope" is not a directory`},
		{[]string{"start", "--name", "a"}, 1, "no command given"},
		{[]string{"start", "--name", "a", "--"}, 1, "no command given"},
		{[]string{"start", "--name", "a", e.rootfs}, 1, "no command given after ROOTFS"},
		{[]string{"start", "--name"}, 1, "flag needs an argument: --name"},
		{[]string{"start", "--name", "bad/name", "/bin/true"}, 1, `container name "bad/name" contains '/'`},
		{[]string{"start", "--name", "web", "/bin/true"}, 1, `container "web" already exists`},
		{[]string{"start"}, 1, "missing container NAME (the first argument, or --name NAME)"},
	} {
		r := e.jf(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("jackfruit %q: want exit %d and %q in stderr; got %s", tc.args, tc.code, tc.want, r)
		}
	}
	if ps := e.ok("ps", "-a", "--format", "{{.Name}}"); ps.stdout != "web\nweb2\nweb3\n" {
		t.Errorf("containers after the --name runs and refusals: %q", ps.stdout)
	}
	e.ok("rm", "-f", "-t", "0", "web", "web2", "web3")
}

// podman's -m/--memory and --memory-reservation set the limits --hard-mib and --soft-mib set.
func TestPodmanMemoryFlags(t *testing.T) {
	e := startSupervisor(t)
	for _, tc := range []struct {
		args       []string
		soft, hard uint64
	}{
		{[]string{"-m", "64m", "--memory-reservation", "40m"}, 40 << 20, 64 << 20},
		{[]string{"--memory", "48MiB", "--memory-reservation", "8192k"}, 8 << 20, 48 << 20},
		{[]string{"--memory=1G", "--memory-reservation=100000000b"}, 100000000, 1 << 30},
		{[]string{"-m", "100000000"}, 40 << 20, 100000000},
		// A hard limit alone below the default soft limit brings it down (the core's rule).
		{[]string{"-m", "20M"}, 20 << 20, 20 << 20},
		// Mixed with the MiB flags, one spelling per limit.
		{[]string{"--soft-mib", "8", "-m", "16m"}, 8 << 20, 16 << 20},
		{[]string{"--memory-reservation", "8m", "--hard-mib", "16"}, 8 << 20, 16 << 20},
	} {
		args := append(append([]string{"start", "m"}, tc.args...), "--", "/bin/true")
		e.ok(args...)
		if c := e.inspect("m"); c.SoftLimit != tc.soft || c.HardLimit != tc.hard {
			t.Errorf("jackfruit %q: soft %d hard %d, want %d %d", args, c.SoftLimit, c.HardLimit, tc.soft, tc.hard)
		}
		e.ok("rm", "-f", "m")
	}
	// With --name and run, the podman way throughout.
	if r := e.jf("run", "--rm", "--name", "p", "-m", "32m", "--memory-reservation", "16m", "--", "/bin/sh", "-c", "exit 5"); r.code != 5 {
		t.Errorf("run --name -m: %s", r)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"start", "z", "-m", "64m", "--hard-mib", "64"}, 1, "--memory and --hard-mib both set the hard memory limit: give one of them"},
		{[]string{"run", "z", "--hard-mib", "64", "--memory", "64m"}, 125, "--memory and --hard-mib both set the hard memory limit"},
		{[]string{"start", "z", "--memory-reservation", "8m", "--soft-mib", "8"}, 1, "--memory-reservation and --soft-mib both set the soft memory limit"},
		{[]string{"start", "z", "-m", "64x"}, 1, `--memory: invalid size "64x"`},
		{[]string{"run", "z", "-m", "1.5g"}, 125, `--memory: invalid size "1.5g"`},
		{[]string{"start", "z", "--memory-reservation", "-1m"}, 1, `--memory-reservation: invalid size "-1m"`},
		{[]string{"start", "z", "--memory", ""}, 1, `--memory: invalid size ""`},
		{[]string{"start", "z", "-m", "99999999999g"}, 1, `--memory: invalid size "99999999999g"`},
		{[]string{"start", "z", "-m", "0"}, 1, "--memory 0: not a limit (leave the flag out for the default)"},
		{[]string{"run", "z", "-m", "0m"}, 125, "--memory 0m: not a limit"},
		{[]string{"start", "z", "--memory-reservation", "0b"}, 1, "--memory-reservation 0b: not a limit"},
		// Ranges and the order of the limits stay the core's.
		{[]string{"start", "z", "-m", "1k"}, 1, "hard memory limit 1024 bytes is out of range"},
		{[]string{"start", "z", "--memory-reservation", "100m"}, 1, "soft memory limit 100 MiB exceeds hard memory limit 64 MiB (the default)"},
		{[]string{"start", "z", "-m", "32m", "--memory-reservation", "48m"}, 1, "soft memory limit 48 MiB exceeds hard memory limit 32 MiB"},
	} {
		args := append(tc.args, "--", "/bin/true")
		r := e.jf(args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("jackfruit %q: want exit %d and %q in stderr; got %s", args, tc.code, tc.want, r)
		}
	}
	if ps := e.ok("ps", "-a", "-q"); ps.stdout != "" {
		t.Errorf("containers after refused starts: %q", ps.stdout)
	}
}

// TestFlagErrorsAre125: a flag that run, exec or attach do not know is jackfruit's error, 125
// (podman's), and never reaches a supervisor; other verbs keep 1.
func TestFlagErrorsAre125(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"run", "--bogus", "x", "--", "/bin/true"}, 125},
		{[]string{"run", "--name"}, 125},
		{[]string{"exec", "--bogus", "x", "true"}, 125},
		{[]string{"attach", "--bogus", "x"}, 125},
		{[]string{"ps", "--bogus"}, 1},
	} {
		var stdout, stderr bytes.Buffer
		t.Setenv("JACKFRUIT_SOCKET", "/nonexistent/jackfruit.sock")
		code := execute(tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), "flag") {
			t.Errorf("jackfruit %q: exit %d, stderr %q; want %d and the flag named", tc.args, code, stderr.String(), tc.code)
		}
	}
}
