package state

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
)

func pod(ns, name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "img"}}},
	}
}

func deploy(name string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
	}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// apply runs commands through the JSON encoding, as the Raft log does.
func apply(t *testing.T, cmds ...*Command) *State {
	t.Helper()
	s := Empty()
	for i, c := range cmds {
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("encode command %d: %v", i, err)
		}
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode command %d: %v", i, err)
		}
		s, err = s.Apply(uint64(i+1), d)
		if err != nil {
			t.Fatalf("apply command %d: %v", i, err)
		}
	}
	return s
}

func TestApply(t *testing.T) {
	sync1 := &Command{At: t0, Sync: &Sync{Commit: Commit{Hash: "c1"}, Objects: Wrap[manifest.Object](deploy("web", 2), deploy("api", 1))}}
	sync2 := &Command{At: t0.Add(time.Minute), Sync: &Sync{Commit: Commit{Hash: "c2"}, Objects: Wrap[manifest.Object](deploy("web", 3))}}
	put := &Command{At: t0, Put: Wrap[manifest.Object](pod("default", "web-1", "n1"), pod("default", "web-2", ""))}

	tests := []struct {
		name  string
		cmds  []*Command
		check func(t *testing.T, s *State)
	}{
		{"sync makes commit live with typed objects", []*Command{sync1}, func(t *testing.T, s *State) {
			if s.Live.Hash != "c1" || s.Git.Count("Deployment") != 2 {
				t.Fatalf("Live=%q deployments=%d; want c1, 2", s.Live.Hash, s.Git.Count("Deployment"))
			}
			o, _ := s.Git.Get(Key{"Deployment", "default", "web"})
			d, ok := o.(*appsv1.Deployment)
			if !ok || *d.Spec.Replicas != 2 || d.UID == "" || d.Generation != 1 {
				t.Fatalf("web = %#v; want typed deployment, 2 replicas, uid, generation 1", o)
			}
		}},
		{"second sync prunes and bumps generation, keeps uid", []*Command{sync1, sync2}, func(t *testing.T, s *State) {
			first := apply(t, sync1)
			o1, _ := first.Git.Get(Key{"Deployment", "default", "web"})
			o2, _ := s.Git.Get(Key{"Deployment", "default", "web"})
			if _, ok := s.Git.Get(Key{"Deployment", "default", "api"}); ok {
				t.Error("api still present after it left git")
			}
			if o1.GetUID() != o2.GetUID() || o2.GetGeneration() != 2 {
				t.Errorf("uid %s→%s generation %d; want same uid, generation 2", o1.GetUID(), o2.GetUID(), o2.GetGeneration())
			}
		}},
		{"reject keeps live commit", []*Command{sync1, {At: t0, Reject: &Failure{Commit: Commit{Hash: "bad"}, Error: "boom"}}}, func(t *testing.T, s *State) {
			if s.Live.Hash != "c1" || s.Failed == nil || s.Failed.Commit.Hash != "bad" || s.Git.Len() != 2 {
				t.Fatalf("Live=%q Failed=%v objects=%d; want c1, bad, 2", s.Live.Hash, s.Failed, s.Git.Len())
			}
		}},
		{"status applies only to the same uid", []*Command{put,
			{At: t0, Status: []PodStatus{{Key: Key{"Pod", "default", "web-1"}, UID: "wrong", Status: corev1.PodStatus{Phase: corev1.PodRunning}}}}},
			func(t *testing.T, s *State) {
				o, _ := s.Cluster.Get(Key{"Pod", "default", "web-1"})
				if p := o.(*corev1.Pod); p.Status.Phase != "" {
					t.Fatalf("phase = %q after stale report; want empty", p.Status.Phase)
				}
			}},
		{"delete of placed pod marks it terminating; unplaced is removed", []*Command{put,
			{At: t0, Delete: []Ref{{Key: Key{"Pod", "default", "web-1"}}, {Key: Key{"Pod", "default", "web-2"}}}}},
			func(t *testing.T, s *State) {
				o, ok := s.Cluster.Get(Key{"Pod", "default", "web-1"})
				if !ok || o.GetDeletionTimestamp() == nil {
					t.Errorf("web-1 = %v; want present and terminating", o)
				}
				if _, ok := s.Cluster.Get(Key{"Pod", "default", "web-2"}); ok {
					t.Error("web-2 still present; want removed")
				}
			}},
		{"force delete removes placed pod", []*Command{put,
			{At: t0, Delete: []Ref{{Key: Key{"Pod", "default", "web-1"}, Force: true}}}},
			func(t *testing.T, s *State) {
				if _, ok := s.Cluster.Get(Key{"Pod", "default", "web-1"}); ok {
					t.Error("web-1 still present; want removed")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, apply(t, tt.cmds...)) })
	}
}

