package controller

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// The DaemonSet controller, as Kubernetes' pkg/controller/daemon: one pod per node that
// should run it (NodeShouldRunDaemonPod), made already placed on that node (spec.nodeName)
// rather than through the spreading scheduler. A node should run the DaemonSet's pod when
// its template's nodeName (if any), nodeSelector and required node affinity match it and the
// pod tolerates the node's NoSchedule and NoExecute taints; a pod already there keeps
// running while it tolerates the NoExecute ones. Like Kubernetes, every DaemonSet pod
// tolerates node.kubernetes.io/unschedulable (it runs on cordoned nodes) and, for ever,
// node.kubernetes.io/not-ready and unreachable (NoExecute): it is never evicted from a
// NotReady node. A NotReady node is tainted unreachable:NoSchedule, as Kubernetes' node
// lifecycle controller does, so no new pod goes there until it is back; its pod counts as
// misscheduled meanwhile, as in Kubernetes.
//
// Placing a pod directly, the controller checks what the scheduler would (pod count, cpu and
// memory requests, host ports, the volumes of its claims) and binds its claims: a node where the pod does not fit gets no pod and a Warning
// FailedPlacement, as Kubernetes' DaemonSet controller did when it placed its own pods; the
// node still counts in desiredNumberScheduled. A pod that failed is deleted and made again.
//
// Revisions are ControllerRevisions named NAME-HASH owned by the DaemonSet, the pods labelled
// controller-revision-hash=HASH and pod-template-generation; a template equal to an old
// revision's takes that revision back with the next revision number (a git revert), and old
// revisions beyond revisionHistoryLimit that no pod runs are deleted. RollingUpdate replaces
// old pods within maxUnavailable (maxSurge 0: delete an old pod, then make the new one once
// it is gone) or maxSurge (make the new pod beside the old one, delete the old one once the
// new one is available); OnDelete replaces a pod only when something else deleted it.
// Status is computed from the pods and nodes (WithStatus); nothing is written for it.
//
// Where skiff differs: a host port taken on the node is a FailedPlacement like a lack of
// resources (Kubernetes leaves such a pod Pending); a failed pod is replaced without
// Kubernetes' per-node back-off (the node removing it paces the replacement).

// Labels Kubernetes puts on a DaemonSet's pods.
const (
	LabelDaemonSetHash         = appsv1.DefaultDaemonSetUniqueLabelKey // "controller-revision-hash"
	LabelPodTemplateGeneration = "pod-template-generation"
)

// daemonSets runs the DaemonSet controller over every DaemonSet in git.
func (p *planner) daemonSets() {
	for _, ds := range state.Typed[*appsv1.DaemonSet](p.s.Git.List("DaemonSet", "")) {
		p.syncDaemonSet(ds)
	}
}

// withDaemonSetDefaults returns ds with the apps/v1 defaults applied (a shallow copy; nothing
// it shares is changed).
func withDaemonSetDefaults(ds *appsv1.DaemonSet) *appsv1.DaemonSet {
	c := *ds
	u := c.Spec.UpdateStrategy
	if u.Type == "" {
		u.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if u.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		ru := appsv1.RollingUpdateDaemonSet{}
		if u.RollingUpdate != nil {
			ru = *u.RollingUpdate
		}
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = ptrTo(intstr.FromInt32(1))
		}
		if ru.MaxSurge == nil {
			ru.MaxSurge = ptrTo(intstr.FromInt32(0))
		}
		u.RollingUpdate = &ru
	}
	c.Spec.UpdateStrategy = u
	if c.Spec.RevisionHistoryLimit == nil {
		c.Spec.RevisionHistoryLimit = ptrTo[int32](10)
	}
	return &c
}

// daemonTolerations are the template's tolerations plus the ones Kubernetes adds to every
// DaemonSet pod (AddOrUpdateDaemonPodTolerations): a toleration of the same key, operator,
// value and effect in the template is replaced.
func daemonTolerations(spec *corev1.PodSpec) []corev1.Toleration {
	out := slices.Clone(spec.Tolerations)
	add := func(key string, effect corev1.TaintEffect) {
		t := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
		for i := range out {
			if out[i].Key == t.Key && out[i].Effect == t.Effect && out[i].Operator == t.Operator && out[i].Value == t.Value {
				out[i] = t
				return
			}
		}
		out = append(out, t)
	}
	add(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)
	if spec.HostNetwork {
		add(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)
	}
	return out
}

