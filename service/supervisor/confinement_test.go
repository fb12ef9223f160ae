// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// TestConfinementRecorded checks that what a start asks for reaches the container, that
// Get shows what it got, and that a restarted supervisor still knows it (state.json).
func TestConfinementRecorded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	def, err := e.s.Start(ctx, root, service.StartRequest{Name: "def", Command: []string{"sh", "-c", "grep -e ^CapEff: -e ^Seccomp: /proc/self/status"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def.Capabilities, runtime.DefaultCapabilities.Names()) || def.Network != "host" || def.NoNewPrivileges || def.Seccomp != service.SeccompDefault {
		t.Errorf("default container: capabilities %v, network %q, no_new_privileges %v, seccomp %q", def.Capabilities, def.Network, def.NoNewPrivileges, def.Seccomp)
	}
	custom, err := e.s.Start(ctx, root, service.StartRequest{
		Name:    "custom",
		Command: []string{"sh", "-c", "grep -e ^CapEff: -e ^NoNewPrivs: -e ^Seccomp: /proc/self/status; ls /sys/class/net"},
		CapAdd:  []string{"net_admin"}, CapDrop: []string{"CAP_CHOWN", "mknod"},
		SecurityOpt: []string{"no-new-privileges", "seccomp=unconfined"}, Network: "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := runtime.ResolveCapabilities([]string{"NET_ADMIN"}, []string{"CHOWN", "MKNOD"})
	if !slices.Equal(custom.Capabilities, want.Names()) || custom.Network != "none" || !custom.NoNewPrivileges || custom.Seccomp != service.SeccompUnconfined {
		t.Errorf("custom container: %+v", custom)
	}
	e.wait(t, "def")
	e.wait(t, "custom")
	if out := stdoutText(e.logs(t, "def", service.LogOptions{})); !strings.Contains(out, "CapEff:\t00000000a80425fb\nSeccomp:\t2") {
		t.Errorf("default container's output: %q", out)
	}
	if out := stdoutText(e.logs(t, "custom", service.LogOptions{})); !strings.Contains(out, "CapEff:\t"+want.String()) ||
		!strings.Contains(out, "NoNewPrivs:\t1\nSeccomp:\t0") || !strings.HasSuffix(strings.TrimSpace(out), "\nlo") {
		t.Errorf("custom container's output: %q", out)
	}

	e.s.Close()
	s2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Get(ctx, root, "custom")
	if err != nil || !slices.Equal(got.Capabilities, custom.Capabilities) || got.Network != "none" || !got.NoNewPrivileges || got.Seccomp != custom.Seccomp {
		t.Errorf("custom after restart: %+v %v", got, err)
	}
}
