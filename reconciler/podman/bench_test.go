package podman_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/reconciler"
)

// BenchmarkPodStart: CreatePod (sandbox running) plus one container created and started,
// through the bindings. Reports the two phases separately.
func BenchmarkPodStart(b *testing.B) {
	e := setup(b)
	var podTime, ctrTime time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p, err := e.rt.CreatePod(e.ctx, reconciler.PodConfig{UID: randHex(16), Namespace: "bench", Name: "start", Node: node})
		if err != nil {
			b.Fatal(err)
		}
		podTime += time.Since(start)
		start = time.Now()
		c, err := e.rt.CreateContainer(e.ctx, p.ID, reconciler.ContainerConfig{Name: "app", Image: e.img, Entrypoint: sleeper})
		if err == nil {
			err = e.rt.StartContainer(e.ctx, c.ID)
		}
		if err != nil {
			b.Fatal(err)
		}
		ctrTime += time.Since(start)
		b.StopTimer()
		if err := e.rt.RemovePod(e.ctx, p.ID, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(podTime.Milliseconds())/float64(b.N), "ms/pod")
	b.ReportMetric(float64(ctrTime.Milliseconds())/float64(b.N), "ms/container")
}

// BenchmarkPods: one Pods() call with 20 running pods of one container each, in steady
// state (nothing changed since the previous call).
func BenchmarkPods(b *testing.B) {
	e := setup(b)
	for i := 0; i < 20; i++ {
		p := e.pod(reconciler.PodConfig{Namespace: "bench"})
		e.run(p, reconciler.ContainerConfig{Entrypoint: sleeper})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.rt.Pods(ctx); err != nil { // fill the caches
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ps, err := e.rt.Pods(ctx)
		if err != nil || len(ps) < 20 {
			b.Fatalf("Pods() = %d pods, %v", len(ps), err)
		}
	}
}
