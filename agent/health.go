package agent

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// nodeHealth tracks which nodes the leader can reach, from Raft's own heartbeats (so node
// liveness costs no extra traffic and no disk writes). Kept in memory only: a new leader
// starts over, counting a peer's silence from the moment it began leading — except the
// leader it replaced, silent since this node last heard from it.
type nodeHealth struct {
	self  string
	grace time.Duration
	now   func() time.Time

	mu sync.Mutex
	// failing: peers whose heartbeats fail, with when they were last heard from.
	failing map[string]time.Time
	term    time.Time // when this node last became leader
	leader  string    // the leader as last observed
	// prevLeader was the leader before this node took over, last heard from at prevSeen:
	// its silence counts from then, not from the election.
	prevLeader string
	prevSeen   time.Time
	raftSeen   func() time.Time // raft's last contact with the leader (nil in tests)
	onChange   func()
}

func newNodeHealth(self string, grace time.Duration) *nodeHealth {
	return &nodeHealth{self: self, grace: grace, now: time.Now, failing: map[string]time.Time{}}
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
	h.raftSeen = r.LastContact
	go func() {
		for o := range ch {
			h.observe(o.Data)
		}
	}()
}

func (h *nodeHealth) observe(d any) {
	h.mu.Lock()
	changed := false
	switch d := d.(type) {
	case raft.FailedHeartbeatObservation:
		if _, ok := h.failing[string(d.PeerID)]; !ok {
			last := d.LastContact
			if last.Before(h.term) {
				last = h.term // never heard from under this leader: count from the term
				if string(d.PeerID) == h.prevLeader && !h.prevSeen.IsZero() {
					last = h.prevSeen // the dead leader: silent since followers last heard from it
				}
			}
			h.failing[string(d.PeerID)] = last
			changed = true
		}
	case raft.ResumedHeartbeatObservation:
		if _, ok := h.failing[string(d.PeerID)]; ok {
			delete(h.failing, string(d.PeerID))
			changed = true
		}
	case raft.LeaderObservation:
		h.failing = map[string]time.Time{}
		h.term = h.now()
		if string(d.LeaderID) == h.self && h.leader != h.self && h.leader != "" {
			h.prevLeader, h.prevSeen = h.leader, time.Time{}
			if h.raftSeen != nil {
				h.prevSeen = h.raftSeen()
			}
		}
		if d.LeaderID != "" {
			h.leader = string(d.LeaderID)
		}
		changed = true
	}
	cb := h.onChange
	h.mu.Unlock()
	if changed && cb != nil {
		cb()
	}
}

// ready reports whether a node answers heartbeats (or has been silent for less than the
// grace period).
func (h *nodeHealth) ready(node string) bool {
	_, notReady := h.notReadySince(node)
	return !notReady
}

// notReadySince reports since when a node has been NotReady: grace after it was last
// heard from.
func (h *nodeHealth) notReadySince(node string) (time.Time, bool) {
	if node == h.self {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	last, failing := h.failing[node]
	if !failing {
		return time.Time{}, false
	}
	since := last.Add(h.grace)
	if h.now().Before(since) {
		return time.Time{}, false
	}
	return since, true
}

// lastContact is when the leader last heard from a node (now, when it is healthy).
func (h *nodeHealth) lastContact(node string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if last, failing := h.failing[node]; failing {
		return last
	}
	return h.now()
}

func (h *nodeHealth) setOnChange(f func()) {
	h.mu.Lock()
	h.onChange = f
	h.mu.Unlock()
}

func (a *Agent) nodeReady(node string) bool { return a.health.ready(node) }

func (a *Agent) lastHeartbeat(node string) time.Time {
	return a.health.lastContact(node).UTC().Truncate(time.Second)
}
