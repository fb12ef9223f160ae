// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The trash deletes what it is given with one goroutine at a time, and wait returns only
// once all of it is gone, taking its share of the queue.
func TestTrashDeletesInTheBackground(t *testing.T) {
	base := t.TempDir()
	var dirs []string
	for i := range 20 {
		d := filepath.Join(base, fmt.Sprint("c", i))
		if err := os.MkdirAll(filepath.Join(d, "upper", "a", "b"), 0o700); err != nil {
			t.Fatal(err)
		}
		for j := range 200 {
			if err := os.WriteFile(filepath.Join(d, "upper", fmt.Sprint(j)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, d)
	}
	tr := &trash{log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for _, d := range dirs {
		tr.add(d)
		tr.mu.Lock()
		running := tr.running
		tr.mu.Unlock()
		if !running {
			t.Fatal("a queued directory and no drain goroutine")
		}
	}
	tr.wait()
	for _, d := range dirs {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after wait: %v", d, err)
		}
	}
	// The drain goroutine ends once the queue is empty; a later removal starts a new one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.mu.Lock()
		running := tr.running
		tr.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drain goroutine did not end with an empty queue")
		}
		time.Sleep(time.Millisecond)
	}
	d := filepath.Join(base, "later")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	tr.add(d)
	tr.wait()
	if _, err := os.Lstat(d); !os.IsNotExist(err) {
		t.Errorf("%s still there after wait: %v", d, err)
	}
}
