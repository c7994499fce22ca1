package controller

import (
	"bytes"
	"encoding/json"
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

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// The StatefulSet controller, as Kubernetes' pkg/controller/statefulset: pods NAME-0..N-1
// with their ordinal's claims (one per volumeClaimTemplate, CLAIM-NAME-ORDINAL), hostname
// the pod's name and subdomain spec.serviceName; OrderedReady makes them one at a time in
// ordinal order, each Running and Ready (and available for minReadySeconds) before the
// next, and removes them one at a time from the highest ordinal, each gone before the next;
// Parallel does both at once. A pod that failed is deleted and made again under its name.
// RollingUpdate replaces the pods from the highest ordinal down to the partition, one at a
// time, each Ready before the next; OnDelete replaces none (a pod deleted comes back at the
// update revision).
//
// Revisions are ControllerRevisions named NAME-HASH, owned by the StatefulSet and kept up to
// revisionHistoryLimit besides the live ones; a pod's controller-revision-hash label names
// its revision. What Kubernetes keeps in the StatefulSet's status and cannot be computed
// from the pods (currentRevision, updateRevision, collisionCount) skiff keeps in a cluster
// StatefulSet of the same name (the "record", annotated with the git object's UID), written
// only when they change. Claims are retained on scale-down and deletion unless
// persistentVolumeClaimRetentionPolicy says Delete.
//
// Where skiff differs: currentRevision becomes the update revision once every pod is updated
// and ready for OnDelete too (Kubernetes only does so for RollingUpdate); a pod made at an
// ordinal below the partition gets the current revision even when rollingUpdate is not set.

// Labels Kubernetes puts on a StatefulSet's pods.
const (
	LabelPodName           = appsv1.StatefulSetPodNameLabel        // "statefulset.kubernetes.io/pod-name"
	LabelPodIndex          = appsv1.PodIndexLabel                  // "apps.kubernetes.io/pod-index"
	LabelControllerRevHash = appsv1.ControllerRevisionHashLabelKey // "controller-revision-hash"
)

// statefulSets runs the StatefulSet controller over every StatefulSet in git and drops the
// records of the ones that left git.
func (p *planner) statefulSets() {
	for _, set := range state.Typed[*appsv1.StatefulSet](p.s.Git.List("StatefulSet", "")) {
		p.syncStatefulSet(set)
	}
	for _, rec := range state.Typed[*appsv1.StatefulSet](p.s.Cluster.List("StatefulSet", "")) {
		if _, ok := p.s.Git.Get(state.KeyOf(rec)); !ok && rec.Annotations[AnnotationGitUID] != "" {
			p.deleteObject(rec)
		}
	}
}

// withStatefulSetDefaults returns set with the apps/v1 defaults applied (a shallow copy;
// nothing it shares is changed).
func withStatefulSetDefaults(set *appsv1.StatefulSet) *appsv1.StatefulSet {
	c := *set
	if c.Spec.Replicas == nil {
		c.Spec.Replicas = ptrTo[int32](1)
	}
	if c.Spec.PodManagementPolicy == "" {
		c.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if c.Spec.UpdateStrategy.Type == "" {
		c.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if c.Spec.RevisionHistoryLimit == nil {
		c.Spec.RevisionHistoryLimit = ptrTo[int32](10)
	}
	rp := appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	if c.Spec.PersistentVolumeClaimRetentionPolicy != nil {
		rp = *c.Spec.PersistentVolumeClaimRetentionPolicy
	}
	if rp.WhenDeleted == "" {
		rp.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if rp.WhenScaled == "" {
		rp.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	c.Spec.PersistentVolumeClaimRetentionPolicy = &rp
	return &c
}

// partition is the lowest ordinal RollingUpdate replaces (0 without one).
func partition(set *appsv1.StatefulSet) int {
	if ru := set.Spec.UpdateStrategy.RollingUpdate; set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
		ru != nil && ru.Partition != nil {
		return int(*ru.Partition)
	}
	return 0
}

// statefulSync is one StatefulSet's sync.
type statefulSync struct {
	p         *planner
	obj       *appsv1.StatefulSet // as in git: events name it
	set       *appsv1.StatefulSet // with defaults
	rec       *appsv1.StatefulSet // the record; nil before the first sync
	revs      []*appsv1.ControllerRevision
	current   *appsv1.ControllerRevision
	update    *appsv1.ControllerRevision
	collision int32
	minReady  int32
}

func (p *planner) syncStatefulSet(obj *appsv1.StatefulSet) {
	set := withStatefulSetDefaults(obj)
	sel, ok := parseSelector(set.Spec.Selector)
	if !ok || !sel.Matches(labels.Set(set.Spec.Template.Labels)) {
		return // validation reports it
	}
	ss := &statefulSync{p: p, obj: obj, set: set, minReady: set.Spec.MinReadySeconds}
	if o, ok := p.s.Cluster.Get(state.KeyOf(set)); ok {
		if rec, ok := o.(*appsv1.StatefulSet); ok && rec.Annotations[AnnotationGitUID] == string(set.UID) {
			ss.rec = rec
			if rec.Status.CollisionCount != nil {
				ss.collision = *rec.Status.CollisionCount
			}
		}
	}
	ss.revisions()

	n := int(*set.Spec.Replicas)
	replicas := make([]*corev1.Pod, n)
	var condemned []*corev1.Pod
	for _, pod := range p.podsOf(set.UID) {
		ord := ordinalOf(set, pod)
		if ord < 0 || !sel.Matches(labels.Set(pod.Labels)) {
			p.deletePod(pod, false) // not one of its pods any more: nothing else would manage it
			continue
		}
		if ord < n {
			replicas[ord] = pod
		} else {
			condemned = append(condemned, pod)
		}
	}
	slices.SortFunc(condemned, func(a, b *corev1.Pod) int { return ordinalOf(set, b) - ordinalOf(set, a) })

	if !ss.processReplicas(replicas) && !ss.processCondemned(replicas, condemned) {
		ss.rollingUpdate(replicas)
	}
	ss.claimsOnScaleDown()
	ss.syncClaimOwners()
	ss.writeRecord()
	ss.truncateHistory()
}

// ordinalOf parses a pod's ordinal from its name NAME-ORDINAL; -1 when it is not one of
// set's names.
func ordinalOf(set *appsv1.StatefulSet, pod *corev1.Pod) int {
	s, ok := strings.CutPrefix(pod.Name, set.Name+"-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return -1
	}
	ord, err := strconv.Atoi(s)
	if err != nil || ord < 0 || strconv.Itoa(ord) != s {
		return -1
	}
	return ord
}

// claimName is the claim of one volumeClaimTemplate for one ordinal.
func claimName(template string, set *appsv1.StatefulSet, ord int) string {
	return fmt.Sprintf("%s-%s-%d", template, set.Name, ord)
}

func (ss *statefulSync) event(typ, reason, format string, args ...any) {
	ss.p.event(ss.obj, typ, reason, fmt.Sprintf(format, args...))
}

// runningAndReady is Kubernetes' isRunningAndReady.
func runningAndReady(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodRunning && isPodReady(pod)
}

// available reports whether the pod is running, ready and has been for minReadySeconds;
// when it will be soon, it asks for a plan then.
func (ss *statefulSync) available(pod *corev1.Pod) bool {
	if !runningAndReady(pod) {
		return false
	}
	if isPodAvailable(pod, ss.minReady, ss.p.now) {
		return true
	}
	if at, ok := availableAt(pod, ss.minReady); ok {
		ss.p.after(at.Sub(ss.p.now))
	}
	return false
}

// healthy is Kubernetes' !isUnavailable: running, ready, available and not terminating.
func (ss *statefulSync) healthy(pod *corev1.Pod) bool {
	return pod != nil && pod.DeletionTimestamp == nil && ss.available(pod)
}

// processReplicas makes, replaces and waits for the pods of ordinals 0..replicas-1 as
// Kubernetes' processReplica. It reports whether OrderedReady must wait (blocked).
func (ss *statefulSync) processReplicas(replicas []*corev1.Pod) bool {
	p := ss.p
	monotonic := ss.set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	for ord, pod := range replicas {
		if pod != nil && (pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded) {
			if pod.DeletionTimestamp == nil && p.deletePod(pod, false) {
				ss.event(corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, ss.set.Name)
			}
			replicas[ord] = p.pods[state.KeyOf(pod)]
			if monotonic {
				return true // made again once it is gone
			}
			continue
		}
		if pod == nil {
			ss.ensureClaims(ord)
			pod = ss.newPod(ord)
			p.addPod(pod)
			replicas[ord] = pod
			ss.event(corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, ss.set.Name)
			if monotonic {
				return true
			}
			continue
		}
		if pod.Spec.NodeName == "" {
			ss.ensureClaims(ord) // a claim deleted under a pod still waiting is made again
		}
		if monotonic && (pod.DeletionTimestamp != nil || !ss.available(pod)) {
			return true
		}
	}
	return false
}

// processCondemned removes the pods of ordinals >= replicas, highest first: one at a time,
// each gone before the next, while every other pod is healthy (OrderedReady); all at once
// (Parallel). It reports whether it must wait.
func (ss *statefulSync) processCondemned(replicas, condemned []*corev1.Pod) bool {
	monotonic := ss.set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	var firstUnhealthy *corev1.Pod
	for _, pod := range replicas {
		if !ss.healthy(pod) {
			firstUnhealthy = pod
			break
		}
	}
	if firstUnhealthy == nil {
		for i := len(condemned) - 1; i >= 0; i-- {
			if !ss.healthy(condemned[i]) {
				firstUnhealthy = condemned[i]
				break
			}
		}
	}
	for _, pod := range condemned {
		if pod.DeletionTimestamp != nil {
			if monotonic {
				return true
			}
			continue
		}
		if monotonic && pod != firstUnhealthy && !ss.available(pod) {
			return true
		}
		if ss.p.deletePod(pod, false) {
			ss.event(corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, ss.set.Name)
		}
		if monotonic {
			return true
		}
	}
	return false
}

// rollingUpdate replaces the pods not at the update revision, from the highest ordinal down
// to the partition, one at a time, waiting for each replacement to be healthy.
func (ss *statefulSync) rollingUpdate(replicas []*corev1.Pod) {
	if ss.set.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		return
	}
	for target := len(replicas) - 1; target >= partition(ss.set); target-- {
		pod := replicas[target]
		if pod == nil {
			return
		}
		if pod.Labels[LabelControllerRevHash] != ss.update.Name && pod.DeletionTimestamp == nil {
			if ss.p.deletePod(pod, false) {
				ss.event(corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, ss.set.Name)
			}
			return
		}
		if !ss.healthy(pod) {
			return
		}
	}
}

// newPod makes the pod of an ordinal at its revision (Kubernetes' newVersionedStatefulSetPod):
// the current revision below the partition, the update revision from it on.
func (ss *statefulSync) newPod(ord int) *corev1.Pod {
	rev := ss.update
	if ss.set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && ord < partition(ss.set) {
		rev = ss.current
	}
	t := &ss.set.Spec.Template
	if rev != ss.update {
		if old := templateOf(rev); old != nil {
			t = old
		}
	}
	set := ss.set
	name := fmt.Sprintf("%s-%d", set.Name, ord)
	lbl := maps.Clone(t.Labels)
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[LabelPodName] = name
	lbl[LabelPodIndex] = strconv.Itoa(ord)
	lbl[LabelControllerRevHash] = rev.Name
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: set.Namespace, UID: ss.p.newUID(), CreationTimestamp: ss.p.stamp,
			Labels: lbl, Annotations: maps.Clone(t.Annotations),
			OwnerReferences: []metav1.OwnerReference{controllerRef(set, "apps/v1", "StatefulSet")},
		},
		Spec:   *t.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = set.Spec.ServiceName
	// updateStorage: each claim template's volume, in place of a pod volume of that name.
	var vols []corev1.Volume
	for _, ct := range set.Spec.VolumeClaimTemplates {
		vols = append(vols, corev1.Volume{Name: ct.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(ct.Name, set, ord)},
		}})
	}
	for _, v := range pod.Spec.Volumes {
		if !slices.ContainsFunc(set.Spec.VolumeClaimTemplates, func(ct corev1.PersistentVolumeClaim) bool { return ct.Name == v.Name }) {
			vols = append(vols, v)
		}
	}
	pod.Spec.Volumes = vols
	manifest.SetDefaults(pod)
	pin(pod)
	return pod
}

// ensureClaims makes the claims of an ordinal that do not exist yet (a claim of that name
// in git is used as it is).
func (ss *statefulSync) ensureClaims(ord int) {
	p, set := ss.p, ss.set
	for _, ct := range set.Spec.VolumeClaimTemplates {
		name := claimName(ct.Name, set, ord)
		k := claimKey(set.Namespace, name)
		if p.storage().claims[k] != nil {
			continue
		}
		if _, inGit := p.s.Git.Get(k); inGit {
			continue
		}
		lbl := maps.Clone(ct.Labels)
		if set.Spec.Selector != nil && len(set.Spec.Selector.MatchLabels) > 0 {
			if lbl == nil {
				lbl = map[string]string{}
			}
			maps.Copy(lbl, set.Spec.Selector.MatchLabels)
		}
		ann := maps.Clone(ct.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		ann[AnnotationStatefulSet] = set.Name
		c := &corev1.PersistentVolumeClaim{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: set.Namespace, UID: p.newUID(), CreationTimestamp: p.stamp,
				Labels: lbl, Annotations: ann, OwnerReferences: ss.claimOwners(),
			},
			Spec:   *ct.Spec.DeepCopy(),
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
		}
		if c.Spec.StorageClassName == nil {
			c.Spec.StorageClassName = ptrTo(DefaultStorageClass)
		}
		p.putClaim(c)
		ss.event(corev1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s-%d in StatefulSet %s success", name, set.Name, ord, set.Name)
	}
}

// claimOwners are the owners of the StatefulSet's claims: the StatefulSet itself when its
// claims go with it (whenDeleted: Delete), none when they are retained.
func (ss *statefulSync) claimOwners() []metav1.OwnerReference {
	if ss.set.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		return nil
	}
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: ss.set.Name, UID: ss.set.UID, BlockOwnerDeletion: &yes}}
}