func TestApplyIsDeterministicAndSnapshotRoundTrips(t *testing.T) {
	cmds := []*Command{
		{At: t0, Sync: &Sync{Commit: Commit{Hash: "c1"}, Objects: Wrap[manifest.Object](deploy("web", 2))}},
		{At: t0, Put: Wrap[manifest.Object](pod("default", "web-1", "n1"))},
	}
	a, b := apply(t, cmds...), apply(t, cmds...)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("two replays differ:\n%s\n%s", ja, jb)
	}
	var back State
	if err := json.Unmarshal(ja, &back); err != nil {
		t.Fatal(err)
	}
	jc, _ := json.Marshal(&back)
	if string(jc) != string(ja) {
		t.Fatalf("snapshot round trip differs:\n%s\n%s", ja, jc)
	}
}

func TestFeedWaitFor(t *testing.T) {
	m := NewMemStore()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := m.WaitFor(ctx, func(s *State) bool { return s.Live.Hash == "c9" })
		done <- err
	}()
	if err := m.Apply(context.Background(), &Command{Sync: &Sync{Commit: Commit{Hash: "c9"}}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFor = %v; want nil", err)
	}
}

func TestFailureSame(t *testing.T) {
	p := manifest.Problems{{File: "a.yaml", Doc: 1, Severity: manifest.Error, Message: "bad"}}
	base := &Failure{Commit: Commit{Hash: "c1", Time: t0}, At: t0, Error: "", Problems: p}
	tests := []struct {
		name string
		a, b *Failure
		want bool
	}{
		{"both nil", nil, nil, true},
		{"one nil", base, nil, false},
		{"same but later", base, &Failure{Commit: Commit{Hash: "c1", Time: t0}, At: t0.Add(time.Hour), Problems: p}, true},
		{"other commit", base, &Failure{Commit: Commit{Hash: "c2"}, At: t0, Problems: p}, false},
		{"other error", base, &Failure{Commit: Commit{Hash: "c1"}, Error: "fetch failed", Problems: p}, false},
		{"other problems", base, &Failure{Commit: Commit{Hash: "c1"}}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Same(tt.b); got != tt.want {
			t.Errorf("Same(%s) = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestApplyLeavesTheOldSnapshotAlone(t *testing.T) {
	s1 := apply(t, &Command{At: t0, Put: Wrap[manifest.Object](pod("default", "a", "n1"))})
	s2, err := s1.Apply(2, &Command{At: t0, Put: Wrap[manifest.Object](pod("default", "b", "n1")),
		Delete: []Ref{{Key: Key{"Pod", "default", "a"}, Force: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s1.Cluster.Get(Key{"Pod", "default", "a"}); !ok || s1.Cluster.Len() != 1 {
		t.Errorf("old snapshot changed: %d objects", s1.Cluster.Len())
	}
	if _, ok := s2.Cluster.Get(Key{"Pod", "default", "b"}); !ok || s2.Cluster.Len() != 1 {
		t.Errorf("new snapshot = %d objects; want only b", s2.Cluster.Len())
	}
}

// BenchmarkApplyLargePut: one command placing 1000 pods (a big rollout or a restore).
func BenchmarkApplyLargePut(b *testing.B) {
	objs := make([]manifest.Object, 1000)
	for i := range objs {
		objs[i] = pod("default", fmt.Sprintf("p%04d", i), "n1")
	}
	cmd := &Command{At: t0, Put: Wrap(objs...)}
	for b.Loop() {
		if _, err := Empty().Apply(1, cmd); err != nil {
			b.Fatal(err)
		}
	}
}
