package controller

import (
	"fmt"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// evict deletes the pods that cannot stay where they are: pods on a node whose Node object
// is gone (Kubernetes' pod GC; removed at once, nothing will ever confirm), and pods on a
// node tainted NoExecute for longer than they tolerate (Kubernetes' taint eviction). A node
// that is not Ready carries the implicit taint node.kubernetes.io/unreachable:NoExecute
// from the moment NodeNotReadySince reports; a pod tolerates it for its own
// tolerationSeconds, else for the default toleration. Pods on an unreachable node are
// removed with Force (the node cannot confirm, and removes them itself when it comes back
// and no longer finds them placed on it), so their controllers replace them in this plan —
// except a pod whose volume lives on that node (heldByVolume): it stays until the node
// comes back or is removed.
func (p *planner) evict() {
	for _, k := range p.podKeys {
		pod := p.pods[k]
		if pod == nil || pod.Spec.NodeName == "" {
			continue
		}
		node, ok := p.nodes[pod.Spec.NodeName]
		if !ok {
			if p.deletePod(pod, true) {
				p.event(pod, corev1.EventTypeWarning, "NodeLost",
					fmt.Sprintf("Node %s is gone: deleting pod %s/%s", pod.Spec.NodeName, pod.Namespace, pod.Name))
			}
			continue
		}
		if !p.ready(node.Name) {
			p.markNotReady(pod, node.Name)
		}
		for _, t := range p.noExecuteTaints(node) {
			d, forever := tolerationTime(pod.Spec.Tolerations, &t.Taint, t.dflt)
			if forever {
				continue
			}
			at := t.since.Add(d)
			if p.now.Before(at) {
				p.after(at.Sub(p.now))
				continue
			}
			if t.Key == corev1.TaintNodeUnreachable && p.heldByVolume(pod) {
				break
			}
			if p.deletePod(pod, t.Key == corev1.TaintNodeUnreachable) {
				p.event(pod, corev1.EventTypeNormal, "TaintManagerEviction",
					fmt.Sprintf("Marking for deletion Pod %s/%s", pod.Namespace, pod.Name))
			}
			break
		}
	}
}

// ReasonNodeNotReady marks a pod's Ready condition set False by the leader because its
// node stopped answering (Kubernetes' MarkPodsNotReady): its endpoints leave Services at
// once, everywhere. The node re-reports its own view when it answers again.
const ReasonNodeNotReady = "NodeNotReady"

// markNotReady sets a Ready pod's Ready and ContainersReady conditions False.
func (p *planner) markNotReady(pod *corev1.Pod, node string) {
	if !isPodReady(pod) {
		return
	}
	st := *pod.Status.DeepCopy()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			c.Status, c.Reason = corev1.ConditionFalse, ReasonNodeNotReady
			c.Message = fmt.Sprintf("node %s is not ready", node)
			c.LastTransitionTime = p.stamp
		}
	}
	np := pod.DeepCopy()
	np.Status = st
	k := state.KeyOf(pod)
	p.pods[k] = np
	p.status[k] = state.PodStatus{Key: k, UID: pod.UID, Status: st}
}

type timedTaint struct {
	corev1.Taint
	since time.Time
	dflt  time.Duration // toleration when the pod has none matching; <0: none, evict now
}

// noExecuteTaints returns a node's NoExecute taints with the time each was added: the
// implicit unreachable taint of a NotReady node first, then the node's own.
func (p *planner) noExecuteTaints(node *corev1.Node) []timedTaint {
	var out []timedTaint
	if !p.ready(node.Name) && p.in.NodeNotReadySince != nil {
		if since, ok := p.in.NodeNotReadySince(node.Name); ok {
			out = append(out, timedTaint{
				Taint: corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute},
				since: since, dflt: p.tol,
			})
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tt := timedTaint{Taint: t, since: p.now, dflt: -1}
		if t.TimeAdded != nil {
			tt.since = t.TimeAdded.Time
		}
		out = append(out, tt)
	}
	return out
}

// tolerationTime returns how long a pod tolerates a taint: the smallest tolerationSeconds
// among its matching tolerations (as Kubernetes' getMinTolerationTime), for ever when one
// matches without tolerationSeconds, dflt when none matches (dflt < 0: not at all).
func tolerationTime(tols []corev1.Toleration, taint *corev1.Taint, dflt time.Duration) (time.Duration, bool) {
	matched, min := false, time.Duration(-1)
	for i := range tols {
		if !toleratesTaint(&tols[i], taint) {
			continue
		}
		matched = true
		if s := tols[i].TolerationSeconds; s != nil {
			d := time.Duration(max(*s, 0)) * time.Second
			if min < 0 || d < min {
				min = d
			}
		}
	}
	switch {
	case !matched && dflt < 0:
		return 0, false
	case !matched:
		return dflt, false
	case min < 0:
		return 0, true
	}
	return min, false
}

