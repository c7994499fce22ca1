package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

func (c *cluster) pod(name string) *corev1.Pod {
	o, ok := c.state().Cluster.Get(state.Key{Kind: "Pod", Namespace: "default", Name: name})
	if !ok {
		return nil
	}
	return o.(*corev1.Pod)
}

func TestBarePods(t *testing.T) {
	labelled := func(p *corev1.Pod) { p.Labels["tier"] = "front" }
	pinned := func(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		commits  [][]manifest.Object
		sameUID  bool   // the pod after the last commit is the one made by the first
		wantNode string // where it runs ("" unplaced; "gone" when it must not exist)
		want     func(p *corev1.Pod) bool
	}{
		{name: "created from git, placed", nodes: nodes("n1"),
			commits: [][]manifest.Object{{bare("web", "img:v1")}}, sameUID: true, wantNode: "n1",
			want: func(p *corev1.Pod) bool {
				return p.Annotations[AnnotationGitUID] != "" && p.Annotations[AnnotationSpecHash] != "" && len(p.OwnerReferences) == 0
			}},
		{name: "spec changed: replaced by a new pod", nodes: nodes("n1"),
			commits: [][]manifest.Object{{bare("web", "img:v1")}, {bare("web", "img:v2")}}, wantNode: "n1",
			want: func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "img:v2" }},
		{name: "labels changed: updated in place", nodes: nodes("n1"),
			commits: [][]manifest.Object{{bare("web", "img:v1")}, {bare("web", "img:v1", labelled)}}, sameUID: true, wantNode: "n1",
			want: func(p *corev1.Pod) bool { return p.Labels["tier"] == "front" && p.Status.Phase == corev1.PodRunning }},
		{name: "unplaced pod replaced at once", nodes: nil,
			commits: [][]manifest.Object{{bare("web", "img:v1")}, {bare("web", "img:v2")}}, wantNode: "",
			want: func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "img:v2" }},
		{name: "removed from git: pruned", nodes: nodes("n1"),
			commits: [][]manifest.Object{{bare("web", "img:v1")}, {}}, wantNode: "gone"},
		{name: "spec.nodeName pins the pod", nodes: nodes("n1", "n2", "n3"),
			commits: [][]manifest.Object{{bare("web", "img:v1", pinned("n2"))}}, sameUID: true, wantNode: "n2",
			want: func(p *corev1.Pod) bool { return p.Annotations[AnnotationNodeName] == "n2" }},
		{name: "pinned to a node that does not exist", nodes: nodes("n1", "n2"),
			commits: [][]manifest.Object{{bare("web", "img:v1", pinned("n9"))}}, sameUID: true, wantNode: "",
			want: func(p *corev1.Pod) bool {
				c := podCondition(p, corev1.PodScheduled)
				return c != nil && c.Message == "0/2 nodes are available: 2 node(s) didn't match the requested node name."
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.nodes...)
			var first types.UID
			for i, commit := range tt.commits {
				c.sync(commit...)
				c.converge(nil)
				if p := c.pod("web"); i == 0 && p != nil {
					first = p.UID
				}
			}
			p := c.pod("web")
			switch {
			case tt.wantNode == "gone":
				if p != nil {
					t.Fatalf("Plan(%s) = pod on %q; want none", tt.name, p.Spec.NodeName)
				}
				return
			case p == nil:
				t.Fatalf("Plan(%s) = no pod; want one on %q", tt.name, tt.wantNode)
			case p.Spec.NodeName != tt.wantNode:
				t.Errorf("Plan(%s) = pod on %q; want %q", tt.name, p.Spec.NodeName, tt.wantNode)
			case (p.UID == first) != tt.sameUID:
				t.Errorf("Plan(%s) kept UID = %v; want %v", tt.name, p.UID == first, tt.sameUID)
			case tt.want != nil && !tt.want(p):
				t.Errorf("Plan(%s) = %+v; want otherwise", tt.name, p.ObjectMeta)
			}
			c.converged(tt.name)
		})
	}
}

func TestBarePodReplacementWaitsForTheOldPod(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(bare("web", "img:v1"))
	c.converge(nil)
	old := c.pod("web")
	c.sync(bare("web", "img:v2"))
	c.plan()
	if p := c.pod("web"); p.UID != old.UID || p.DeletionTimestamp == nil {
		t.Fatalf("Plan(spec changed) = %s terminating=%v; want the old pod terminating first", p.UID, p.DeletionTimestamp != nil)
	}
	c.plan() // its node has not removed it yet: nothing to do
	if p := c.pod("web"); p.UID != old.UID {
		t.Fatalf("Plan(old pod still stopping) made %s; want to wait", p.UID)
	}
	c.converge(nil)
	if p := c.pod("web"); p.UID == old.UID || p.Spec.Containers[0].Image != "img:v2" {
		t.Errorf("Plan(old pod gone) = %s %s; want a new pod running img:v2", p.UID, p.Spec.Containers[0].Image)
	}
}

