package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
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

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// cluster is a MemStore driven by Plan, with fake node agents that start the pods placed
// on them, report them ready and remove the ones marked terminating.
type cluster struct {
	t      testing.TB
	store  *state.MemStore
	now    time.Time
	rand   *rand.Rand
	commit int
	down   map[string]time.Time // NotReady nodes and since when
	agent  agent
	events []Event
}

// agent says how the fake node agents behave.
type agent struct {
	readyAfter time.Duration // a started pod turns ready this long after it started
	neverReady string        // pods running this image never turn ready
	stuck      bool          // terminating pods are never removed
	// A pod whose restartPolicy is OnFailure or Never runs its container for runFor (at least one
	// step), then exits: with 1 for the next fail[image] runs of that image (-1: every
	// run), else with 0. With OnFailure a failed container restarts in place (its restart
	// count goes up); otherwise the pod ends Succeeded or Failed.
	runFor time.Duration
	fail   map[string]int
}

func newCluster(t testing.TB, nodes ...*corev1.Node) *cluster {
	t.Helper()
	c := &cluster{t: t, store: state.NewMemStore(), now: t0, rand: rand.New(rand.NewPCG(1, 2)), down: map[string]time.Time{}}
	c.store.Now = func() time.Time { return c.now }
	if len(nodes) > 0 {
		c.apply(&state.Command{Put: state.Wrap(nodes...)})
	}
	return c
}

func (c *cluster) apply(cmd *state.Command) {
	c.t.Helper()
	if err := c.store.Apply(context.Background(), cmd); err != nil {
		c.t.Fatalf("apply: %v", err)
	}
}

func (c *cluster) state() *state.State { return c.store.State() }

// sync makes a new commit with exactly objs live.
func (c *cluster) sync(objs ...manifest.Object) {
	c.t.Helper()
	c.commit++
	c.apply(&state.Command{Sync: &state.Sync{
		Commit: state.Commit{Hash: fmt.Sprintf("c%d", c.commit)}, Objects: state.Wrap(objs...)}})
}

func (c *cluster) ready(node string) bool {
	_, down := c.down[node]
	return !down
}

func (c *cluster) input() Input {
	return Input{
		State: c.state(), Now: c.now, NodeReady: c.ready, Rand: c.rand,
		NodeNotReadySince: func(n string) (time.Time, bool) { t, ok := c.down[n]; return t, ok },
	}
}

// plan runs Plan and applies its command.
func (c *cluster) plan() Result {
	c.t.Helper()
	res := Plan(c.input())
	if res.Command != nil {
		c.apply(res.Command)
	}
	c.events = append(c.events, res.Events...)
	return res
}

// runNodes plays every ready node's agent once. It reports whether anything changed or is
// about to (a pod waiting to turn ready).
func (c *cluster) runNodes() bool {
	c.t.Helper()
	var cmd state.Command
	waiting := false
	for _, pod := range state.Typed[*corev1.Pod](c.state().Cluster.List("Pod", "")) {
		if pod.Spec.NodeName == "" || !c.ready(pod.Spec.NodeName) {
			continue
		}
		if pod.DeletionTimestamp != nil {
			if !c.agent.stuck {
				cmd.Delete = append(cmd.Delete, state.Ref{Key: state.KeyOf(pod), UID: pod.UID, Force: true})
			}
			continue
		}
		st := pod.Status.DeepCopy()
		if st.Phase != corev1.PodRunning {
			st.Phase = corev1.PodRunning
			st.StartTime = &metav1.Time{Time: c.now}
			setPodCondition(st, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(c.now)})
		}
		if isTerminal(pod) {
			continue // finished: the node keeps it, for its logs
		}
		if rp := pod.Spec.RestartPolicy; (rp == corev1.RestartPolicyOnFailure || rp == corev1.RestartPolicyNever) && pod.Status.Phase == corev1.PodRunning {
			if c.exit(pod, st) {
				waiting = true
			}
		}
		neverReady := c.agent.neverReady != "" && pod.Spec.Containers[0].Image == c.agent.neverReady
		if !neverReady && st.Phase == corev1.PodRunning && !isPodReady(&corev1.Pod{Status: *st}) {
			if c.now.Before(st.StartTime.Add(c.agent.readyAfter)) {
				waiting = true
			} else {
				setPodCondition(st, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(c.now)})
			}
		}
		if st.Phase != pod.Status.Phase || isPodReady(&corev1.Pod{Status: *st}) != isPodReady(pod) || maxRestarts(&corev1.Pod{Status: *st}) != maxRestarts(pod) {
			cmd.Status = append(cmd.Status, state.PodStatus{Key: state.KeyOf(pod), UID: pod.UID, Status: *st})
		}
	}
	if cmd.Empty() {
		return waiting
	}
	c.apply(&cmd)
	return true
}

