// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"log/slog"
	"os"
	goruntime "runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// trashNice is the nice value of the thread that deletes removed containers' files: the
// lowest priority there is, so that under a burst of starts the deletions wait for idle CPU.
const trashNice = 19

// trash deletes removed containers' directories in the background (removeDir renamed them
// into the trash directory, which already freed their names). One goroutine at a time works
// through the queue on a thread of its own at nice 19: the deletions are housekeeping, a
// dozen unlinks and rmdirs per container that no caller waits for, and 100 `run --rm` at once
// went faster by ≈ 0.5 ms per container with them out of the starts' way (docs/bench.md).
// One goroutine rather than one per removal also keeps a burst of removals from blocking a
// thread each in the filesystem.
type trash struct {
	log *slog.Logger

	mu      sync.Mutex
	queue   []string
	running bool           // a drain goroutine exists (started by add, ends when the queue is empty)
	pending sync.WaitGroup // one per queued directory, done once it is deleted
}

// add queues dir for deletion.
func (t *trash) add(dir string) {
	t.pending.Add(1)
	t.mu.Lock()
	t.queue = append(t.queue, dir)
	start := !t.running
	t.running = true
	t.mu.Unlock()
	if start {
		go t.drain()
	}
}

// wait returns once every queued directory is deleted (Close and Detach: nothing of a
// removed container may outlive the supervisor that removed it). The caller deletes what is
// still queued itself, at its own priority: at nice 19 on a busy machine a large backlog
// could outlast systemd's stop timeout.
func (t *trash) wait() {
	for {
		dir, ok := t.next()
		if !ok {
			break
		}
		t.remove(dir)
	}
	t.pending.Wait() // the one the drain goroutine may still be deleting
}

// next takes the oldest queued directory off the queue.
func (t *trash) next() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		return "", false
	}
	dir := t.queue[0]
	t.queue = t.queue[1:]
	return dir, true
}

func (t *trash) remove(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		t.log.Warn("deleting a removed container's files", "dir", dir, "error", err.Error())
	}
	t.pending.Done()
}

func (t *trash) drain() {
	// The nice value is per thread. The goroutine keeps its thread locked and never unlocks
	// it, so the thread ends with the goroutine and no other goroutine ever runs at this
	// priority; the Go runtime starts new threads from its template thread, never from a
	// locked one, so none inherits it either.
	goruntime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), trashNice); err != nil {
		t.log.Debug("deleting removed containers' files at normal priority", "error", err.Error())
	}
	for {
		t.mu.Lock()
		if len(t.queue) == 0 {
			t.queue = nil
			t.running = false
			t.mu.Unlock()
			return
		}
		dir := t.queue[0]
		t.queue = t.queue[1:]
		t.mu.Unlock()
		t.remove(dir)
	}
}
