// Package controller is the leader's half of the reconciler: the Deployment, ReplicaSet,
// ReplicationController, StatefulSet, DaemonSet, Job, CronJob and bare-Pod controllers,
// storage, garbage collection and the scheduler, as one pure function of the replicated
// state. Plan reads a snapshot and returns every decision it makes as one state.Command; the
// Manager runs Plan on every state change and commits the command to the store (the Raft
// log), so each decision is made once and every node acts on the same one. The controllers
// follow Kubernetes' (pkg/controller/deployment, replicaset, statefulset, daemon, job,
// cronjob, podgc, tainteviction, garbagecollector) closely; where skiff differs, the doc
// comment says so.
package controller

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// Annotations skiff's controllers write on the objects they make.
const (
	// AnnotationGitUID marks a cluster Pod made from a bare Pod in git with that Pod's UID:
	// the cluster pod is skiff's, and goes when the git Pod goes or is replaced.
	AnnotationGitUID = "skiff.io/git-uid"
	// AnnotationSpecHash is the hash of the git Pod's spec a cluster Pod was made from; a
	// different hash replaces the pod (pods are immutable).
	AnnotationSpecHash = "skiff.io/spec-hash"
	// AnnotationNodeName holds the node a pod asked for with spec.nodeName while it waits to
	// be placed: only placed pods have spec.nodeName, so the request is kept here and the
	// scheduler honours it.
	AnnotationNodeName = "skiff.io/node-name"
)

// Kubernetes' own names, written as Kubernetes writes them.
const (
	LabelPodTemplateHash      = appsv1.DefaultDeploymentUniqueLabelKey // "pod-template-hash"
	AnnotationRevision        = "deployment.kubernetes.io/revision"
	AnnotationRevisionHistory = "deployment.kubernetes.io/revision-history"
	AnnotationDesiredReplicas = "deployment.kubernetes.io/desired-replicas"
	AnnotationMaxReplicas     = "deployment.kubernetes.io/max-replicas"
)

// DefaultUnreachableToleration is how long a pod stays on a NotReady node before it is
// deleted and replaced elsewhere, unless the pod tolerates node.kubernetes.io/unreachable
// (NoExecute) itself. Kubernetes waits 300 s; an edge cluster wants its pods back fast.
const DefaultUnreachableToleration = 5 * time.Second

// Input is everything Plan decides from.
type Input struct {
	State *state.State
	Now   time.Time
	// NodeReady reports node liveness (heartbeats are not in the state). nil: every node
	// with a Node object is ready. A node without a Node object is never ready.
	NodeReady func(node string) bool
	// NodeNotReadySince reports since when a NotReady node has been so; pods on it are
	// deleted and replaced once their toleration for node.kubernetes.io/unreachable has
	// passed. nil, or false for a node: not known, nothing is evicted from it.
	NodeNotReadySince func(node string) (time.Time, bool)
	// UnreachableToleration is the default toleration (DefaultUnreachableToleration when 0).
	UnreachableToleration time.Duration
	// Rand generates pod names and UIDs; nil: a generator seeded with the state's index.
	Rand *rand.Rand
	// Services, when set, allocates Service addresses and node pod subnets in the same
	// command (it runs even before the first commit: nodes need their subnets to start).
	Services *services.AllocConfig
}

// Event is something worth telling an operator about an object.
type Event struct {
	Object  manifest.Object
	Type    string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason  string
	Message string
}

// Result is what Plan decided.
type Result struct {
	Command *state.Command // nil when there is nothing to do
	Events  []Event
	// Requeue asks for another Plan after this long even without a state change (a pod
	// becoming available after minReadySeconds, a toleration running out); 0: not needed.
	Requeue time.Duration
}

