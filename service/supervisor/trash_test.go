// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// niceThreads returns the ids of this process's threads whose nice value is n.
func niceThreads(t *testing.T, n int) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		// Field 19 is nice; fields are counted after the command name's closing parenthesis.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 16 && f[16] == fmt.Sprint(n) {
			out = append(out, task.Name())
		}
	}
	return out
}

// The trash deletes what it is given, on a thread at nice 19 that ends with the work, so no
// other goroutine of the supervisor ever runs at that priority.
func TestTrashDeletesAtLowPriority(t *testing.T) {
	if len(niceThreads(t, trashNice)) > 0 {
		t.Skip("some thread of the test binary already runs at nice 19")
	}
	base := t.TempDir()
	var dirs []string
	for i := range 3 {
		d := filepath.Join(base, fmt.Sprint("c", i))
		if err := os.MkdirAll(filepath.Join(d, "upper", "a", "b"), 0o700); err != nil {
			t.Fatal(err)
		}
		// Enough files for the deletion to last while the test looks at the threads.
		for j := range 3000 {
			if err := os.WriteFile(filepath.Join(d, "upper", fmt.Sprint(j)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, d)
	}
	tr := &trash{log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for _, d := range dirs {
		tr.add(d)
	}
	done := make(chan struct{})
	go func() { tr.wait(); close(done) }()
	sawNice := false
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(time.Millisecond):
			sawNice = sawNice || len(niceThreads(t, trashNice)) > 0
		}
	}
	if !sawNice {
		t.Error("no thread at nice 19 while the trash was deleting")
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after wait: %v", d, err)
		}
	}
	// The nice thread goes away with the drain goroutine.
	deadline := time.Now().Add(5 * time.Second)
	for len(niceThreads(t, trashNice)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still at nice 19 after the trash was empty", niceThreads(t, trashNice))
		}
		time.Sleep(time.Millisecond)
	}
	// A later removal starts a new drain.
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
