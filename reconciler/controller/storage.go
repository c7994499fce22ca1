package controller

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/state"
)

// Storage: the leader's PersistentVolume controller (Kubernetes' pkg/controller/volume/
// persistentvolume), the scheduler's VolumeBinding plugin and a built-in local provisioner
// (k3s's local-path), cut to what an edge cluster of local disks needs.
//
// Every claim and volume lives in the cluster set, where the binder writes its decisions:
// a PersistentVolumeClaim or PersistentVolume from git is kept there as a copy of the same
// name (annotated with the git object's UID, AnnotationGitUID) that carries the binding
// (claim spec.volumeName, volume spec.claimRef) and the phases; StatefulSets add the claims
// of their volumeClaimTemplates; the provisioner adds the volumes it makes. WithStatus
// overlays a git object with its copy, Claim and Volume read the copies.
//
// Binding follows Kubernetes' rules (class, access modes, volume mode, selector, the smallest
// volume that is big enough, a volume pre-bound by claimRef or a claim pre-bound by
// volumeName first) with one choice of its own: a claim that a pod uses is bound when that
// pod is scheduled (WaitForFirstConsumer), so the choice accounts for the pod's node; a claim
// no pod uses is bound at once to a volume from git (Immediate), or waits for its first
// pod when its class is provisioned by skiff. There are no StorageClass objects: the classes
// ProvisionedClasses name are skiff's own, every other class name only matches volumes.
//
// A volume with required node affinity (a local volume, or one skiff provisioned) pins the
// pods that use it to its node. When that node is NotReady the pods stay where they are
// (Kubernetes' at-most-one rule for stateful pods: never two pods on one identity's data);
// when the operator removes the Node object, the claims bound to volumes that lived only
// there are bound again to new volumes and a Warning says that the data is lost.

// Names of skiff's storage.
const (
	// DefaultStorageClass is the class of a claim that names none, as Kubernetes' default
	// StorageClass admission sets it: provisioned by skiff.
	DefaultStorageClass = "local-path"
	// Provisioner is the name of skiff's local provisioner, in AnnotationProvisionedBy.
	Provisioner = "skiff.io/local-path"
	// DefaultDataDir is the agent's data directory, assumed for a node that does not
	// announce its own with AnnotationDataDir.
	DefaultDataDir = "/var/lib/skiff"
	// VolumesSubdir is where provisioned volumes live under a node's data directory:
	// <data-dir>/volumes/<volume name>.
	VolumesSubdir = "volumes"
)

// ProvisionedClasses are the storage classes skiff provisions: local-path (k3s's name, the
// default) and standard (the default class of kind and minikube, so their manifests work
// unchanged).
var ProvisionedClasses = []string{DefaultStorageClass, "standard"}

// Annotations of claims, volumes and nodes.
const (
	AnnotationProvisionedBy     = "pv.kubernetes.io/provisioned-by"
	AnnotationBindCompleted     = "pv.kubernetes.io/bind-completed"
	AnnotationBoundByController = "pv.kubernetes.io/bound-by-controller"
	AnnotationSelectedNode      = "volume.kubernetes.io/selected-node"
	// AnnotationDataDir on a Node names its agent's data directory, where the volumes
	// provisioned on it live (DefaultDataDir when absent).
	AnnotationDataDir = "skiff.io/data-dir"
	// AnnotationPending on a claim says why it is not bound yet.
	AnnotationPending = "skiff.io/pending"
	// AnnotationGitGeneration on the copy of a git volume is the git object's generation it
	// was copied from: a Released volume from git becomes Available again when git changes it.
	AnnotationGitGeneration = "skiff.io/git-generation"
	// AnnotationStatefulSet on a claim names the StatefulSet whose volumeClaimTemplates made it.
	AnnotationStatefulSet = "skiff.io/statefulset"
)

// Reasons a node does not fit a pod's volumes, worded as kube-scheduler's VolumeBinding.
const (
	reasonVolumeNodeAffinity = "node(s) had volume node affinity conflict"
	reasonNoVolumes          = "node(s) didn't find available persistent volumes to bind"
)

// Event messages of the binder, as Kubernetes words them where it has them.
const (
	msgWaitForConsumer = "waiting for first consumer to be created before binding"
	msgNoClass         = "no persistent volumes available for this claim and no storage class is set"
)

// volumes is one plan's view of the cluster's claims and volumes, with its decisions.
type volumes struct {
	claims map[state.Key]*corev1.PersistentVolumeClaim // nil once deleted
	pvs    map[string]*corev1.PersistentVolume         // nil once deleted
	users  map[state.Key][]*corev1.Pod                 // claim → pods naming it; nil: not built
}

