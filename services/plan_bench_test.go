package services

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/manifest"
)

// BenchmarkPlanConverged is the leader's cost per plan when nothing changed (it plans on
// every state change and every few seconds).
func BenchmarkPlanConverged(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := newAllocCluster(b, allocCfg, node("n1", "192.168.1.1"), node("n2", "192.168.1.2"))
			var objs []manifest.Object
			for i := range n {
				typ := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}[i%3]
				objs = append(objs, svc(fmt.Sprintf("s%d", i), typed(typ)))
			}
			c.sync(objs...)
			s := c.m.State()
			b.ResetTimer()
			for range b.N {
				put, del, _ := Plan(s, allocCfg, time.Time{})
				if len(put)+len(del) > 0 {
					b.Fatal("not converged")
				}
			}
		})
	}
}
