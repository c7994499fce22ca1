package controller

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/state"
)

// Fixtures.

func statefulSet(name string, replicas int32, image string, mods ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template:    template(name, image),
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func parallel(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }
func onDelete(s *appsv1.StatefulSet) {
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
}
func partitionAt(n int32) func(*appsv1.StatefulSet) {
	return func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &n}}
	}
}
func stsMinReady(sec int32) func(*appsv1.StatefulSet) {
	return func(s *appsv1.StatefulSet) { s.Spec.MinReadySeconds = sec }
}

// claimTemplate adds a volumeClaimTemplate (class nil: the default class) mounted at /data.
func claimTemplate(name, size string, class *string) func(*appsv1.StatefulSet) {
	return func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates = append(s.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: class,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			},
		})
		c := &s.Spec.Template.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: "/" + name})
	}
}

func retain(whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) func(*appsv1.StatefulSet) {
	return func(s *appsv1.StatefulSet) {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: whenDeleted, WhenScaled: whenScaled}
	}
}

// stateful renders a StatefulSet's pods by ordinal as "web-0=v1 web-1=v2": the image tag,
// with "!" for a pod not yet ready, "-" for one not placed and "~" for one terminating.
func (c *cluster) stateful(name string) string {
	var pods []*corev1.Pod
	for _, p := range c.pods() {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "StatefulSet" && ref.Name == name {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool {
		return ordinalOf(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name}}, pods[i]) <
			ordinalOf(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name}}, pods[j])
	})
	var parts []string
	for _, p := range pods {
		s := p.Name + "=" + tag(p.Spec.Containers[0].Image)
		switch {
		case p.DeletionTimestamp != nil:
			s += "~"
		case p.Spec.NodeName == "":
			s += "-"
		case !runningAndReady(p):
			s += "!"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func (c *cluster) statefulSetStatus(name string) appsv1.StatefulSetStatus {
	o, _ := c.state().Git.Get(state.Key{Kind: "StatefulSet", Namespace: "default", Name: name})
	return WithStatus(c.state(), c.now, o).(*appsv1.StatefulSet).Status
}

func (c *cluster) revisions() []*appsv1.ControllerRevision {
	return state.Typed[*appsv1.ControllerRevision](c.state().Cluster.List("ControllerRevision", ""))
}

// history records, for every pod name, when each of its incarnations (UIDs) was first seen,
// became ready and began terminating, as the harness steps.
type history struct {
	c          *cluster
	created    map[string][]time.Time
	ready      map[string]time.Time
	uids       map[string]string
	order      []string // pod names in the order they were created (incarnations repeat)
	deleted    []string // pod names in the order they began terminating
	terminated map[string]bool
}

func newHistory(c *cluster) *history {
	return &history{c: c, created: map[string][]time.Time{}, ready: map[string]time.Time{}, uids: map[string]string{},
		terminated: map[string]bool{}}
}

func (h *history) observe() {
	for _, p := range h.c.pods() {
		if h.uids[p.Name] != string(p.UID) {
			h.uids[p.Name] = string(p.UID)
			h.created[p.Name] = append(h.created[p.Name], h.c.now)
			h.order = append(h.order, p.Name)
			delete(h.ready, p.Name)
		}
		if _, ok := h.ready[p.Name]; !ok && runningAndReady(p) {
			h.ready[p.Name] = h.c.now
		}
		if p.DeletionTimestamp != nil && !h.terminated[string(p.UID)] {
			h.terminated[string(p.UID)] = true
			h.deleted = append(h.deleted, p.Name)
		}
	}
}

// watch plans once, checks the StatefulSet web's pods are then firstPlan, and converges,
// recording the history of its pods.
func (c *cluster) watch(name, firstPlan string) *history {
	c.t.Helper()
	c.plan()
	if got := c.stateful("web"); got != firstPlan {
		c.t.Fatalf("Plan(%s) = %q; want %q", name, got, firstPlan)
	}
	h := newHistory(c)
	h.observe()
	c.converge(h.observe)
	return h
}

func TestStatefulSetStart(t *testing.T) {
	tests := []struct {
		name      string
		set       *appsv1.StatefulSet
		agent     agent
		firstPlan string // pods after the first plan
		gap       time.Duration
	}{
		{name: "OrderedReady: one at a time, each ready before the next", agent: agent{readyAfter: 10 * time.Second},
			set: statefulSet("web", 3, "img:v1"), firstPlan: "web-0=v1!", gap: 10 * time.Second},
		{name: "OrderedReady waits minReadySeconds too", agent: agent{readyAfter: 3 * time.Second},
			set: statefulSet("web", 3, "img:v1", stsMinReady(20)), firstPlan: "web-0=v1!", gap: 23 * time.Second},
		{name: "Parallel: all at once", agent: agent{readyAfter: 10 * time.Second},
			set: statefulSet("web", 3, "img:v1", parallel), firstPlan: "web-0=v1! web-1=v1! web-2=v1!", gap: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2", "n3")...)
			c.agent = tt.agent
			c.sync(tt.set)
			h := c.watch(tt.name, tt.firstPlan)
			if got, want := c.stateful("web"), "web-0=v1 web-1=v1 web-2=v1"; got != want {
				t.Fatalf("converged(%s) = %q; want %q", tt.name, got, want)
			}
			if want := []string{"web-0", "web-1", "web-2"}; !slices.Equal(h.order, want) {
				t.Errorf("pods of %s made in the order %v; want %v", tt.name, h.order, want)
			}
			for i := 1; i < 3; i++ {
				prev, cur := fmt.Sprintf("web-%d", i-1), fmt.Sprintf("web-%d", i)
				if got := h.created[cur][0].Sub(h.created[prev][0]); got < tt.gap || (tt.gap == 0 && got != 0) {
					t.Errorf("%s: %s made %v after %s; want %v", tt.name, cur, got, prev, tt.gap)
				}
			}
			for i, p := range c.pods() {
				name := fmt.Sprintf("web-%d", i)
				if p.Name != name || p.Spec.Hostname != name || p.Spec.Subdomain != "web" || p.Labels[LabelPodName] != name ||
					p.Labels[LabelPodIndex] != fmt.Sprint(i) || p.Labels[LabelControllerRevHash] == "" || p.Labels["app"] != "web" {
					t.Errorf("pod %d = %s hostname %q subdomain %q labels %v; want %s, its own hostname, subdomain web, identity labels",
						i, p.Name, p.Spec.Hostname, p.Spec.Subdomain, p.Labels, name)
				}
			}
			if got := c.perNode(); got != "n1=1 n2=1 n3=1" {
				t.Errorf("placement(%s) = %s; want spread one per node", tt.name, got)
			}
			c.converged(tt.name)
		})
	}
}

func TestStatefulSetScaleDown(t *testing.T) {
	tests := []struct {
		name      string
		mods      []func(*appsv1.StatefulSet)
		firstPlan string
		deleted   []string
	}{
		{name: "OrderedReady: highest first, each gone before the next", firstPlan: "web-0=v1 web-1=v1 web-2=v1 web-3=v1~",
			deleted: []string{"web-3", "web-2", "web-1"}},
		{name: "Parallel: all at once", mods: []func(*appsv1.StatefulSet){parallel},
			firstPlan: "web-0=v1 web-1=v1~ web-2=v1~ web-3=v1~", deleted: []string{"web-1", "web-2", "web-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.sync(statefulSet("web", 4, "img:v1", tt.mods...))
			c.converge(nil)
			c.sync(statefulSet("web", 1, "img:v1", tt.mods...))
			got := c.watch(tt.name, tt.firstPlan).deleted
			if len(tt.mods) > 0 { // parallel: the order within the batch does not matter
				got = slices.Sorted(slices.Values(got))
			}
			if !slices.Equal(got, tt.deleted) {
				t.Errorf("Plan(%s) deleted %v; want %v", tt.name, got, tt.deleted)
			}
			if got := c.stateful("web"); got != "web-0=v1" {
				t.Errorf("converged(%s) = %q; want web-0=v1", tt.name, got)
			}
			c.converged(tt.name)
		})
	}
	t.Run("OrderedReady: waits while a pod is not ready", func(t *testing.T) {
		c := newCluster(t, nodes("n1", "n2")...)
		c.sync(statefulSet("web", 3, "img:v1"))
		c.converge(nil)
		c.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(c.pod("web-0")), UID: c.pod("web-0").UID,
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}}})
		c.sync(statefulSet("web", 1, "img:v1"))
		if res := Plan(c.input()); res.Command != nil {
			b, _ := res.Command.Encode()
			t.Errorf("Plan(scale down with web-0 not ready) = %s; want to wait", b)
		}
	})
}