// storage returns the plan's claims and volumes, built on first use from the snapshot minus
// what the plan deleted so far (the garbage collector's work).
func (p *planner) storage() *volumes {
	if p.vols != nil {
		return p.vols
	}
	v := &volumes{claims: map[state.Key]*corev1.PersistentVolumeClaim{}, pvs: map[string]*corev1.PersistentVolume{}}
	for _, c := range state.Typed[*corev1.PersistentVolumeClaim](p.s.Cluster.List("PersistentVolumeClaim", "")) {
		if d, gone := p.del[state.KeyOf(c)]; !gone || d.UID != c.UID {
			v.claims[state.KeyOf(c)] = c
		}
	}
	for _, pv := range state.Typed[*corev1.PersistentVolume](p.s.Cluster.List("PersistentVolume", "")) {
		if d, gone := p.del[state.KeyOf(pv)]; !gone || d.UID != pv.UID {
			v.pvs[pv.Name] = pv
		}
	}
	p.vols = v
	return v
}

func claimKey(ns, name string) state.Key {
	return state.Key{Kind: "PersistentVolumeClaim", Namespace: ns, Name: name}
}

func (p *planner) claim(ns, name string) *corev1.PersistentVolumeClaim {
	return p.storage().claims[claimKey(ns, name)]
}

func (p *planner) putClaim(c *corev1.PersistentVolumeClaim) {
	k := state.KeyOf(c)
	if prev := p.storage().claims[k]; prev == nil || prev.UID != c.UID {
		p.vols.users = nil // a new claim: who uses what is counted again
	}
	p.vols.claims[k] = c
	p.put[k] = c
}

func (p *planner) deleteClaim(c *corev1.PersistentVolumeClaim) {
	p.storage().claims[state.KeyOf(c)] = nil
	p.deleteObject(c)
}

func (p *planner) putVolume(pv *corev1.PersistentVolume) {
	p.storage().pvs[pv.Name] = pv
	p.put[state.KeyOf(pv)] = pv
}

func (p *planner) deleteVolume(pv *corev1.PersistentVolume) {
	p.storage().pvs[pv.Name] = nil
	p.deleteObject(pv)
}

// claimUsers returns the current pods whose volumes name the claim (terminating ones too).
func (p *planner) claimUsers(k state.Key) []*corev1.Pod {
	v := p.storage()
	if v.users == nil {
		v.users = map[state.Key][]*corev1.Pod{}
		keys := slices.Clone(p.podKeys)
		for _, pk := range p.created {
			if p.orig(pk) == nil {
				keys = append(keys, pk)
			}
		}
		for _, pk := range keys {
			pod := p.pods[pk]
			if pod == nil {
				continue
			}
			for _, name := range podClaimNames(pod) {
				ck := claimKey(pod.Namespace, name)
				if !slices.Contains(v.users[ck], pod) {
					v.users[ck] = append(v.users[ck], pod)
				}
			}
		}
	}
	var out []*corev1.Pod
	for _, pod := range v.users[k] {
		if cur := p.pods[state.KeyOf(pod)]; cur != nil && cur.UID == pod.UID {
			out = append(out, cur)
		}
	}
	return out
}

// podClaimNames lists the claims a pod's volumes name, each once.
func podClaimNames(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if c := v.PersistentVolumeClaim; c != nil && !slices.Contains(out, c.ClaimName) {
			out = append(out, c.ClaimName)
		}
	}
	return out
}

// claimClass is the class a claim asks for: DefaultStorageClass when it names none.
func claimClass(c *corev1.PersistentVolumeClaim) string {
	if c.Spec.StorageClassName == nil {
		return DefaultStorageClass
	}
	return *c.Spec.StorageClassName
}

// provisionable reports whether skiff's provisioner can make a volume for the claim: its
// class is one of skiff's and it does not ask for a particular volume.
func provisionable(c *corev1.PersistentVolumeClaim) bool {
	return slices.Contains(ProvisionedClasses, claimClass(c)) && c.Spec.Selector == nil && c.Spec.VolumeName == ""
}

func isBound(c *corev1.PersistentVolumeClaim) bool {
	return c.Spec.VolumeName != "" && c.Status.Phase == corev1.ClaimBound
}

// isProvisioned reports whether skiff's provisioner made the volume.
func isProvisioned(pv *corev1.PersistentVolume) bool {
	return pv.Annotations[AnnotationProvisionedBy] == Provisioner && pv.Annotations[AnnotationGitUID] == ""
}

// pinned reports whether a volume lives on particular nodes (required node affinity).
func pinned(pv *corev1.PersistentVolume) bool {
	return pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil
}

// volumeOnNode reports whether the volume can be used on the node (its node affinity).
func volumeOnNode(pv *corev1.PersistentVolume, node *corev1.Node) bool {
	if !pinned(pv) {
		return true
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		if matchRequirements(term.MatchExpressions, labels.Set(node.Labels)) &&
			matchRequirements(term.MatchFields, labels.Set{"metadata.name": node.Name}) {
			return true
		}
	}
	return false
}

