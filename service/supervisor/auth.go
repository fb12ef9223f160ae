// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"os/user"
	"slices"
	"strconv"

	"github.com/jackfruit/jackfruit/service"
)

// authorise refuses callers that may not change anything: only root and members of the
// configured admin group (primary or supplementary, as the user database says) may.
// The group is looked up on every call so that group changes apply without a restart.
func (s *Supervisor) authorise(c service.Caller, action string) error {
	if c.UID == 0 {
		return nil
	}
	if s.cfg.AdminGroup != "" && s.inAdminGroup(c.UID) {
		return nil
	}
	who := strconv.FormatUint(uint64(c.UID), 10)
	if u, err := user.LookupId(who); err == nil {
		who = u.Username + " (uid " + who + ")"
	} else {
		who = "uid " + who
	}
	if s.cfg.AdminGroup != "" {
		return service.Errorf(service.KindAccessDenied, "%s may not %s: only root and members of group %q may", who, action, s.cfg.AdminGroup)
	}
	return service.Errorf(service.KindAccessDenied, "%s may not %s: only root may", who, action)
}

func (s *Supervisor) inAdminGroup(uid uint32) bool {
	g, err := user.LookupGroup(s.cfg.AdminGroup)
	if err != nil {
		return false
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	if u.Gid == g.Gid {
		return true
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	return slices.Contains(gids, g.Gid)
}
