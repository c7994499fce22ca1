// Package events records what happened to objects (Scheduled, Pulled, Started, Killing,
// Unhealthy, BackOff, ...) in a bounded in-memory ring, like Kubernetes events but never
// written to disk: they are for operators looking now, and every write wears the SD card.
package events

import (
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
)

// Recorder records events. Implementations must be safe for concurrent use.
type Recorder interface {
	// Eventf records an event about obj; eventType is corev1.EventTypeNormal or Warning.
	Eventf(obj manifest.Object, eventType, reason, format string, args ...any)
}

// Ring keeps the newest events, folding repeats of the same event into a count as
// Kubernetes does.
type Ring struct {
	mu     sync.Mutex
	size   int
	seq    uint64
	events []*corev1.Event // oldest first
	Source string          // reporting component, e.g. the node name
	Now    func() time.Time
}

// NewRing returns a ring keeping at most size events.
func NewRing(size int, source string) *Ring {
	return &Ring{size: size, Source: source, Now: time.Now}
}

var _ Recorder = (*Ring)(nil)

// Eventf records an event; a repeat of the newest matching event bumps its count.
func (r *Ring) Eventf(obj manifest.Object, eventType, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := metav1.NewTime(r.Now())
	ref := corev1.ObjectReference{
		Kind: manifest.KindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName(),
		UID: obj.GetUID(), APIVersion: obj.GetObjectKind().GroupVersionKind().GroupVersion().String(),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0 && i >= len(r.events)-32; i-- {
		e := r.events[i]
		if e.InvolvedObject.UID == ref.UID && e.InvolvedObject.Name == ref.Name &&
			e.Reason == reason && e.Message == msg && e.Type == eventType {
			e.Count++
			e.LastTimestamp = now
			// move to the end: the ring is ordered by last occurrence
			r.events = append(append(r.events[:i:i], r.events[i+1:]...), e)
			return
		}
	}
	r.seq++
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	e := &corev1.Event{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              fmt.Sprintf("%s.%s.%d", obj.GetName(), r.Source, r.seq),
			Namespace:         ns,
			CreationTimestamp: now,
		},
		InvolvedObject: ref, Reason: reason, Message: msg, Type: eventType,
		Source:         corev1.EventSource{Component: "skiff", Host: r.Source},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	r.events = append(r.events, e)
	if len(r.events) > r.size {
		r.events = append(r.events[:0:0], r.events[len(r.events)-r.size:]...)
	}
}

// List returns copies of the events in namespace ns ("" for all) about the object named
// name ("" for all), oldest first.
func (r *Ring) List(ns, kind, name string) []corev1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []corev1.Event
	for _, e := range r.events {
		if (ns == "" || e.Namespace == ns) && (name == "" || e.InvolvedObject.Name == name) &&
			(kind == "" || e.InvolvedObject.Kind == kind) {
			out = append(out, *e.DeepCopy())
		}
	}
	return out
}

// Sort orders events by last occurrence, oldest first (for merging rings of several nodes).
func Sort(evs []corev1.Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		return evs[i].LastTimestamp.Before(&evs[j].LastTimestamp)
	})
}

// Discard drops every event (for tests and tools that do not care).
type Discard struct{}

// Eventf does nothing.
func (Discard) Eventf(manifest.Object, string, string, string, ...any) {}
