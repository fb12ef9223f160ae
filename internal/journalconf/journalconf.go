// SPDX-License-Identifier: Apache-2.0

// Package journalconf sets up the configuration of a private systemd-journald, as the host
// tests (internal/testutil) and the benchmarks (bench/cmd/jfbench, bench/cmd/jlogprobe) run
// one: in a mount namespace of their own, with tmpfs on /run/systemd and /run/log.
package journalconf

import (
	"fmt"
	"os"
	"path/filepath"
)

// dropIn keeps the journal in memory and every entry in it: rate limiting would drop most of
// the hundreds of thousands of lines one process writes in a test or a bench run, and
// forwarding would add work (and output) that has nothing to do with either.
const dropIn = `[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
RuntimeMaxUse=%s
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
ReadKMsg=no
Audit=no
`

// Write creates the directories journald expects under /run/systemd and the drop-in
// /run/systemd/journald.conf.d/NAME.conf with the journal capped at maxUse (journald's size
// syntax, e.g. "512M"). Call it in the private mount namespace, never on a host's own /run.
func Write(name, maxUse string) error {
	for _, d := range []string{"/run/systemd/journal", "/run/systemd/journald.conf.d"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("private journald: %w", err)
		}
	}
	p := filepath.Join("/run/systemd/journald.conf.d", name+".conf")
	if err := os.WriteFile(p, fmt.Appendf(nil, dropIn, maxUse), 0o644); err != nil {
		return fmt.Errorf("private journald: %w", err)
	}
	return nil
}
