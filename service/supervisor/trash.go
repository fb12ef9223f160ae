// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"log/slog"
	"os"
	"sync"
)

// trash deletes removed containers' directories in the background (removeDir renamed them
// into the trash directory, which already freed their names). One goroutine at a time works
// through the queue: the deletions are housekeeping, a dozen unlinks and rmdirs per container
// that no caller waits for, and with one goroutine per removal a burst of `run --rm` had as
// many deletions competing with its starts for the CPU, each blocking a thread in the
// filesystem. 100 at once went from 9.1 to 7.0 ms per container (docs/bench.md).
//
// The worker runs at normal priority on purpose: a nice value is per thread, so lowering it
// needs a thread of its own that ends with the work, and a thread's end kills the children
// it started with a parent-death signal (os/exec's Pdeathsig, which programs embedding the
// supervisor, its tests among them, use).
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
		go t.work(true)
	}
}

// wait returns once every queued directory is deleted (Close and Detach: nothing of a
// removed container may outlive the supervisor that removed it). The caller takes its share
// of what is still queued, so that a large backlog goes twice as fast at shutdown.
func (t *trash) wait() {
	t.work(false)
	t.pending.Wait() // the one the drain goroutine may still be deleting
}

// work deletes queued directories until the queue is empty. As the drain goroutine (drain
// true) it also ends its turn there: the next add starts a new one.
func (t *trash) work(drain bool) {
	for {
		dir, ok := t.next(drain)
		if !ok {
			return
		}
		t.remove(dir)
	}
}

// next takes the oldest queued directory off the queue (see work for drain).
func (t *trash) next(drain bool) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		if drain {
			t.queue = nil
			t.running = false
		}
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
