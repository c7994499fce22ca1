package state

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Feed holds the current snapshot and wakes subscribers when a new one is published.
// Subscribers get a one-slot channel: a wake-up means "look at State() again", never an
// event to process, so a slow reader only ever sees the latest state.
type Feed struct {
	cur  atomic.Pointer[State]
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// NewFeed returns a feed holding s (Empty() when nil).
func NewFeed(s *State) *Feed {
	if s == nil {
		s = Empty()
	}
	f := &Feed{subs: map[chan struct{}]struct{}{}}
	f.cur.Store(s)
	return f
}

// State returns the current snapshot.
func (f *Feed) State() *State { return f.cur.Load() }

// Publish makes s current and wakes every subscriber.
func (f *Feed) Publish(s *State) {
	f.cur.Store(s)
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a value after every Publish (coalesced), and a
// function that ends the subscription.
func (f *Feed) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}

// WaitFor blocks until cond holds for the current state or ctx ends.
func (f *Feed) WaitFor(ctx context.Context, cond func(*State) bool) (*State, error) {
	ch, cancel := f.Subscribe()
	defer cancel()
	for {
		if s := f.State(); cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return f.State(), ctx.Err()
		case <-ch:
		}
	}
}

// MemStore is the replicated store without replication: commands apply in memory, in
// order. It is the fake behind unit tests of controllers and the node loop.
type MemStore struct {
	*Feed
	mu    sync.Mutex
	index uint64
	// Now, when set, stamps commands that have no time (tests use a fixed clock).
	Now func() time.Time
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{Feed: NewFeed(nil)} }

// Apply applies c and publishes the new state.
func (m *MemStore) Apply(ctx context.Context, c *Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.At.IsZero() {
		if m.Now != nil {
			c.At = m.Now()
		} else {
			c.At = time.Now()
		}
	}
	m.index++
	next, err := m.State().Apply(m.index, c)
	if err != nil {
		m.index--
		return err
	}
	m.Publish(next)
	return nil
}
