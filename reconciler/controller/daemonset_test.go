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
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/state"
)

// Fixtures.

func daemonSet(name, image string, mods ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name, image),
		},
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

func dsNodeSelector(k, v string) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.NodeSelector = map[string]string{k: v} }
}

func dsToleration(key string) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.Tolerations = append(d.Spec.Template.Spec.Tolerations,
			corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	}
}

func dsRequest(cpu string) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
}

func dsRolling(surge, unavailable string) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) {
		s, u := intstr.Parse(surge), intstr.Parse(unavailable)
		d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: &s, MaxUnavailable: &u}}
	}
}

func dsOnDelete(d *appsv1.DaemonSet) {
	d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
}

func dsMinReady(s int32) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) { d.Spec.MinReadySeconds = s }
}

func dsHistory(n int32) func(*appsv1.DaemonSet) {
	return func(d *appsv1.DaemonSet) { d.Spec.RevisionHistoryLimit = &n }
}

func tainted(key string, effect corev1.TaintEffect) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: "x", Effect: effect})
	}
}

// daemon renders a DaemonSet's pods by node: "n1=v1 n2=v2!" with the image tag, "!" for a
// pod not ready, "~" for one terminating; a node with two pods lists both.
func (c *cluster) daemon(name string) string {
	var parts []string
	for _, p := range c.pods() {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.Kind != "DaemonSet" || ref.Name != name {
			continue
		}
		s := p.Spec.NodeName + "=" + tag(p.Spec.Containers[0].Image)
		switch {
		case p.DeletionTimestamp != nil:
			s += "~"
		case !isPodReady(p):
			s += "!"
		}
		parts = append(parts, s)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (c *cluster) daemonStatus(name string) string {
	o, _ := c.state().Git.Get(state.Key{Kind: "DaemonSet", Namespace: "default", Name: name})
	st := WithStatus(c.state(), c.now, o).(*appsv1.DaemonSet).Status
	return fmt.Sprintf("desired=%d current=%d ready=%d updated=%d available=%d misscheduled=%d",
		st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.NumberReady, st.UpdatedNumberScheduled,
		st.NumberAvailable, st.NumberMisscheduled)
}

func TestDaemonSetPlacement(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []*corev1.Node
		mods   []func(*appsv1.DaemonSet)
		want   string // after the first plan: every pod already placed
		status string
		events []string // FailedPlacement
	}{
		{name: "one pod per node", nodes: nodes("n1", "n2", "n3"), want: "n1=v1! n2=v1! n3=v1!",
			status: "desired=3 current=3 ready=3 updated=3 available=3 misscheduled=0"},
		{name: "nodeSelector picks the nodes",
			nodes: []*corev1.Node{node("n1", withLabel("disk", "ssd")), node("n2"), node("n3", withLabel("disk", "ssd"))},
			mods:  []func(*appsv1.DaemonSet){dsNodeSelector("disk", "ssd")}, want: "n1=v1! n3=v1!",
			status: "desired=2 current=2 ready=2 updated=2 available=2 misscheduled=0"},
		{name: "a cordoned node still runs it", nodes: []*corev1.Node{node("n1"), node("n2", cordoned)},
			want: "n1=v1! n2=v1!", status: "desired=2 current=2 ready=2 updated=2 available=2 misscheduled=0"},
		{name: "a NoSchedule taint keeps it off", nodes: []*corev1.Node{node("n1"), node("n2", tainted("dedicated", corev1.TaintEffectNoSchedule))},
			want: "n1=v1!", status: "desired=1 current=1 ready=1 updated=1 available=1 misscheduled=0"},
		{name: "unless it tolerates the taint", nodes: []*corev1.Node{node("n1"), node("n2", tainted("dedicated", corev1.TaintEffectNoSchedule))},
			mods: []func(*appsv1.DaemonSet){dsToleration("dedicated")}, want: "n1=v1! n2=v1!",
			status: "desired=2 current=2 ready=2 updated=2 available=2 misscheduled=0"},
		{name: "a node where it does not fit goes without, with FailedPlacement",
			nodes: []*corev1.Node{node("n1"), node("n2", allocatable("100m", "4Gi")), node("n3")},
			mods:  []func(*appsv1.DaemonSet){dsRequest("500m")}, want: "n1=v1! n3=v1!",
			status: "desired=3 current=2 ready=2 updated=2 available=2 misscheduled=0",
			events: []string{`failed to place pod on "n2": Insufficient cpu`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.nodes...)
			c.sync(daemonSet("agent", "img:v1", tt.mods...))
			c.plan()
			if got := c.daemon("agent"); got != tt.want {
				t.Fatalf("Plan(%s) = %q; want %q", tt.name, got, tt.want)
			}
			if got := c.eventsWith("FailedPlacement"); !slices.Equal(got, tt.events) {
				t.Errorf("Plan(%s) FailedPlacement = %q; want %q", tt.name, got, tt.events)
			}
			if got := c.eventsWith("Scheduled"); len(got) != strings.Count(tt.want, "=") {
				t.Errorf("Plan(%s) Scheduled events = %q; want one per pod", tt.name, got)
			}
			c.converge(nil)
			if got := c.daemonStatus("agent"); got != tt.status {
				t.Errorf("status(%s) = %s; want %s", tt.name, got, tt.status)
			}
			for _, p := range c.pods() {
				if p.Labels[LabelDaemonSetHash] == "" || p.Labels[LabelPodTemplateGeneration] != "1" ||
					!tolerates(p.Spec.Tolerations, &corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}) ||
					!tolerates(p.Spec.Tolerations, &corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
					t.Errorf("pod %s labels %v tolerations %v; want the revision labels and the daemon tolerations", p.Name, p.Labels, p.Spec.Tolerations)
				}
			}
			c.converged(tt.name)
		})
	}
}

