// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"os/user"
	"slices"
	"strconv"

	"github.com/jackfruit/jackfruit/service"
)

// authorise refuses callers that may not change anything: only root and callers whose
// process has the configured admin group (primary or supplementary, as the kernel says for
// its connection; see service.Caller) may. The group's id is looked up on every call so that
// a changed group database applies without a restart.
func (s *Supervisor) authorise(c service.Caller, action string) error {
	if c.UID == 0 {
		return nil
	}
	if s.cfg.AdminGroup != "" && s.inAdminGroup(c) {
		return nil
	}
	who := strconv.FormatUint(uint64(c.UID), 10)
	if u, err := user.LookupId(who); err == nil {
		who = u.Username + " (uid " + who + ")"
	} else {
		who = "uid " + who
	}
	if s.cfg.AdminGroup != "" {
		if !c.GroupsKnown {
			return service.Errorf(service.KindAccessDenied, "%s may not %s: only root and processes in group %q may, and the groups of this caller are unknown", who, action, s.cfg.AdminGroup)
		}
		return service.Errorf(service.KindAccessDenied, "%s may not %s: only root and processes in group %q may (the calling process is not)", who, action, s.cfg.AdminGroup)
	}
	return service.Errorf(service.KindAccessDenied, "%s may not %s: only root may", who, action)
}

// inAdminGroup reports whether the caller's process has the admin group. Never a guess: with
// its groups unknown, it has not.
func (s *Supervisor) inAdminGroup(c service.Caller) bool {
	if !c.GroupsKnown {
		return false
	}
	g, err := user.LookupGroup(s.cfg.AdminGroup)
	if err != nil {
		return false
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return false
	}
	return c.GID == uint32(gid) || slices.Contains(c.Groups, uint32(gid))
}
