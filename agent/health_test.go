package agent

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestNodeHealth(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	grace := 2 * time.Second
	type step struct {
		at  time.Duration // since t0
		obs any
	}
	lead := func(id string) raft.LeaderObservation { return raft.LeaderObservation{LeaderID: raft.ServerID(id)} }
	fail := func(id string, last time.Duration) raft.FailedHeartbeatObservation {
		var lc time.Time
		if last >= 0 {
			lc = t0.Add(last)
		}
		return raft.FailedHeartbeatObservation{PeerID: raft.ServerID(id), LastContact: lc}
	}
	tests := []struct {
		name      string
		steps     []step
		raftSeen  time.Duration // when "me" last heard from the old leader
		at        time.Duration
		node      string
		wantReady bool
		wantSince time.Duration
	}{
		{"healthy peer", []step{{0, lead("me")}}, 0, 10 * time.Second, "n2", true, 0},
		{"self is always ready", []step{{0, lead("me")}, {1 * time.Second, fail("me", 0)}}, 0, 10 * time.Second, "me", true, 0},
		{"failing within grace", []step{{0, lead("me")}, {5 * time.Second, fail("n2", 4*time.Second)}}, 0, 5 * time.Second, "n2", true, 0},
		{"failing past grace", []step{{0, lead("me")}, {5 * time.Second, fail("n2", 4*time.Second)}}, 0, 7 * time.Second, "n2", false, 6 * time.Second},
		{"resumed", []step{{0, lead("me")}, {5 * time.Second, fail("n2", 4*time.Second)}, {8 * time.Second, raft.ResumedHeartbeatObservation{PeerID: "n2"}}}, 0, 9 * time.Second, "n2", true, 0},
		{"unknown contact counts from the term", []step{{0, lead("n1")}, {10 * time.Second, lead("me")}, {10 * time.Second, fail("n3", -1)}}, 9 * time.Second, 13 * time.Second, "n3", false, 12 * time.Second},
		{"the dead leader counts from when it was last heard", []step{{0, lead("n1")}, {10 * time.Second, lead("me")}, {10 * time.Second, fail("n1", -1)}}, 8 * time.Second, 11 * time.Second, "n1", false, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			h := newNodeHealth("me", grace)
			h.now = func() time.Time { return now }
			h.raftSeen = func() time.Time { return t0.Add(tt.raftSeen) }
			for _, s := range tt.steps {
				now = t0.Add(s.at)
				h.observe(s.obs)
			}
			now = t0.Add(tt.at)
			since, notReady := h.notReadySince(tt.node)
			if h.ready(tt.node) != tt.wantReady || notReady == tt.wantReady {
				t.Fatalf("ready(%s) = %v; want %v", tt.node, h.ready(tt.node), tt.wantReady)
			}
			if !tt.wantReady && !since.Equal(t0.Add(tt.wantSince)) {
				t.Errorf("notReadySince(%s) = %s; want t0+%s", tt.node, since.Sub(t0), tt.wantSince)
			}
		})
	}
}