// volumeReachable reports whether some node of the cluster can use the volume.
func (p *planner) volumeReachable(pv *corev1.PersistentVolume) bool {
	if !pinned(pv) {
		return true
	}
	return slices.ContainsFunc(p.nodeList, func(n *corev1.Node) bool { return volumeOnNode(pv, n) })
}

func storageRequest(c *corev1.PersistentVolumeClaim) resource.Quantity {
	return c.Spec.Resources.Requests[corev1.ResourceStorage]
}

func volumeSize(pv *corev1.PersistentVolume) resource.Quantity {
	return pv.Spec.Capacity[corev1.ResourceStorage]
}

func volumeModeOf(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

// claimRefMatches reports whether a volume's claimRef names the claim (a claimRef without a
// UID pre-binds the volume to a claim of that name).
func claimRefMatches(ref *corev1.ObjectReference, c *corev1.PersistentVolumeClaim) bool {
	return ref != nil && ref.Namespace == c.Namespace && ref.Name == c.Name && (ref.UID == "" || ref.UID == c.UID)
}

// volumeFits reports whether a volume satisfies a claim, as Kubernetes' checkVolumeSatisfyClaim
// and findMatchingVolume: free or pre-bound to it, the claim's volumeName, class, volume mode,
// access modes, size and selector.
func volumeFits(pv *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) bool {
	switch {
	case pv.Status.Phase == corev1.VolumeReleased || pv.Status.Phase == corev1.VolumeFailed:
		return false
	case pv.Spec.ClaimRef != nil && !claimRefMatches(pv.Spec.ClaimRef, c):
		return false
	case c.Spec.VolumeName != "" && c.Spec.VolumeName != pv.Name:
		return false
	case pv.Spec.StorageClassName != claimClass(c):
		return false
	case volumeModeOf(pv.Spec.VolumeMode) != volumeModeOf(c.Spec.VolumeMode):
		return false
	}
	for _, m := range c.Spec.AccessModes {
		if !slices.Contains(pv.Spec.AccessModes, m) {
			return false
		}
	}
	size, want := volumeSize(pv), storageRequest(c)
	if size.Cmp(want) < 0 {
		return false
	}
	if c.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(c.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pv.Labels)) {
			return false
		}
	}
	return true
}

// bestVolume picks the volume a claim binds to on node (nil: anywhere the cluster can reach):
// one pre-bound to the claim first, then the smallest that fits, then by name. taken are
// volumes already promised to other claims of the same pod.
func (p *planner) bestVolume(c *corev1.PersistentVolumeClaim, node *corev1.Node, taken map[string]bool) *corev1.PersistentVolume {
	v := p.storage()
	var best *corev1.PersistentVolume
	for _, name := range slices.Sorted(maps.Keys(v.pvs)) {
		pv := v.pvs[name]
		if pv == nil || taken[name] || !volumeFits(pv, c) {
			continue
		}
		if node != nil && !volumeOnNode(pv, node) || node == nil && !p.volumeReachable(pv) {
			continue
		}
		if best == nil {
			best = pv
			continue
		}
		bestPre, pre := best.Spec.ClaimRef != nil, pv.Spec.ClaimRef != nil
		if pre != bestPre {
			if pre {
				best = pv
			}
			continue
		}
		if size, bestSize := volumeSize(pv), volumeSize(best); size.Cmp(bestSize) < 0 {
			best = pv
		}
	}
	return best
}

// persistentVolumes is the binder's pass over the cluster's claims and volumes, before the
// scheduler: it keeps the copies of git's claims and volumes, releases volumes whose claim
// went, binds again claims whose volume was lost with its node, and binds the claims no
// pod waits for (the scheduler binds the others, on the node it picks).
func (p *planner) persistentVolumes() {
	p.mirrorVolumes()
	p.mirrorClaims()
	v := p.storage()
	for _, name := range slices.Sorted(maps.Keys(v.pvs)) {
		if pv := v.pvs[name]; pv != nil {
			p.syncVolume(pv)
		}
	}
	for _, k := range sortedClaimKeys(v.claims) {
		if c := v.claims[k]; c != nil {
			p.syncClaim(c)
		}
	}
}

func sortedClaimKeys(m map[state.Key]*corev1.PersistentVolumeClaim) []state.Key {
	keys := slices.Collect(maps.Keys(m))
	sortKeys(keys)
	return keys
}

// identify gives an object skiff keeps in the cluster set its identity: a new UID and
// creation time when it is new (cur nil), else cur's metadata (UID, creation time, resource
// version, owners) with want's labels and annotations.
func (p *planner) identify(want, cur *metav1.ObjectMeta) {
	if cur == nil {
		want.UID, want.CreationTimestamp = p.newUID(), p.stamp
		return
	}
	meta := *cur.DeepCopy()
	meta.Labels, meta.Annotations = want.Labels, want.Annotations
	*want = meta
}

