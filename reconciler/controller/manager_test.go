package controller

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

func TestPlanIsDeterministic(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2", "n3")...)
	c.sync(deploy("web", 6, "img:v1"), bare("solo", "img:v1"))
	c.converge(nil)
	c.sync(deploy("web", 6, "img:v2"), deploy("api", 4, "img:v1"), replicationController("rc", 3, nil, map[string]string{"app": "rc"}),
		statefulSet("db", 3, "img:v1", parallel, claimTemplate("data", "1Gi", nil), claimTemplate("logs", "1Gi", nil)),
		volume("a", "1Gi"), volume("b", "1Gi"), claimOf("one", "1Gi"), claimOf("two", "1Gi"), bare("user", "img:v1", withClaim("two")))
	in := c.input()
	for range 3 {
		a, b := in, in
		a.Rand, b.Rand = newRand(7), newRand(7)
		ra, rb := Plan(a), Plan(b)
		ea, _ := ra.Command.Encode()
		eb, _ := rb.Command.Encode()
		if string(ea) != string(eb) || !reflect.DeepEqual(eventStrings(ra), eventStrings(rb)) {
			t.Fatalf("Plan(same input) = %s\nthen %s; want the same command twice", ea, eb)
		}
	}
	if res := Plan(in); res.Command == nil || len(res.Command.Put) == 0 {
		t.Errorf("Plan(new commit) = no command; want ReplicaSets and pods")
	}
}

func eventStrings(r Result) []string {
	var out []string
	for _, e := range r.Events {
		out = append(out, e.Type+" "+e.Reason+" "+e.Message)
	}
	return out
}

func TestPlanEmptyState(t *testing.T) {
	if res := Plan(Input{Now: t0}); res.Command != nil || res.Requeue != 0 {
		t.Errorf("Plan(empty) = %+v; want nothing to do", res)
	}
}

// placedPods counts the pods placed on a node ("" for any node) that are not terminating.
func placedPods(s *state.State, node string) int {
	n := 0
	for _, p := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
		if p.Spec.NodeName != "" && (node == "" || p.Spec.NodeName == node) && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

func TestManager(t *testing.T) {
	tests := []struct {
		name    string
		tracker bool // the agent's NotReady tracker (else the Manager's own)
	}{
		{"the Manager notes when a node went NotReady", false},
		{"the agent's tracker says when", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testManager(t, tt.tracker) })
	}
}

func testManager(t *testing.T, tracker bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := state.NewMemStore()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.Apply(ctx, &state.Command{Put: state.Wrap(nodes("n1", "n2", "n3")...)}))
	must(store.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c1"},
		Objects: state.Wrap[manifest.Object](deploy("web", 6, "img:v1"))}}))

	var n1Down atomic.Bool
	ring := events.NewRing(100, "test")
	m := NewManager(store, ring, func(n string) bool { return n != "n1" || !n1Down.Load() }, nil)
	m.UnreachableToleration = time.Millisecond
	if tracker {
		m.UnreachableToleration = time.Hour // the agent says n1 has been down for longer
		m.SetNodeNotReadySince(func(n string) (time.Time, bool) {
			return time.Now().Add(-2 * time.Hour), n == "n1" && n1Down.Load()
		})
	}
	if err := m.Stop(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Stop before Start = %v; want ErrNotStarted", err)
	}
	must(m.Start(ctx))
	if err := m.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Errorf("Start twice = %v; want ErrStarted", err)
	}
	if _, err := store.WaitFor(ctx, func(s *state.State) bool { return placedPods(s, "") == 6 && placedPods(s, "n1") == 2 }); err != nil {
		t.Fatalf("Manager: pods = %d placed; want 6 spread 2/2/2: %v", placedPods(store.State(), ""), err)
	}

	// n1 stops answering: once its toleration has passed its pods go and are replaced on
	// the other nodes.
	n1Down.Store(true)
	m.Trigger()
	if _, err := store.WaitFor(ctx, func(s *state.State) bool { return placedPods(s, "n1") == 0 && placedPods(s, "") == 6 }); err != nil {
		t.Fatalf("Manager(n1 down): %d pods on n1, %d placed; want 0 and 6: %v", placedPods(store.State(), "n1"), placedPods(store.State(), ""), err)
	}
	must(m.Stop())

	reasons := map[string]bool{}
	for _, e := range ring.List("", "", "") {
		reasons[e.Reason] = true
	}
	for _, r := range []string{"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "TaintManagerEviction"} {
		if !reasons[r] {
			t.Errorf("Manager events = %v; want a %s event", reasons, r)
		}
	}
}
