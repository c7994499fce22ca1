package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
)

// step is one thing that happens to a cluster, then the cluster converges.
type step struct {
	git   []manifest.Object              // a new commit with exactly these objects
	check func(t *testing.T, c *cluster) // an invariant, checked after every change
	want  string                         // c.summary("web") once converged
	then  func(t *testing.T, c *cluster) // more checks once converged
}

func TestDeployment(t *testing.T) {
	tests := []struct {
		name  string
		agent agent
		steps []step
	}{
		{name: "create", steps: []step{
			{git: objs(deploy("web", 3, "img:v1")), want: "v1:3/3"},
		}},
		{name: "scale up then down", steps: []step{
			{git: objs(deploy("web", 3, "img:v1")), want: "v1:3/3"},
			{git: objs(deploy("web", 5, "img:v1")), want: "v1:5/5"},
			{git: objs(deploy("web", 2, "img:v1")), want: "v1:2/2"},
			{git: objs(deploy("web", 0, "img:v1")), want: "v1:0/0"},
		}},
		{name: "rolling update maxSurge=1 maxUnavailable=0", agent: agent{readyAfter: 2e9}, steps: []step{
			{git: objs(deploy("web", 10, "img:v1", rolling("1", "0"))), want: "v1:10/10"},
			{git: objs(deploy("web", 10, "img:v2", rolling("1", "0"))), want: "v1:0/0 v2:10/10", check: bounds(10, 1, 0)},
		}},
		{name: "rolling update 25%/25% on 10", agent: agent{readyAfter: 2e9}, steps: []step{
			{git: objs(deploy("web", 10, "img:v1", rolling("25%", "25%"))), want: "v1:10/10"},
			{git: objs(deploy("web", 10, "img:v2", rolling("25%", "25%"))), want: "v1:0/0 v2:10/10", check: bounds(10, 3, 2)},
		}},
		{name: "rolling update maxSurge=0 maxUnavailable=1", agent: agent{readyAfter: 1e9}, steps: []step{
			{git: objs(deploy("web", 4, "img:v1", rolling("0", "1"))), want: "v1:4/4"},
			{git: objs(deploy("web", 4, "img:v2", rolling("0", "1"))), want: "v1:0/0 v2:4/4", check: bounds(4, 0, 1)},
		}},
		{name: "rolling update waits for minReadySeconds", steps: []step{
			{git: objs(deploy("web", 4, "img:v1", rolling("1", "0"), minReady(5))), want: "v1:4/4"},
			{git: objs(deploy("web", 4, "img:v2", rolling("1", "0"), minReady(5))), want: "v1:0/0 v2:4/4", check: bounds(4, 1, 0),
				then: func(t *testing.T, c *cluster) {
					if got := len(c.eventsWith("ScalingReplicaSet")); got < 8 {
						t.Errorf("Plan(minReadySeconds) scaled %d times; want a step per pod (>= 8)", got)
					}
				}},
		}},
		{name: "rollout stuck on pods that never turn ready", agent: agent{neverReady: "img:bad"}, steps: []step{
			{git: objs(deploy("web", 10, "img:v1")), want: "v1:10/10"},
			{git: objs(deploy("web", 10, "img:bad")), want: "v1:8/8 bad:5/5", check: bounds(10, 3, 2)},
			// Scaling in the middle of a rollout spreads the new replicas over both
			// ReplicaSets in proportion to their size (Kubernetes' proportional scaling):
			// 8*25/13 → 15 and 5*25/13 → 10. New pods are not available yet, so only the
			// surge bound holds while they start.
			{git: objs(deploy("web", 20, "img:bad")), want: "v1:15/15 bad:10/10", check: bounds(20, 5, 20)},
		}},
		{name: "recreate", agent: agent{readyAfter: 1e9}, steps: []step{
			{git: objs(deploy("web", 3, "img:v1", recreate)), want: "v1:3/3"},
			{git: objs(deploy("web", 3, "img:v2", recreate)), want: "v1:0/0 v2:3/3", check: neverTogether},
		}},
		{name: "paused: no rollout, scaling still applies", steps: []step{
			{git: objs(deploy("web", 3, "img:v1")), want: "v1:3/3"},
			{git: objs(deploy("web", 3, "img:v2", paused)), want: "v1:3/3"},
			{git: objs(deploy("web", 5, "img:v2", paused)), want: "v1:5/5"},
			{git: objs(deploy("web", 5, "img:v2")), want: "v1:0/0 v2:5/5"},
		}},
		{name: "rollback is a git revert", steps: []step{
			{git: objs(deploy("web", 3, "img:v1")), want: "v1:3/3"},
			{git: objs(deploy("web", 3, "img:v2")), want: "v1:0/0 v2:3/3"},
			{git: objs(deploy("web", 3, "img:v1")), want: "v2:0/0 v1:3/3", then: func(t *testing.T, c *cluster) {
				rss := c.replicaSets()
				if len(rss) != 2 {
					t.Fatalf("Plan(rollback) left %d ReplicaSets; want the 2 it had", len(rss))
				}
				for _, rs := range rss {
					if tag(rs.Spec.Template.Spec.Containers[0].Image) != "v1" {
						continue
					}
					if got, want := rs.Annotations[AnnotationRevision]+"/"+rs.Annotations[AnnotationRevisionHistory], "3/1"; got != want {
						t.Errorf("Plan(rollback) revision/history of %s = %s; want %s", rs.Name, got, want)
					}
				}
			}},
		}},
		{name: "revisionHistoryLimit=1 keeps one old ReplicaSet", steps: []step{
			{git: objs(deploy("web", 2, "img:v1", historyLimit(1))), want: "v1:2/2"},
			{git: objs(deploy("web", 2, "img:v2", historyLimit(1))), want: "v1:0/0 v2:2/2"},
			{git: objs(deploy("web", 2, "img:v3", historyLimit(1))), want: "v2:0/0 v3:2/2"},
		}},
		{name: "revisionHistoryLimit=0 keeps none", steps: []step{
			{git: objs(deploy("web", 2, "img:v1", historyLimit(0))), want: "v1:2/2"},
			{git: objs(deploy("web", 2, "img:v2", historyLimit(0))), want: "v2:2/2"},
		}},
		{name: "removed from git: prune", steps: []step{
			{git: objs(deploy("web", 3, "img:v1")), want: "v1:3/3"},
			{git: objs(bare("other", "img:v1")), want: "", then: func(t *testing.T, c *cluster) {
				if got := c.perNode(); got != "n1=1" {
					t.Errorf("Plan(prune) pods = %s; want only the bare pod (n1=1)", got)
				}
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2", "n3")...)
			c.agent = tt.agent
			for i, s := range tt.steps {
				c.sync(s.git...)
				c.converge(func() {
					if s.check != nil {
						s.check(t, c)
					}
				})
				if got := c.summary("web"); got != s.want {
					t.Errorf("Plan(%s, step %d) = %q; want %q", tt.name, i, got, s.want)
				}
				if s.then != nil {
					s.then(t, c)
				}
			}
			c.converged(tt.name)
		})
	}
}

// bounds checks a rolling update's promise at every step: never more than
// replicas+maxSurge pods, never fewer than replicas-maxUnavailable available.
func bounds(replicas, surge, unavailable int) func(t *testing.T, c *cluster) {
	return func(t *testing.T, c *cluster) {
		t.Helper()
		minReady := map[string]int32{}
		for _, rs := range c.replicaSets() {
			minReady[string(rs.UID)] = rs.Spec.MinReadySeconds
		}
		total, available := 0, 0
		for _, pod := range c.pods() {
			mr, ok := minReady[string(controllerUID(pod))]
			if !ok || pod.DeletionTimestamp != nil {
				continue
			}
			total++
			if isPodAvailable(pod, mr, c.now) {
				available++
			}
		}
		if total > replicas+surge {
			t.Fatalf("Plan at %s left %d pods; want at most %d (%s)", c.now.Format("15:04:05"), total, replicas+surge, c.summary("web"))
		}
		if available < replicas-unavailable {
			t.Fatalf("Plan at %s left %d available; want at least %d (%s)", c.now.Format("15:04:05"), available, replicas-unavailable, c.summary("web"))
		}
	}
}

// neverTogether checks Recreate's promise: no pod of the new ReplicaSet runs while any pod
// of an old one exists.
func neverTogether(t *testing.T, c *cluster) {
	t.Helper()
	var newest *appsv1.ReplicaSet
	for _, rs := range c.replicaSets() {
		if newest == nil || revisionOf(rs) > revisionOf(newest) {
			newest = rs
		}
	}
	old, cur := 0, 0
	for _, pod := range c.pods() {
		switch uid := controllerUID(pod); {
		case newest != nil && uid == newest.UID && pod.DeletionTimestamp == nil:
			cur++
		case uid != "":
			old++
		}
	}
	if old > 0 && cur > 0 {
		t.Fatalf("Plan(recreate) runs %d new pods beside %d old ones", cur, old)
	}
}

func TestDeploymentEvents(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(deploy("web", 2, "img:v1"))
	c.converge(nil)
	c.sync(deploy("web", 2, "img:v2", rolling("1", "0")))
	c.converge(nil)
	rss := map[string]string{}
	for _, rs := range c.replicaSets() {
		rss[tag(rs.Spec.Template.Spec.Containers[0].Image)] = rs.Name
	}
	want := []string{
		"Scaled up replica set " + rss["v1"] + " to 2",
		"Scaled up replica set " + rss["v2"] + " to 1",
		"Scaled down replica set " + rss["v1"] + " to 1 from 2",
		"Scaled up replica set " + rss["v2"] + " to 2 from 1",
		"Scaled down replica set " + rss["v1"] + " to 0 from 1",
	}
	got := c.eventsWith("ScalingReplicaSet")
	if len(got) != len(want) {
		t.Fatalf("Plan events = %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Plan event %d = %q; want %q", i, got[i], want[i])
		}
	}
}

func TestReplicaSetNamesAndLabels(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	d := deploy("web", 1, "img:v1")
	c.sync(d)
	c.converge(nil)
	hash := ComputeHash(&d.Spec.Template, nil)
	rss := c.replicaSets()
	if len(rss) != 1 {
		t.Fatalf("Plan(create) made %d ReplicaSets; want 1", len(rss))
	}
	rs := rss[0]
	ref := metav1.GetControllerOf(rs)
	checks := []struct{ what, got, want string }{
		{"name", rs.Name, "web-" + hash},
		{"template label", rs.Spec.Template.Labels[LabelPodTemplateHash], hash},
		{"selector", rs.Spec.Selector.MatchLabels[LabelPodTemplateHash], hash},
		{"revision", rs.Annotations[AnnotationRevision], "1"},
		{"owner", ref.Kind + "/" + ref.Name, "Deployment/web"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("Plan(create) ReplicaSet %s = %q; want %q", ch.what, ch.got, ch.want)
		}
	}
	pods := c.pods()
	if len(pods) != 1 || len(pods[0].Name) != len(rs.Name)+6 || pods[0].Labels[LabelPodTemplateHash] != hash ||
		controllerUID(pods[0]) != rs.UID {
		t.Errorf("Plan(create) pod = %s %v; want %s-xxxxx with the hash label, owned by the ReplicaSet", pods[0].Name, pods[0].Labels, rs.Name)
	}
	for _, r := range hash {
		if !containsRune(nameChars, r) {
			t.Errorf("ComputeHash = %q; want only %q", hash, nameChars)
		}
	}
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

func TestComputeHash(t *testing.T) {
	a, b := template("web", "img:v1"), template("web", "img:v2")
	one := int32(1)
	tests := []struct {
		name   string
		x, y   string
		differ bool
	}{
		{"same template", ComputeHash(&a, nil), ComputeHash(a.DeepCopy(), nil), false},
		{"other image", ComputeHash(&a, nil), ComputeHash(&b, nil), true},
		{"collision count", ComputeHash(&a, nil), ComputeHash(&a, &one), true},
	}
	for _, tt := range tests {
		if got := tt.x != tt.y; got != tt.differ {
			t.Errorf("ComputeHash(%s) = %s, %s; want differ=%v", tt.name, tt.x, tt.y, tt.differ)
		}
	}
}

func TestFenceposts(t *testing.T) {
	tests := []struct {
		replicas           int32
		surge, unavailable string
		wantS, wantU       int32
	}{
		{10, "25%", "25%", 3, 2},
		{10, "1", "0", 1, 0},
		{10, "0", "0", 0, 1},
		{3, "25%", "25%", 1, 0},
		{1, "25%", "25%", 1, 0},
		{4, "50%", "100%", 2, 4},
		{2, "0", "5", 0, 2}, // capped at replicas
	}
	for _, tt := range tests {
		d := withDeploymentDefaults(deploy("web", tt.replicas, "img", rolling(tt.surge, tt.unavailable)))
		if s, u := maxSurge(d), maxUnavailable(d); s != tt.wantS || u != tt.wantU {
			t.Errorf("fenceposts(%d, %s, %s) = %d, %d; want %d, %d", tt.replicas, tt.surge, tt.unavailable, s, u, tt.wantS, tt.wantU)
		}
	}
}

func TestEqualIgnoreHash(t *testing.T) {
	mod := func(f func(*corev1.PodTemplateSpec)) *corev1.PodTemplateSpec {
		tp := template("web", "img:v1")
		f(&tp)
		return &tp
	}
	cpu := func(q string) func(*corev1.PodTemplateSpec) {
		return func(tp *corev1.PodTemplateSpec) {
			tp.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(q)}
		}
	}
	base := mod(func(*corev1.PodTemplateSpec) {})
	tests := []struct {
		name string
		a, b *corev1.PodTemplateSpec
		want bool
	}{
		{"identical", base, mod(func(*corev1.PodTemplateSpec) {}), true},
		{"hash label ignored", base, mod(func(tp *corev1.PodTemplateSpec) { tp.Labels[LabelPodTemplateHash] = "abc" }), true},
		{"other image", base, mod(func(tp *corev1.PodTemplateSpec) { tp.Spec.Containers[0].Image = "img:v2" }), false},
		{"other label", base, mod(func(tp *corev1.PodTemplateSpec) { tp.Labels["tier"] = "x" }), false},
		{"other env", base, mod(func(tp *corev1.PodTemplateSpec) { tp.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}} }), false},
		{"empty env is no env", base, mod(func(tp *corev1.PodTemplateSpec) { tp.Spec.Containers[0].Env = []corev1.EnvVar{} }), true},
		{"1000m CPU is 1 CPU", mod(cpu("1000m")), mod(cpu("1")), true},
		{"500m CPU is not 1 CPU", mod(cpu("500m")), mod(cpu("1")), false},
	}
	for _, tt := range tests {
		var key []byte
		if got := equalIgnoreHash(tt.a, tt.b, &key); got != tt.want {
			t.Errorf("equalIgnoreHash(%s) = %v; want %v", tt.name, got, tt.want)
		}
	}
}
