// SPDX-License-Identifier: Apache-2.0

//go:build gendocs

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	r := execCapture(t, "gen-docs", "--man", filepath.Join(dir, "man"), "--completions", filepath.Join(dir, "compl"), "--markdown", filepath.Join(dir, "md"))
	if r.code != 0 {
		t.Fatalf("gen-docs: %s", r)
	}
	for _, f := range []string{"man/jackfruit.1", "man/jackfruit-start.1", "man/jackfruit-run.1", "man/jackfruit-ps.1",
		"man/jackfruit-logs.1", "man/jackfruit-supervisor.1", "compl/jackfruit.bash", "compl/_jackfruit",
		"compl/jackfruit.fish", "md/jackfruit_start.md"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "man/jackfruit-stop.1")); !bytes.Contains(b, []byte(".TH \"JACKFRUIT\" \"1\"")) || !bytes.Contains(b, []byte("SIGKILL")) {
		t.Errorf("jackfruit-stop.1:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "man/jackfruit-gen-docs.1")); err == nil {
		t.Error("hidden gen-docs has a man page")
	}
}