// ownClaims returns the StatefulSet's claims by ordinal.
func (ss *statefulSync) ownClaims() map[int][]*corev1.PersistentVolumeClaim {
	out := map[int][]*corev1.PersistentVolumeClaim{}
	claims := ss.p.storage().claims
	for _, k := range sortedClaimKeys(claims) {
		c := claims[k]
		if c == nil || k.Namespace != ss.set.Namespace || c.Annotations[AnnotationStatefulSet] != ss.set.Name {
			continue
		}
		for _, ct := range ss.set.Spec.VolumeClaimTemplates {
			s, ok := strings.CutPrefix(c.Name, ct.Name+"-"+ss.set.Name+"-")
			if !ok {
				continue
			}
			if ord, err := strconv.Atoi(s); err == nil && ord >= 0 && claimName(ct.Name, ss.set, ord) == c.Name {
				out[ord] = append(out[ord], c)
			}
		}
	}
	return out
}

// claimsOnScaleDown deletes the claims of ordinals scaled away, once their pod is gone, when
// persistentVolumeClaimRetentionPolicy.whenScaled is Delete.
func (ss *statefulSync) claimsOnScaleDown() {
	if ss.set.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		return
	}
	n := int(*ss.set.Spec.Replicas)
	own := ss.ownClaims()
	for _, ord := range slices.Sorted(maps.Keys(own)) {
		claims := own[ord]
		if ord < n || ss.p.pods[state.Key{Kind: "Pod", Namespace: ss.set.Namespace, Name: fmt.Sprintf("%s-%d", ss.set.Name, ord)}] != nil {
			continue
		}
		for _, c := range claims {
			if c.Annotations[AnnotationGitUID] == "" {
				ss.p.deleteClaim(c)
				ss.event(corev1.EventTypeNormal, "SuccessfulDelete", "delete Claim %s in StatefulSet %s successful", c.Name, ss.set.Name)
			}
		}
	}
}

