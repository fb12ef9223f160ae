// SPDX-License-Identifier: Apache-2.0

package control

import (
	"os"
	"strings"
	"testing"
)

// TestProtocolDocMatchesIDL: docs/protocol.md carries the interface description verbatim, so a
// reader of the docs sees every method and field the socket serves, and a change to the
// protocol cannot leave the docs behind.
func TestProtocolDocMatchesIDL(t *testing.T) {
	b, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	const head = "### Interface description\n"
	doc := string(b)
	i := strings.Index(doc, head)
	if i < 0 {
		t.Fatalf("docs/protocol.md has no %q section", strings.TrimSpace(head))
	}
	rest := doc[i:]
	a := strings.Index(rest, "```\n")
	if a < 0 {
		t.Fatal("docs/protocol.md: no code block after the interface description heading")
	}
	rest = rest[a+4:]
	b2 := strings.Index(rest, "```")
	if b2 < 0 {
		t.Fatal("docs/protocol.md: the interface description's code block is not closed")
	}
	if got := rest[:b2]; got != InterfaceDescription {
		t.Errorf("docs/protocol.md's interface description differs from control.InterfaceDescription; " +
			"copy the constant (service/control/protocol.go) into the code block under \"Interface description\"")
	}
}