func TestStatefulSetRollingUpdate(t *testing.T) {
	tests := []struct {
		name    string
		mods    []func(*appsv1.StatefulSet)
		want    string
		deleted []string
		status  string // current/updated replicas, and whether the current revision is the update one
	}{
		{name: "RollingUpdate: highest ordinal first, one at a time", want: "web-0=v2 web-1=v2 web-2=v2 web-3=v2",
			deleted: []string{"web-3", "web-2", "web-1", "web-0"}, status: "current=4 updated=4 same=true"},
		{name: "partition 2 keeps the ordinals below it", mods: []func(*appsv1.StatefulSet){partitionAt(2)},
			want: "web-0=v1 web-1=v1 web-2=v2 web-3=v2", deleted: []string{"web-3", "web-2"}, status: "current=2 updated=2 same=false"},
		{name: "partition above replicas updates nothing", mods: []func(*appsv1.StatefulSet){partitionAt(9)},
			want: "web-0=v1 web-1=v1 web-2=v1 web-3=v1", status: "current=4 updated=0 same=false"},
		{name: "OnDelete replaces nothing by itself", mods: []func(*appsv1.StatefulSet){onDelete},
			want: "web-0=v1 web-1=v1 web-2=v1 web-3=v1", status: "current=4 updated=0 same=false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.agent.readyAfter = 5 * time.Second
			c.sync(statefulSet("web", 4, "img:v1", tt.mods...))
			c.converge(nil)
			c.sync(statefulSet("web", 4, "img:v2", tt.mods...))
			h := newHistory(c)
			h.observe()
			c.converge(func() {
				h.observe()
				unready := 0
				for _, p := range c.pods() {
					if !runningAndReady(p) || p.DeletionTimestamp != nil {
						unready++
					}
				}
				if unready > 1 {
					t.Fatalf("Plan(%s) has %d pods down at once (%s); want at most one", tt.name, unready, c.stateful("web"))
				}
			})
			if got := c.stateful("web"); got != tt.want {
				t.Errorf("Plan(%s) = %q; want %q", tt.name, got, tt.want)
			}
			if !slices.Equal(h.deleted, tt.deleted) {
				t.Errorf("Plan(%s) replaced %v; want %v", tt.name, h.deleted, tt.deleted)
			}
			st := c.statefulSetStatus("web")
			if got := fmt.Sprintf("current=%d updated=%d same=%v", st.CurrentReplicas, st.UpdatedReplicas, st.CurrentRevision == st.UpdateRevision); got != tt.status {
				t.Errorf("status(%s) = %s; want %s", tt.name, got, tt.status)
			}
			if st.Replicas != 4 || st.ReadyReplicas != 4 || st.AvailableReplicas != 4 || st.UpdateRevision == "" {
				t.Errorf("status(%s) = %+v; want 4 replicas ready and available with an update revision", tt.name, st)
			}
			c.converged(tt.name)
		})
	}
}

