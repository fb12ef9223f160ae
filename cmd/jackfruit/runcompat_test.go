// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// oldSupervisorProxy stands between the CLI and a real supervisor and answers Run as a
// supervisor from before Run does (org.varlink.service.MethodNotFound), relaying every other
// call. It returns the proxy's socket path and the count of Run calls it refused.
func oldSupervisorProxy(t *testing.T, upstream string) (string, *atomic.Int32) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "old.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var runs atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go relayOld(c, upstream, &runs)
		}
	}()
	return path, &runs
}

func relayOld(c net.Conn, upstream string, runs *atomic.Int32) {
	defer c.Close()
	u, err := net.Dial("unix", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	cr, ur := bufio.NewReader(c), bufio.NewReader(u)
	for {
		req, err := cr.ReadBytes(0)
		if err != nil {
			return
		}
		var r struct {
			Method string `json:"method"`
		}
		if json.Unmarshal(req[:len(req)-1], &r) == nil && r.Method == "io.jackfruit.Jackfruit1.Run" {
			runs.Add(1)
			if _, err := c.Write([]byte(`{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.jackfruit.Jackfruit1.Run"}}` + "\x00")); err != nil {
				return
			}
			continue
		}
		if _, err := u.Write(req); err != nil {
			return
		}
		// Calls on a connection are answered in order: relay replies up to the last one.
		for {
			rep, err := ur.ReadBytes(0)
			if err != nil {
				return
			}
			if _, err := c.Write(rep); err != nil {
				return
			}
			if !bytes.Contains(rep, []byte(`"continues":true`)) {
				break
			}
		}
	}
}

// `run` against a supervisor without the Run call falls back to Start, Logs, Wait and Remove:
// same output, same exit code, the container removed with --rm.
func TestRunAgainstSupervisorWithoutRun(t *testing.T) {
	e := startSupervisor(t)
	old, runs := oldSupervisorProxy(t, e.socket)
	r := e.jf("--socket", old, "run", "--rm", "oldsup", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("run --rm through an old supervisor: %s", r)
	}
	if ps := e.jf("ps", "-a"); strings.Contains(ps.stdout, "oldsup") {
		t.Errorf("--rm left the container behind:\n%s", ps.stdout)
	}
	r = e.jf("--socket", old, "run", "kept", "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("run through an old supervisor: %s", r)
	}
	if ps := e.jf("ps", "-a"); !strings.Contains(ps.stdout, "kept") {
		t.Errorf("run without --rm removed the container:\n%s", ps.stdout)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("the CLI tried Run %d times, want 2 (then fell back)", n)
	}
}