// Plan runs every controller and the scheduler once over in.State and returns their
// decisions as one command. It is deterministic given its input and never changes the
// state it reads; a converged state gives a nil Command.
func Plan(in Input) Result {
	p := newPlanner(in)
	if in.Services != nil {
		p.allocate(*in.Services)
	}
	if !p.s.Synced() {
		return p.result() // nothing is declared yet: only addresses to hand out
	}
	p.evict()
	p.collectGarbage()
	p.deployments()
	p.replicaSets()
	p.statefulSets()
	p.cronJobs()
	p.jobs()
	p.barePods()
	p.persistentVolumes()
	p.daemonSets() // places its pods itself, before the scheduler places the others
	p.schedule()
	return p.result()
}

// planner holds one Plan's view of the cluster: the snapshot plus the decisions made so far,
// so each controller sees what the ones before it decided.
type planner struct {
	in    Input
	s     *state.State
	now   time.Time
	stamp metav1.Time // now as Apply stamps it (UTC, whole seconds)
	rand  *rand.Rand
	ready func(string) bool
	tol   time.Duration

	nodes     map[string]*corev1.Node
	nodeList  []*corev1.Node
	podKeys   []state.Key // every pod of the snapshot, sorted
	selectors map[types.UID]labels.Selector

	pods    map[state.Key]*corev1.Pod // current view of cluster pods; nil once removed
	podsBy  map[types.UID][]state.Key // pod keys by controlling owner UID
	created []state.Key               // pods made by this plan, in order
	rss     map[state.Key]*appsv1.ReplicaSet
	rssBy   map[types.UID][]state.Key

	put     map[state.Key]manifest.Object
	del     map[state.Key]state.Ref
	status  map[state.Key]state.PodStatus // pods the leader marks NotReady (their node is)
	events  []Event
	requeue time.Duration
	sched   *Scheduler
	vols    *volumes                   // claims and volumes, built on first use (storage.go)
	batch   map[state.Key]*batchv1.Job // cluster Jobs, built on first use (job.go); nil once deleted
}

func newPlanner(in Input) *planner {
	s := in.State
	if s == nil {
		s = state.Empty()
	}
	r := in.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(s.Index, 0x736b696666))
	}
	tol := in.UnreachableToleration
	if tol == 0 {
		tol = DefaultUnreachableToleration
	}
	npods := s.Cluster.Count("Pod")
	p := &planner{
		in: in, s: s, now: in.Now, rand: r, tol: tol,
		stamp:     metav1.NewTime(in.Now.UTC().Truncate(time.Second)),
		nodes:     map[string]*corev1.Node{},
		podKeys:   make([]state.Key, 0, npods),
		selectors: map[types.UID]labels.Selector{},
		pods:      make(map[state.Key]*corev1.Pod, npods),
		podsBy:    map[types.UID][]state.Key{},
		rss:       map[state.Key]*appsv1.ReplicaSet{},
		rssBy:     map[types.UID][]state.Key{},
		put:       map[state.Key]manifest.Object{},
		del:       map[state.Key]state.Ref{},
		status:    map[state.Key]state.PodStatus{},
	}
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		p.nodes[n.Name] = n
		p.nodeList = append(p.nodeList, n)
	}
	p.ready = func(name string) bool {
		if _, ok := p.nodes[name]; !ok {
			return false
		}
		return in.NodeReady == nil || in.NodeReady(name)
	}
	for _, pod := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
		k := state.KeyOf(pod)
		p.podKeys = append(p.podKeys, k)
		p.pods[k] = pod
		if uid := controllerUID(pod); uid != "" {
			p.podsBy[uid] = append(p.podsBy[uid], k)
		}
	}
	for _, rs := range state.Typed[*appsv1.ReplicaSet](s.Cluster.List("ReplicaSet", "")) {
		k := state.KeyOf(rs)
		p.rss[k] = rs
		if uid := controllerUID(rs); uid != "" {
			p.rssBy[uid] = append(p.rssBy[uid], k)
		}
	}
	return p
}