// syncClaimOwners keeps the owner of the StatefulSet's claims in line with whenDeleted.
func (ss *statefulSync) syncClaimOwners() {
	want := ss.claimOwners()
	own := ss.ownClaims()
	for _, ord := range slices.Sorted(maps.Keys(own)) {
		for _, c := range own[ord] {
			if c.Annotations[AnnotationGitUID] != "" {
				continue // a claim from git is git's
			}
			if equalOwners(c.OwnerReferences, want) {
				continue
			}
			n := c.DeepCopy()
			n.OwnerReferences = want
			ss.p.putClaim(n)
		}
	}
}

func equalOwners(a, b []metav1.OwnerReference) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.OwnerReference) bool { return x.UID == y.UID && x.Kind == y.Kind })
}

// revisionData is what a ControllerRevision of a StatefulSet holds: the template, as the
// strategic merge patch Kubernetes records.
func revisionData(t *corev1.PodTemplateSpec) []byte {
	raw, err := json.Marshal(t)
	if err != nil {
		raw = []byte("{}")
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil || m == nil {
		m = map[string]any{}
	}
	m["$patch"] = "replace"
	b, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
	return b
}

// templateOf decodes a revision's template (nil when it holds none).
func templateOf(rev *appsv1.ControllerRevision) *corev1.PodTemplateSpec {
	if rev == nil {
		return nil
	}
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if json.Unmarshal(rev.Data.Raw, &d) != nil {
		return nil
	}
	return &d.Spec.Template
}

// revisions finds or makes the update revision (the template as it is now) and finds the
// current one, as Kubernetes' getStatefulSetRevisions: a template equal to an older
// revision's takes that revision back with the next revision number (a rollback).
func (ss *statefulSync) revisions() {
	p, set := ss.p, ss.set
	for _, o := range p.s.Cluster.List("ControllerRevision", set.Namespace) {
		if rev, ok := o.(*appsv1.ControllerRevision); ok && controllerUID(rev) == set.UID {
			if d, gone := p.del[state.KeyOf(rev)]; !gone || d.UID != rev.UID {
				ss.revs = append(ss.revs, rev)
			}
		}
	}
	slices.SortFunc(ss.revs, func(a, b *appsv1.ControllerRevision) int {
		if a.Revision != b.Revision {
			return int(a.Revision - b.Revision)
		}
		return strings.Compare(a.Name, b.Name)
	})
	var last int64
	if len(ss.revs) > 0 {
		last = ss.revs[len(ss.revs)-1].Revision
	}
	data := revisionData(&set.Spec.Template)
	for i := 0; ; i++ {
		collision := ss.collision
		hash := ComputeHash(&set.Spec.Template, &collision)
		name := set.Name + "-" + hash
		idx := slices.IndexFunc(ss.revs, func(r *appsv1.ControllerRevision) bool { return r.Name == name })
		if idx < 0 && p.s.Cluster.Count("ControllerRevision") > 0 {
			if _, taken := p.s.Cluster.Get(state.Key{Kind: "ControllerRevision", Namespace: set.Namespace, Name: name}); taken && i < maxHashCollisions {
				ss.collision++ // a name another owner's revision has
				continue
			}
		}
		switch {
		case idx < 0:
			rev := &appsv1.ControllerRevision{
				TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
				ObjectMeta: metav1.ObjectMeta{
					Name: name, Namespace: set.Namespace, UID: p.newUID(), CreationTimestamp: p.stamp,
					Labels:          mergeLabels(set.Spec.Template.Labels, map[string]string{LabelControllerRevHash: hash}),
					OwnerReferences: []metav1.OwnerReference{controllerRef(set, "apps/v1", "StatefulSet")},
				},
				Data:     runtime.RawExtension{Raw: data},
				Revision: last + 1,
			}
			p.put[state.KeyOf(rev)] = rev
			ss.revs = append(ss.revs, rev)
			ss.update = rev
		case !bytes.Equal(ss.revs[idx].Data.Raw, data) && i < maxHashCollisions:
			ss.collision++
			continue
		case ss.revs[idx].Revision != last:
			rev := ss.revs[idx].DeepCopy()
			rev.Revision = last + 1
			p.put[state.KeyOf(rev)] = rev
			ss.revs[idx] = rev
			ss.update = rev
		default:
			ss.update = ss.revs[idx]
		}
		break
	}
	ss.current = ss.update
	if ss.rec != nil {
		for _, r := range ss.revs {
			if r.Name == ss.rec.Status.CurrentRevision {
				ss.current = r
			}
		}
	}
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// statefulCounts is a StatefulSet's status as counted from its pods (Kubernetes'
// computeReplicaStatus).
type statefulCounts struct {
	replicas, ready, available, current, updated int32
}

func countStateful(pods []*corev1.Pod, minReady int32, now time.Time, current, update string) statefulCounts {
	var n statefulCounts
	for _, pod := range pods {
		n.replicas++
		if runningAndReady(pod) {
			n.ready++
			if isPodAvailable(pod, minReady, now) {
				n.available++
			}
		}
		if pod.DeletionTimestamp == nil {
			if pod.Labels[LabelControllerRevHash] == current {
				n.current++
			}
			if pod.Labels[LabelControllerRevHash] == update {
				n.updated++
			}
		}
	}
	return n
}

// writeRecord completes a rollout (every pod updated and ready: the update revision becomes
// the current one, Kubernetes' completeRollingUpdate) and writes the record when a revision
// or the collision count changed.
func (ss *statefulSync) writeRecord() {
	n := countStateful(ss.p.podsOf(ss.set.UID), ss.minReady, ss.p.now, ss.current.Name, ss.update.Name)
	current := ss.current.Name
	if n.updated == n.replicas && n.ready == n.replicas {
		current = ss.update.Name
	}
	rec := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ss.set.Name, Namespace: ss.set.Namespace,
			Annotations: map[string]string{AnnotationGitUID: string(ss.set.UID)},
		},
		Status: appsv1.StatefulSetStatus{
			CurrentRevision: current, UpdateRevision: ss.update.Name, CollisionCount: ptrTo(ss.collision),
		},
	}
	// The record has a UID of its own: owner references name the git object's.
	if old := ss.rec; old == nil {
		ss.p.identify(&rec.ObjectMeta, nil)
	} else if old.Status.CurrentRevision == current && old.Status.UpdateRevision == ss.update.Name &&
		old.Status.CollisionCount != nil && *old.Status.CollisionCount == ss.collision {
		return
	} else {
		ss.p.identify(&rec.ObjectMeta, &old.ObjectMeta)
	}
	if current != ss.current.Name {
		for _, r := range ss.revs {
			if r.Name == current {
				ss.current = r
			}
		}
	}
	ss.p.put[state.KeyOf(rec)] = rec
}

