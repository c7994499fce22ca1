package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/state"
)

const (
	// maxHashCollisions bounds the search for a free ReplicaSet name.
	maxHashCollisions = 10
	// revHistoryLimitInChars bounds the revision-history annotation (Kubernetes' default).
	revHistoryLimitInChars = 2000
)

// deployments runs the Deployment controller over every Deployment in git.
func (p *planner) deployments() {
	for _, d := range state.Typed[*appsv1.Deployment](p.s.Git.List("Deployment", "")) {
		p.syncDeployment(d)
	}
}

// deploymentSync is one Deployment's sync (Kubernetes' syncDeployment): it works on private
// copies of the Deployment's ReplicaSets and commits the ones it changed at the end, so the
// replica controller, later in the same plan, makes or deletes their pods at once.
type deploymentSync struct {
	p       *planner
	obj     *appsv1.Deployment // as in git: events name it
	d       *appsv1.Deployment // with the API server's defaults
	rss     []*appsv1.ReplicaSet
	deleted map[types.UID]bool
	dirty   map[types.UID]bool // changed: to be put
	newRS   *appsv1.ReplicaSet // found or made; templates do not change during a sync
	found   bool
	counted map[types.UID]replicaCounts
}

func (p *planner) syncDeployment(obj *appsv1.Deployment) {
	d := withDeploymentDefaults(obj)
	if sel, ok := parseSelector(d.Spec.Selector); !ok || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		return // validation reports it; acting on it would make pods it does not select
	}
	ds := &deploymentSync{p: p, obj: obj, d: d, deleted: map[types.UID]bool{}, dirty: map[types.UID]bool{},
		counted: map[types.UID]replicaCounts{}}
	for _, rs := range p.replicaSetsOf(d.UID) {
		// A sync changes only annotations, minReadySeconds and spec.replicas (a new
		// pointer) of its copies: the rest is shared with the snapshot, read-only.
		c := *rs
		c.Annotations = maps.Clone(rs.Annotations)
		ds.rss = append(ds.rss, &c)
	}
	switch {
	case d.Spec.Paused || ds.isScalingEvent():
		ds.sync()
	case d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType:
		ds.rolloutRecreate()
	default:
		ds.rolloutRolling()
	}
	for _, rs := range ds.alive() { // plan again when a pod becomes available
		if next := ds.counts(rs).next; !next.IsZero() {
			p.after(next.Sub(p.now))
		}
	}
	ds.commit()
}

// withDeploymentDefaults returns d with the apps/v1 defaults applied (a shallow copy when any
// is missing; nothing it shares is changed).
func withDeploymentDefaults(d *appsv1.Deployment) *appsv1.Deployment {
	c := *d
	if c.Spec.Replicas == nil {
		c.Spec.Replicas = ptrTo[int32](1)
	}
	if c.Spec.Strategy.Type == "" {
		c.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if c.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		ru := appsv1.RollingUpdateDeployment{}
		if c.Spec.Strategy.RollingUpdate != nil {
			ru = *c.Spec.Strategy.RollingUpdate
		}
		quarter := intstr.FromString("25%")
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = &quarter
		}
		if ru.MaxSurge == nil {
			ru.MaxSurge = &quarter
		}
		c.Spec.Strategy.RollingUpdate = &ru
	}
	if c.Spec.RevisionHistoryLimit == nil {
		c.Spec.RevisionHistoryLimit = ptrTo[int32](10)
	}
	if c.Spec.ProgressDeadlineSeconds == nil {
		c.Spec.ProgressDeadlineSeconds = ptrTo[int32](600)
	}
	return &c
}

func ptrTo[T any](v T) *T { return &v }

func (ds *deploymentSync) alive() []*appsv1.ReplicaSet {
	out := make([]*appsv1.ReplicaSet, 0, len(ds.rss))
	for _, rs := range ds.rss {
		if !ds.deleted[rs.UID] {
			out = append(out, rs)
		}
	}
	return out
}