// daemonShouldRun is Kubernetes' NodeShouldRunDaemonPod for a DaemonSet's template with its
// daemon tolerations: whether a node should get the pod, and whether a pod there should keep
// running. A cordoned node is tainted unschedulable:NoSchedule and a node that is not ready
// unreachable:NoSchedule and NoExecute, as Kubernetes' node lifecycle controller taints them.
func daemonShouldRun(spec *corev1.PodSpec, tols []corev1.Toleration, node *corev1.Node, ready bool) (run, keep bool) {
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return false, false
	}
	probe := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: spec.NodeSelector, Affinity: spec.Affinity}}
	if !matchesNode(probe, node) {
		return false, false
	}
	taints := node.Spec.Taints
	if node.Spec.Unschedulable || !ready {
		taints = slices.Clone(taints)
		if node.Spec.Unschedulable {
			taints = append(taints, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
		}
		if !ready {
			taints = append(taints,
				corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
				corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute})
		}
	}
	run, keep = true, true
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule || tolerates(tols, t) {
			continue
		}
		run = false
		if t.Effect == corev1.TaintEffectNoExecute {
			keep = false
		}
	}
	return run, keep
}

// daemonSync is one DaemonSet's sync.
type daemonSync struct {
	p      *planner
	obj    *appsv1.DaemonSet // as in git: events name it
	ds     *appsv1.DaemonSet // with defaults
	sel    labels.Selector
	tols   []corev1.Toleration
	hash   string
	cur    *appsv1.ControllerRevision
	old    []*appsv1.ControllerRevision
	byNode map[string][]*corev1.Pod
	dirty  bool // pods made or deleted by this sync
}

func (p *planner) syncDaemonSet(obj *appsv1.DaemonSet) {
	ds := withDaemonSetDefaults(obj)
	sel, ok := parseSelector(ds.Spec.Selector)
	if !ok || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		return // validation reports it
	}
	d := &daemonSync{p: p, obj: obj, ds: ds, sel: sel, tols: daemonTolerations(&ds.Spec.Template.Spec)}
	if !d.history() {
		return
	}
	d.group()
	d.manage()
	if ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && !d.dirty {
		// As Kubernetes, which rolls only once its expectations of the last sync are met.
		d.group()
		d.rollingUpdate()
	}
	d.cleanupHistory()
	d.requeue()
}

func (d *daemonSync) event(typ, reason, format string, args ...any) {
	d.p.event(d.obj, typ, reason, fmt.Sprintf(format, args...))
}

// group sorts the DaemonSet's pods by node, leaving out those that finished and are being
// removed (Kubernetes' getNodesToDaemonPods); a pod its selector no longer matches, or one
// on no node, is deleted.
func (d *daemonSync) group() {
	d.byNode = map[string][]*corev1.Pod{}
	for _, pod := range d.p.podsOf(d.ds.UID) {
		if !d.sel.Matches(labels.Set(pod.Labels)) || pod.Spec.NodeName == "" {
			d.deletePod(pod)
			continue
		}
		if pod.DeletionTimestamp != nil && isTerminal(pod) {
			continue
		}
		d.byNode[pod.Spec.NodeName] = append(d.byNode[pod.Spec.NodeName], pod)
	}
	for _, pods := range d.byNode {
		sortPodsByCreation(pods)
	}
}