// collectGarbage deletes what lost its owner, as Kubernetes' garbage collector does in the
// background: a cluster object whose owners (by UID) all no longer exist, and a cluster pod
// made from a git Pod that left git (or was replaced there by a new object of the same
// name). Objects without an owner reference or the git annotation are never touched: skiff
// deletes only what it made. Every kind skiff stores (manifest.Resources) is collected.
func (p *planner) collectGarbage() {
	var owned []manifest.Object // objects other than pods with owners
	for _, r := range manifest.Resources {
		if r.Kind == "Pod" {
			continue
		}
		for _, o := range p.s.Cluster.List(r.Kind, "") {
			if len(o.GetOwnerReferences()) > 0 {
				owned = append(owned, o)
			}
		}
	}
	gone := map[types.UID]bool{}
	for changed := true; changed; { // owners of owners: until nothing more goes
		changed = false
		for _, o := range owned {
			if !gone[o.GetUID()] && p.ownersGone(o) {
				p.deleteObject(o)
				gone[o.GetUID()] = true
				changed = true
			}
		}
	}
	for _, k := range p.podKeys {
		pod := p.pods[k]
		if pod == nil {
			continue
		}
		if p.ownersGone(pod) {
			p.deletePod(pod, false)
			continue
		}
		if uid, ok := pod.Annotations[AnnotationGitUID]; ok {
			if g, inGit := p.s.Git.Get(k); !inGit || string(g.GetUID()) != uid {
				p.deletePod(pod, false)
			}
		}
	}
}

// ownersGone reports whether o has owners and none of them exists any more.
func (p *planner) ownersGone(o metav1.Object) bool {
	refs := o.GetOwnerReferences()
	for _, r := range refs {
		if p.exists(o.GetNamespace(), r) {
			return false
		}
	}
	return len(refs) > 0
}

// barePods keeps one cluster pod per Pod in git, with the same name: a copy of the git
// object's metadata and spec. Pods are immutable, so a changed spec replaces the pod: the
// old one is deleted and, once its node has removed it, a new one (new UID) is made. Labels
// and annotations are updated in place.
func (p *planner) barePods() {
	for _, gp := range state.Typed[*corev1.Pod](p.s.Git.List("Pod", "")) {
		k := state.KeyOf(gp)
		want := barePod(gp)
		cur := p.pods[k]
		switch {
		case cur == nil:
			want.UID = p.newUID()
			p.addPod(want)
		case cur.Annotations[AnnotationGitUID] == "":
			continue // a pod of the same name that is not this git Pod's: leave it
		case cur.DeletionTimestamp != nil:
			continue // the old pod is still stopping
		case cur.Annotations[AnnotationGitUID] != want.Annotations[AnnotationGitUID] ||
			cur.Annotations[AnnotationSpecHash] != want.Annotations[AnnotationSpecHash]:
			p.deletePod(cur, false)
			if p.pods[k] == nil { // it was not placed: gone already, replace it now
				want.UID = p.newUID()
				p.addPod(want)
			}
		case !maps.Equal(cur.Labels, want.Labels) || !maps.Equal(cur.Annotations, want.Annotations):
			c := cur.DeepCopy()
			c.Labels, c.Annotations = want.Labels, want.Annotations
			p.setPod(c)
		}
	}
}

// barePod returns the cluster pod for a git Pod (no UID yet).
func barePod(gp *corev1.Pod) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: gp.Name, Namespace: gp.Namespace,
			Labels: maps.Clone(gp.Labels), Annotations: maps.Clone(gp.Annotations),
		},
		Spec:   *gp.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationGitUID] = string(gp.UID)
	pod.Annotations[AnnotationSpecHash] = specHash(&gp.Spec)
	pin(pod)
	return pod
}

// pin moves a requested spec.nodeName to AnnotationNodeName: the pod is placed by the
// scheduler, which honours the request.
func pin(pod *corev1.Pod) {
	if pod.Spec.NodeName == "" {
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationNodeName] = pod.Spec.NodeName
	pod.Spec.NodeName = ""
}

