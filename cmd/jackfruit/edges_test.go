// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/control"
)

// Numbers at the edges are refused before they are converted (a wrapped product passes for
// another value), with an error naming the flag; empty values are not silent defaults.
func TestInputEdges(t *testing.T) {
	e := startSupervisor(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "a", "--stop-timeout", "18446744074", "--", "true"}, "--stop-timeout 18446744074: too large"},
		{[]string{"start", "a", "--stop-timeout", "9223372037", "--", "true"}, "--stop-timeout 9223372037: too large"},
		{[]string{"start", "a", "--stop-timeout", "100000", "--", "true"}, "stop timeout 27h46m40s is out of range"},
		{[]string{"start", "a", "--rootfs", "", "--", "true"}, `--rootfs "": no directory given`},
		{[]string{"stop", "-t", "9223372037", "a"}, "--time 9223372037: too large"},
		{[]string{"logs", "--since", "9999999999999", "a"}, "--since 9999999999999: Unix seconds after the year 9999"},
		{[]string{"kill", "-s", "99", "a"}, "signal 99 is not a valid signal number"}, // the core's rule
	} {
		r := e.jf(c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("jackfruit %s: want an error with %q, got %s", strings.Join(c.args, " "), c.want, r)
		}
	}
	if r := e.jf("ps", "-a", "-q"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("a refused start left containers: %s", r)
	}
	// --since 0 is the epoch: every line.
	e.ok("start", "old", "--", "sh", "-c", "echo one; echo two")
	e.ok("wait", "old")
	if r := e.ok("logs", "--since", "0", "old"); r.stdout != "one\ntwo\n" {
		t.Errorf("logs --since 0: %q, want both lines", r.stdout)
	}
}

// The socket adapter decides nothing itself: a bad signal is the core's InvalidArgument (as on
// D-Bus), a missing one the core's default (SIGKILL); a stop timeout of 0 is "no grace", not
// "the default", and distinct from leaving it out.
func TestOneRuleEverywhere(t *testing.T) {
	e := startSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := control.Dial(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// sleep as pid 1 ignores SIGTERM: only the SIGKILL ends it.
	info, err := cl.Start(ctx, service.StartRequest{Name: "nograce", Command: []string{"sleep", "1000"}, StopTimeout: service.NoGrace})
	if err != nil {
		t.Fatal(err)
	}
	if info.StopTimeout != 0 {
		t.Errorf("stop timeout 0 on the wire became %s", info.StopTimeout)
	}
	if err := cl.Kill(ctx, "nograce", 99); service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("Kill 99 over the socket: %v (kind %s), want InvalidArgument", err, service.KindOf(err))
	}
	began := time.Now()
	if info, err = cl.Stop(ctx, "nograce", 0); err != nil || info.State != service.StateKilled {
		t.Fatalf("stop with the container's stop timeout of 0: %+v %v", info, err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("stop took %s with no grace", d)
	}
	// Left out: the default, 10 s.
	if info, err = cl.Start(ctx, service.StartRequest{Name: "dflt", Command: []string{"sleep", "1000"}}); err != nil || info.StopTimeout != service.DefaultStopTimeout {
		t.Fatalf("start without a stop timeout: %v %v", info.StopTimeout, err)
	}
	// A kill without a signal is the core's default.
	if err := cl.Kill(ctx, "dflt", 0); err != nil {
		t.Fatal(err)
	}
	if info, err = cl.Wait(ctx, "dflt"); err != nil || info.Signal != "SIGKILL" {
		t.Errorf("kill without a signal: %+v %v, want SIGKILL", info, err)
	}
	// Stop with 0 on the wire: SIGKILL right after SIGTERM.
	if _, err := cl.Start(ctx, service.StartRequest{Name: "now", Command: []string{"sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if info, err = cl.Stop(ctx, "now", service.NoGrace); err != nil || info.Signal != "SIGKILL" || time.Since(began) > 5*time.Second {
		t.Errorf("stop with no grace: %+v %v after %s", info, err, time.Since(began))
	}
}