// mirrorVolumes keeps one cluster copy per PersistentVolume in git: its spec as written, with
// the binding skiff decided; a copy whose git object went is deleted.
func (p *planner) mirrorVolumes() {
	v := p.storage()
	inGit := map[string]bool{}
	for _, g := range state.Typed[*corev1.PersistentVolume](p.s.Git.List("PersistentVolume", "")) {
		inGit[g.Name] = true
		cur := v.pvs[g.Name]
		want := &corev1.PersistentVolume{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
			ObjectMeta: metav1.ObjectMeta{
				Name: g.Name, Labels: maps.Clone(g.Labels), Annotations: maps.Clone(g.Annotations),
			},
			Spec: *g.Spec.DeepCopy(),
		}
		if want.Annotations == nil {
			want.Annotations = map[string]string{}
		}
		delete(want.Annotations, AnnotationProvisionedBy) // only skiff's own volumes are its
		want.Annotations[AnnotationGitUID] = string(g.UID)
		want.Annotations[AnnotationGitGeneration] = fmt.Sprint(g.Generation)
		if cur == nil || cur.Annotations[AnnotationGitUID] != string(g.UID) {
			p.identify(&want.ObjectMeta, nil)
			want.Status.Phase = corev1.VolumeAvailable
			p.putVolume(want)
			continue
		}
		p.identify(&want.ObjectMeta, &cur.ObjectMeta)
		want.Status = cur.Status
		if cur.Spec.ClaimRef != nil && cur.Spec.ClaimRef.UID != "" {
			want.Spec.ClaimRef = cur.Spec.ClaimRef // skiff's binding
			if v, ok := cur.Annotations[AnnotationBoundByController]; ok {
				want.Annotations[AnnotationBoundByController] = v
			}
		}
		if cur.Status.Phase == corev1.VolumeReleased && cur.Annotations[AnnotationGitGeneration] != want.Annotations[AnnotationGitGeneration] {
			// Changed in git: the operator made it available again.
			want.Spec.ClaimRef = g.Spec.ClaimRef.DeepCopy()
			want.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}
		}
		p.putVolume(want)
	}
	for _, name := range slices.Sorted(maps.Keys(v.pvs)) {
		if pv := v.pvs[name]; pv != nil && pv.Annotations[AnnotationGitUID] != "" && !inGit[name] {
			p.deleteVolume(pv)
		}
	}
}

// mirrorClaims keeps one cluster copy per PersistentVolumeClaim in git, as mirrorVolumes
// does. A claim a StatefulSet made under the same name is taken over: it is one claim.
func (p *planner) mirrorClaims() {
	v := p.storage()
	inGit := map[state.Key]bool{}
	for _, g := range state.Typed[*corev1.PersistentVolumeClaim](p.s.Git.List("PersistentVolumeClaim", "")) {
		k := state.KeyOf(g)
		inGit[k] = true
		cur := v.claims[k]
		want := &corev1.PersistentVolumeClaim{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{
				Name: g.Name, Namespace: g.Namespace, Labels: maps.Clone(g.Labels), Annotations: maps.Clone(g.Annotations),
			},
			Spec: *g.Spec.DeepCopy(),
		}
		if want.Spec.StorageClassName == nil {
			want.Spec.StorageClassName = ptrTo(DefaultStorageClass) // as the default-class admission does
		}
		if want.Annotations == nil {
			want.Annotations = map[string]string{}
		}
		want.Annotations[AnnotationGitUID] = string(g.UID)
		if cur == nil || cur.Annotations[AnnotationGitUID] != "" && cur.Annotations[AnnotationGitUID] != string(g.UID) {
			// New, or deleted and made again in git: a new claim (the old one's volume is
			// released by its UID).
			p.identify(&want.ObjectMeta, nil)
			want.Status.Phase = corev1.ClaimPending
			p.putClaim(want)
			continue
		}
		p.identify(&want.ObjectMeta, &cur.ObjectMeta)
		for _, a := range []string{AnnotationBindCompleted, AnnotationBoundByController, AnnotationSelectedNode, AnnotationPending, AnnotationStatefulSet} {
			if val, ok := cur.Annotations[a]; ok {
				want.Annotations[a] = val
			}
		}
		if cur.Spec.VolumeName != "" {
			want.Spec.VolumeName = cur.Spec.VolumeName
		}
		want.Status = cur.Status
		p.putClaim(want)
	}
	for _, k := range sortedClaimKeys(v.claims) {
		if c := v.claims[k]; c != nil && c.Annotations[AnnotationGitUID] != "" && !inGit[k] {
			p.deleteClaim(c)
		}
	}
}