func TestDaemonSetFollowsNodes(t *testing.T) {
	steps := []struct {
		name   string
		change func(c *cluster)
		want   string
	}{
		{name: "a new node gets its pod", want: "n1=v1 n2=v1 n3=v1",
			change: func(c *cluster) { c.apply(&state.Command{Put: state.Wrap(node("n3", withLabel("edge", "yes")))}) }},
		{name: "a removed node's pod goes", want: "n1=v1 n3=v1",
			change: func(c *cluster) {
				n, _ := c.state().Cluster.Get(state.Key{Kind: "Node", Name: "n2"})
				c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(n), UID: n.GetUID()}}})
			}},
		{name: "a node that loses the selected label loses the pod", want: "n3=v1",
			change: func(c *cluster) {
				c.sync(daemonSet("agent", "img:v1", dsNodeSelector("edge", "yes")))
			}},
		{name: "a node labelled later gets it", want: "n1=v1 n3=v1",
			change: func(c *cluster) { c.apply(&state.Command{Put: state.Wrap(node("n1", withLabel("edge", "yes")))}) }},
	}
	c := newCluster(t, node("n1"), node("n2", withLabel("edge", "yes")))
	c.sync(daemonSet("agent", "img:v1"))
	c.converge(nil)
	for _, st := range steps {
		st.change(c)
		c.converge(nil)
		if got := c.daemon("agent"); got != st.want {
			t.Fatalf("%s: pods = %q; want %q", st.name, got, st.want)
		}
		c.converged(st.name)
	}
}

func TestDaemonSetNotReadyNode(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(daemonSet("agent", "img:v1"), deploy("web", 1, "img:v1", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "n2"}
	}))
	c.converge(nil)
	c.down["n2"] = c.now
	c.run(time.Minute, time.Second, nil) // far past the unreachable toleration
	if got := c.daemon("agent"); got != "n1=v1 n2=v1!" {
		t.Errorf("DaemonSet pods with n2 NotReady for a minute = %q; want its pod kept there (not ready)", got)
	}
	for _, p := range c.pods() {
		if metav1.GetControllerOf(p).Kind == "ReplicaSet" && p.Spec.NodeName == "n2" {
			t.Errorf("Deployment pod %s still on NotReady n2; want it evicted (the DaemonSet pod tolerates it, it does not)", p.Name)
		}
	}
	if got, want := c.daemonStatus("agent"), "desired=2 current=2 ready=1 updated=2 available=1 misscheduled=0"; got != want {
		t.Errorf("status with n2 NotReady (WithStatus counts every node ready) = %s; want %s", got, want)
	}

	// A DaemonSet made while n2 is down gets no pod there (unreachable:NoSchedule) until
	// it is back.
	c.sync(daemonSet("agent", "img:v1"), daemonSet("logs", "img:v1"))
	c.run(10*time.Second, time.Second, nil)
	if got := c.daemon("logs"); got != "n1=v1" {
		t.Errorf("new DaemonSet with n2 NotReady = %q; want n1 only", got)
	}
	delete(c.down, "n2")
	c.converge(nil)
	if got := c.daemon("logs"); got != "n1=v1 n2=v1" {
		t.Errorf("new DaemonSet once n2 is back = %q; want both nodes", got)
	}
}