// truncateHistory deletes the oldest revisions beyond revisionHistoryLimit, never the
// current or update revision nor one a pod still runs.
func (ss *statefulSync) truncateHistory() {
	live := map[string]bool{ss.current.Name: true, ss.update.Name: true}
	for _, pod := range ss.p.podsOf(ss.set.UID) {
		live[pod.Labels[LabelControllerRevHash]] = true
	}
	var old []*appsv1.ControllerRevision
	for _, r := range ss.revs {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	for i := 0; i < len(old)-int(*ss.set.Spec.RevisionHistoryLimit); i++ {
		ss.p.deleteObject(old[i])
	}
}

// statefulSetWithStatus computes a StatefulSet's status from its pods and record.
func statefulSetWithStatus(s *state.State, now time.Time, obj *appsv1.StatefulSet) *appsv1.StatefulSet {
	out := obj.DeepCopy()
	set := withStatefulSetDefaults(obj)
	var rec *appsv1.StatefulSet
	if o, ok := s.Cluster.Get(state.KeyOf(obj)); ok {
		if r, ok := o.(*appsv1.StatefulSet); ok && r.Annotations[AnnotationGitUID] == string(obj.UID) {
			rec = r
		}
	}
	st := appsv1.StatefulSetStatus{ObservedGeneration: obj.Generation}
	if obj.Generation > 0 {
		st.ObservedGeneration = obj.Generation - 1
	}
	if rec != nil {
		st.CurrentRevision, st.UpdateRevision = rec.Status.CurrentRevision, rec.Status.UpdateRevision
		st.CollisionCount = rec.Status.CollisionCount
		var collision int32
		if rec.Status.CollisionCount != nil {
			collision = *rec.Status.CollisionCount
		}
		if rec.Status.UpdateRevision == set.Name+"-"+ComputeHash(&set.Spec.Template, &collision) {
			st.ObservedGeneration = obj.Generation
		}
	}
	n := countStateful(podsControlledBy(s, obj.UID), set.Spec.MinReadySeconds, now, st.CurrentRevision, st.UpdateRevision)
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas = n.replicas, n.ready, n.available
	st.CurrentReplicas, st.UpdatedReplicas = n.current, n.updated
	out.Status = st
	return out
}