// counts counts a ReplicaSet's pods (once: pods do not change during a sync, and the
// counts are taken after the new ReplicaSet's minReadySeconds is set).
func (ds *deploymentSync) counts(rs *appsv1.ReplicaSet) replicaCounts {
	if n, ok := ds.counted[rs.UID]; ok {
		return n
	}
	var n replicaCounts
	if sel, ok := ds.p.selector(rs); ok {
		n = countReplicas(ds.p.podsOf(rs.UID), selectorMatch(sel), rs.Spec.Template.Labels, rs.Spec.MinReadySeconds, ds.p.now)
	}
	ds.counted[rs.UID] = n
	return n
}

// commit hands the changed ReplicaSets to the plan.
func (ds *deploymentSync) commit() {
	for _, rs := range ds.rss {
		switch {
		case ds.deleted[rs.UID]:
			ds.p.deleteObject(rs)
		case ds.dirty[rs.UID]:
			ds.p.putRS(rs)
		}
	}
}

func (ds *deploymentSync) event(format string, args ...any) {
	ds.p.event(ds.obj, corev1.EventTypeNormal, "ScalingReplicaSet", fmt.Sprintf(format, args...))
}

// getAll returns the new ReplicaSet (the one whose template is the Deployment's; nil when
// there is none and create is false) and the old ones, with the new one's revision raised
// above every old one's: this is how a rollback (a git revert) takes an old ReplicaSet back.
func (ds *deploymentSync) getAll(create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	alive := ds.alive()
	if !ds.found {
		ds.newRS, ds.found = findNewReplicaSet(ds.d, alive), true
	}
	newRS := ds.newRS
	var old []*appsv1.ReplicaSet
	for _, rs := range alive {
		if rs != newRS {
			old = append(old, rs)
		}
	}
	revision := maxRevision(old) + 1
	switch {
	case newRS != nil:
		if setNewReplicaSetAnnotations(ds.d, newRS, revision, true) || newRS.Spec.MinReadySeconds != ds.d.Spec.MinReadySeconds {
			newRS.Spec.MinReadySeconds = ds.d.Spec.MinReadySeconds
			ds.dirty[newRS.UID] = true
			delete(ds.counted, newRS.UID)
		}
	case create:
		newRS = ds.createReplicaSet(old, revision)
		ds.newRS = newRS
	}
	return newRS, old
}

// createReplicaSet makes the new ReplicaSet, named <deployment>-<pod-template-hash>.
func (ds *deploymentSync) createReplicaSet(old []*appsv1.ReplicaSet, revision int64) *appsv1.ReplicaSet {
	d := ds.d
	var hash string
	var collisions *int32
	for i := int32(0); ; i++ {
		hash = ComputeHash(&d.Spec.Template, collisions)
		if !ds.p.rsNameTaken(d.Namespace, d.Name+"-"+hash) {
			break
		}
		if i == maxHashCollisions {
			ds.p.event(ds.obj, corev1.EventTypeWarning, "FailedCreate",
				fmt.Sprintf("Failed to create new replica set for %s: every name is taken", d.Name))
			return nil
		}
		collisions = ptrTo(i + 1)
	}
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[LabelPodTemplateHash] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[LabelPodTemplateHash] = hash
	rs := &appsv1.ReplicaSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace,
			UID: ds.p.newUID(), CreationTimestamp: ds.p.stamp, Labels: maps.Clone(tmpl.Labels),
			OwnerReferences: []metav1.OwnerReference{controllerRef(ds.obj, "apps/v1", "Deployment")},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptrTo[int32](0), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *tmpl,
		},
	}
	n := newRSNewReplicas(d, append(slices.Clone(old), rs), rs)
	rs.Spec.Replicas = &n
	setNewReplicaSetAnnotations(d, rs, revision, false)
	ds.rss = append(ds.rss, rs)
	ds.dirty[rs.UID] = true
	if n > 0 {
		ds.event("Scaled up replica set %s to %d", rs.Name, n)
	}
	return rs
}

// rsNameTaken reports whether a ReplicaSet of that name exists (in git or made by skiff).
func (p *planner) rsNameTaken(ns, name string) bool {
	k := state.Key{Kind: "ReplicaSet", Namespace: ns, Name: name}
	_, inGit := p.s.Git.Get(k)
	return inGit || p.rss[k] != nil
}