// parseSelector converts a workload's label selector; ok is false for one that is missing,
// invalid or selects everything (validation reports those; a controller never acts on
// them). A selector of plain labels (validated when the manifest was parsed) is converted
// without validating it again: that validation uses regular expressions and is slow.
func parseSelector(ls *metav1.LabelSelector) (labels.Selector, bool) {
	if ls == nil {
		return nil, false
	}
	var sel labels.Selector
	if len(ls.MatchExpressions) == 0 {
		sel = labels.SelectorFromValidatedSet(ls.MatchLabels)
	} else {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(ls); err != nil {
			return nil, false
		}
	}
	return sel, !sel.Empty()
}

// scheduler returns the plan's scheduler, built on first use from the pods placed so far.
func (p *planner) scheduler() *Scheduler {
	if p.sched != nil {
		return p.sched
	}
	var placed []*corev1.Pod
	keys := slices.Clone(p.podKeys)
	for _, k := range p.created {
		if p.orig(k) == nil { // a key made anew, not a pod replaced under its old name
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if pod := p.pods[k]; pod != nil && pod.Spec.NodeName != "" {
			placed = append(placed, pod)
		}
	}
	p.sched = NewScheduler(p.nodeList, placed, p.ready)
	return p.sched
}

// forget and assume keep a scheduler already built up to date.
func (p *planner) forget(pod *corev1.Pod) {
	if p.sched != nil && pod.Spec.NodeName != "" {
		p.sched.Forget(pod)
	}
}

func (p *planner) assume(pod *corev1.Pod) {
	if p.sched != nil && pod.Spec.NodeName != "" {
		p.sched.Assume(pod)
	}
}

// after asks for another plan within d.
func (p *planner) after(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if p.requeue == 0 || d < p.requeue {
		p.requeue = d
	}
}

func (p *planner) event(o manifest.Object, typ, reason, msg string) {
	p.events = append(p.events, Event{Object: o, Type: typ, Reason: reason, Message: msg})
}

// allocate merges the Service allocator's decisions (cluster IPs, node ports, load-balancer
// addresses, node pod subnets) into this plan's command.
func (p *planner) allocate(cfg services.AllocConfig) {
	if cfg.NodeReady == nil {
		cfg.NodeReady = p.ready
	}
	put, del, events := services.Plan(p.s, cfg, p.now)
	for _, o := range put {
		p.put[state.KeyOf(o)] = o
	}
	for _, r := range del {
		p.del[r.Key] = r
	}
	for _, e := range events {
		p.event(e.Object, e.Type, e.Reason, e.Message)
	}
}

func (p *planner) orig(k state.Key) manifest.Object {
	o, _ := p.s.Cluster.Get(k)
	return o
}

// exists reports whether the object an owner reference names exists, as decided so far:
// same kind, namespace (or none: cluster-scoped) and name, and the same UID.
func (p *planner) exists(ns string, ref metav1.OwnerReference) bool {
	for _, n := range []string{ns, ""} {
		k := state.Key{Kind: ref.Kind, Namespace: n, Name: ref.Name}
		var cur manifest.Object
		switch k.Kind {
		case "Pod":
			if pod := p.pods[k]; pod != nil {
				cur = pod
			}
		case "ReplicaSet":
			if rs := p.rss[k]; rs != nil {
				cur = rs
			} else if o, ok := p.s.Git.Get(k); ok {
				cur = o
			}
		default:
			// A git object, or a cluster object of the same name (a Job of git runs as a
			// cluster Job with a UID of its own; its pods name that one).
			if o, ok := p.s.Git.Get(k); ok && o.GetUID() == ref.UID {
				return true
			}
			if o, ok := p.s.Cluster.Get(k); ok {
				if d, gone := p.del[k]; !gone || d.UID != o.GetUID() {
					cur = o
				}
			}
		}
		if cur != nil && cur.GetUID() == ref.UID {
			return true
		}
	}
	return false
}

// selector returns the parsed selector of a ReplicaSet (cached: parsing validates with
// regular expressions).
func (p *planner) selector(rs *appsv1.ReplicaSet) (labels.Selector, bool) {
	if sel, ok := p.selectors[rs.UID]; ok {
		return sel, sel != nil
	}
	sel, ok := parseSelector(rs.Spec.Selector)
	if !ok {
		sel = nil
	}
	p.selectors[rs.UID] = sel
	return sel, ok
}

// podsOf returns the current pods controlled by owner (terminating ones included).
func (p *planner) podsOf(owner types.UID) []*corev1.Pod {
	// Each key is listed once: a pod made by the plan gets a name no pod had.
	keys := p.podsBy[owner]
	out := make([]*corev1.Pod, 0, len(keys))
	for _, k := range keys {
		if pod := p.pods[k]; pod != nil && controllerUID(pod) == owner {
			out = append(out, pod)
		}
	}
	return out
}

// replicaSetsOf returns the current cluster ReplicaSets controlled by owner, oldest first.
func (p *planner) replicaSetsOf(owner types.UID) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for i, k := range p.rssBy[owner] {
		if slices.Contains(p.rssBy[owner][:i], k) {
			continue
		}
		if rs := p.rss[k]; rs != nil && controllerUID(rs) == owner {
			out = append(out, rs)
		}
	}
	sortByCreation(out)
	return out
}