// syncVolume sets a volume's phase from its claim: Bound while its claim is bound to it,
// Released when the claim went (a provisioned volume is deleted then, once no pod uses the
// claim: its node removes the directory), Available when free.
func (p *planner) syncVolume(pv *corev1.PersistentVolume) {
	ref := pv.Spec.ClaimRef
	phase := pv.Status.Phase
	switch {
	case ref == nil:
		if phase != corev1.VolumeReleased && phase != corev1.VolumeFailed {
			phase = corev1.VolumeAvailable
		}
	case ref.UID == "":
		phase = corev1.VolumeAvailable // pre-bound in git, waiting for its claim
	default:
		c := p.claim(ref.Namespace, ref.Name)
		if c != nil && c.UID == ref.UID && c.Spec.VolumeName == pv.Name {
			phase = corev1.VolumeBound
			break
		}
		if isProvisioned(pv) {
			if len(p.claimUsers(claimKey(ref.Namespace, ref.Name))) == 0 {
				p.deleteVolume(pv)
				p.event(pv, corev1.EventTypeNormal, "VolumeDeleted",
					fmt.Sprintf("Claim %s/%s is gone: deleting volume %s", ref.Namespace, ref.Name, pv.Name))
				return
			}
		}
		phase = corev1.VolumeReleased
	}
	if phase != pv.Status.Phase {
		c := pv.DeepCopy()
		c.Status = corev1.PersistentVolumeStatus{Phase: phase}
		if phase == corev1.VolumeReleased {
			c.Status.Message = fmt.Sprintf("claim %s/%s is gone; skiff keeps the data: change the volume in git to use it again", ref.Namespace, ref.Name)
		}
		p.putVolume(c)
	}
}

// syncClaim checks a bound claim's volume and binds a pending claim that no pod waits to be
// scheduled with.
func (p *planner) syncClaim(c *corev1.PersistentVolumeClaim) {
	k := state.KeyOf(c)
	if c.Spec.VolumeName != "" && (c.Status.Phase == corev1.ClaimBound || c.Status.Phase == corev1.ClaimLost) {
		p.checkBoundClaim(c)
		return
	}
	users := p.claimUsers(k)
	var placed *corev1.Pod
	waiting := false
	for _, pod := range users {
		if pod.DeletionTimestamp != nil || !isPodActive(pod) {
			continue
		}
		if pod.Spec.NodeName != "" {
			placed = pod
		} else {
			waiting = true
		}
	}
	switch {
	case placed != nil:
		// A pod already runs with it (its claim was bound again): bind it on that node.
		if node := p.nodes[placed.Spec.NodeName]; node != nil && p.bindOnNode(c, node, nil) {
			return
		}
		p.pending(c, corev1.EventTypeWarning, "FailedBinding", p.noVolumeMessage(c))
	case waiting:
		// The scheduler binds it with the pod; say now when nothing can ever fit.
		if !provisionable(c) && p.bestVolume(c, nil, nil) == nil {
			p.pending(c, corev1.EventTypeWarning, "FailedBinding", p.noVolumeMessage(c))
		}
	case provisionable(c) && c.Spec.VolumeName == "":
		p.pending(c, corev1.EventTypeNormal, "WaitForFirstConsumer", msgWaitForConsumer)
	default:
		if pv := p.bestVolume(c, nil, nil); pv != nil {
			p.bind(c, pv, "")
			return
		}
		p.pending(c, corev1.EventTypeWarning, "FailedBinding", p.noVolumeMessage(c))
	}
}

// noVolumeMessage says why no volume fits a claim skiff cannot provision for.
func (p *planner) noVolumeMessage(c *corev1.PersistentVolumeClaim) string {
	switch class := claimClass(c); {
	case c.Spec.VolumeName != "":
		return fmt.Sprintf("volume %q does not exist, is bound to another claim or does not fit this claim", c.Spec.VolumeName)
	case class == "":
		return msgNoClass
	case slices.Contains(ProvisionedClasses, class):
		return fmt.Sprintf("no persistent volumes of storage class %q match this claim's selector", class)
	default:
		return fmt.Sprintf("no persistent volumes of storage class %q available for this claim, and skiff provisions only storage classes %s",
			class, strings.Join(ProvisionedClasses, " and "))
	}
}

// pending keeps a claim Pending, saying why (once: the reason is kept on the claim).
func (p *planner) pending(c *corev1.PersistentVolumeClaim, typ, reason, msg string) {
	if c.Status.Phase == corev1.ClaimPending && c.Annotations[AnnotationPending] == msg {
		return
	}
	n := c.DeepCopy()
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[AnnotationPending] = msg
	n.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	p.putClaim(n)
	p.event(n, typ, reason, msg)
}