// findNewReplicaSet returns the oldest ReplicaSet whose template equals the Deployment's,
// ignoring the pod-template-hash label (Kubernetes' FindNewReplicaSet).
func findNewReplicaSet(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	sorted := slices.Clone(rss)
	sortByCreation(sorted)
	var want []byte
	for _, rs := range sorted {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template, &want) {
			return rs
		}
	}
	return nil
}

// equalIgnoreHash compares two templates ignoring the pod-template-hash label, cheaply
// where it can: templates of different images differ; identical values are equal; else
// their JSON encodings decide (the API's canonical form: nil and empty collections, or
// 1000m and 1 CPU, encode alike, as equality.Semantic would have it). bKey caches b's
// encoding across calls.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec, bKey *[]byte) bool {
	if len(a.Spec.Containers) != len(b.Spec.Containers) {
		return false
	}
	for i := range a.Spec.Containers {
		if a.Spec.Containers[i].Image != b.Spec.Containers[i].Image {
			return false
		}
	}
	ca, cb := withoutHash(a), withoutHash(b)
	if reflect.DeepEqual(ca, cb) {
		return true
	}
	if *bKey == nil {
		*bKey = templateKey(cb)
	}
	return bytes.Equal(templateKey(ca), *bKey)
}

// withoutHash returns a shallow copy of a template without the pod-template-hash label.
func withoutHash(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	c := *t
	if _, ok := c.Labels[LabelPodTemplateHash]; ok {
		c.Labels = maps.Clone(c.Labels)
		delete(c.Labels, LabelPodTemplateHash)
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	return &c
}

func templateKey(t *corev1.PodTemplateSpec) []byte {
	b, err := json.Marshal(t)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func revisionOf(rs *appsv1.ReplicaSet) int64 {
	v, _ := strconv.ParseInt(rs.Annotations[AnnotationRevision], 10, 64)
	return v
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revisionOf(rs))
	}
	return m
}

// annotationsNotCopied are the Deployment annotations a ReplicaSet does not inherit.
var annotationsNotCopied = map[string]bool{
	corev1.LastAppliedConfigAnnotation: true,
	AnnotationRevision:                 true,
	AnnotationRevisionHistory:          true,
	AnnotationDesiredReplicas:          true,
	AnnotationMaxReplicas:              true,
	appsv1.DeprecatedRollbackTo:        true,
}

// setNewReplicaSetAnnotations copies the Deployment's annotations to the new ReplicaSet,
// raises its revision to revision when lower (keeping the old ones in revision-history:
// a rollback), and on a new ReplicaSet sets the replica annotations.
func setNewReplicaSetAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, revision int64, exists bool) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		if !annotationsNotCopied[k] && rs.Annotations[k] != v {
			rs.Annotations[k] = v
			changed = true
		}
	}
	oldRevision, had := rs.Annotations[AnnotationRevision]
	old, err := strconv.ParseInt(oldRevision, 10, 64)
	if err != nil && oldRevision != "" {
		return changed
	}
	if old < revision {
		rs.Annotations[AnnotationRevision] = strconv.FormatInt(revision, 10)
		changed = true
		if had {
			history := rs.Annotations[AnnotationRevisionHistory]
			revs := strings.Split(history, ",")
			if history == "" {
				revs = nil
			}
			revs = append(revs, oldRevision)
			for len(strings.Join(revs, ",")) > revHistoryLimitInChars && len(revs) > 1 {
				revs = revs[1:]
			}
			rs.Annotations[AnnotationRevisionHistory] = strings.Join(revs, ",")
		}
	}
	if !exists && setReplicasAnnotations(rs, *d.Spec.Replicas, *d.Spec.Replicas+maxSurge(d)) {
		changed = true
	}
	return changed
}

func setReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range map[string]int32{AnnotationDesiredReplicas: desired, AnnotationMaxReplicas: maxReplicas} {
		if s := strconv.Itoa(int(v)); rs.Annotations[k] != s {
			rs.Annotations[k] = s
			changed = true
		}
	}
	return changed
}

func intAnnotation(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, err := strconv.ParseInt(rs.Annotations[key], 10, 32)
	return int32(v), err == nil
}

