// SPDX-License-Identifier: Apache-2.0

package main

import (
	"github.com/spf13/cobra"

	"github.com/jackfruit/jackfruit/service/runtime"
)

// newSpawnCmd is the first process of a container's systemd unit (service/sdunit) when there
// is no jackfruit-init to serve it (which the supervisor prefers): it clones the container's
// setup stage and exits, leaving systemd its parent. Only the supervisor starts it, with the
// setup socket as stdin; by hand it refuses to run.
func newSpawnCmd() *cobra.Command {
	return &cobra.Command{
		Use:    runtime.SpawnVerb + " NAME NETWORK",
		Short:  "Start a container's setup stage as the first process of its systemd unit (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runtime.SpawnMain(args)
		},
		SilenceUsage: true,
	}
}
