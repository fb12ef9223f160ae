// SPDX-License-Identifier: Apache-2.0

package dbusapi_test

import (
	"syscall"
	"testing"

	"github.com/jackfruit/jackfruit/service/supervisor"
)

// Admin rights come from the groups the caller's process has (the bus daemon's credentials
// of its connection), not from the group database: the same uid with the admin group as a
// supplementary group may start containers, and without it (setgroups dropped it) may not.
func TestAdminRightsFollowTheProcessGroups(t *testing.T) {
	e := setupReal(t, func(c *supervisor.Config) { c.AdminGroup = "users" }) // gid 100
	a := "--address=" + e.bus.Address
	with := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{100}}
	without := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	mustSucceed(t, run(t, with, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}", "g1", "", "1", "/bin/true", "0", "0", "0"))
	mustFail(t, run(t, without, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}", "g2", "", "1", "/bin/true", "0", "0", "0"),
		"may not start containers")
	// The primary group counts too.
	primary := &syscall.Credential{Uid: 65534, Gid: 100, Groups: []uint32{}}
	mustSucceed(t, run(t, primary, "busctl", a, "call", dest, mgrPath, mgrIf, "StartContainer", "ssastta{sv}", "g3", "", "1", "/bin/true", "0", "0", "0"))
}
