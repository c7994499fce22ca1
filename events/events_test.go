package events

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRing(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewRing(3, "n1")
	r.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: "u-" + "name"}}
	}
	r.Eventf(pod("a"), corev1.EventTypeNormal, "Started", "started %s", "c")
	r.Eventf(pod("a"), corev1.EventTypeNormal, "Started", "started %s", "c")
	r.Eventf(pod("b"), corev1.EventTypeWarning, "BackOff", "back-off")
	r.Eventf(pod("c"), corev1.EventTypeNormal, "Pulled", "pulled")
	r.Eventf(pod("d"), corev1.EventTypeNormal, "Pulled", "pulled")

	all := r.List("", "", "")
	if len(all) != 3 {
		t.Fatalf("len(List) = %d; want 3 (ring size)", len(all))
	}
	if got := r.List("default", "", "a"); len(got) != 0 {
		t.Errorf("List(a) = %v; want evicted", got)
	}
	r.Eventf(pod("b"), corev1.EventTypeWarning, "BackOff", "back-off")
	got := r.List("", "Pod", "b")
	if len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("List(b) = %+v; want one event with count 2", got)
	}
	if last := r.List("", "", ""); last[len(last)-1].InvolvedObject.Name != "b" {
		t.Errorf("newest event is %s; want b (repeats move to the end)", last[len(last)-1].InvolvedObject.Name)
	}
}
