// SPDX-License-Identifier: Apache-2.0

package supervisor

import (
	"sync"

	"github.com/jackfruit/jackfruit/service"
)

// subscriberBuffer is how many events a subscriber may fall behind before it loses some.
// A front end that cannot keep up must never stall the core: the core publishes while it
// holds its registry lock.
const subscriberBuffer = 1024

// broker fans the core's single event stream out to every subscriber.
type broker struct {
	mu     sync.Mutex
	next   int
	subs   map[int]*subscriber
	closed bool
}

type subscriber struct {
	ch      chan service.Event
	dropped uint64
}

func newBroker() *broker {
	return &broker{subs: make(map[int]*subscriber)}
}

// subscribe returns a channel of every event published from now on and a cancel function
// that closes it. After the broker closed, the channel is returned already closed.
func (b *broker) subscribe(buffer int) (<-chan service.Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan service.Event, buffer)
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	id := b.next
	b.next++
	b.subs[id] = &subscriber{ch: ch}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if s, ok := b.subs[id]; ok {
				delete(b.subs, id)
				close(s.ch)
			}
		})
	}
}

// publish hands ev to every subscriber without ever blocking; a subscriber whose buffer is
// full loses the event. It returns how many subscribers lost it.
func (b *broker) publish(ev service.Event) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	lost := 0
	for _, s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			s.dropped++
			lost++
		}
	}
	return lost
}

// close ends every subscription; later subscriptions get a closed channel.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for id, s := range b.subs {
		delete(b.subs, id)
		close(s.ch)
	}
}
