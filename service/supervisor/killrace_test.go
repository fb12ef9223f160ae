// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/jackfruit/jackfruit/service"
)

// A kill that races with the container's own exit (init gone, output not yet drained, so the
// registry still says running) is the user's "not running" case, never an internal error.
func TestKillRacingExitIsNotInternal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lost := 0
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("kr%d", i)
		e.start(t, name, "true")
		err := e.s.Kill(ctx, root, name, syscall.SIGTERM)
		switch service.KindOf(err) {
		case service.KindInvalidState:
			lost++
		case service.KindInternal:
			if err != nil {
				t.Fatalf("kill %s racing its exit: %v (kind %s), want nil or InvalidState", name, err, service.KindOf(err))
			}
		default:
			t.Fatalf("kill %s: unexpected %v", name, err)
		}
		e.wait(t, name)
	}
	t.Logf("%d of 40 kills found the container already gone", lost)
}
