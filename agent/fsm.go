package agent

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/skiffhq/skiff/state"
)

// FSM applies Raft log entries to the state snapshot and publishes each new snapshot to
// subscribers (reconciler, dnsd, ingress, API) through a state.Feed.
type FSM struct {
	feed *state.Feed
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM publishing to feed.
func NewFSM(feed *state.Feed) *FSM { return &FSM{feed: feed} }

// Apply decodes and applies one command. Raft calls it sequentially; the returned value is
// the command's error (nil on success), handed back to the proposer through the future.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := state.DecodeCommand(l.Data)
	if err != nil {
		return err
	}
	next, err := f.feed.State().Apply(l.Index, cmd)
	if err != nil {
		return err
	}
	f.feed.Publish(next)
	return nil
}

// Snapshot captures the current immutable state; Persist writes it later, concurrently
// with further Applies, which is safe because snapshots are never changed.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: f.feed.State()}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	var s state.State
	if err := json.NewDecoder(zr).Decode(&s); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.feed.Publish(&s)
	return nil
}

type fsmSnapshot struct{ s *state.State }

// Persist writes the state as gzip-compressed JSON: small on disk, cheap to ship to a
// node that fell behind.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	zw := gzip.NewWriter(sink)
	if err := json.NewEncoder(zw).Encode(s.s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