// exit plays a run-to-completion container (see agent.runFor): it reports whether the
// container is still running.
func (c *cluster) exit(pod *corev1.Pod, st *corev1.PodStatus) bool {
	started, restarts := st.StartTime.Time, int32(0)
	if len(st.ContainerStatuses) > 0 {
		cs := st.ContainerStatuses[0]
		restarts = cs.RestartCount
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt.Time
		}
	}
	if c.now.Before(started.Add(c.agent.runFor)) {
		return true
	}
	image := pod.Spec.Containers[0].Image
	failed := c.agent.fail[image] != 0
	if c.agent.fail[image] > 0 {
		c.agent.fail[image]--
	}
	now := metav1.NewTime(c.now)
	name := pod.Spec.Containers[0].Name
	if failed && pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: name, RestartCount: restarts + 1,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
		return true
	}
	code, phase := int32(0), corev1.PodSucceeded
	if failed {
		code, phase = 1, corev1.PodFailed
	}
	st.Phase = phase
	st.ContainerStatuses = []corev1.ContainerStatus{{Name: name, RestartCount: restarts,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, FinishedAt: now}}}}
	setPodCondition(st, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now})
	return false
}

// converge plans and runs the nodes, a second apart, until nothing changes; check runs
// after every change.
func (c *cluster) converge(check func()) {
	c.t.Helper()
	for range 1000 {
		res := c.plan()
		if check != nil {
			check()
		}
		moved := c.runNodes()
		if check != nil {
			check()
		}
		if res.Command == nil && !moved && res.Requeue == 0 {
			return
		}
		c.now = c.now.Add(time.Second)
	}
	c.t.Fatalf("no convergence after 1000 steps")
}

// run plans and runs the nodes every step until d has passed (time-driven controllers
// always have a plan to come back to, so they never converge); check runs after every
// change.
func (c *cluster) run(d, step time.Duration, check func()) {
	c.t.Helper()
	for end := c.now.Add(d); c.now.Before(end); c.now = c.now.Add(step) {
		c.plan()
		if check != nil {
			check()
		}
		c.runNodes()
		if check != nil {
			check()
		}
	}
}

// converged fails unless Plan has nothing left to do.
func (c *cluster) converged(name string) {
	c.t.Helper()
	if res := Plan(c.input()); res.Command != nil {
		b, _ := res.Command.Encode()
		c.t.Errorf("Plan(%s) on a converged state = %s; want no command", name, b)
	}
}

func (c *cluster) pods() []*corev1.Pod {
	return state.Typed[*corev1.Pod](c.state().Cluster.List("Pod", ""))
}

func (c *cluster) replicaSets() []*appsv1.ReplicaSet {
	return state.Typed[*appsv1.ReplicaSet](c.state().Cluster.List("ReplicaSet", ""))
}

func (c *cluster) eventsWith(reason string) []string {
	var out []string
	for _, e := range c.events {
		if e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}

// summary renders a Deployment's ReplicaSets, by revision, as "<tag>:<spec
// replicas>/<running pods>", e.g. "v1:0/0 v2:3/3".
func (c *cluster) summary(name string) string {
	var rss []*appsv1.ReplicaSet
	for _, rs := range c.replicaSets() {
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.Name == name {
			rss = append(rss, rs)
		}
	}
	sort.Slice(rss, func(i, j int) bool { return revisionOf(rss[i]) < revisionOf(rss[j]) })
	var parts []string
	for _, rs := range rss {
		running := 0
		for _, pod := range c.pods() {
			if controllerUID(pod) == rs.UID && pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		parts = append(parts, fmt.Sprintf("%s:%d/%d", tag(rs.Spec.Template.Spec.Containers[0].Image), *rs.Spec.Replicas, running))
	}
	return strings.Join(parts, " ")
}

// perNode renders how many non-terminating pods each node runs: "n1=2 n2=2 n3=2", with
// "-" for unplaced ones.
func (c *cluster) perNode() string {
	count := map[string]int{}
	for _, pod := range c.pods() {
		if pod.DeletionTimestamp == nil {
			n := pod.Spec.NodeName
			if n == "" {
				n = "-"
			}
			count[n]++
		}
	}
	var parts []string
	for n, k := range count {
		parts = append(parts, fmt.Sprintf("%s=%d", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func tag(image string) string {
	if i := strings.LastIndexByte(image, ':'); i >= 0 {
		return image[i+1:]
	}
	return image
}

// Fixtures.

func node(name string, mods ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux"}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("4Gi"),
			corev1.ResourcePods: resource.MustParse("110")}},
	}
	for _, m := range mods {
		m(n)
	}
	return n
}

func nodes(names ...string) []*corev1.Node {
	out := make([]*corev1.Node, len(names))
	for i, n := range names {
		out[i] = node(n)
	}
	return out
}

func withLabel(k, v string) func(*corev1.Node) { return func(n *corev1.Node) { n.Labels[k] = v } }
func cordoned(n *corev1.Node)                  { n.Spec.Unschedulable = true }
func allocatable(cpu, mem string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse(cpu)
		n.Status.Allocatable[corev1.ResourceMemory] = resource.MustParse(mem)
	}
}

func template(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image}}},
	}
}

func deploy(name string, replicas int32, image string, mods ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name, image),
		},
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

func rolling(surge, unavailable string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		s, u := intstr.Parse(surge), intstr.Parse(unavailable)
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}}
	}
}

func recreate(d *appsv1.Deployment) {
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
}
func paused(d *appsv1.Deployment) { d.Spec.Paused = true }
func minReady(s int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = s }
}
func historyLimit(n int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = &n }
}
func deadline(s int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = &s }
}
func podRequest(cpu, mem string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
}

func bare(name, image string, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image}}},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// objs lists objects for a commit.
func objs(o ...manifest.Object) []manifest.Object { return slices.Clone(o) }

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }
