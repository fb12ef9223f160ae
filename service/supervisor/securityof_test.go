// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"testing"

	"github.com/jackfruit/jackfruit/service"
	"github.com/jackfruit/jackfruit/service/runtime"
)

// TestSecurityOfRecord: a supervisor that takes over a running container rebuilds the
// confinement its init got from state.json, so that exec gives a command the same one; a
// record it cannot read gives the narrowest confinement, never none.
func TestSecurityOfRecord(t *testing.T) {
	s := &Supervisor{}
	caps := runtime.DefaultCapabilities
	sec, err := s.securityOf(service.ContainerInfo{Capabilities: caps.Names(), Seccomp: service.SeccompDefault, NoNewPrivileges: true, Network: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Capabilities != caps || !sec.NoNewPrivileges || sec.Network != runtime.NetworkNone || len(sec.Seccomp) == 0 {
		t.Errorf("default record: caps %s, no_new_privs %v, network %q, filter %d bytes", sec.Capabilities, sec.NoNewPrivileges, sec.Network, len(sec.Seccomp))
	}
	if sec.Floor != nil {
		t.Error("a floor without units: a child of the supervisor inherits the service's restrictions")
	}

	sec, err = s.securityOf(service.ContainerInfo{Capabilities: []string{"CAP_CHOWN"}, Seccomp: service.SeccompUnconfined})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Capabilities.Names()[0] != "CAP_CHOWN" || len(sec.Capabilities.Names()) != 1 || sec.Seccomp != nil || sec.NoNewPrivileges {
		t.Errorf("unconfined record: caps %v, filter %d bytes, no_new_privs %v", sec.Capabilities.Names(), len(sec.Seccomp), sec.NoNewPrivileges)
	}

	for _, bad := range []service.ContainerInfo{
		{Capabilities: []string{"CAP_BOGUS"}, Seccomp: service.SeccompDefault},
		{Seccomp: ""}, // a record from before confinement was kept
		{Seccomp: service.SeccompDefault, Network: "bridge"},
	} {
		sec, err := s.securityOf(bad)
		if err == nil {
			t.Errorf("%+v: no error", bad)
		}
		if sec.Capabilities != 0 || !sec.NoNewPrivileges || len(sec.Seccomp) == 0 {
			t.Errorf("%+v: caps %s, no_new_privs %v, filter %d bytes; want the narrowest", bad, sec.Capabilities, sec.NoNewPrivileges, len(sec.Seccomp))
		}
	}
}