func isRollingUpdate(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// resolveFenceposts turns maxSurge and maxUnavailable into numbers of pods: percentages of
// the desired replicas, surge rounded up and unavailable down; both 0 make unavailable 1.
func resolveFenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil {
		ru = &appsv1.RollingUpdateDeployment{}
	}
	zero := intstr.FromInt32(0)
	desired := int(*d.Spec.Replicas)
	s, _ := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ru.MaxSurge, zero), desired, true)
	u, _ := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ru.MaxUnavailable, zero), desired, false)
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

func maxSurge(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) {
		return 0
	}
	s, _ := resolveFenceposts(d)
	return s
}

func maxUnavailable(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) || *d.Spec.Replicas == 0 {
		return 0
	}
	_, u := resolveFenceposts(d)
	return min(u, *d.Spec.Replicas)
}

// newRSNewReplicas is how many replicas the new ReplicaSet may have now.
func newRSNewReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if !isRollingUpdate(d) {
		return *d.Spec.Replicas
	}
	surge, _ := intstr.GetScaledValueFromIntOrPercent(d.Spec.Strategy.RollingUpdate.MaxSurge, int(*d.Spec.Replicas), true)
	current := specReplicas(all)
	maxTotal := *d.Spec.Replicas + int32(surge)
	if current >= maxTotal {
		return *newRS.Spec.Replicas
	}
	up := min(maxTotal-current, *d.Spec.Replicas-*newRS.Spec.Replicas)
	return *newRS.Spec.Replicas + up
}

func specReplicas(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += *rs.Spec.Replicas
		}
	}
	return n
}

