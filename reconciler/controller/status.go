package controller

import (
	"fmt"
	"math"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// Reasons of Deployment conditions, as Kubernetes' deployment util.
const (
	reasonMinimumReplicasAvailable   = "MinimumReplicasAvailable"
	reasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	reasonNewRSAvailable             = "NewReplicaSetAvailable"
	reasonReplicaSetUpdated          = "ReplicaSetUpdated"
	reasonTimedOut                   = "ProgressDeadlineExceeded"
	reasonPaused                     = "DeploymentPaused"
)

// WithStatus returns a copy of a Deployment, ReplicaSet, ReplicationController, StatefulSet
// or DaemonSet with its .status computed from the pods (and nodes) in s at now, the way their
// Kubernetes controllers would have written it (skiff never writes status to the log: it
// follows from the pods; a StatefulSet's revisions come from its record; a DaemonSet counts
// every node as ready: liveness is not in the state), a Job with the status its controller
// keeps on the cluster Job that runs it (see job.go) and the active, ready and terminating
// pods counted, a CronJob with its record's schedule times and its active Jobs, and a
// PersistentVolumeClaim or PersistentVolume from git with the binding and phase the binder
// keeps on its cluster copy. Other objects are returned as they are.
//
// Deployment conditions are estimated from timestamps in the state: Progressing times out
// (ProgressDeadlineExceeded) when progressDeadlineSeconds passed since the last sign of
// progress (the new ReplicaSet made, a new pod made, a pod becoming ready or available, an
// old pod deleted), and is True/NewReplicaSetAvailable whenever the rollout is complete.
func WithStatus(s *state.State, now time.Time, o manifest.Object) manifest.Object {
	switch o := o.(type) {
	case *appsv1.Deployment:
		return deploymentWithStatus(s, now, o)
	case *appsv1.ReplicaSet:
		c := o.DeepCopy()
		n := rsCounts(podsControlledBy(s, o.UID), o, now)
		c.Status = appsv1.ReplicaSetStatus{
			Replicas: n.replicas, FullyLabeledReplicas: n.fullyLabeled, ReadyReplicas: n.ready,
			AvailableReplicas: n.available, ObservedGeneration: o.Generation,
			TerminatingReplicas: ptrTo(n.terminating),
		}
		return c
	case *corev1.ReplicationController:
		c := o.DeepCopy()
		src, ok := sourceOfRC(o)
		if !ok {
			return c
		}
		n := countReplicas(podsControlledBy(s, o.UID), selectorMatch(src.selector), src.template.Labels, src.minReady, now)
		c.Status = corev1.ReplicationControllerStatus{
			Replicas: n.replicas, FullyLabeledReplicas: n.fullyLabeled, ReadyReplicas: n.ready,
			AvailableReplicas: n.available, ObservedGeneration: o.Generation,
		}
		return c
	case *appsv1.StatefulSet:
		return statefulSetWithStatus(s, now, o)
	case *appsv1.DaemonSet:
		return daemonSetWithStatus(s, now, o, nil)
	case *batchv1.Job:
		return jobWithStatus(s, o)
	case *batchv1.CronJob:
		return cronJobWithStatus(s, o)
	case *corev1.PersistentVolumeClaim:
		return claimWithStatus(s, o)
	case *corev1.PersistentVolume:
		return volumeWithStatus(s, o)
	}
	return o
}

// rsCounts counts a ReplicaSet's pods.
func rsCounts(pods []*corev1.Pod, rs *appsv1.ReplicaSet, now time.Time) replicaCounts {
	sel, ok := parseSelector(rs.Spec.Selector)
	if !ok {
		return replicaCounts{}
	}
	return countReplicas(pods, selectorMatch(sel), rs.Spec.Template.Labels, rs.Spec.MinReadySeconds, now)
}

func selectorMatch(sel labels.Selector) func(*corev1.Pod) bool {
	return func(pod *corev1.Pod) bool { return sel.Matches(labels.Set(pod.Labels)) }
}

// podsControlledBy lists the cluster pods whose controller is owner.
func podsControlledBy(s *state.State, owner types.UID) []*corev1.Pod {
	var out []*corev1.Pod
	for _, pod := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
		if controllerUID(pod) == owner {
			out = append(out, pod)
		}
	}
	return out
}

// calculateStatus is Kubernetes' calculateStatus without the conditions.
func calculateStatus(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, counts func(*appsv1.ReplicaSet) replicaCounts) appsv1.DeploymentStatus {
	var st appsv1.DeploymentStatus
	var terminating int32
	for _, rs := range all {
		if rs == nil {
			continue
		}
		n := counts(rs)
		st.Replicas += n.replicas
		st.ReadyReplicas += n.ready
		st.AvailableReplicas += n.available
		terminating += n.terminating
		if newRS != nil && rs.UID == newRS.UID {
			st.UpdatedReplicas = n.replicas
		}
	}
	st.UnavailableReplicas = max(specReplicas(all)-st.AvailableReplicas, 0)
	st.TerminatingReplicas = &terminating
	st.ObservedGeneration = d.Generation
	return st
}

