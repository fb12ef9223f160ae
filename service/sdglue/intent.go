// SPDX-License-Identifier: Apache-2.0

package sdglue

import (
	"context"
	"fmt"
	"os"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Restarting reports whether the service manager is restarting this process's unit rather
// than stopping it, to be asked when SIGTERM arrives. SIGTERM is the same for both; what
// differs is the job systemd runs on the unit: `systemctl restart`, `try-restart` (what
// the package's postinst runs on upgrade) and `reload-or-restart` all install a "restart"
// job, which is the unit's job while it stops; `systemctl stop`, a conflicting unit and
// system shutdown install a "stop" job. Outside systemd ($INVOCATION_ID unset) it is false.
//
// It asks systemd on its private socket (/run/systemd/private, root only), which does not
// depend on dbus-daemon, still running or not while the system shuts down.
func Restarting(ctx context.Context) (bool, error) {
	if os.Getenv("INVOCATION_ID") == "" {
		return false, nil
	}
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return false, fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	unit, err := conn.GetUnitNameByPID(ctx, uint32(os.Getpid()))
	if err != nil {
		return false, fmt.Errorf("find our unit: %w", err)
	}
	jobs, err := conn.ListJobsContext(ctx)
	if err != nil {
		return false, fmt.Errorf("list systemd jobs: %w", err)
	}
	for _, j := range jobs {
		if j.Unit == unit {
			return isRestartJob(j.JobType), nil
		}
	}
	// No job: a signal sent by hand (kill, systemctl kill) means stop, as it always did.
	return false, nil
}

// isRestartJob tells the restart job types from the others (systemd's job_type_to_string).
func isRestartJob(t string) bool {
	return t == "restart" || t == "try-restart"
}
