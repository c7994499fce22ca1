package controller

import (
	"fmt"
	"testing"

	"github.com/skiffhq/skiff/manifest"
)

// benchCluster is 20 Deployments of 10 replicas (200 pods) on 5 nodes.
func benchCluster(b *testing.B, converge bool) *cluster {
	c := newCluster(b, nodes("n1", "n2", "n3", "n4", "n5")...)
	var ds []manifest.Object
	for i := range 20 {
		ds = append(ds, deploy(fmt.Sprintf("app%02d", i), 10, "img:v1", podRequest("50m", "32Mi")))
	}
	c.sync(ds...)
	if converge {
		c.converge(nil)
		if n := placedPods(c.state(), ""); n != 200 {
			b.Fatalf("converged with %d pods; want 200", n)
		}
	}
	return c
}

// BenchmarkPlanConverged is the steady state: every state change (a pod status report)
// costs one Plan that finds nothing to do.
func BenchmarkPlanConverged(b *testing.B) {
	in := benchCluster(b, true).input()
	b.ReportAllocs()
	for b.Loop() {
		if res := Plan(in); res.Command != nil {
			b.Fatal("converged state planned a command")
		}
	}
}

// BenchmarkPlanCreate is the first Plan of a new commit: 20 ReplicaSets, 200 pods made and
// placed in one command.
func BenchmarkPlanCreate(b *testing.B) {
	in := benchCluster(b, false).input()
	b.ReportAllocs()
	for b.Loop() {
		if res := Plan(in); res.Command == nil || len(res.Command.Put) != 220 {
			b.Fatal("want 220 objects put")
		}
	}
}
