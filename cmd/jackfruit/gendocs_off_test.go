// SPDX-License-Identifier: Apache-2.0

//go:build !gendocs

package main

import (
	"strings"
	"testing"
)

// The shipped build has no generator and says how to get one (make test-host runs
// TestGenDocs in a -tags gendocs build).
func TestGenDocsNotInThisBuild(t *testing.T) {
	r := execCapture(t, "gen-docs", "--man", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "-tags gendocs") {
		t.Errorf("gen-docs without the tag: %s", r)
	}
}