func deploymentWithStatus(s *state.State, now time.Time, obj *appsv1.Deployment) *appsv1.Deployment {
	out := obj.DeepCopy()
	d := withDeploymentDefaults(obj)
	var rss []*appsv1.ReplicaSet
	pods := map[types.UID][]*corev1.Pod{}
	for _, rs := range state.Typed[*appsv1.ReplicaSet](s.Cluster.List("ReplicaSet", d.Namespace)) {
		if controllerUID(rs) == d.UID {
			rss = append(rss, rs)
			pods[rs.UID] = nil
		}
	}
	for _, pod := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", d.Namespace)) {
		if uid := controllerUID(pod); uid != "" {
			if _, ok := pods[uid]; ok {
				pods[uid] = append(pods[uid], pod)
			}
		}
	}
	counted := map[types.UID]replicaCounts{}
	counts := func(rs *appsv1.ReplicaSet) replicaCounts {
		if n, ok := counted[rs.UID]; ok {
			return n
		}
		n := rsCounts(pods[rs.UID], rs, now)
		counted[rs.UID] = n
		return n
	}
	newRS := findNewReplicaSet(d, rss)
	st := calculateStatus(d, rss, newRS, counts)
	if !observed(d, newRS, rss) && d.Generation > 0 {
		st.ObservedGeneration = d.Generation - 1
	}
	if newRS != nil {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[AnnotationRevision] = newRS.Annotations[AnnotationRevision]
	}
	progress := progressTime(d, newRS, rss, pods, now)

	minAvailable := *d.Spec.Replicas - maxUnavailable(d)
	avail := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable}
	if st.AvailableReplicas >= minAvailable {
		avail.Status, avail.Reason, avail.Message = corev1.ConditionTrue, reasonMinimumReplicasAvailable, "Deployment has minimum availability."
		avail.LastTransitionTime = metav1.NewTime(availableSince(d, rss, pods, minAvailable, now))
	} else {
		avail.Status, avail.Reason, avail.Message = corev1.ConditionFalse, reasonMinimumReplicasUnavailable, "Deployment does not have minimum availability."
		avail.LastTransitionTime = metav1.NewTime(progress)
	}
	avail.LastUpdateTime = avail.LastTransitionTime
	st.Conditions = append(st.Conditions, avail)

	if c, ok := progressing(d, newRS, &st, progress, now); ok {
		st.Conditions = append(st.Conditions, c)
	}
	out.Status = st
	return out
}

// observed reports whether the controller has acted on the Deployment's current spec: its
// new ReplicaSet exists (or a Recreate is waiting for the old pods to go, or it is paused)
// and the active ReplicaSets were sized for spec.replicas.
func observed(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, rss []*appsv1.ReplicaSet) bool {
	waiting := d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType && specReplicas(rss) == 0
	if newRS == nil && !d.Spec.Paused && !waiting {
		return false
	}
	for _, rs := range filterActive(rss) {
		if desired, ok := intAnnotation(rs, AnnotationDesiredReplicas); ok && desired != *d.Spec.Replicas {
			return false
		}
	}
	return true
}

// progressing computes the Progressing condition (none without a progress deadline).
func progressing(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, st *appsv1.DeploymentStatus, progress, now time.Time) (appsv1.DeploymentCondition, bool) {
	if *d.Spec.ProgressDeadlineSeconds == math.MaxInt32 {
		return appsv1.DeploymentCondition{}, false
	}
	c := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, LastUpdateTime: metav1.NewTime(progress)}
	name := fmt.Sprintf("Deployment %q", d.Name)
	if newRS != nil {
		name = fmt.Sprintf("ReplicaSet %q", newRS.Name)
	}
	deadline := progress.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	switch {
	case d.Spec.Paused:
		c.Status, c.Reason, c.Message = corev1.ConditionUnknown, reasonPaused, "Deployment is paused"
	case deploymentComplete(d, st):
		c.Status, c.Reason, c.Message = corev1.ConditionTrue, reasonNewRSAvailable, name+" has successfully progressed."
	case now.After(deadline):
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, reasonTimedOut, name+" has timed out progressing."
		c.LastUpdateTime = metav1.NewTime(deadline)
	default:
		c.Status, c.Reason, c.Message = corev1.ConditionTrue, reasonReplicaSetUpdated, name+" is progressing."
	}
	c.LastTransitionTime = c.LastUpdateTime
	return c, true
}

// progressTime is the latest sign of progress of a rollout: the new ReplicaSet made, a pod
// of it made, any pod becoming ready or available, a pod of an old ReplicaSet deleted.
func progressTime(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, rss []*appsv1.ReplicaSet, pods map[types.UID][]*corev1.Pod, now time.Time) time.Time {
	t := d.CreationTimestamp.Time
	seen := func(at time.Time) {
		if at.After(t) && !at.After(now) {
			t = at
		}
	}
	if newRS != nil {
		seen(newRS.CreationTimestamp.Time)
	}
	for _, rs := range rss {
		isNew := newRS != nil && rs.UID == newRS.UID
		for _, pod := range pods[rs.UID] {
			if isNew {
				seen(pod.CreationTimestamp.Time)
			} else if pod.DeletionTimestamp != nil {
				seen(pod.DeletionTimestamp.Time)
			}
			if at, ok := availableAt(pod, rs.Spec.MinReadySeconds); ok {
				seen(podReadyTime(pod))
				seen(at)
			}
		}
	}
	return t
}

// availableSince estimates when the Deployment reached minimum availability: when the
// minAvailable-th of its available pods became available.
func availableSince(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, pods map[types.UID][]*corev1.Pod, minAvailable int32, now time.Time) time.Time {
	var times []time.Time
	for _, rs := range rss {
		for _, pod := range pods[rs.UID] {
			if isPodActive(pod) && isPodAvailable(pod, rs.Spec.MinReadySeconds, now) {
				at, _ := availableAt(pod, rs.Spec.MinReadySeconds)
				times = append(times, at)
			}
		}
	}
	if minAvailable <= 0 || int(minAvailable) > len(times) {
		return d.CreationTimestamp.Time
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	return times[minAvailable-1]
}