// checkBoundClaim binds a claim again when its volume was lost: the volume is gone (deleted
// from git), bound elsewhere, or lives only on nodes that were removed from the cluster. A
// claim a placed pod still uses is marked Lost instead, until the pod goes.
func (p *planner) checkBoundClaim(c *corev1.PersistentVolumeClaim) {
	pv := p.storage().pvs[c.Spec.VolumeName]
	var why string
	switch {
	case pv == nil:
		why = fmt.Sprintf("volume %s is gone", c.Spec.VolumeName)
	case !claimRefMatches(pv.Spec.ClaimRef, c) || pv.Spec.ClaimRef.UID == "":
		why = fmt.Sprintf("volume %s is bound to another claim", pv.Name)
	case !p.volumeReachable(pv):
		node := c.Annotations[AnnotationSelectedNode]
		if node == "" {
			node = "its node"
		}
		why = fmt.Sprintf("volume %s lived on node %s, which was removed from the cluster", pv.Name, node)
	default:
		if c.Status.Phase != corev1.ClaimBound {
			n := c.DeepCopy()
			n.Status.Phase = corev1.ClaimBound
			p.putClaim(n)
		}
		return
	}
	for _, pod := range p.claimUsers(state.KeyOf(c)) {
		if pod.Spec.NodeName != "" && p.nodes[pod.Spec.NodeName] != nil {
			if c.Status.Phase != corev1.ClaimLost {
				n := c.DeepCopy()
				n.Status.Phase = corev1.ClaimLost
				p.putClaim(n)
				p.event(n, corev1.EventTypeWarning, "ClaimLost", why+"; pod "+pod.Name+" still uses it")
			}
			return
		}
	}
	if pv != nil && claimRefMatches(pv.Spec.ClaimRef, c) && pv.Spec.ClaimRef.UID != "" {
		if isProvisioned(pv) {
			p.deleteVolume(pv)
		} else {
			r := pv.DeepCopy()
			r.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumeReleased,
				Message: "its node was removed from the cluster; change the volume in git to use it again"}
			p.putVolume(r)
		}
	}
	n := c.DeepCopy()
	n.Spec.VolumeName = ""
	if g, ok := p.s.Git.Get(state.KeyOf(c)); ok && string(g.GetUID()) == c.Annotations[AnnotationGitUID] {
		n.Spec.VolumeName = g.(*corev1.PersistentVolumeClaim).Spec.VolumeName
	}
	for _, a := range []string{AnnotationBindCompleted, AnnotationBoundByController, AnnotationSelectedNode} {
		delete(n.Annotations, a)
	}
	msg := why + ": the claim will be bound to a new, empty volume (the data on it is lost)"
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[AnnotationPending] = msg
	n.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	p.putClaim(n)
	p.event(n, corev1.EventTypeWarning, "VolumeLost", msg)
	for _, pod := range p.claimUsers(state.KeyOf(c)) {
		if owner := metav1.GetControllerOfNoCopy(pod); owner != nil && owner.Kind == "StatefulSet" {
			if set, ok := p.s.Git.Get(state.Key{Kind: "StatefulSet", Namespace: pod.Namespace, Name: owner.Name}); ok && set.GetUID() == owner.UID {
				p.event(set, corev1.EventTypeWarning, "VolumeLost", fmt.Sprintf("pod %s: claim %s: %s", pod.Name, c.Name, msg))
			}
		}
	}
}

// bind binds a claim to a volume (node: the node it was chosen for, "" when bound at once).
func (p *planner) bind(c *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, node string) {
	v := pv.DeepCopy()
	v.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
		Namespace: c.Namespace, Name: c.Name, UID: c.UID}
	v.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound}
	if v.Annotations == nil {
		v.Annotations = map[string]string{}
	}
	v.Annotations[AnnotationBoundByController] = "yes"
	p.putVolume(v)

	n := c.DeepCopy()
	n.Spec.VolumeName = pv.Name
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	delete(n.Annotations, AnnotationPending)
	n.Annotations[AnnotationBindCompleted] = "yes"
	n.Annotations[AnnotationBoundByController] = "yes"
	if node != "" {
		n.Annotations[AnnotationSelectedNode] = node
	}
	n.Status = corev1.PersistentVolumeClaimStatus{
		Phase: corev1.ClaimBound, AccessModes: slices.Clone(pv.Spec.AccessModes),
		Capacity: corev1.ResourceList{corev1.ResourceStorage: volumeSize(pv)},
	}
	p.putClaim(n)
}

// bindOnNode binds a claim on the node a pod was placed on: to the best volume there, else
// to a new volume the provisioner makes there. It reports whether the claim is bound.
func (p *planner) bindOnNode(c *corev1.PersistentVolumeClaim, node *corev1.Node, taken map[string]bool) bool {
	if pv := p.bestVolume(c, node, taken); pv != nil {
		p.bind(c, pv, node.Name)
		return true
	}
	if !provisionable(c) {
		return false
	}
	pv := p.provision(c, node)
	p.bind(c, pv, node.Name)
	p.event(c, corev1.EventTypeNormal, "ProvisioningSucceeded",
		fmt.Sprintf("Successfully provisioned volume %s on node %s", pv.Name, node.Name))
	return true
}