func filterActive(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && *rs.Spec.Replicas > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// isScalingEvent reports whether spec.replicas changed since the active ReplicaSets were
// last scaled (their desired-replicas annotation).
func (ds *deploymentSync) isScalingEvent() bool {
	newRS, old := ds.getAll(false)
	for _, rs := range filterActive(append(old, newRS)) {
		if desired, ok := intAnnotation(rs, AnnotationDesiredReplicas); ok && desired != *ds.d.Spec.Replicas {
			return true
		}
	}
	return false
}

// scaleAndRecord scales a ReplicaSet and says so; it reports whether the size changed.
func (ds *deploymentSync) scaleAndRecord(rs *appsv1.ReplicaSet, to int32) bool {
	if *rs.Spec.Replicas == to {
		return false
	}
	op := "up"
	if to < *rs.Spec.Replicas {
		op = "down"
	}
	ds.scale(rs, to, op)
	return true
}

func (ds *deploymentSync) scale(rs *appsv1.ReplicaSet, to int32, op string) {
	if setReplicasAnnotations(rs, *ds.d.Spec.Replicas, *ds.d.Spec.Replicas+maxSurge(ds.d)) {
		ds.dirty[rs.UID] = true
	}
	if from := *rs.Spec.Replicas; from != to {
		ds.dirty[rs.UID] = true
		rs.Spec.Replicas = ptrTo(to)
		ds.event("Scaled %s replica set %s to %d from %d", op, rs.Name, to, from)
	}
}

// sync handles a scaling event or a paused Deployment: scale, never roll out.
func (ds *deploymentSync) sync() {
	newRS, old := ds.getAll(false)
	ds.scaleProportionally(newRS, old)
	if ds.d.Spec.Paused {
		ds.cleanup(old)
	}
}

// scaleProportionally is Kubernetes' scale: one active ReplicaSet takes the new size; a
// saturated new one scales the old ones to zero; during a rolling update the difference is
// spread over the active ReplicaSets in proportion to their size.
func (ds *deploymentSync) scaleProportionally(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) {
	d := ds.d
	if rs := findActiveOrLatest(newRS, old); rs != nil {
		if *rs.Spec.Replicas != *d.Spec.Replicas {
			ds.scaleAndRecord(rs, *d.Spec.Replicas)
		}
		return
	}
	if ds.isSaturated(newRS) {
		for _, rs := range filterActive(old) {
			ds.scaleAndRecord(rs, 0)
		}
		return
	}
	if !isRollingUpdate(d) {
		return
	}
	all := filterActive(append(slices.Clone(old), newRS))
	allowed := int32(0)
	if *d.Spec.Replicas > 0 {
		allowed = *d.Spec.Replicas + maxSurge(d)
	}
	toAdd := allowed - specReplicas(all)
	op := ""
	switch {
	case toAdd > 0:
		sort.SliceStable(all, func(i, j int) bool { return bySizeThen(all[i], all[j], true) })
		op = "up"
	case toAdd < 0:
		sort.SliceStable(all, func(i, j int) bool { return bySizeThen(all[i], all[j], false) })
		op = "down"
	}
	added := int32(0)
	sizes := make([]int32, len(all))
	for i, rs := range all {
		sizes[i] = *rs.Spec.Replicas
		if toAdd != 0 {
			prop := ds.proportion(rs, toAdd, added)
			sizes[i] += prop
			added += prop
		}
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 { // leftovers go to the largest
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		ds.scale(rs, sizes[i], op)
	}
}

// bySizeThen orders ReplicaSets largest first, then newer first (newer) or older first.
func bySizeThen(a, b *appsv1.ReplicaSet, newer bool) bool {
	if *a.Spec.Replicas != *b.Spec.Replicas {
		return *a.Spec.Replicas > *b.Spec.Replicas
	}
	c := byCreation(a, b)
	if newer {
		return c > 0
	}
	return c < 0
}

func (ds *deploymentSync) proportion(rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	if *rs.Spec.Replicas == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	frac := ds.fraction(rs)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(frac, allowed)
	}
	return max(frac, allowed)
}

func (ds *deploymentSync) fraction(rs *appsv1.ReplicaSet) int32 {
	d := ds.d
	if *d.Spec.Replicas == 0 {
		return -*rs.Spec.Replicas
	}
	maxReplicas := *d.Spec.Replicas + maxSurge(d)
	before, ok := intAnnotation(rs, AnnotationMaxReplicas)
	if !ok || before == 0 {
		for _, o := range ds.alive() {
			before += ds.counts(o).replicas
		}
		if before == 0 {
			return 0
		}
	}
	size := float64(*rs.Spec.Replicas) * float64(maxReplicas) / float64(before)
	return int32(math.Round(size)) - *rs.Spec.Replicas
}

func findActiveOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := slices.Clone(old)
	sortByCreation(sorted)
	slices.Reverse(sorted)
	active := filterActive(append(sorted, newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return active[0]
	}
	return nil
}

func (ds *deploymentSync) isSaturated(rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := intAnnotation(rs, AnnotationDesiredReplicas)
	r := *ds.d.Spec.Replicas
	return ok && desired == r && *rs.Spec.Replicas == r && ds.counts(rs).available == r
}

// rolloutRolling is one step of a rolling update: scale the new ReplicaSet up as far as
// maxSurge allows, else the old ones down as far as maxUnavailable allows, else clean up.
func (ds *deploymentSync) rolloutRolling() {
	newRS, old := ds.getAll(true)
	if newRS == nil {
		return
	}
	all := append(slices.Clone(old), newRS)
	if ds.reconcileNewReplicaSet(newRS, all) {
		return
	}
	if ds.reconcileOldReplicaSets(filterActive(old), newRS, all) {
		return
	}
	if ds.complete(newRS, all) {
		ds.cleanup(old)
	}
}

func (ds *deploymentSync) reconcileNewReplicaSet(newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet) bool {
	r := *ds.d.Spec.Replicas
	switch {
	case *newRS.Spec.Replicas == r:
		return false
	case *newRS.Spec.Replicas > r:
		return ds.scaleAndRecord(newRS, r)
	}
	return ds.scaleAndRecord(newRS, newRSNewReplicas(ds.d, all, newRS))
}

func (ds *deploymentSync) reconcileOldReplicaSets(old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet) bool {
	if specReplicas(old) == 0 {
		return false
	}
	minAvailable := *ds.d.Spec.Replicas - maxUnavailable(ds.d)
	newUnavailable := *newRS.Spec.Replicas - ds.counts(newRS).available
	maxScaledDown := specReplicas(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false
	}
	cleaned := ds.cleanupUnhealthyReplicas(old, maxScaledDown)
	all = append(slices.Clone(old), newRS)
	scaled := ds.scaleDownOldForRollingUpdate(old, all)
	return cleaned+scaled > 0
}

// cleanupUnhealthyReplicas scales old ReplicaSets down by their unavailable pods first:
// they serve nothing, so removing them costs no availability.
func (ds *deploymentSync) cleanupUnhealthyReplicas(old []*appsv1.ReplicaSet, maxCleanup int32) int32 {
	sortByCreation(old)
	var total int32
	for _, rs := range old {
		if total >= maxCleanup {
			break
		}
		avail := ds.counts(rs).available
		if *rs.Spec.Replicas == 0 || avail >= *rs.Spec.Replicas {
			continue
		}
		n := min(maxCleanup-total, *rs.Spec.Replicas-avail)
		ds.scaleAndRecord(rs, *rs.Spec.Replicas-n)
		total += n
	}
	return total
}

func (ds *deploymentSync) scaleDownOldForRollingUpdate(old, all []*appsv1.ReplicaSet) int32 {
	minAvailable := *ds.d.Spec.Replicas - maxUnavailable(ds.d)
	var available int32
	for _, rs := range all {
		available += ds.counts(rs).available
	}
	if available <= minAvailable {
		return 0
	}
	want := available - minAvailable
	sortByCreation(old)
	var total int32
	for _, rs := range old {
		if total >= want {
			break
		}
		if *rs.Spec.Replicas == 0 {
			continue
		}
		n := min(*rs.Spec.Replicas, want-total)
		ds.scaleAndRecord(rs, *rs.Spec.Replicas-n)
		total += n
	}
	return total
}

// rolloutRecreate scales every old ReplicaSet to zero, waits until their pods are gone,
// then brings the new one up at full size.
func (ds *deploymentSync) rolloutRecreate() {
	newRS, old := ds.getAll(false)
	scaledDown := false
	for _, rs := range filterActive(old) {
		scaledDown = ds.scaleAndRecord(rs, 0) || scaledDown
	}
	if scaledDown || ds.oldPodsRunning(newRS, old) {
		return
	}
	if newRS == nil {
		if newRS, old = ds.getAll(true); newRS == nil {
			return
		}
	}
	ds.scaleAndRecord(newRS, *ds.d.Spec.Replicas)
	if ds.complete(newRS, append(slices.Clone(old), newRS)) {
		ds.cleanup(old)
	}
}

// oldPodsRunning reports whether any pod of an old ReplicaSet still exists and has not
// finished (terminating pods included: their containers may still run).
func (ds *deploymentSync) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	for _, rs := range old {
		if newRS != nil && rs.UID == newRS.UID {
			continue
		}
		for _, pod := range ds.p.podsOf(rs.UID) {
			if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
				return true
			}
		}
	}
	return false
}