// setPod records a changed pod.
func (p *planner) setPod(pod *corev1.Pod) {
	k := state.KeyOf(pod)
	p.pods[k] = pod
	p.put[k] = pod
}

// addPod records a new pod.
func (p *planner) addPod(pod *corev1.Pod) {
	k := state.KeyOf(pod)
	p.setPod(pod)
	p.created = append(p.created, k)
	if uid := controllerUID(pod); uid != "" {
		p.podsBy[uid] = append(p.podsBy[uid], k)
	}
}

// deletePod deletes a pod as Kubernetes does: a pod placed on a node is only marked
// terminating, for its node to stop and then remove; an unplaced one goes at once. force
// removes a placed pod at once (its node is gone or unreachable). It reports whether
// anything changed: deleting a terminating pod again does nothing.
func (p *planner) deletePod(pod *corev1.Pod, force bool) bool {
	k := state.KeyOf(pod)
	cur := p.pods[k]
	if cur == nil || cur.UID != pod.UID {
		return false
	}
	delete(p.put, k)
	old, _ := p.orig(k).(*corev1.Pod)
	if old == nil || old.UID != pod.UID { // made by this plan: it never existed
		p.pods[k] = nil
		p.forget(cur)
		return true
	}
	if old.Spec.NodeName != "" && !force {
		if old.DeletionTimestamp != nil {
			return false
		}
		c := old.DeepCopy()
		c.DeletionTimestamp = &p.stamp
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if c.Spec.TerminationGracePeriodSeconds != nil {
			grace = *c.Spec.TerminationGracePeriodSeconds
		}
		c.DeletionGracePeriodSeconds = &grace
		p.pods[k] = c
		p.forget(old)
		p.assume(c)
		p.del[k] = state.Ref{Key: k, UID: old.UID}
		return true
	}
	p.forget(old)
	p.pods[k] = nil
	p.del[k] = state.Ref{Key: k, UID: old.UID, Force: force && old.Spec.NodeName != ""}
	return true
}

// putRS records a new or changed cluster ReplicaSet.
func (p *planner) putRS(rs *appsv1.ReplicaSet) {
	k := state.KeyOf(rs)
	if cur := p.rss[k]; cur == nil || cur.UID != rs.UID {
		if uid := controllerUID(rs); uid != "" {
			p.rssBy[uid] = append(p.rssBy[uid], k)
		}
	}
	p.rss[k] = rs
	p.put[k] = rs
}

