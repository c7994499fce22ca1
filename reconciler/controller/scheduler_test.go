package controller

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/state"
)

func requests(cpu, mem string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{}
		if cpu != "" {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse(mem)
		}
	}
}

func placedOn(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func ownedBy(uid types.UID) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", UID: uid, Controller: &yes}}
	}
}

func TestSchedule(t *testing.T) {
	ssd := withLabel("disk", "ssd")
	selector := func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }
	tainted := func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	}
	tolerateGPU := func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu"}}
	}
	hostPort := func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
	}
	bigInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "img", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}}}
	}
	limitOnly := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("3Gi")}
	}
	affinity := func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"n3"}}},
			}}}}}
	}
	onePod := func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("1") }
	down := func(n string) func(string) bool { return func(m string) bool { return m != n } }

	tests := []struct {
		name   string
		nodes  []*corev1.Node
		placed []*corev1.Pod
		ready  func(string) bool
		pod    *corev1.Pod
		want   string // the node, or the error
	}{
		{name: "nodeSelector", nodes: []*corev1.Node{node("n1"), node("n2", ssd), node("n3")},
			pod: bare("p", "img", selector), want: "n2"},
		{name: "nodeSelector matches no node", nodes: nodes("n1", "n2", "n3"),
			pod: bare("p", "img", selector), want: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."},
		{name: "one too small, two without the label", nodes: []*corev1.Node{node("n1", ssd, allocatable("4", "1Gi")), node("n2"), node("n3")},
			pod:  bare("p", "img", selector, requests("", "2Gi")),
			want: "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."},
		{name: "allocatable minus what placed pods request", nodes: []*corev1.Node{node("n1", allocatable("2", "4Gi")), node("n2", allocatable("1", "4Gi"))},
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), requests("1500m", ""))},
			pod:    bare("p", "img", requests("1", "")), want: "n2"},
		{name: "insufficient cpu and memory on one node", nodes: []*corev1.Node{node("n1", allocatable("1", "1Gi"))},
			pod: bare("p", "img", requests("2", "2Gi")), want: "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."},
		{name: "finished pods hold nothing", nodes: []*corev1.Node{node("n1", allocatable("1", "4Gi"))},
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), requests("1", ""), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })},
			pod:    bare("p", "img", requests("1", "")), want: "n1"},
		{name: "a limit alone is the request", nodes: []*corev1.Node{node("n1", allocatable("4", "2Gi"))},
			pod: bare("p", "img", limitOnly), want: "0/1 nodes are available: 1 Insufficient memory."},
		{name: "init container larger than the containers", nodes: []*corev1.Node{node("n1", allocatable("4", "1Gi"))},
			pod: bare("p", "img", requests("", "256Mi"), bigInit), want: "0/1 nodes are available: 1 Insufficient memory."},
		{name: "too many pods", nodes: []*corev1.Node{node("n1", onePod)},
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"))},
			pod:    bare("p", "img"), want: "0/1 nodes are available: 1 Too many pods."},
		{name: "cordoned node skipped", nodes: []*corev1.Node{node("n1", cordoned), node("n2")},
			pod: bare("p", "img"), want: "n2"},
		{name: "all cordoned", nodes: []*corev1.Node{node("n1", cordoned), node("n2", cordoned)},
			pod: bare("p", "img"), want: "0/2 nodes are available: 2 node(s) were unschedulable."},
		{name: "not ready node skipped", nodes: nodes("n1", "n2"), ready: down("n1"),
			pod: bare("p", "img"), want: "n2"},
		{name: "no ready node", nodes: nodes("n1"), ready: down("n1"),
			pod: bare("p", "img"), want: "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."},
		{name: "taint not tolerated", nodes: []*corev1.Node{node("n1", tainted)},
			pod: bare("p", "img"), want: "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."},
		{name: "taint tolerated", nodes: []*corev1.Node{node("n1", tainted)},
			pod: bare("p", "img", tolerateGPU), want: "n1"},
		{name: "host port taken", nodes: nodes("n1", "n2"),
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), hostPort)},
			pod:    bare("p", "img", hostPort), want: "n2"},
		{name: "host port taken everywhere", nodes: nodes("n1"),
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), hostPort)},
			pod:    bare("p", "img", hostPort), want: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		{name: "required node affinity", nodes: nodes("n1", "n2", "n3"),
			pod: bare("p", "img", affinity), want: "n3"},
		{name: "pinned by spec.nodeName", nodes: nodes("n1", "n2", "n3"),
			pod: bare("p", "img", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNodeName: "n3"} }), want: "n3"},
		{name: "least requested", nodes: nodes("n1", "n2"),
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), requests("1", "1Gi"))},
			pod:    bare("p", "img"), want: "n2"},
		{name: "spread before least requested", nodes: nodes("n1", "n2"),
			placed: []*corev1.Pod{bare("q", "img", placedOn("n1"), ownedBy("rs1")), bare("r", "img", placedOn("n2"), requests("3", "3Gi"))},
			pod:    bare("p", "img", ownedBy("rs1")), want: "n2"},
		{name: "ties go to the first name", nodes: nodes("n3", "n2", "n1"),
			pod: bare("p", "img"), want: "n1"},
		{name: "no nodes", pod: bare("p", "img"), want: "no nodes available to schedule pods"},
	}
	for _, tt := range tests {
		got, err := NewScheduler(tt.nodes, tt.placed, tt.ready).Schedule(tt.pod)
		var fe *FitError
		if err != nil && !errors.As(err, &fe) {
			t.Errorf("Schedule(%s) error %T; want *FitError", tt.name, err)
		}
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Schedule(%s) = %q; want %q", tt.name, got, tt.want)
		}
	}
}