// schedule places every unplaced pod, oldest first and then the ones this plan made, in the
// order it made them. A pod that fits nowhere stays unplaced with PodScheduled=False
// (Unschedulable) and a message saying why; it is tried again on every plan.
func (p *planner) schedule() {
	var order []state.Key
	var waiting []*corev1.Pod
	for _, k := range p.podKeys {
		if pod := p.pods[k]; pod != nil && pod.Spec.NodeName == "" && !p.isCreated(k) {
			waiting = append(waiting, pod)
		}
	}
	sortPodsByCreation(waiting)
	for _, pod := range waiting {
		order = append(order, state.KeyOf(pod))
	}
	order = append(order, p.created...)
	for _, k := range order {
		pod := p.pods[k]
		if pod == nil || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
			continue
		}
		node, err := p.placePod(pod)
		if err == nil {
			c := pod.DeepCopy()
			c.Spec.NodeName = node
			c.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: p.stamp,
			}}}
			p.scheduler().Assume(c)
			p.setPod(c)
			p.bindPodClaims(c, node)
			p.event(c, corev1.EventTypeNormal, "Scheduled",
				fmt.Sprintf("Successfully assigned %s/%s to %s", c.Namespace, c.Name, node))
			continue
		}
		msg := err.Error()
		cond := podCondition(pod, corev1.PodScheduled)
		if cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable &&
			cond.Message == msg {
			continue
		}
		c := pod.DeepCopy()
		c.Status.Phase = corev1.PodPending
		setPodCondition(&c.Status, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: p.stamp,
		})
		p.setPod(c)
		p.event(c, corev1.EventTypeWarning, "FailedScheduling", msg)
	}
}

func (p *planner) isCreated(k state.Key) bool {
	o, ok := p.put[k]
	return ok && p.orig(k) == nil && o != nil
}

// Pod helpers, as Kubernetes' podutil.

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// setPodCondition sets a condition, keeping its transition time when the status is the same.
func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type != c.Type {
			continue
		}
		if st.Conditions[i].Status == c.Status {
			c.LastTransitionTime = st.Conditions[i].LastTransitionTime
		}
		st.Conditions[i] = c
		return
	}
	st.Conditions = append(st.Conditions, c)
}

func isPodReady(pod *corev1.Pod) bool {
	c := podCondition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// podReadyTime returns when a ready pod became ready (zero when not ready).
func podReadyTime(pod *corev1.Pod) time.Time {
	if c := podCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

// isPodActive: neither terminating nor finished.
func isPodActive(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded &&
		pod.Status.Phase != corev1.PodFailed
}

// availableAt returns when a ready pod becomes available: minReadySeconds after it became
// ready. ok is false for a pod that is not ready.
func availableAt(pod *corev1.Pod, minReady int32) (time.Time, bool) {
	c := podCondition(pod, corev1.PodReady)
	if c == nil || c.Status != corev1.ConditionTrue {
		return time.Time{}, false
	}
	return c.LastTransitionTime.Add(time.Duration(minReady) * time.Second), true
}

func isPodAvailable(pod *corev1.Pod, minReady int32, now time.Time) bool {
	at, ok := availableAt(pod, minReady)
	return ok && (minReady == 0 || !at.After(now))
}

// replicaCounts is a ReplicaSet's status as counted from its pods.
type replicaCounts struct {
	replicas, fullyLabeled, ready, available, terminating int32
	next                                                  time.Time // earliest future availability
}

// countReplicas counts the pods of a ReplicaSet or ReplicationController as Kubernetes'
// calculateStatus does: active pods, those fully labeled, ready and available.
func countReplicas(pods []*corev1.Pod, matches func(*corev1.Pod) bool, tmplLabels map[string]string, minReady int32, now time.Time) replicaCounts {
	var c replicaCounts
	for _, pod := range pods {
		if !matches(pod) {
			continue
		}
		if pod.DeletionTimestamp != nil {
			c.terminating++
			continue
		}
		if !isPodActive(pod) {
			continue
		}
		c.replicas++
		if hasLabels(pod.Labels, tmplLabels) {
			c.fullyLabeled++
		}
		if !isPodReady(pod) {
			continue
		}
		c.ready++
		if isPodAvailable(pod, minReady, now) {
			c.available++
		} else if at, _ := availableAt(pod, minReady); c.next.IsZero() || at.Before(c.next) {
			c.next = at
		}
	}
	return c
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// owned is an object with metadata, for sorting.
type owned interface {
	GetCreationTimestamp() metav1.Time
	GetName() string
}

// byCreation orders objects oldest first, then by name (Kubernetes' ...ByCreationTimestamp).
func byCreation[T owned](a, b T) int {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		if ta.Before(&tb) {
			return -1
		}
		return 1
	}
	switch {
	case a.GetName() < b.GetName():
		return -1
	case a.GetName() > b.GetName():
		return 1
	}
	return 0
}

func sortPodsByCreation(pods []*corev1.Pod) { slices.SortStableFunc(pods, byCreation[*corev1.Pod]) }

func sortByCreation(rss []*appsv1.ReplicaSet) {
	slices.SortStableFunc(rss, byCreation[*appsv1.ReplicaSet])
}