// deleteObject removes a cluster object other than a pod.
func (p *planner) deleteObject(o manifest.Object) {
	k := state.KeyOf(o)
	switch {
	case k.Kind == "ReplicaSet":
		p.rss[k] = nil
	case k.Kind == "PersistentVolumeClaim" && p.vols != nil:
		p.vols.claims[k] = nil
	case k.Kind == "PersistentVolume" && p.vols != nil:
		p.vols.pvs[k.Name] = nil
	case k.Kind == "Job" && p.batch != nil:
		p.batch[k] = nil
	}
	delete(p.put, k)
	if old := p.orig(k); old != nil && old.GetUID() == o.GetUID() {
		p.del[k] = state.Ref{Key: k, UID: old.GetUID()}
	}
}

// newUID returns a random (version 4) UID from the plan's generator.
func (p *planner) newUID() types.UID {
	var b uuid.UUID
	binary.BigEndian.PutUint64(b[:8], p.rand.Uint64())
	binary.BigEndian.PutUint64(b[8:], p.rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return types.UID(b.String())
}

// nameChars are the characters Kubernetes uses for generated names (no vowels, no 0/1/3).
const nameChars = "bcdfghjklmnpqrstvwxz2456789"

// generateName returns prefix plus five random characters, unused by any pod.
func (p *planner) generateName(ns, prefix string) string {
	if len(prefix) > 58 { // 63 - 5, as the API server's name generator
		prefix = prefix[:58]
	}
	for {
		b := []byte(prefix)
		for range 5 {
			b = append(b, nameChars[p.rand.IntN(len(nameChars))])
		}
		k := state.Key{Kind: "Pod", Namespace: ns, Name: string(b)}
		_, inGit := p.s.Git.Get(k)
		if p.orig(k) == nil && p.pods[k] == nil && !inGit {
			return k.Name
		}
	}
}

// result turns the decisions into one command.
func (p *planner) result() Result {
	cmd := &state.Command{At: p.now}
	keys := make([]state.Key, 0, len(p.put))
	for k := range p.put {
		keys = append(keys, k)
	}
	sortKeys(keys)
	for _, k := range keys {
		o := p.put[k]
		old := p.orig(k)
		if old != nil && equality.Semantic.DeepEqual(old, o) {
			continue
		}
		if pod, ok := o.(*corev1.Pod); ok {
			if oldPod, ok := old.(*corev1.Pod); ok && oldPod.UID == pod.UID && oldPod.Spec.NodeName != "" {
				// Never overwrite what the node reports: Apply keeps the status of a
				// placed pod put with an empty one.
				pod = pod.DeepCopy()
				pod.Status = corev1.PodStatus{}
				o = pod
			}
		}
		cmd.Put = append(cmd.Put, state.Obj{Object: o})
	}
	dels := make([]state.Key, 0, len(p.del))
	for k := range p.del {
		dels = append(dels, k)
	}
	sortKeys(dels)
	for _, k := range dels {
		cmd.Delete = append(cmd.Delete, p.del[k])
	}
	skeys := make([]state.Key, 0, len(p.status))
	for k := range p.status {
		if _, deleted := p.del[k]; !deleted {
			skeys = append(skeys, k)
		}
	}
	sortKeys(skeys)
	for _, k := range skeys {
		cmd.Status = append(cmd.Status, p.status[k])
	}
	res := Result{Events: p.events, Requeue: p.requeue}
	if !cmd.Empty() {
		res.Command = cmd
	}
	return res
}

func sortKeys(keys []state.Key) {
	slices.SortFunc(keys, func(a, b state.Key) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// controllerUID returns the UID of an object's controlling owner, "" when it has none.
func controllerUID(o metav1.Object) types.UID {
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		return ref.UID
	}
	return ""
}

// controllerRef returns a reference making owner the controller of an object.
func controllerRef(owner metav1.Object, apiVersion, kind string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID(),
		Controller: &yes, BlockOwnerDeletion: &yes,
	}
}