// provision makes a volume for a claim on node, as k3s's local-path provisioner: a
// directory <data-dir>/volumes/<name> of that node (its agent creates it), pinned to the
// node by node affinity, deleted with its claim. It is named pvc-<claim UID>, as Kubernetes
// names provisioned volumes, or pvc-<random UID> when the claim had one before (its node
// was removed): a name always means one directory on one node.
func (p *planner) provision(c *corev1.PersistentVolumeClaim, node *corev1.Node) *corev1.PersistentVolume {
	name := "pvc-" + string(c.UID)
	for p.orig(state.Key{Kind: "PersistentVolume", Name: name}) != nil || p.storage().pvs[name] != nil {
		name = "pvc-" + string(p.newUID())
	}
	dataDir := node.Annotations[AnnotationDataDir]
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	modes := slices.Clone(c.Spec.AccessModes)
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolume{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: p.newUID(), CreationTimestamp: p.stamp,
			Annotations: map[string]string{AnnotationProvisionedBy: Provisioner},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: storageRequest(c)},
			AccessModes: modes,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: path.Join(dataDir, VolumesSubdir, name), Type: ptrTo(corev1.HostPathDirectoryOrCreate),
			}},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              claimClass(c),
			VolumeMode:                    ptrTo(corev1.PersistentVolumeFilesystem),
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node.Name}}},
			}}}},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable},
	}
}

// podClaims returns the claims of a pod that uses some, or an error a scheduler would
// report before looking at nodes (a claim that does not exist, or lost its volume).
func (p *planner) podClaims(pod *corev1.Pod) ([]*corev1.PersistentVolumeClaim, error) {
	var out []*corev1.PersistentVolumeClaim
	for _, name := range podClaimNames(pod) {
		c := p.claim(pod.Namespace, name)
		if c == nil {
			return nil, fmt.Errorf("persistentvolumeclaim %q not found", name)
		}
		if c.Status.Phase == corev1.ClaimLost {
			return nil, fmt.Errorf("persistentvolumeclaim %q bound to non-existent persistentvolume %q", name, c.Spec.VolumeName)
		}
		out = append(out, c)
	}
	return out, nil
}

// volumeFilter is the scheduler's VolumeBinding filter for a pod's claims: a bound claim's
// volume must be usable on the node; every unbound one needs a volume there, or a class
// skiff provisions.
func (p *planner) volumeFilter(claims []*corev1.PersistentVolumeClaim) func(*corev1.Node) string {
	return func(node *corev1.Node) string {
		taken := map[string]bool{}
		for _, c := range claims {
			if isBound(c) {
				if pv := p.storage().pvs[c.Spec.VolumeName]; pv == nil || !volumeOnNode(pv, node) {
					return reasonVolumeNodeAffinity
				}
				continue
			}
			if pv := p.bestVolume(c, node, taken); pv != nil {
				taken[pv.Name] = true
				continue
			}
			if !provisionable(c) {
				return reasonNoVolumes
			}
		}
		return ""
	}
}

// placePod schedules a pod, honouring its claims' volumes.
func (p *planner) placePod(pod *corev1.Pod) (string, error) {
	if len(podClaimNames(pod)) == 0 {
		return p.scheduler().Schedule(pod)
	}
	claims, err := p.podClaims(pod)
	if err != nil {
		return "", err
	}
	return p.scheduler().ScheduleWith(pod, p.volumeFilter(claims))
}

// bindPodClaims binds the unbound claims of a pod just placed on node.
func (p *planner) bindPodClaims(pod *corev1.Pod, node string) {
	n := p.nodes[node]
	if n == nil || len(podClaimNames(pod)) == 0 {
		return
	}
	taken := map[string]bool{}
	for _, name := range podClaimNames(pod) {
		if c := p.claim(pod.Namespace, name); c != nil && !isBound(c) {
			p.bindOnNode(c, n, taken)
		}
	}
}

// pinningVolume returns the volume that pins a placed pod to its node, as the snapshot has
// it: a claim of the pod bound to a volume with node affinity. nil when there is none.
func (p *planner) pinningVolume(pod *corev1.Pod) *corev1.PersistentVolume {
	for _, name := range podClaimNames(pod) {
		o, ok := p.s.Cluster.Get(claimKey(pod.Namespace, name))
		if !ok {
			continue
		}
		c := o.(*corev1.PersistentVolumeClaim)
		if c.Spec.VolumeName == "" {
			continue
		}
		if o, ok := p.s.Cluster.Get(state.Key{Kind: "PersistentVolume", Name: c.Spec.VolumeName}); ok {
			if pv := o.(*corev1.PersistentVolume); pinned(pv) {
				return pv
			}
		}
	}
	return nil
}

