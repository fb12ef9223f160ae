// SPDX-License-Identifier: Apache-2.0

package control

import (
	"encoding/json"
	"testing"

	"github.com/jackfruit/jackfruit/service"
)

// TestUnknownParameterHint: a parameter the supervisor does not know (a newer client's, such
// as Logs' until, reaching an older supervisor) comes back naming it, with the likely cause.
func TestUnknownParameterHint(t *testing.T) {
	err := errorFromWire(ErrInvalidParameter, json.RawMessage(`{"parameter":"until","message":"unknown parameter"}`))
	want := `invalid parameter "until": unknown parameter (is the supervisor an older version?)`
	if err == nil || err.Error() != want || service.KindOf(err) != service.KindInvalidArgument {
		t.Errorf("got %v (%s), want %q", err, service.KindOf(err), want)
	}
	// Other parameter errors are unchanged.
	err = errorFromWire(ErrInvalidParameter, json.RawMessage(`{"parameter":"since","message":"not an RFC 3339 time"}`))
	if err == nil || err.Error() != `invalid parameter "since": not an RFC 3339 time` {
		t.Errorf("got %v", err)
	}
}