func TestDaemonSetRollingUpdate(t *testing.T) {
	tests := []struct {
		name        string
		mods        []func(*appsv1.DaemonSet)
		maxDown     int // most nodes without an available pod at once
		maxPods     int // most pods at once (surge)
		replaced    int // old pods deleted
		wantStatus  string
		wantPods    string
		minReadyGap time.Duration // between two replacements
	}{
		{name: "maxUnavailable 1: one node at a time", maxDown: 1, maxPods: 4, replaced: 4,
			wantPods: "n1=v2 n2=v2 n3=v2 n4=v2", wantStatus: "desired=4 current=4 ready=4 updated=4 available=4 misscheduled=0"},
		{name: "maxUnavailable 50%: two at a time", mods: []func(*appsv1.DaemonSet){dsRolling("0", "50%")}, maxDown: 2, maxPods: 4,
			replaced: 4, wantPods: "n1=v2 n2=v2 n3=v2 n4=v2", wantStatus: "desired=4 current=4 ready=4 updated=4 available=4 misscheduled=0"},
		{name: "maxSurge 1: the new pod beside the old one, never one down", mods: []func(*appsv1.DaemonSet){dsRolling("1", "0")},
			maxDown: 0, maxPods: 5, replaced: 4, wantPods: "n1=v2 n2=v2 n3=v2 n4=v2",
			wantStatus: "desired=4 current=4 ready=4 updated=4 available=4 misscheduled=0"},
		{name: "minReadySeconds paces the replacements", mods: []func(*appsv1.DaemonSet){dsMinReady(20)}, maxDown: 1, maxPods: 4,
			replaced: 4, wantPods: "n1=v2 n2=v2 n3=v2 n4=v2", minReadyGap: 20 * time.Second,
			wantStatus: "desired=4 current=4 ready=4 updated=4 available=4 misscheduled=0"},
		{name: "OnDelete replaces nothing by itself", mods: []func(*appsv1.DaemonSet){dsOnDelete}, maxDown: 0, maxPods: 4,
			wantPods: "n1=v1 n2=v1 n3=v1 n4=v1", wantStatus: "desired=4 current=4 ready=4 updated=0 available=4 misscheduled=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2", "n3", "n4")...)
			c.agent.readyAfter = 3 * time.Second
			c.sync(daemonSet("agent", "img:v1", tt.mods...))
			c.converge(nil)
			c.sync(daemonSet("agent", "img:v2", tt.mods...))
			minReady := int32(0)
			if tt.minReadyGap > 0 {
				minReady = int32(tt.minReadyGap / time.Second)
			}
			maxDown, maxPods, replaced := 0, 0, 0
			seen := map[string]bool{}
			var deletedAt []time.Time
			c.converge(func() {
				up := map[string]bool{}
				pods := 0
				for _, p := range c.pods() {
					if p.DeletionTimestamp == nil {
						pods++
					}
					if p.DeletionTimestamp == nil && isPodAvailable(p, minReady, c.now) {
						up[p.Spec.NodeName] = true
					}
					if p.DeletionTimestamp != nil && !seen[p.Name] {
						seen[p.Name] = true
						replaced++
						deletedAt = append(deletedAt, c.now)
					}
				}
				maxDown, maxPods = max(maxDown, 4-len(up)), max(maxPods, pods)
			})
			if maxDown != tt.maxDown || maxPods != tt.maxPods || replaced != tt.replaced {
				t.Errorf("rollout(%s): at most %d down, %d pods, %d replaced; want %d, %d, %d",
					tt.name, maxDown, maxPods, replaced, tt.maxDown, tt.maxPods, tt.replaced)
			}
			for i := 1; i < len(deletedAt); i++ {
				if gap := deletedAt[i].Sub(deletedAt[i-1]); gap < tt.minReadyGap {
					t.Errorf("rollout(%s): replacement %d came %v after the one before; want at least %v", tt.name, i, gap, tt.minReadyGap)
				}
			}
			if got := c.daemon("agent"); got != tt.wantPods {
				t.Errorf("rollout(%s) = %q; want %q", tt.name, got, tt.wantPods)
			}
			if got := c.daemonStatus("agent"); got != tt.wantStatus {
				t.Errorf("status(%s) = %s; want %s", tt.name, got, tt.wantStatus)
			}
			c.converged(tt.name)
		})
	}
}

func TestDaemonSetOnDeleteReplacesDeletedPods(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(daemonSet("agent", "img:v1", dsOnDelete))
	c.converge(nil)
	c.sync(daemonSet("agent", "img:v2", dsOnDelete))
	c.converge(nil)
	var victim *corev1.Pod
	for _, p := range c.pods() {
		if p.Spec.NodeName == "n2" {
			victim = p
		}
	}
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(victim), UID: victim.UID}}})
	c.converge(nil)
	if got := c.daemon("agent"); got != "n1=v1 n2=v2" {
		t.Errorf("OnDelete after deleting n2's pod = %q; want n1=v1 n2=v2", got)
	}
}