// Claim returns a claim as the binder keeps it (its cluster copy, with spec.volumeName and
// status), for the node loop mounting a pod's persistentVolumeClaim volumes; a claim from
// git the binder has not seen yet is returned as written (Pending).
func Claim(s *state.State, ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	k := claimKey(ns, name)
	if o, ok := s.Cluster.Get(k); ok {
		return o.(*corev1.PersistentVolumeClaim), true
	}
	if o, ok := s.Git.Get(k); ok {
		c := o.(*corev1.PersistentVolumeClaim).DeepCopy()
		c.Spec.VolumeName = "" // bound only once the binder says so
		c.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		return c, true
	}
	return nil, false
}

// Volume returns a PersistentVolume as the binder keeps it (see Claim).
func Volume(s *state.State, name string) (*corev1.PersistentVolume, bool) {
	k := state.Key{Kind: "PersistentVolume", Name: name}
	if o, ok := s.Cluster.Get(k); ok {
		return o.(*corev1.PersistentVolume), true
	}
	if o, ok := s.Git.Get(k); ok {
		return o.(*corev1.PersistentVolume), true
	}
	return nil, false
}

// Claims lists the claims of namespace ns ("" for all) as the binder keeps them, for
// `skiff get pvc`: every cluster claim (the copies of git's, and the StatefulSets'), plus a
// git claim not copied yet, as Claim returns it; sorted by namespace and name.
func Claims(s *state.State, ns string) []*corev1.PersistentVolumeClaim {
	out := state.Typed[*corev1.PersistentVolumeClaim](s.Cluster.List("PersistentVolumeClaim", ns))
	for _, g := range s.Git.List("PersistentVolumeClaim", ns) {
		if _, copied := s.Cluster.Get(state.KeyOf(g)); !copied {
			c, _ := Claim(s, g.GetNamespace(), g.GetName())
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.PersistentVolumeClaim) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Volumes lists the PersistentVolumes as the binder keeps them (see Claims), sorted by name.
func Volumes(s *state.State) []*corev1.PersistentVolume {
	out := state.Typed[*corev1.PersistentVolume](s.Cluster.List("PersistentVolume", ""))
	for _, g := range state.Typed[*corev1.PersistentVolume](s.Git.List("PersistentVolume", "")) {
		if _, copied := s.Cluster.Get(state.KeyOf(g)); !copied {
			out = append(out, volumeWithStatus(s, g))
		}
	}
	slices.SortFunc(out, func(a, b *corev1.PersistentVolume) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// claimWithStatus returns a git claim with the binding and status of its cluster copy.
func claimWithStatus(s *state.State, g *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	out := g.DeepCopy()
	o, ok := s.Cluster.Get(state.KeyOf(g))
	if c, isClaim := o.(*corev1.PersistentVolumeClaim); ok && isClaim && c.Annotations[AnnotationGitUID] == string(g.UID) {
		out.Spec.VolumeName = c.Spec.VolumeName
		out.Spec.StorageClassName = c.Spec.StorageClassName
		out.Status = *c.Status.DeepCopy()
		copyAnnotations(out, c, AnnotationPending, AnnotationSelectedNode, AnnotationBindCompleted)
		return out
	}
	out.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
	return out
}

// volumeWithStatus returns a git volume with the binding and status of its cluster copy.
func volumeWithStatus(s *state.State, g *corev1.PersistentVolume) *corev1.PersistentVolume {
	out := g.DeepCopy()
	o, ok := s.Cluster.Get(state.KeyOf(g))
	if pv, isPV := o.(*corev1.PersistentVolume); ok && isPV && pv.Annotations[AnnotationGitUID] == string(g.UID) {
		out.Spec.ClaimRef = pv.Spec.ClaimRef.DeepCopy()
		out.Status = *pv.Status.DeepCopy()
		return out
	}
	out.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending}
	return out
}

func copyAnnotations(dst, src metav1.Object, keys ...string) {
	a := maps.Clone(dst.GetAnnotations())
	for _, k := range keys {
		if v, ok := src.GetAnnotations()[k]; ok {
			if a == nil {
				a = map[string]string{}
			}
			a[k] = v
		}
	}
	dst.SetAnnotations(a)
}

// heldByVolume reports whether a pod on an unreachable node must stay there: one of its
// claims is bound to a volume that lives on that node (Kubernetes' at-most-one rule: a
// replacement elsewhere would start on an empty volume, or next to the old pod when the
// node is only cut off). It says so in a Warning; the pod resumes when the node comes back,
// and moves when the operator removes the node (skiff node remove).
func (p *planner) heldByVolume(pod *corev1.Pod) bool {
	pv := p.pinningVolume(pod)
	if pv == nil {
		return false
	}
	p.event(pod, corev1.EventTypeWarning, "NodeNotReady", fmt.Sprintf(
		"Node %s is not ready: pod %s/%s stays on it, since its volume %s lives there; it resumes when the node comes back, or moves with a new, empty volume once the node is removed (skiff node remove %s)",
		pod.Spec.NodeName, pod.Namespace, pod.Name, pv.Name, pod.Spec.NodeName))
	return true
}