// isTerminal: the pod finished (Succeeded or Failed).
func isTerminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func (d *daemonSync) deletePod(pod *corev1.Pod) {
	if d.p.deletePod(pod, false) {
		d.dirty = true
		d.event(corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", pod.Name)
	}
}

func (d *daemonSync) shouldRun(node *corev1.Node) (bool, bool) {
	return daemonShouldRun(&d.ds.Spec.Template.Spec, d.tols, node, d.p.ready(node.Name))
}

// manage is Kubernetes' manage: a pod for each node that should run one and has none, failed
// pods deleted, extra pods deleted (the oldest stays; with maxSurge one old and one new),
// pods on nodes that should not keep them deleted.
func (d *daemonSync) manage() {
	surge := allowsSurge(d.ds)
	for _, node := range d.p.nodeList {
		run, keep := d.shouldRun(node)
		pods := d.byNode[node.Name]
		switch {
		case run && len(pods) == 0:
			d.createOn(node)
		case keep:
			var running []*corev1.Pod
			for _, pod := range pods {
				if pod.DeletionTimestamp != nil {
					continue
				}
				if pod.Status.Phase == corev1.PodFailed {
					d.event(corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it",
						pod.Namespace, pod.Name, node.Name)
					d.deletePod(pod)
					continue
				}
				running = append(running, pod)
			}
			if surge {
				var newest, oldest *corev1.Pod
				for _, pod := range running {
					switch {
					case pod.Labels[LabelDaemonSetHash] == d.hash && newest == nil:
						newest = pod
					case pod.Labels[LabelDaemonSetHash] != d.hash && oldest == nil:
						oldest = pod
					default:
						d.deletePod(pod)
					}
				}
			} else {
				for _, pod := range running[min(1, len(running)):] {
					d.deletePod(pod)
				}
			}
		case len(pods) > 0:
			for _, pod := range pods {
				if pod.DeletionTimestamp == nil {
					d.deletePod(pod)
				}
			}
		}
	}
}

// allowsSurge reports whether a rolling update may run an old and a new pod on one node.
func allowsSurge(ds *appsv1.DaemonSet) bool {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	return ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && ru != nil && ru.MaxSurge != nil &&
		!(ru.MaxSurge.Type == intstr.Int && ru.MaxSurge.IntVal == 0) && ru.MaxSurge.String() != "0%"
}

// createOn makes the DaemonSet's pod on node, placed there, when it fits; otherwise it says
// why (FailedPlacement) and the node goes without.
func (d *daemonSync) createOn(node *corev1.Node) {
	p := d.p
	pod := d.newPod(node.Name)
	ni := p.scheduler().byName[node.Name]
	reasons := ni.fit(pod, podRequests(pod, false))
	if len(reasons) == 0 && len(podClaimNames(pod)) > 0 {
		// The scheduler's VolumeBinding, for a template that mounts claims.
		claims, err := p.podClaims(pod)
		if err != nil {
			reasons = []string{err.Error()}
		} else if r := p.volumeFilter(claims)(node); r != "" {
			reasons = []string{r}
		}
	}
	if len(reasons) > 0 {
		d.event(corev1.EventTypeWarning, "FailedPlacement", "failed to place pod on %q: %s", node.Name, strings.Join(reasons, ", "))
		return
	}
	p.addPod(pod)
	p.assume(pod)
	p.bindPodClaims(pod, node.Name)
	d.dirty = true
	d.event(corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", pod.Name)
	p.event(pod, corev1.EventTypeNormal, "Scheduled", fmt.Sprintf("Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node.Name))
}

// newPod makes the DaemonSet's pod for a node at the current revision.
func (d *daemonSync) newPod(node string) *corev1.Pod {
	p, ds := d.p, d.ds
	t := &ds.Spec.Template
	lbl := maps.Clone(t.Labels)
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[LabelDaemonSetHash] = d.hash
	lbl[LabelPodTemplateGeneration] = strconv.FormatInt(ds.Generation, 10)
	prefix := ds.Name + "-"
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.generateName(ds.Namespace, prefix), GenerateName: prefix, Namespace: ds.Namespace,
			UID: p.newUID(), CreationTimestamp: p.stamp, Labels: lbl, Annotations: maps.Clone(t.Annotations),
			OwnerReferences: []metav1.OwnerReference{controllerRef(d.obj, "apps/v1", "DaemonSet")},
		},
		Spec: *t.Spec.DeepCopy(),
	}
	pod.Spec.Tolerations = slices.Clone(d.tols)
	manifest.SetDefaults(pod)
	pod.Spec.NodeName = node
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: p.stamp,
	}}}
	return pod
}

// updatedCounts returns maxSurge, maxUnavailable and the number of nodes that should run the
// pod (Kubernetes' updatedDesiredNodeCounts): percentages round up; both 0 means 1
// unavailable.
func (d *daemonSync) updatedCounts() (surge, unavailable, desired int) {
	for _, node := range d.p.nodeList {
		if run, _ := d.shouldRun(node); run {
			desired++
		}
	}
	ru := d.ds.Spec.UpdateStrategy.RollingUpdate
	if ru != nil && ru.MaxUnavailable != nil {
		unavailable, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, true)
	}
	if ru != nil && ru.MaxSurge != nil {
		surge, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
	}
	if desired > 0 && unavailable == 0 && surge == 0 {
		unavailable = 1
	}
	return surge, unavailable, desired
}

// updatedOnNode returns the one new and the one old pod on a node (terminating ones left
// out); ok is false when there are more (Kubernetes' findUpdatedPodsOnNode).
func (d *daemonSync) updatedOnNode(pods []*corev1.Pod) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		if pod.Labels[LabelDaemonSetHash] == d.hash {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = pod
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = pod
		}
	}
	return newPod, oldPod, true
}

func (d *daemonSync) available(pod *corev1.Pod) bool {
	return isPodAvailable(pod, d.ds.Spec.MinReadySeconds, d.p.now)
}