// complete reports whether every desired replica is updated and available.
func (ds *deploymentSync) complete(newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet) bool {
	st := calculateStatus(ds.d, all, newRS, ds.counts)
	return deploymentComplete(ds.d, &st)
}

func deploymentComplete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	r := *d.Spec.Replicas
	return st.UpdatedReplicas == r && st.Replicas == r && st.AvailableReplicas == r &&
		st.ObservedGeneration >= d.Generation
}

// cleanup deletes the oldest old ReplicaSets beyond revisionHistoryLimit, those scaled to
// zero whose pods are all gone.
func (ds *deploymentSync) cleanup(old []*appsv1.ReplicaSet) {
	alive := make([]*appsv1.ReplicaSet, 0, len(old))
	for _, rs := range old {
		if !ds.deleted[rs.UID] {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(*ds.d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return
	}
	sort.SliceStable(alive, func(i, j int) bool {
		ri, rj := revisionOf(alive[i]), revisionOf(alive[j])
		if ri == rj {
			return byCreation(alive[i], alive[j]) < 0
		}
		return ri < rj
	})
	for _, rs := range alive[:diff] {
		if *rs.Spec.Replicas != 0 || len(ds.p.podsOf(rs.UID)) > 0 {
			continue
		}
		ds.deleted[rs.UID] = true
	}
}
