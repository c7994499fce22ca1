package controller

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

func replicaSet(name string, replicas int32, sel *metav1.LabelSelector, labels map[string]string) *appsv1.ReplicaSet {
	t := template(name, "img:v1")
	t.Labels = labels
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: sel, Template: t},
	}
}

func replicationController(name string, replicas int32, sel, labels map[string]string) *corev1.ReplicationController {
	t := template(name, "img:v1")
	t.Labels = labels
	return &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ReplicationControllerSpec{Replicas: &replicas, Selector: sel, Template: &t},
	}
}

// owners renders how many running, non-terminating pods each controller owns: "rc/kubia=3".
func (c *cluster) owners() string {
	count := map[string]int{}
	for _, pod := range c.pods() {
		if ref := metav1.GetControllerOf(pod); ref != nil && pod.DeletionTimestamp == nil {
			count[strings.ToLower(ref.Kind)+"/"+ref.Name]++
		}
	}
	var parts []string
	for k, n := range count {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestReplicaControllers(t *testing.T) {
	expr := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"kubia", "kubia-v2"}},
		{Key: "env", Operator: metav1.LabelSelectorOpExists},
	}}
	tests := []struct {
		name    string
		commits [][]manifest.Object
		want    string
	}{
		{"ReplicationController with a map selector", [][]manifest.Object{
			{replicationController("kubia", 3, map[string]string{"app": "kubia"}, map[string]string{"app": "kubia"})},
		}, "replicationcontroller/kubia=3"},
		{"ReplicationController without selector uses the template labels", [][]manifest.Object{
			{replicationController("kubia", 2, nil, map[string]string{"app": "kubia"})},
		}, "replicationcontroller/kubia=2"},
		{"ReplicationController scaled down", [][]manifest.Object{
			{replicationController("kubia", 3, map[string]string{"app": "kubia"}, map[string]string{"app": "kubia"})},
			{replicationController("kubia", 1, map[string]string{"app": "kubia"}, map[string]string{"app": "kubia"})},
		}, "replicationcontroller/kubia=1"},
		{"ReplicaSet with matchExpressions", [][]manifest.Object{
			{replicaSet("kubia", 3, expr, map[string]string{"app": "kubia", "env": "prod"})},
		}, "replicaset/kubia=3"},
		{"ReplicaSet selector changed: old pods replaced", [][]manifest.Object{
			{replicaSet("kubia", 2, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kubia"}}, map[string]string{"app": "kubia"})},
			{replicaSet("kubia", 2, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kubia-v2"}}, map[string]string{"app": "kubia-v2"})},
		}, "replicaset/kubia=2"},
		{"ReplicaSet whose selector misses its template: never acted on", [][]manifest.Object{
			{replicaSet("kubia", 2, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}, map[string]string{"app": "kubia"})},
		}, ""},
		{"ReplicaSet without selector: never acted on", [][]manifest.Object{
			{replicaSet("kubia", 2, nil, map[string]string{"app": "kubia"})},
		}, ""},
		{"Deployment whose selector misses its template: never acted on", [][]manifest.Object{
			{deploy("kubia", 2, "img:v1", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels["app"] = "other" })},
		}, ""},
		{"ReplicaSet removed from git: its pods go", [][]manifest.Object{
			{replicaSet("kubia", 2, expr, map[string]string{"app": "kubia", "env": "prod"})},
			{},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			for _, commit := range tt.commits {
				c.sync(commit...)
				c.converge(nil)
			}
			if got := c.owners(); got != tt.want {
				t.Errorf("Plan(%s) = %q; want %q", tt.name, got, tt.want)
			}
			if len(c.pods()) != countPods(tt.want) {
				t.Errorf("Plan(%s) left %d pods (terminating ones included); want %d", tt.name, len(c.pods()), countPods(tt.want))
			}
			for _, pod := range c.pods() {
				if !strings.HasPrefix(pod.Name, "kubia-") || pod.Spec.NodeName == "" {
					t.Errorf("Plan(%s) pod %s on %q; want kubia-xxxxx, placed", tt.name, pod.Name, pod.Spec.NodeName)
				}
			}
			c.converged(tt.name)
		})
	}
}

func countPods(owners string) int {
	n := 0
	for _, f := range strings.Fields(owners) {
		var k int
		fmt.Sscanf(f[strings.IndexByte(f, '=')+1:], "%d", &k)
		n += k
	}
	return n
}

func TestReplicaSetReplacesLostPods(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(replicationController("kubia", 3, map[string]string{"app": "kubia"}, map[string]string{"app": "kubia"}))
	c.converge(nil)
	victim := c.pods()[0]
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(victim), UID: victim.UID, Force: true}}})
	c.converge(nil)
	if got := c.owners(); got != "replicationcontroller/kubia=3" {
		t.Errorf("Plan(pod lost) = %q; want replicationcontroller/kubia=3", got)
	}
	for _, pod := range c.pods() {
		if pod.Name == victim.Name {
			t.Errorf("Plan(pod lost) kept the name %s; want a new pod", pod.Name)
		}
	}
}

