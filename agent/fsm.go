package agent

import (
	"bytes"
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
	feed   *state.Feed
	cipher *logCipher // entries and snapshots are sealed with the cluster data key
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an FSM publishing to feed, opening entries with c.
func NewFSM(feed *state.Feed, c *logCipher) *FSM { return &FSM{feed: feed, cipher: c} }

// Apply decodes and applies one command. Raft calls it sequentially; the returned value is
// the command's error (nil on success), handed back to the proposer through the future.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	plain, err := f.cipher.open(l.Data)
	if err != nil {
		return err
	}
	cmd, err := state.DecodeCommand(plain)
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
	return &fsmSnapshot{s: f.feed.State(), cipher: f.cipher}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	plain, err := f.cipher.readAllSealed(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
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

type fsmSnapshot struct {
	s      *state.State
	cipher *logCipher
}

// Persist writes the state as gzip-compressed JSON, sealed: small on disk, cheap to ship
// to a node that fell behind, unreadable without the cluster data key.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(s.s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if _, err := sink.Write(s.cipher.seal(buf.Bytes())); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