func TestStatefulSetRevisions(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(statefulSet("web", 2, "img:v1", partitionAt(1)))
	c.converge(nil)
	rev1 := c.statefulSetStatus("web").UpdateRevision
	c.sync(statefulSet("web", 2, "img:v2", partitionAt(1)))
	c.converge(nil)
	st := c.statefulSetStatus("web")
	if st.CurrentRevision != rev1 || st.UpdateRevision == rev1 || c.stateful("web") != "web-0=v1 web-1=v2" {
		t.Fatalf("partitioned update: status %+v, pods %s; want current %s, a new update revision, web-0=v1 web-1=v2", st, c.stateful("web"), rev1)
	}

	// web-0, below the partition, fails: it comes back at the current revision.
	web0 := c.pod("web-0")
	c.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(web0), UID: web0.UID, Status: corev1.PodStatus{Phase: corev1.PodFailed}}}})
	c.converge(nil)
	if got := c.stateful("web"); got != "web-0=v1 web-1=v2" || c.pod("web-0").UID == web0.UID {
		t.Errorf("failed web-0 below the partition = %s (same pod: %v); want a new web-0 at v1", got, c.pod("web-0").UID == web0.UID)
	}

	// A rollback to v1 takes revision 1 back, with the next revision number.
	c.sync(statefulSet("web", 2, "img:v1"))
	c.converge(nil)
	st = c.statefulSetStatus("web")
	revs := c.revisions()
	if st.UpdateRevision != rev1 || st.CurrentRevision != rev1 || c.stateful("web") != "web-0=v1 web-1=v1" || len(revs) != 2 {
		t.Fatalf("rollback: status %+v, pods %s, %d revisions; want everything at %s, two revisions", st, c.stateful("web"), len(revs), rev1)
	}
	for _, r := range revs {
		if r.Name == rev1 && r.Revision != 3 {
			t.Errorf("rollback: revision %s has number %d; want 3", r.Name, r.Revision)
		}
		if ref := metav1.GetControllerOf(r); ref == nil || ref.Name != "web" || r.Labels[LabelControllerRevHash] == "" {
			t.Errorf("revision %s: owner %v labels %v; want controlled by web, with its hash label", r.Name, ref, r.Labels)
		}
	}

	// History beyond revisionHistoryLimit is pruned; the StatefulSet leaving git takes its
	// revisions, record and pods with it.
	limit := func(s *appsv1.StatefulSet) { s.Spec.RevisionHistoryLimit = ptrTo[int32](1) }
	for _, img := range []string{"img:v3", "img:v4", "img:v5"} {
		c.sync(statefulSet("web", 2, img, limit))
		c.converge(nil)
	}
	if n := len(c.revisions()); n != 2 {
		t.Errorf("revisions with revisionHistoryLimit 1 = %d; want 2 (the live one and one more)", n)
	}
	c.sync()
	c.converge(nil)
	if n, pods, recs := len(c.revisions()), len(c.pods()), c.state().Cluster.Count("StatefulSet"); n+pods+recs != 0 {
		t.Errorf("StatefulSet removed: %d revisions, %d pods, %d records left; want none", n, pods, recs)
	}
	c.converged("rollback")
}

