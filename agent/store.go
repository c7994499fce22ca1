package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiffhq/skiff/state"
)

// Errors of the replicated store.
var (
	// ErrNotLeader: this node cannot commit; NotLeaderError carries the leader's address.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: the cluster has no leader right now (election, or no quorum).
	ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing one")
)

// NotLeaderError says who the leader is, so the caller can forward.
type NotLeaderError struct {
	LeaderID   string // node name
	LeaderAddr string // Raft address
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Forwarder sends a command to the leader when this node is a follower.
type Forwarder interface {
	Forward(ctx context.Context, leaderID string, c *state.Command) error
}

// Store is the replicated store: Apply commits a command through Raft (forwarding to the
// leader when needed), State returns the current snapshot, Subscribe wakes on changes.
type Store struct {
	*state.Feed
	raft    *raft.Raft
	forward Forwarder // nil: return NotLeaderError instead
	cipher  *logCipher
	timeout time.Duration
}

func newStore(feed *state.Feed, r *raft.Raft, fwd Forwarder, c *logCipher) *Store {
	return &Store{Feed: feed, raft: r, forward: fwd, cipher: c, timeout: 10 * time.Second}
}

// IsLeader reports whether this node is the Raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's node name and Raft address ("" when there is none).
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// Apply commits c. On a follower it forwards c to the leader; with no leader it fails
// with ErrNoLeader. It returns once c is applied on this node's state if this node is the
// leader, or on the leader's otherwise.
func (s *Store) Apply(ctx context.Context, c *state.Command) error {
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	if !s.IsLeader() {
		id, addr := s.Leader()
		if id == "" {
			return ErrNoLeader
		}
		if s.forward == nil {
			return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
		}
		return s.forward.Forward(ctx, id, c)
	}
	return s.applyLocal(ctx, c)
}

// applyLocal commits c on this node, which must be the leader.
func (s *Store) applyLocal(ctx context.Context, c *state.Command) error {
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	b, err := c.Encode()
	if err != nil {
		return err
	}
	timeout := s.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	f := s.raft.Apply(s.cipher.seal(b), timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			id, addr := s.Leader()
			return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
		}
		return fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	return nil
}

// WaitCaughtUp blocks until this node's state includes every committed entry: on the
// leader after a barrier, on a follower once it heard from a leader and applied up to the
// commit index. Until then the node loop must not act: a half-replayed state would make it
// remove pods that are still placed here.
func (s *Store) WaitCaughtUp(ctx context.Context) error {
	start := time.Now()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if s.IsLeader() {
			if err := s.raft.Barrier(5 * time.Second).Error(); err == nil {
				return nil
			}
		} else if id, _ := s.Leader(); id != "" && s.raft.LastContact().After(start) {
			// The commit index is the leader's only once we heard from it since starting.
			if s.raft.AppliedIndex() >= s.raft.CommitIndex() && s.raft.CommitIndex() > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
