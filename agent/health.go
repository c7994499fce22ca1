package agent

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// nodeHealth tracks which nodes the leader can reach, from Raft's own heartbeats (so node
// liveness costs no extra traffic and no disk writes). Kept in memory only.
type nodeHealth struct {
	self string
	mu   sync.Mutex
	// failing: peers whose heartbeats fail, with when they were last heard from.
	failing map[string]time.Time
	seen    map[string]time.Time
}

func newNodeHealth(self string) *nodeHealth {
	return &nodeHealth{self: self, failing: map[string]time.Time{}, seen: map[string]time.Time{}}
}

// watch follows Raft's heartbeat observations.
func (h *nodeHealth) watch(r *raft.Raft) {
	ch := make(chan raft.Observation, 64)
	r.RegisterObserver(raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	}))
	go func() {
		for o := range ch {
			h.mu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := h.failing[string(d.PeerID)]; !ok {
					h.failing[string(d.PeerID)] = d.LastContact
				}
			case raft.ResumedHeartbeatObservation:
				delete(h.failing, string(d.PeerID))
				h.seen[string(d.PeerID)] = time.Now()
			case raft.LeaderObservation:
				// A new term: forget what an earlier leader observed.
				h.failing = map[string]time.Time{}
			}
			h.mu.Unlock()
		}
	}()
}

// ready reports whether a node answers heartbeats.
func (h *nodeHealth) ready(node string) bool {
	if node == h.self {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, failing := h.failing[node]
	return !failing
}

// notReadySince reports since when a node has been unreachable.
func (h *nodeHealth) notReadySince(node string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.failing[node]
	return t, ok
}

func (a *Agent) nodeReady(node string) bool { return a.health.ready(node) }

func (a *Agent) lastHeartbeat(node string) time.Time {
	if node == a.cfg.Name {
		return time.Now().UTC().Truncate(time.Second)
	}
	if t, failing := a.health.notReadySince(node); failing {
		return t
	}
	return time.Now().UTC().Truncate(time.Second)
}