func TestStatefulSetOnDeleteReplacesDeletedPods(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(statefulSet("web", 3, "img:v1", onDelete))
	c.converge(nil)
	c.sync(statefulSet("web", 3, "img:v2", onDelete))
	c.converge(nil)
	web1 := c.pod("web-1")
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(web1), UID: web1.UID}}})
	c.converge(nil)
	if got := c.stateful("web"); got != "web-0=v1 web-1=v2 web-2=v1" {
		t.Errorf("OnDelete after deleting web-1 = %q; want web-1 alone at v2", got)
	}
	c.converged("OnDelete")
}

func TestStatefulSetFailedPodRecreated(t *testing.T) {
	for _, policy := range []func(*appsv1.StatefulSet){func(*appsv1.StatefulSet) {}, parallel} {
		c := newCluster(t, nodes("n1", "n2", "n3")...)
		c.sync(statefulSet("web", 3, "img:v1", policy, claimTemplate("data", "1Gi", nil)))
		c.converge(nil)
		old := c.pod("web-1")
		claim := c.claimObj("data-web-1")
		c.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(old), UID: old.UID,
			Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}}})
		c.plan()
		if p := c.pod("web-1"); p == nil || p.DeletionTimestamp == nil {
			t.Fatalf("Plan(web-1 failed) = %v; want it terminating", p)
		}
		c.converge(nil)
		cur := c.pod("web-1")
		if cur == nil || cur.UID == old.UID || cur.Spec.NodeName != old.Spec.NodeName || !runningAndReady(cur) {
			t.Fatalf("web-1 after failing = %+v; want a new, ready web-1 on %s", cur, old.Spec.NodeName)
		}
		if got := c.claimObj("data-web-1"); got.UID != claim.UID || got.Spec.VolumeName != claim.Spec.VolumeName ||
			cur.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-web-1" {
			t.Errorf("web-1's claim after replacement = %s bound to %s; want the same claim %s bound to %s",
				got.UID, got.Spec.VolumeName, claim.UID, claim.Spec.VolumeName)
		}
		if got := c.stateful("web"); got != "web-0=v1 web-1=v1 web-2=v1" {
			t.Errorf("pods = %s; want all three back", got)
		}
		c.converged("failed pod")
	}
}

func TestStatefulSetStatus(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.neverReady = "img:bad"
	c.sync(statefulSet("web", 2, "img:v1", stsMinReady(30), parallel))
	c.converge(nil)
	st := c.statefulSetStatus("web")
	if got := fmt.Sprintf("%d/%d/%d/%d/%d", st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas); got != "2/2/2/2/2" ||
		st.CurrentRevision != st.UpdateRevision || st.ObservedGeneration != 1 {
		t.Errorf("status after start = %s %+v; want 2/2/2/2/2 with one revision, observed", got, st)
	}
	c.sync(statefulSet("web", 2, "img:bad", stsMinReady(30), parallel))
	if st := c.statefulSetStatus("web"); st.ObservedGeneration == 2 {
		t.Errorf("status of a template not acted on yet: observedGeneration = %d; want 1", st.ObservedGeneration)
	}
	c.converge(nil)
	st = c.statefulSetStatus("web")
	if got := fmt.Sprintf("%d/%d/%d/%d/%d", st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas); got != "2/1/1/1/1" ||
		st.CurrentRevision == st.UpdateRevision || st.ObservedGeneration != 2 {
		t.Errorf("status with web-1 stuck updating = %s %+v; want 2/1/1/1/1, revisions apart, observed", got, st)
	}
}

func TestOrdinalOf(t *testing.T) {
	set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
	for name, want := range map[string]int{"web-0": 0, "web-12": 12, "web-": -1, "web-01": -1, "web-+1": -1, "web-x": -1,
		"web-1-2": -1, "webby-1": -1, "api-1": -1, "web--1": -1} {
		if got := ordinalOf(set, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}); got != want {
			t.Errorf("ordinalOf(%q) = %d; want %d", name, got, want)
		}
	}
}