// rollingUpdate is Kubernetes' rollingUpdate, over the nodes in name order.
func (d *daemonSync) rollingUpdate() {
	surge, unavailable, desired := d.updatedCounts()
	nodes := slices.Sorted(maps.Keys(d.byNode))
	if surge == 0 {
		numUnavailable := 0
		var replace, candidates []*corev1.Pod
		for _, name := range nodes {
			newPod, oldPod, ok := d.updatedOnNode(d.byNode[name])
			switch {
			case !ok:
				numUnavailable++ // manage removes the extra pods
			case (oldPod == nil) == (newPod == nil):
				numUnavailable++ // manage makes or deletes one
			case newPod != nil:
				if !d.available(newPod) {
					numUnavailable++
				}
			case !d.available(oldPod):
				replace = append(replace, oldPod)
				numUnavailable++
			case numUnavailable < unavailable:
				candidates = append(candidates, oldPod)
			}
		}
		n := min(max(unavailable-numUnavailable, 0), len(candidates))
		for _, pod := range append(replace, candidates[:n]...) {
			d.deletePod(pod)
		}
		return
	}
	var toDelete, shouldNotRun []*corev1.Pod
	var allowed, candidates []string
	numSurge, numAvailable := 0, 0
	for _, name := range nodes {
		newPod, oldPod, ok := d.updatedOnNode(d.byNode[name])
		if !ok {
			numSurge++
			continue
		}
		if oldPod != nil && d.available(oldPod) || oldPod == nil && newPod != nil && d.available(newPod) {
			numAvailable++
		}
		node := d.p.nodes[name]
		switch {
		case oldPod == nil:
		case newPod == nil:
			run := false
			if node != nil {
				run, _ = d.shouldRun(node)
			}
			switch {
			case !d.available(oldPod) && !run:
				toDelete = append(toDelete, oldPod)
			case !d.available(oldPod):
				allowed = append(allowed, name)
			case !run:
				shouldNotRun = append(shouldNotRun, oldPod)
			case numSurge < surge:
				candidates = append(candidates, name)
			}
		case !d.available(newPod):
			numSurge++
		default:
			toDelete = append(toDelete, oldPod)
		}
	}
	if n := min(numAvailable-desired, len(shouldNotRun)); n > 0 {
		toDelete = append(toDelete, shouldNotRun[:n]...)
	}
	n := min(max(surge-numSurge, 0), len(candidates))
	for _, name := range append(allowed, candidates[:n]...) {
		if node := d.p.nodes[name]; node != nil {
			d.createOn(node)
		}
	}
	for _, pod := range toDelete {
		d.deletePod(pod)
	}
}

// history finds or makes the revision of the current template (Kubernetes'
// constructHistory) and sets d.hash; false when no free name was found.
func (d *daemonSync) history() bool {
	p, ds := d.p, d.ds
	data := revisionData(&ds.Spec.Template)
	var cur []*appsv1.ControllerRevision
	for _, rev := range daemonRevisions(p.s, ds.UID, p.del) {
		if bytes.Equal(rev.Data.Raw, data) {
			cur = append(cur, rev)
		} else {
			d.old = append(d.old, rev)
		}
	}
	next := int64(1)
	for _, r := range d.old {
		next = max(next, r.Revision+1)
	}
	if len(cur) == 0 {
		var collision int32
		for ; ; collision++ {
			hash := ComputeHash(&ds.Spec.Template, &collision)
			if collision == 0 {
				hash = ComputeHash(&ds.Spec.Template, nil)
			}
			k := state.Key{Kind: "ControllerRevision", Namespace: ds.Namespace, Name: ds.Name + "-" + hash}
			if _, taken := p.s.Cluster.Get(k); !taken && p.put[k] == nil {
				d.cur = &appsv1.ControllerRevision{
					TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
					ObjectMeta: metav1.ObjectMeta{
						Name: k.Name, Namespace: ds.Namespace, UID: p.newUID(), CreationTimestamp: p.stamp,
						Labels:          mergeLabels(ds.Spec.Template.Labels, map[string]string{LabelDaemonSetHash: hash}),
						OwnerReferences: []metav1.OwnerReference{controllerRef(d.obj, "apps/v1", "DaemonSet")},
					},
					Data: runtime.RawExtension{Raw: data}, Revision: next,
				}
				p.put[k] = d.cur
				break
			}
			if collision == maxHashCollisions {
				d.event(corev1.EventTypeWarning, "FailedCreate", "Failed to create a revision for %s: every name is taken", ds.Name)
				return false
			}
		}
	} else {
		// Several revisions of this template (not made by skiff): keep the newest.
		slices.SortFunc(cur, func(a, b *appsv1.ControllerRevision) int { return int(b.Revision - a.Revision) })
		d.cur = cur[0]
		for _, dup := range cur[1:] {
			p.deleteObject(dup)
		}
		if d.cur.Revision < next {
			c := d.cur.DeepCopy()
			c.Revision = next
			p.put[state.KeyOf(c)] = c
			d.cur = c
		}
	}
	d.hash = d.cur.Labels[LabelDaemonSetHash]
	if d.hash == "" {
		d.hash = strings.TrimPrefix(d.cur.Name, ds.Name+"-")
	}
	return true
}

