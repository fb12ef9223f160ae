// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackfruit/jackfruit/internal/testutil"
	"github.com/jackfruit/jackfruit/service"
)

// Without journald the supervisor's log is the only record of how a container ended, so
// the exit line must carry the code (and the signal), and memory events their numbers.
func TestEventLogLineCarriesOutcome(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cases := []struct {
		ev   service.Event
		want []string
	}{
		{service.Event{Type: service.EventExited, Container: service.ContainerInfo{Name: "web", ID: "0123456789abcdef", State: service.StateExited, ExitCode: 3}},
			[]string{`msg="container exited"`, "container=web", "id=0123456789ab", "state=exited", "exit_code=3"}},
		{service.Event{Type: service.EventExited, Container: service.ContainerInfo{Name: "k", State: service.StateKilled, ExitCode: 137, Signal: "SIGKILL"}},
			[]string{"state=killed", "exit_code=137", "signal=SIGKILL"}},
		{service.Event{Type: service.EventHardLimit, RSS: 70 << 20, Limit: 64 << 20, Container: service.ContainerInfo{Name: "hog", State: service.StateRunning}},
			[]string{`msg="container hard-limit"`, "rss=73400320", "limit=67108864"}},
		{service.Event{Type: service.EventStarted, Container: service.ContainerInfo{Name: "s", State: service.StateRunning}},
			[]string{`msg="container started"`, "state=running"}},
	}
	for _, c := range cases {
		buf.Reset()
		log.Info("container "+string(c.ev.Type), eventAttrs(c.ev)...)
		for _, w := range c.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%s: log line %q lacks %q", c.ev.Type, buf.String(), w)
			}
		}
		if c.ev.Type == service.EventStarted && strings.Contains(buf.String(), "exit_code") {
			t.Errorf("started event logged with an exit code: %q", buf.String())
		}
	}
}

func TestSupervisorNeedsRoot(t *testing.T) {
	if err := checkPrivileges(0); err != nil {
		t.Errorf("root refused: %v", err)
	}
	err := checkPrivileges(65534)
	if err == nil || !strings.Contains(err.Error(), "must run as root") || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("uid 65534: %v; want a refusal naming root and the uid", err)
	}
}

// Limits left out take the defaults (40 and 64 MiB), except that a hard limit given alone
// below the default soft limit pulls the soft limit down with it instead of being refused.
func TestLimitDefaults(t *testing.T) {
	rootfs := testutil.Rootfs(t)
	cases := []struct {
		soft, hard         uint64
		wantSoft, wantHard uint64
		err                string
	}{
		{0, 0, 40 << 20, 64 << 20, ""},
		{0, 32 << 20, 32 << 20, 32 << 20, ""},
		{0, 128 << 20, 40 << 20, 128 << 20, ""},
		{10 << 20, 0, 10 << 20, 64 << 20, ""},
		{100 << 20, 0, 0, 0, "soft memory limit 100 MiB exceeds hard memory limit 64 MiB (the default)"},
		{100 << 20, 50 << 20, 0, 0, "soft memory limit 100 MiB exceeds hard memory limit 50 MiB"},
		{0, 1000, 0, 0, "hard memory limit 1000 bytes is out of range"},
	}
	for _, c := range cases {
		r, err := validate(service.StartRequest{Name: "l", Command: []string{"true"}, SoftLimit: c.soft, HardLimit: c.hard}, rootfs)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("soft %d hard %d: %v; want %q", c.soft, c.hard, err, c.err)
			}
		case err != nil:
			t.Errorf("soft %d hard %d: %v", c.soft, c.hard, err)
		case r.SoftLimit != c.wantSoft || r.HardLimit != c.wantHard:
			t.Errorf("soft %d hard %d: got %d/%d, want %d/%d", c.soft, c.hard, r.SoftLimit, r.HardLimit, c.wantSoft, c.wantHard)
		}
	}
}
