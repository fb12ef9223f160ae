// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jackfruit/jackfruit/dbusapi"
	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

// TestRealProcessesAndStats: the D-Bus face of top and stats, against the real supervisor,
// read by an unprivileged client (both are reads) and by gdbus.
func TestRealProcessesAndStats(t *testing.T) {
	e := setupReal(t)
	ctx := t.Context()
	if _, err := e.sup.Start(ctx, internalRoot, service.StartRequest{Name: "box", Command: []string{"sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	p, err := e.sup.Exec(ctx, internalRoot, service.ExecRequest{Name: "box", Command: []string{"sleep", "777"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Signal(syscall.SIGKILL); p.Wait(ctx) }()

	type proc struct {
		Pid, PPid, HostPid, UID uint32
		User, TTY               string
		Elapsed, CPU            uint64
		Args                    []string
	}
	var ps []proc
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainerProcesses", 0, "box").Store(&ps); err != nil {
			t.Fatal(err)
		}
		if len(ps) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(ps) != 2 || ps[0].Pid != 1 || strings.Join(ps[0].Args, " ") != "sleep 1000" || ps[0].User != "root" ||
		ps[1].Pid <= 1 || ps[1].PPid != 0 || ps[1].HostPid != uint32(p.Pid()) || strings.Join(ps[1].Args, " ") != "sleep 777" {
		t.Fatalf("GetContainerProcesses: %+v", ps)
	}
	box := e.client.Object(dbusapi.BusName, dbusapi.ContainerPath("box"))
	var ps2 []proc
	if err := box.Call(dbusapi.ContainerInterface+".GetProcesses", 0).Store(&ps2); err != nil || len(ps2) != 2 {
		t.Errorf("Container.GetProcesses: %+v %v", ps2, err)
	}

	type sample struct {
		Name, ID, State                            string
		TimeUsec, RSS, PeakRSS, MemCur, Soft, Hard uint64
		Enforced                                   bool
		EnforcedBy                                 string
		CPU                                        uint64
		Tasks, Processes                           uint32
	}
	var st []sample
	if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainerStats", 0, []string{}).Store(&st); err != nil {
		t.Fatal(err)
	}
	now := uint64(time.Now().UnixMicro())
	if len(st) != 1 || st[0].Name != "box" || st[0].State != "running" || st[0].Processes != 2 || st[0].Tasks < 2 ||
		st[0].Soft != service.DefaultSoftLimit || st[0].Hard != service.DefaultHardLimit ||
		st[0].Enforced || st[0].TimeUsec > now || st[0].TimeUsec < now-10_000_000 {
		t.Errorf("GetContainerStats: %+v", st)
	}
	var one sample
	if err := box.Call(dbusapi.ContainerInterface+".GetStats", 0).Store(&one); err != nil || one.Name != "box" || one.Processes != 2 {
		t.Errorf("Container.GetStats: %+v %v", one, err)
	}

	// gdbus, a client of its own, as uid nobody: the installed bus policy
	// (units/io.jackfruit.Jackfruit1.conf) lets everyone read these.
	nobody := testutil.Nobody(t)
	out := mustSucceed(t, run(t, nobody, "gdbus", "call", "--address", e.bus.Address,
		"--dest", dest, "--object-path", mgrPath, "--method", dbusapi.ManagerInterface+".GetContainerProcesses", "box"))
	if !strings.Contains(out, "'sleep', '777'") {
		t.Errorf("gdbus GetContainerProcesses as nobody: %s", out)
	}
	mustSucceed(t, run(t, nobody, "gdbus", "call", "--address", e.bus.Address,
		"--dest", dest, "--object-path", mgrPath, "--method", dbusapi.ManagerInterface+".GetContainerStats", "['box']"))
	mustSucceed(t, run(t, nobody, "busctl", "--address="+e.bus.Address, "call", dest, string(box.Path()),
		dbusapi.ContainerInterface, "GetStats"))
	mustSucceed(t, run(t, nobody, "busctl", "--address="+e.bus.Address, "call", dest, string(box.Path()),
		dbusapi.ContainerInterface, "GetProcesses"))
	if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainerProcesses", 0, "nope").Err; err == nil || !strings.Contains(err.Error(), `no such container "nope"`) {
		t.Errorf("processes of an unknown container: %v", err)
	}
	if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainerStats", 0, []string{"box", "nope"}).Err; err == nil ||
		err.(dbus.Error).Name != "io.jackfruit.Jackfruit1.Error.NoSuchContainer" {
		t.Errorf("stats of an unknown container: %v", err)
	}
	if _, err := e.sup.Stop(ctx, internalRoot, "box", service.NoGrace); err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Call(dbusapi.ManagerInterface+".GetContainerProcesses", 0, "box").Err; err == nil ||
		err.(dbus.Error).Name != "io.jackfruit.Jackfruit1.Error.InvalidState" {
		t.Errorf("processes of a stopped container: %v", err)
	}
	if err := box.Call(dbusapi.ContainerInterface+".GetStats", 0).Store(&one); err != nil || one.State != "killed" || one.Processes != 0 {
		t.Errorf("stats of a stopped container: %+v %v", one, err)
	}
}