func TestNeverTouchesForeignObjects(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	foreign := bare("visitor", "img:v1", func(p *corev1.Pod) { p.Spec.NodeName = "n1"; p.UID = "foreign" })
	orphanRS := replicaSet("stray", 2, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "stray"}}, map[string]string{"app": "stray"})
	orphanRS.UID = "stray"
	c.apply(&state.Command{Put: state.Wrap[manifest.Object](foreign, orphanRS)})
	c.sync(deploy("web", 1, "img:v1"))
	c.converge(nil)
	if p := c.pod("visitor"); p == nil || p.DeletionTimestamp != nil {
		t.Errorf("Plan = visitor %v; want a pod skiff did not make left alone", p)
	}
	if _, ok := c.state().Cluster.Get(state.KeyOf(orphanRS)); !ok {
		t.Errorf("Plan deleted a ReplicaSet without an owner; want it left alone")
	}
}

func TestNodeGone(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2", "n3")...)
	c.sync(deploy("web", 3, "img:v1"))
	c.converge(nil)
	if got := c.perNode(); got != "n1=1 n2=1 n3=1" {
		t.Fatalf("Plan(3 replicas) = %s; want one per node", got)
	}
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Node", Name: "n3"}}}})
	res := c.plan()
	if got := c.perNode(); got != "n1=2 n2=1" {
		t.Errorf("Plan(node gone) = %s; want its pod replaced on the others at once (n1=2 n2=1)", got)
	}
	var forced bool
	for _, d := range res.Command.Delete {
		forced = forced || d.Force
	}
	if !forced || len(c.eventsWith("NodeLost")) != 1 {
		t.Errorf("Plan(node gone) deletes = %+v, NodeLost events = %d; want a forced delete and one event", res.Command.Delete, len(c.eventsWith("NodeLost")))
	}
	c.converge(nil)
	c.converged("node gone")
}

func TestUnreachableNodeEviction(t *testing.T) {
	tolerate := func(seconds *int64) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds}}
		}
	}
	sixty := int64(60)
	tests := []struct {
		name       string
		pod        *corev1.Pod
		downFor    time.Duration
		sinceKnown bool
		evicted    bool
		requeue    bool // asks to plan again when the toleration runs out
	}{
		{"within the default toleration", bare("web", "img"), 4 * time.Second, true, false, true},
		{"past the default toleration", bare("web", "img"), 5 * time.Second, true, true, false},
		{"pod tolerates 60s: still there after 30s", bare("web", "img", tolerate(&sixty)), 30 * time.Second, true, false, true},
		{"pod tolerates 60s: gone after 60s", bare("web", "img", tolerate(&sixty)), 60 * time.Second, true, true, false},
		{"pod tolerates for ever", bare("web", "img", tolerate(nil)), time.Hour, true, false, false},
		{"since when unknown: nothing evicted", bare("web", "img"), time.Hour, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.sync(tt.pod, deploy("api", 2, "img"))
			c.converge(nil)
			host, since := c.pod("web").Spec.NodeName, c.now
			in := c.input()
			in.Now = since.Add(tt.downFor)
			in.NodeReady = func(n string) bool { return n != host }
			in.NodeNotReadySince = func(n string) (time.Time, bool) { return since, tt.sinceKnown && n == host }
			res := Plan(in)
			evicted := false
			if res.Command != nil {
				for _, d := range res.Command.Delete {
					evicted = evicted || (d.Name == "web" && d.Force)
				}
			}
			if evicted != tt.evicted || (res.Requeue > 0) != tt.requeue {
				t.Errorf("Plan(%s) evicted = %v, requeue = %v; want %v, %v", tt.name, evicted, res.Requeue, tt.evicted, tt.requeue)
			}
			if tt.evicted {
				c.now = in.Now
				c.apply(res.Command)
				if got, want := c.owners(), "replicaset/"+c.replicaSets()[0].Name+"=2"; got != want {
					t.Errorf("Plan(%s) = %s; want the Deployment's pod on the unreachable node replaced (%s)", tt.name, got, want)
				}
				for _, p := range c.pods() {
					if p.Spec.NodeName == host {
						t.Errorf("Plan(%s) left %s on the unreachable node", tt.name, p.Name)
					}
				}
			}
		})
	}
}