func TestDaemonSetRevisions(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	revs := func() string {
		var parts []string
		for _, r := range c.revisions() {
			parts = append(parts, fmt.Sprintf("%d:%s", r.Revision, tag(templateOf(r).Spec.Containers[0].Image)))
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	steps := []struct {
		image string
		mods  []func(*appsv1.DaemonSet)
		want  string
	}{
		{image: "img:v1", want: "1:v1"},
		{image: "img:v2", want: "1:v1 2:v2"},
		{image: "img:v1", want: "2:v2 3:v1"}, // a git revert takes the old revision back
		{image: "img:v3", mods: []func(*appsv1.DaemonSet){dsHistory(1)}, want: "3:v1 4:v3"},
	}
	for _, st := range steps {
		c.sync(daemonSet("agent", st.image, st.mods...))
		c.converge(nil)
		if got := revs(); got != st.want {
			t.Errorf("revisions after %s = %q; want %q", st.image, got, st.want)
		}
		hash := ""
		for _, r := range c.revisions() {
			if tag(templateOf(r).Spec.Containers[0].Image) == tag(st.image) {
				hash = r.Labels[LabelDaemonSetHash]
			}
		}
		for _, p := range c.pods() {
			if p.Labels[LabelDaemonSetHash] != hash {
				t.Errorf("after %s pod %s has hash %q; want the revision's %q", st.image, p.Name, p.Labels[LabelDaemonSetHash], hash)
			}
		}
	}
}

func TestDaemonSetFailedPodReplaced(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(daemonSet("agent", "img:v1"))
	c.converge(nil)
	var failed *corev1.Pod
	for _, p := range c.pods() {
		if p.Spec.NodeName == "n1" {
			failed = p
		}
	}
	c.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(failed), UID: failed.UID,
		Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}}})
	c.converge(nil)
	if got := c.daemon("agent"); got != "n1=v1 n2=v1" {
		t.Errorf("after n1's pod failed = %q; want it replaced", got)
	}
	if p := c.pod(failed.Name); p != nil {
		t.Errorf("failed pod %s still there; want it deleted", failed.Name)
	}
	if got := c.eventsWith("FailedDaemonPod"); len(got) != 1 {
		t.Errorf("FailedDaemonPod events = %q; want one", got)
	}
}

func TestDaemonSetLeavesGit(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(daemonSet("agent", "img:v1"), deploy("web", 1, "img:v1"))
	c.converge(nil)
	c.sync(deploy("web", 1, "img:v1"))
	c.converge(nil)
	if got := c.daemon("agent"); got != "" {
		t.Errorf("pods of a DaemonSet gone from git = %q; want none", got)
	}
	for _, r := range c.revisions() {
		if metav1.GetControllerOf(r).Kind == "DaemonSet" {
			t.Errorf("revision %s of a DaemonSet gone from git is still there", r.Name)
		}
	}
	if n := placedPods(c.state(), ""); n != 1 {
		t.Errorf("%d pods left; want the Deployment's one", n)
	}
}

// TestDaemonSetBeforeOtherPods: a DaemonSet's pods take their node's room before pods the
// scheduler places in the same plan.
func TestDaemonSetBeforeOtherPods(t *testing.T) {
	c := newCluster(t, node("n1", allocatable("1", "4Gi")))
	c.sync(deploy("web", 1, "img:v1", podRequest("800m", "10Mi")), daemonSet("agent", "img:v1", dsRequest("500m")))
	c.plan()
	if got := c.daemon("agent"); got != "n1=v1!" {
		t.Errorf("DaemonSet pods = %q; want its pod on n1", got)
	}
	if got := c.eventsWith("FailedScheduling"); len(got) != 1 || !strings.Contains(got[0], "Insufficient cpu") {
		t.Errorf("FailedScheduling = %q; want the Deployment's pod not to fit beside the DaemonSet's", got)
	}
}

// TestDaemonSetClaims: a DaemonSet whose template mounts a claim runs only where the claim's
// volume is, as the scheduler's VolumeBinding would decide.
func TestDaemonSetClaims(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.sync(volume("a", "1Gi", localOn("n2")), claimOf("one", "1Gi"), daemonSet("agent", "img:v1", func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "one"}}}}
	}))
	c.converge(nil)
	if got := c.daemon("agent"); got != "n2=v1" {
		t.Errorf("DaemonSet with a claim on n2's volume = %q; want n2 only", got)
	}
	if got := c.eventsWith("FailedPlacement"); len(got) == 0 || got[0] != `failed to place pod on "n1": `+reasonVolumeNodeAffinity {
		t.Errorf("FailedPlacement = %q; want n1's volume node affinity conflict", got)
	}
	if cl := c.claimObj("one"); cl == nil || cl.Spec.VolumeName != "a" {
		t.Errorf("claim = %+v; want bound to a", cl)
	}
}