func TestScheduleFromState(t *testing.T) {
	c := newCluster(t, node("n1", cordoned), node("n2"))
	if got, err := Schedule(c.state(), bare("p", "img"), nil); got != "n2" || err != nil {
		t.Errorf("Schedule(state) = %q, %v; want n2", got, err)
	}
}

func TestSchedulingInPlan(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []*corev1.Node
		deploy int32
		want   string // perNode
	}{
		{name: "6 replicas spread 2/2/2", nodes: nodes("n1", "n2", "n3"), deploy: 6, want: "n1=2 n2=2 n3=2"},
		{name: "7 replicas spread 3/2/2", nodes: nodes("n1", "n2", "n3"), deploy: 7, want: "n1=3 n2=2 n3=2"},
		{name: "cordoned node gets nothing", nodes: []*corev1.Node{node("n1"), node("n2", cordoned), node("n3")}, deploy: 4, want: "n1=2 n3=2"},
		{name: "requests fill the nodes, the rest waits", nodes: []*corev1.Node{node("n1", allocatable("1", "4Gi")), node("n2", allocatable("1", "4Gi"))},
			deploy: 5, want: "-=1 n1=2 n2=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.nodes...)
			c.sync(deploy("web", tt.deploy, "img:v1", podRequest("500m", "100Mi")))
			res := c.plan()
			if got := c.perNode(); got != tt.want {
				t.Errorf("Plan(%s) = %s; want %s (placed in the plan that made them)", tt.name, got, tt.want)
			}
			if n := len(res.Events); n == 0 {
				t.Errorf("Plan(%s) = no events; want SuccessfulCreate and Scheduled", tt.name)
			}
			c.converge(nil)
			c.converged(tt.name)
		})
	}
}

func TestUnschedulable(t *testing.T) {
	c := newCluster(t, node("n1", allocatable("1", "1Gi")), node("n2"), node("n3"))
	big := bare("big", "img", requests("", "2Gi"), func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "n1"} })
	c.sync(big)
	c.converge(nil)
	want := "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."
	p := c.pod("big")
	cond := podCondition(p, corev1.PodScheduled)
	if p.Spec.NodeName != "" || cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable || cond.Message != want {
		t.Fatalf("Plan(too big) = node %q, %+v; want unplaced, PodScheduled=False Unschedulable %q", p.Spec.NodeName, cond, want)
	}
	if got := c.eventsWith("FailedScheduling"); len(got) != 1 || got[0] != want {
		t.Errorf("Plan(too big) FailedScheduling events = %q; want exactly one", got)
	}
	c.converged("unschedulable")

	// The situation changes: a bigger n1 replaces the small one. The pod is placed.
	c.apply(&state.Command{Put: state.Wrap(node("n1", allocatable("4", "8Gi")))})
	c.converge(nil)
	if p := c.pod("big"); p.Spec.NodeName != "n1" || p.Status.Phase != corev1.PodRunning {
		t.Errorf("Plan(room made) = %q %s; want placed on n1 and running", p.Spec.NodeName, p.Status.Phase)
	}
	if got := c.eventsWith("Scheduled"); len(got) != 1 || got[0] != "Successfully assigned default/big to n1" {
		t.Errorf("Plan(room made) Scheduled events = %q; want one", got)
	}
}
