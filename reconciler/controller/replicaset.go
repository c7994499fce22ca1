package controller

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// burstReplicas caps the pods one ReplicaSet creates or deletes in one plan (Kubernetes'
// default).
const burstReplicas = 500

// replicaSource is a ReplicaSet or a ReplicationController: what the replica controller
// needs of either.
type replicaSource struct {
	obj        manifest.Object
	apiVersion string
	kind       string
	replicas   int32
	minReady   int32
	selector   labels.Selector
	template   *corev1.PodTemplateSpec
}

// sourceOfRS returns the replica source of a ReplicaSet; ok is false for one whose selector
// is invalid or does not select its own template's pods (validation reports those).
func (p *planner) sourceOfRS(rs *appsv1.ReplicaSet) (replicaSource, bool) {
	sel, ok := p.selector(rs)
	if !ok || !sel.Matches(labels.Set(rs.Spec.Template.Labels)) {
		return replicaSource{}, false
	}
	return replicaSource{
		obj: rs, apiVersion: "apps/v1", kind: "ReplicaSet", replicas: replicasOf(rs.Spec.Replicas),
		minReady: rs.Spec.MinReadySeconds, selector: sel, template: &rs.Spec.Template,
	}, true
}

// sourceOfRC returns the replica source of a ReplicationController; an empty selector
// defaults to the template's labels, as the API server does.
func sourceOfRC(rc *corev1.ReplicationController) (replicaSource, bool) {
	if rc.Spec.Template == nil {
		return replicaSource{}, false
	}
	set := rc.Spec.Selector
	if len(set) == 0 {
		set = rc.Spec.Template.Labels
	}
	sel := labels.SelectorFromValidatedSet(set)
	if len(set) == 0 || !sel.Matches(labels.Set(rc.Spec.Template.Labels)) {
		return replicaSource{}, false
	}
	return replicaSource{
		obj: rc, apiVersion: "v1", kind: "ReplicationController", replicas: replicasOf(rc.Spec.Replicas),
		minReady: rc.Spec.MinReadySeconds, selector: sel, template: rc.Spec.Template,
	}, true
}