func TestScaleDownOrder(t *testing.T) {
	ready := func(since time.Duration) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(t0.Add(-since))}}
		}
	}
	running := func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }
	on := func(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
	restarts := func(n int32) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", RestartCount: n}}
		}
	}
	created := func(ago time.Duration) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(-ago)) }
	}
	cost := func(v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.PodDeletionCost: v} }
	}
	tests := []struct {
		name        string
		first, then []func(*corev1.Pod)
		rankA       int
	}{
		{"unscheduled before scheduled", nil, []func(*corev1.Pod){on("n1")}, 1},
		{"pending before running", []func(*corev1.Pod){on("n1")}, []func(*corev1.Pod){on("n1"), running}, 1},
		{"not ready before ready", []func(*corev1.Pod){on("n1"), running}, []func(*corev1.Pod){on("n1"), ready(time.Hour)}, 1},
		{"lower deletion cost first", []func(*corev1.Pod){on("n1"), ready(time.Hour), cost("-5")}, []func(*corev1.Pod){on("n1"), ready(time.Minute)}, 1},
		{"doubled up before alone", []func(*corev1.Pod){on("n1"), ready(time.Hour)}, []func(*corev1.Pod){on("n2"), ready(time.Minute)}, 2},
		{"ready for less time first", []func(*corev1.Pod){on("n1"), ready(time.Minute)}, []func(*corev1.Pod){on("n1"), ready(time.Hour)}, 1},
		{"more restarts first", []func(*corev1.Pod){on("n1"), ready(time.Hour), restarts(3)}, []func(*corev1.Pod){on("n1"), ready(time.Hour)}, 1},
		{"newer first", []func(*corev1.Pod){on("n1"), ready(time.Hour), created(time.Minute)}, []func(*corev1.Pod){on("n1"), ready(time.Hour), created(time.Hour)}, 1},
	}
	for _, tt := range tests {
		a, b := bare("a", "img", tt.first...), bare("b", "img", tt.then...)
		ra, rb := rankedPod{pod: a, rank: tt.rankA}, rankedPod{pod: b, rank: 1}
		if !deleteFirst(ra, rb) || deleteFirst(rb, ra) {
			t.Errorf("deleteFirst(%s) = %v, reversed %v; want true, false", tt.name, deleteFirst(ra, rb), deleteFirst(rb, ra))
		}
	}
}

func TestScaleDownPrefersDoubledUpNodes(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2", "n3")...)
	c.sync(deploy("web", 6, "img:v1"))
	c.converge(nil)
	// n3 leaves and comes back: its pods went elsewhere, so n1 and n2 run three each.
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Node", Name: "n3"}}}})
	c.converge(nil)
	c.apply(&state.Command{Put: state.Wrap(node("n3"))})
	c.sync(deploy("web", 4, "img:v1"))
	c.converge(nil)
	if got := c.perNode(); got != "n1=2 n2=2" {
		t.Errorf("Plan(scale 6→4) = %s; want one pod off each doubled-up node (n1=2 n2=2)", got)
	}
}