// daemonRevisions lists the ControllerRevisions a DaemonSet controls, oldest revision first,
// leaving out the ones deleted (del: the plan's deletions, nil for none).
func daemonRevisions(s *state.State, owner types.UID, del map[state.Key]state.Ref) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, o := range s.Cluster.List("ControllerRevision", "") {
		rev, ok := o.(*appsv1.ControllerRevision)
		if !ok || controllerUID(rev) != owner {
			continue
		}
		if d, gone := del[state.KeyOf(rev)]; gone && d.UID == rev.UID {
			continue
		}
		out = append(out, rev)
	}
	slices.SortStableFunc(out, func(a, b *appsv1.ControllerRevision) int { return int(a.Revision - b.Revision) })
	return out
}

// cleanupHistory deletes the oldest revisions beyond revisionHistoryLimit that no pod runs.
func (d *daemonSync) cleanupHistory() {
	toKill := len(d.old) - int(*d.ds.Spec.RevisionHistoryLimit)
	if toKill <= 0 {
		return
	}
	live := map[string]bool{}
	for _, pod := range d.p.podsOf(d.ds.UID) {
		live[pod.Labels[LabelDaemonSetHash]] = true
	}
	for _, rev := range d.old {
		if toKill <= 0 {
			break
		}
		if live[rev.Labels[LabelDaemonSetHash]] {
			continue
		}
		d.p.deleteObject(rev)
		toKill--
	}
}

// requeue asks for a plan when a ready pod becomes available.
func (d *daemonSync) requeue() {
	if d.ds.Spec.MinReadySeconds == 0 {
		return
	}
	for _, pods := range d.byNode {
		for _, pod := range pods {
			if at, ok := availableAt(pod, d.ds.Spec.MinReadySeconds); ok && at.After(d.p.now) {
				d.p.after(at.Sub(d.p.now))
			}
		}
	}
}

// daemonSetWithStatus computes a DaemonSet's status from the nodes and its pods, as
// Kubernetes' updateDaemonSetStatus: for each node that should run the pod, whether it has
// one and whether the oldest is ready, available and at the current revision; pods on nodes
// that should not run them are misscheduled. ready reports node liveness (nil: every node
// with a Node object is ready).
func daemonSetWithStatus(s *state.State, now time.Time, obj *appsv1.DaemonSet, ready func(string) bool) *appsv1.DaemonSet {
	out := obj.DeepCopy()
	ds := withDaemonSetDefaults(obj)
	st := appsv1.DaemonSetStatus{ObservedGeneration: obj.Generation}
	hash := ""
	data := revisionData(&ds.Spec.Template)
	for _, rev := range daemonRevisions(s, ds.UID, nil) {
		if bytes.Equal(rev.Data.Raw, data) {
			hash = rev.Labels[LabelDaemonSetHash]
		}
	}
	if hash == "" && obj.Generation > 0 {
		st.ObservedGeneration = obj.Generation - 1 // the controller has not seen this template yet
	}
	byNode := map[string][]*corev1.Pod{}
	for _, pod := range podsControlledBy(s, ds.UID) {
		if pod.DeletionTimestamp != nil && isTerminal(pod) {
			continue
		}
		byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], pod)
	}
	tols := daemonTolerations(&ds.Spec.Template.Spec)
	for _, node := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		run, _ := daemonShouldRun(&ds.Spec.Template.Spec, tols, node, ready == nil || ready(node.Name))
		pods := byNode[node.Name]
		if !run {
			if len(pods) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(pods) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		sortPodsByCreation(pods)
		pod := pods[0]
		if isPodReady(pod) {
			st.NumberReady++
			if isPodAvailable(pod, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			}
		}
		if hash != "" && pod.Labels[LabelDaemonSetHash] == hash {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	out.Status = st
	return out
}