func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// replicaSets runs the replica controller over every ReplicaSet (from git, then the ones
// Deployments made) and every ReplicationController.
func (p *planner) replicaSets() {
	for _, rs := range state.Typed[*appsv1.ReplicaSet](p.s.Git.List("ReplicaSet", "")) {
		if src, ok := p.sourceOfRS(rs); ok {
			p.manageReplicas(src)
		}
	}
	keys := make([]state.Key, 0, len(p.rss))
	for k, rs := range p.rss {
		if rs != nil {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	for _, k := range keys {
		if src, ok := p.sourceOfRS(p.rss[k]); ok {
			p.manageReplicas(src)
		}
	}
	for _, rc := range state.Typed[*corev1.ReplicationController](p.s.Git.List("ReplicationController", "")) {
		if src, ok := sourceOfRC(rc); ok {
			p.manageReplicas(src)
		}
	}
}

// manageReplicas keeps exactly src.replicas active pods, as Kubernetes' manageReplicas. The
// pods are the ones it controls (skiff makes every pod it counts, so it adopts none); a pod
// whose labels stopped matching the selector (the selector changed in git) is deleted,
// where Kubernetes would orphan it: nothing else would ever manage it.
func (p *planner) manageReplicas(src replicaSource) {
	var active []*corev1.Pod
	for _, pod := range p.podsOf(src.obj.GetUID()) {
		if pod.DeletionTimestamp != nil {
			continue
		}
		if !src.selector.Matches(labels.Set(pod.Labels)) {
			if p.deletePod(pod, false) {
				p.event(src.obj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: "+pod.Name)
			}
			continue
		}
		if isPodActive(pod) {
			active = append(active, pod)
		}
	}
	diff := len(active) - int(src.replicas)
	switch {
	case diff < 0:
		for range min(-diff, burstReplicas) {
			pod := p.podFromTemplate(src)
			p.addPod(pod)
			p.event(src.obj, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: "+pod.Name)
		}
	case diff > 0:
		for _, pod := range p.podsToDelete(src, active, min(diff, burstReplicas)) {
			if p.deletePod(pod, false) {
				p.event(src.obj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: "+pod.Name)
			}
		}
	}
}

// podFromTemplate makes a pod for src (Kubernetes' GetPodFromTemplate plus the API server's
// name generation), not yet placed.
func (p *planner) podFromTemplate(src replicaSource) *corev1.Pod {
	t := src.template
	ns := src.obj.GetNamespace()
	prefix := src.obj.GetName() + "-"
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.generateName(ns, prefix), GenerateName: prefix, Namespace: ns,
			UID: p.newUID(), CreationTimestamp: p.stamp,
			Labels: maps.Clone(t.Labels), Annotations: maps.Clone(t.Annotations),
			OwnerReferences: []metav1.OwnerReference{controllerRef(src.obj, src.apiVersion, src.kind)},
		},
		Spec:   *t.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	manifest.SetDefaults(pod) // pod-only defaults the template did not get (enableServiceLinks, ...)
	pin(pod)
	return pod
}

// podsToDelete picks n pods to delete as Kubernetes' getPodsToDelete: ranked by how many
// related pods (of the same owner's ReplicaSets) share their node, then sorted so the least
// valuable go first.
func (p *planner) podsToDelete(src replicaSource, active []*corev1.Pod, n int) []*corev1.Pod {
	if n >= len(active) {
		return active
	}
	related := active
	if owner := controllerUID(src.obj); owner != "" {
		related = nil
		for _, rs := range p.replicaSetsOf(owner) {
			related = append(related, p.podsOf(rs.UID)...)
		}
	}
	onNode := map[string]int{}
	for _, pod := range related {
		if isPodActive(pod) {
			onNode[pod.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(active))
	for i, pod := range active {
		ranked[i] = rankedPod{pod: pod, rank: onNode[pod.Spec.NodeName]}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return deleteFirst(ranked[i], ranked[j]) })
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = ranked[i].pod
	}
	return out
}

type rankedPod struct {
	pod  *corev1.Pod
	rank int
}

var podPhaseOrdinal = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

// deleteFirst orders pods for scale-down as Kubernetes' ActivePodsWithRanks: unassigned <
// assigned; Pending < Unknown < Running; not ready < ready; lower pod-deletion-cost first;
// doubled up (higher rank) first; ready for less time first; more restarts first; newer
// first. Kubernetes compares times in logarithmic buckets and then by UID hash; skiff
// compares them exactly and then by name, so the choice is deterministic.
func deleteFirst(a, b rankedPod) bool {
	pa, pb := a.pod, b.pod
	if pa.Spec.NodeName != pb.Spec.NodeName && (pa.Spec.NodeName == "" || pb.Spec.NodeName == "") {
		return pa.Spec.NodeName == ""
	}
	if oa, ob := podPhaseOrdinal[pa.Status.Phase], podPhaseOrdinal[pb.Status.Phase]; oa != ob {
		return oa < ob
	}
	if ra, rb := isPodReady(pa), isPodReady(pb); ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(pa), deletionCost(pb); ca != cb {
		return ca < cb
	}
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	if isPodReady(pa) && isPodReady(pb) {
		if ta, tb := podReadyTime(pa), podReadyTime(pb); !ta.Equal(tb) {
			return afterOrZero(ta, tb)
		}
	}
	if ra, rb := maxRestarts(pa), maxRestarts(pb); ra != rb {
		if ra[0] != rb[0] {
			return ra[0] > rb[0]
		}
		return ra[1] > rb[1]
	}
	if ta, tb := pa.CreationTimestamp.Time, pb.CreationTimestamp.Time; !ta.Equal(tb) {
		return afterOrZero(ta, tb)
	}
	return pa.Name < pb.Name
}

// afterOrZero: a zero time sorts first, then the later one.
func afterOrZero(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b)
}

func deletionCost(pod *corev1.Pod) int64 {
	v, err := strconv.ParseInt(pod.Annotations[corev1.PodDeletionCost], 10, 32)
	if err != nil {
		return 0
	}
	return v
}

// maxRestarts is the highest restart count of the pod's containers, then of its sidecars.
func maxRestarts(pod *corev1.Pod) [2]int32 {
	var out [2]int32
	for _, c := range pod.Status.ContainerStatuses {
		out[0] = max(out[0], c.RestartCount)
	}
	for _, c := range pod.Status.InitContainerStatuses {
		if slices.ContainsFunc(pod.Spec.InitContainers, func(ic corev1.Container) bool {
			return ic.Name == c.Name && ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}) {
			out[1] = max(out[1], c.RestartCount)
		}
	}
	return out
}
