package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// Fixtures.

// volume is a PersistentVolume in git: hostPath /srv/<name>, ReadWriteOnce, no class.
func volume(name, size string, mods ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/" + name}},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	for _, m := range mods {
		m(pv)
	}
	return pv
}

func volumeClass(class string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) { pv.Spec.StorageClassName = class }
}

func volumeModes(modes ...corev1.PersistentVolumeAccessMode) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) { pv.Spec.AccessModes = modes }
}

// localOn makes a local volume that lives on one node.
func localOn(node string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) {
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/" + pv.Name}}
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}}}
	}
}

func preBound(ns, name string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: name}
	}
}

func volumeLabels(k, v string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) { pv.Labels = map[string]string{k: v} }
}

// claimOf is a PersistentVolumeClaim in git: ReadWriteOnce, class "" (static volumes only).
func claimOf(name, size string, mods ...func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptrTo(""),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func claimClassOf(class *string) func(*corev1.PersistentVolumeClaim) {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = class }
}

func claimModes(modes ...corev1.PersistentVolumeAccessMode) func(*corev1.PersistentVolumeClaim) {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = modes }
}

// withClaim mounts a claim in a bare pod.
func withClaim(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
	}
}

func (c *cluster) claimObj(name string) *corev1.PersistentVolumeClaim {
	o, ok := c.state().Cluster.Get(claimKey("default", name))
	if !ok {
		return nil
	}
	return o.(*corev1.PersistentVolumeClaim)
}

func (c *cluster) volumeObj(name string) *corev1.PersistentVolume {
	o, ok := c.state().Cluster.Get(state.Key{Kind: "PersistentVolume", Name: name})
	if !ok {
		return nil
	}
	return o.(*corev1.PersistentVolume)
}

func (c *cluster) volumes() []*corev1.PersistentVolume {
	return state.Typed[*corev1.PersistentVolume](c.state().Cluster.List("PersistentVolume", ""))
}

// eventsFor lists "Reason: message" of the events about one object.
func (c *cluster) eventsFor(kind, name string) []string {
	var out []string
	for _, e := range c.events {
		if manifest.KindOf(e.Object) == kind && e.Object.GetName() == name {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}

func TestBinding(t *testing.T) {
	fast, slow, none := ptrTo("fast"), ptrTo("slow"), ptrTo("")
	tests := []struct {
		name    string
		objs    []manifest.Object // claim "data" and maybe pod "app"
		bound   string            // the volume "data" binds to; "pvc-" for a provisioned one; "" pending
		pending string            // why it is pending (its event)
		podNode string            // where pod "app" runs
		podMsg  string            // why it is not scheduled
	}{
		{name: "smallest volume that fits", objs: objs(volume("a", "1Gi"), volume("b", "10Gi"), volume("c", "5Gi"), claimOf("data", "2Gi")),
			bound: "c"},
		{name: "class must match", objs: objs(volume("f", "10Gi", volumeClass("fast")), volume("s", "10Gi", volumeClass("slow")),
			claimOf("data", "1Gi", claimClassOf(slow))), bound: "s"},
		{name: "access modes must be offered", objs: objs(volume("rwo", "1Gi"), volume("rwx", "5Gi", volumeModes(corev1.ReadWriteMany, corev1.ReadWriteOnce)),
			claimOf("data", "1Gi", claimModes(corev1.ReadWriteMany))), bound: "rwx"},
		{name: "label selector", objs: objs(volume("a", "1Gi"), volume("b", "2Gi", volumeLabels("tier", "gold")),
			claimOf("data", "1Gi", func(c *corev1.PersistentVolumeClaim) {
				c.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}
			})), bound: "b"},
		{name: "claim pre-bound by volumeName", objs: objs(volume("a", "1Gi"), volume("b", "5Gi"),
			claimOf("data", "1Gi", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "b" })), bound: "b"},
		{name: "volume pre-bound by claimRef wins over a smaller one", objs: objs(volume("a", "1Gi"), volume("b", "5Gi", preBound("default", "data")),
			claimOf("data", "1Gi")), bound: "b"},
		{name: "volume pre-bound to another claim is not taken", objs: objs(volume("a", "5Gi", preBound("default", "other")),
			claimOf("data", "1Gi")), pending: "FailedBinding: " + msgNoClass},
		{name: "nothing big enough: Pending with an event", objs: objs(volume("a", "1Gi"), claimOf("data", "2Gi")),
			pending: "FailedBinding: " + msgNoClass},
		{name: "a class skiff does not provision, without volumes", objs: objs(claimOf("data", "1Gi", claimClassOf(fast))),
			pending: `FailedBinding: no persistent volumes of storage class "fast" available for this claim, and skiff provisions only storage classes local-path and standard`},
		{name: "default class waits for its first pod", objs: objs(claimOf("data", "1Gi", claimClassOf(nil))),
			pending: "WaitForFirstConsumer: " + msgWaitForConsumer},
		{name: "default class with a pod: provisioned on its node", objs: objs(claimOf("data", "1Gi", claimClassOf(nil)), bare("app", "img", withClaim("data"))),
			bound: "pvc-", podNode: "n1"},
		{name: "standard class is provisioned too", objs: objs(claimOf("data", "1Gi", claimClassOf(ptrTo("standard"))), bare("app", "img", withClaim("data"))),
			bound: "pvc-", podNode: "n1"},
		{name: "a volume on one node takes the pod there", objs: objs(volume("disk", "1Gi", localOn("n2")), claimOf("data", "1Gi"),
			bare("app", "img", withClaim("data"))), bound: "disk", podNode: "n2"},
		{name: "on the pod's node a volume from git is used before provisioning", objs: objs(volume("lp", "1Gi", volumeClass(DefaultStorageClass), localOn("n1")),
			claimOf("data", "1Gi", claimClassOf(nil)), bare("app", "img", withClaim("data"))), bound: "lp", podNode: "n1"},
		{name: "nothing fits the pod's claim: the pod is not scheduled", objs: objs(volume("a", "1Gi"), claimOf("data", "2Gi"),
			bare("app", "img", withClaim("data"))), pending: "FailedBinding: " + msgNoClass,
			podMsg: "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind."},
		{name: "the volume is on a node the pod may not use", objs: objs(volume("disk", "1Gi", localOn("n2")), claimOf("data", "1Gi"),
			bare("app", "img", withClaim("data"), func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "n1"} })),
			podMsg: "0/2 nodes are available: 1 node(s) didn't find available persistent volumes to bind, 1 node(s) didn't match Pod's node affinity/selector."},
		{name: "the pod's claim does not exist", objs: objs(bare("app", "img", withClaim("data"))),
			podMsg: `persistentvolumeclaim "data" not found`},
		{name: "a volume class none is not a class-less claim's", objs: objs(volume("a", "1Gi", volumeClass("manual")), claimOf("data", "1Gi", claimClassOf(none))),
			pending: "FailedBinding: " + msgNoClass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.sync(tt.objs...)
			c.converge(nil)
			claim := c.claimObj("data")
			switch {
			case claim == nil && (tt.bound != "" || tt.pending != ""):
				t.Fatalf("Plan(%s) made no claim data", tt.name)
			case tt.bound != "":
				if !strings.HasPrefix(claim.Spec.VolumeName, tt.bound) || claim.Status.Phase != corev1.ClaimBound {
					t.Fatalf("Plan(%s) claim = %s %q; want Bound to %s", tt.name, claim.Status.Phase, claim.Spec.VolumeName, tt.bound)
				}
				pv := c.volumeObj(claim.Spec.VolumeName)
				size := volumeSize(pv)
				if pv.Status.Phase != corev1.VolumeBound || !claimRefMatches(pv.Spec.ClaimRef, claim) || pv.Spec.ClaimRef.UID != claim.UID ||
					claim.Status.Capacity.Storage().Cmp(size) != 0 || claim.Annotations[AnnotationPending] != "" {
					t.Errorf("Plan(%s) volume %s = %s claimRef %v, claim capacity %v; want Bound to the claim, its size on the claim",
						tt.name, pv.Name, pv.Status.Phase, pv.Spec.ClaimRef, claim.Status.Capacity)
				}
			case tt.pending != "":
				if claim.Status.Phase != corev1.ClaimPending || claim.Spec.VolumeName != "" {
					t.Fatalf("Plan(%s) claim = %s %q; want Pending", tt.name, claim.Status.Phase, claim.Spec.VolumeName)
				}
				if got := c.eventsFor("PersistentVolumeClaim", "data"); !slices.Equal(got, []string{tt.pending}) {
					t.Errorf("Plan(%s) claim events = %q; want once %q", tt.name, got, tt.pending)
				}
			}
			if app := c.pod("app"); app != nil {
				if app.Spec.NodeName != tt.podNode {
					t.Errorf("Plan(%s) placed app on %q; want %q", tt.name, app.Spec.NodeName, tt.podNode)
				}
				if cond := podCondition(app, corev1.PodScheduled); tt.podMsg != "" && (cond == nil || cond.Message != tt.podMsg) {
					t.Errorf("Plan(%s) app PodScheduled = %+v; want message %q", tt.name, cond, tt.podMsg)
				}
			}
			c.converged(tt.name)
		})
	}
}

func TestProvisioning(t *testing.T) {
	dataDir := func(n *corev1.Node) { n.Annotations = map[string]string{AnnotationDataDir: "/data/skiff"} }
	c := newCluster(t, node("n1", dataDir), node("n2"), node("n3"))
	c.sync(statefulSet("db", 3, "img:v1", claimTemplate("data", "2Gi", nil), claimTemplate("logs", "1Gi", ptrTo("standard"))))
	c.converge(nil)
	if got := len(c.volumes()); got != 6 {
		t.Fatalf("provisioned %d volumes; want 6 (two claims for each of three pods)", got)
	}
	for i, pod := range c.pods() {
		for _, v := range pod.Spec.Volumes {
			claim := c.claimObj(v.PersistentVolumeClaim.ClaimName)
			pv := c.volumeObj(claim.Spec.VolumeName)
			dir := "/var/lib/skiff"
			if pod.Spec.NodeName == "n1" {
				dir = "/data/skiff"
			}
			wantClass := map[string]string{"data": "local-path", "logs": "standard"}[v.Name]
			if pv.Name != "pvc-"+string(claim.UID) || pv.Spec.HostPath == nil || pv.Spec.HostPath.Path != dir+"/volumes/"+pv.Name ||
				pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.StorageClassName != wantClass ||
				!volumeOnNode(pv, c.nodeObj(pod.Spec.NodeName)) || !isProvisioned(pv) ||
				claim.Annotations[AnnotationSelectedNode] != pod.Spec.NodeName || *claim.Spec.StorageClassName != wantClass {
				t.Errorf("pod %d (%s on %s) volume %s: claim %s -> %+v; want pvc-<claim uid> under %s/volumes, class %s, pinned to %s, reclaim Delete",
					i, pod.Name, pod.Spec.NodeName, v.Name, claim.Name, pv, dir, wantClass, pod.Spec.NodeName)
			}
			if claim.Labels["app"] != "db" || claim.Annotations[AnnotationStatefulSet] != "db" || len(claim.OwnerReferences) != 0 {
				t.Errorf("claim %s labels %v annotations %v owners %v; want the selector's labels, its StatefulSet named, no owner (retained)",
					claim.Name, claim.Labels, claim.Annotations, claim.OwnerReferences)
			}
		}
	}
	if got := c.eventsWith("ProvisioningSucceeded"); len(got) != 6 {
		t.Errorf("ProvisioningSucceeded events = %q; want 6", got)
	}
	c.converged("provisioning")
}

func (c *cluster) nodeObj(name string) *corev1.Node {
	o, _ := c.state().Cluster.Get(state.Key{Kind: "Node", Name: name})
	return o.(*corev1.Node)
}

func TestStatefulPodFollowsItsVolume(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2", "n3")...)
	c.sync(statefulSet("db", 3, "img:v1", claimTemplate("data", "1Gi", nil)), deploy("api", 3, "img:v1"))
	c.converge(nil)
	web1 := c.pod("db-1")
	host := web1.Spec.NodeName
	claim := c.claimObj("data-db-1")
	oldPV := claim.Spec.VolumeName

	// The node goes NotReady for a minute: the stateless pod there moves, db-1 stays.
	c.down[host] = c.now
	c.now = c.now.Add(time.Minute)
	c.converge(nil)
	if p := c.pod("db-1"); p == nil || p.UID != web1.UID || p.Spec.NodeName != host || p.DeletionTimestamp != nil {
		t.Fatalf("db-1 with its node %s NotReady = %+v; want it left where it is", host, p)
	}
	for _, p := range c.pods() {
		if strings.HasPrefix(p.Name, "api-") && p.Spec.NodeName == host {
			t.Errorf("api pod %s still on the NotReady node %s; want it moved", p.Name, host)
		}
	}
	if got := c.eventsFor("Pod", "db-1"); !slices.ContainsFunc(got, func(e string) bool {
		return strings.HasPrefix(e, "NodeNotReady: Node "+host+" is not ready: pod default/db-1 stays on it, since its volume "+oldPV+" lives there")
	}) {
		t.Errorf("db-1 events = %q; want a NodeNotReady warning naming its volume", got)
	}
	if got := c.stateful("db"); got != "db-0=v1 db-1=v1! db-2=v1" {
		t.Errorf("db with a NotReady node = %s; want all three pods, none duplicated, db-1 not ready", got)
	}
	// Held, but out of its Services: the leader marked it NotReady.
	if cond := podCondition(c.pod("db-1"), corev1.PodReady); cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != ReasonNodeNotReady {
		t.Errorf("db-1 Ready condition with its node NotReady = %+v; want False, reason %s", cond, ReasonNodeNotReady)
	}

	// It comes back: nothing changes, and its node reports it Ready again.
	delete(c.down, host)
	c.converge(nil)
	if !isPodReady(c.pod("db-1")) {
		t.Errorf("db-1 not Ready after its node came back")
	}
	if p := c.pod("db-1"); p.UID != web1.UID || c.claimObj("data-db-1").Spec.VolumeName != oldPV {
		t.Fatalf("db-1 after its node came back = %s on %s; want the same pod and volume", p.UID, p.Spec.NodeName)
	}

	// It goes again and the operator removes it: db-1 moves, with a new volume, and a warning.
	c.down[host] = c.now
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Node", Name: host}}}})
	c.events = nil
	c.converge(nil)
	cur := c.pod("db-1")
	claim = c.claimObj("data-db-1")
	if cur == nil || cur.UID == web1.UID || cur.Spec.NodeName == host || cur.Spec.NodeName == "" || !runningAndReady(cur) {
		t.Fatalf("db-1 after its node was removed = %+v; want a new pod running elsewhere", cur)
	}
	pv := c.volumeObj(claim.Spec.VolumeName)
	if claim.Spec.VolumeName == oldPV || pv == nil || !volumeOnNode(pv, c.nodeObj(cur.Spec.NodeName)) || c.volumeObj(oldPV) != nil {
		t.Errorf("data-db-1 after the node was removed = bound to %s; want a new volume on %s and the old one %s deleted",
			claim.Spec.VolumeName, cur.Spec.NodeName, oldPV)
	}
	want := "VolumeLost: volume " + oldPV + " lived on node " + host + ", which was removed from the cluster: the claim will be bound to a new, empty volume (the data on it is lost)"
	if got := c.eventsFor("PersistentVolumeClaim", "data-db-1"); !slices.Contains(got, want) {
		t.Errorf("data-db-1 events = %q; want %q", got, want)
	}
	if got := c.eventsFor("StatefulSet", "db"); !slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "VolumeLost: pod db-1: claim data-db-1: volume") }) {
		t.Errorf("db events = %q; want a VolumeLost warning", got)
	}
	if got := c.stateful("db"); got != "db-0=v1 db-1=v1 db-2=v1" {
		t.Errorf("db after node removal = %s; want all three pods", got)
	}
	c.converged("node removed")
}

func TestStatefulSetClaimRetention(t *testing.T) {
	del, keep := appsv1.DeletePersistentVolumeClaimRetentionPolicyType, appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	tests := []struct {
		name                    string
		whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType
		afterScaleDown          string // claims after scaling 3 → 1
		afterDelete             string // claims after the StatefulSet left git
	}{
		{"retain (the default)", keep, keep, "data-web-0 data-web-1 data-web-2", "data-web-0 data-web-1 data-web-2"},
		{"delete on scale down", keep, del, "data-web-0", "data-web-0 data-web-1 data-web-2"},
		{"delete with the StatefulSet", del, keep, "data-web-0 data-web-1 data-web-2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2", "n3")...)
			mods := []func(*appsv1.StatefulSet){claimTemplate("data", "1Gi", nil), retain(tt.whenDeleted, tt.whenScaled)}
			c.sync(statefulSet("web", 3, "img:v1", mods...))
			c.converge(nil)
			web2 := c.pod("web-2")
			claim2 := c.claimObj("data-web-2")
			c.sync(statefulSet("web", 1, "img:v1", mods...))
			c.converge(nil)
			if got := c.claimNames(); got != tt.afterScaleDown {
				t.Errorf("Plan(%s) claims after scale down = %q; want %q", tt.name, got, tt.afterScaleDown)
			}
			c.checkVolumesMatchClaims(tt.name)

			// Scale up again: a retained claim comes back with its volume, on its node.
			c.sync(statefulSet("web", 3, "img:v1", mods...))
			c.converge(nil)
			got := c.claimObj("data-web-2")
			if same := got.UID == claim2.UID; same != (tt.whenScaled == keep) {
				t.Errorf("Plan(%s) scale up: same claim %v; want %v", tt.name, same, tt.whenScaled == keep)
			}
			if tt.whenScaled == keep && (got.Spec.VolumeName != claim2.Spec.VolumeName || c.pod("web-2").Spec.NodeName != web2.Spec.NodeName) {
				t.Errorf("Plan(%s) web-2 back on %s with %s; want %s with %s", tt.name, c.pod("web-2").Spec.NodeName, got.Spec.VolumeName,
					web2.Spec.NodeName, claim2.Spec.VolumeName)
			}

			c.sync()
			c.converge(nil)
			if got := c.claimNames(); got != tt.afterDelete {
				t.Errorf("Plan(%s) claims after the StatefulSet left = %q; want %q", tt.name, got, tt.afterDelete)
			}
			c.checkVolumesMatchClaims(tt.name)
			c.converged(tt.name)
		})
	}
}

func (c *cluster) claimNames() string {
	var names []string
	for _, o := range c.state().Cluster.List("PersistentVolumeClaim", "") {
		names = append(names, o.GetName())
	}
	return strings.Join(names, " ")
}

// checkVolumesMatchClaims fails unless every provisioned volume is bound to an existing claim.
func (c *cluster) checkVolumesMatchClaims(name string) {
	c.t.Helper()
	for _, pv := range c.volumes() {
		claim := c.claimObj(pv.Spec.ClaimRef.Name)
		if claim == nil || claim.Spec.VolumeName != pv.Name || pv.Status.Phase != corev1.VolumeBound {
			c.t.Errorf("Plan(%s) left volume %s (%s) for claim %s; want provisioned volumes to go with their claims", name, pv.Name, pv.Status.Phase, pv.Spec.ClaimRef.Name)
		}
	}
	if n := c.state().Cluster.Count("PersistentVolumeClaim"); n != len(c.volumes()) {
		c.t.Errorf("Plan(%s) = %d claims, %d volumes; want one volume per claim", name, n, len(c.volumes()))
	}
}

func TestVolumeRelease(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(volume("a", "1Gi"), claimOf("data", "1Gi"), claimOf("logs", "1Gi", claimClassOf(nil)), bare("app", "img", withClaim("logs")))
	c.converge(nil)
	if pv := c.volumeObj("a"); pv.Status.Phase != corev1.VolumeBound {
		t.Fatalf("volume a = %s; want Bound", pv.Status.Phase)
	}
	provisioned := c.claimObj("logs").Spec.VolumeName

	// The claims leave git: the git volume is Released (its data kept), the provisioned
	// one deleted once its pod is gone.
	c.sync(volume("a", "1Gi"))
	c.converge(nil)
	if pv := c.volumeObj("a"); pv.Status.Phase != corev1.VolumeReleased || pv.Spec.ClaimRef == nil {
		t.Errorf("volume a after its claim left = %s %v; want Released, still naming the claim", pv.Status.Phase, pv.Spec.ClaimRef)
	}
	if c.volumeObj(provisioned) != nil {
		t.Errorf("provisioned volume %s still there after its claim left; want it deleted", provisioned)
	}
	// A new claim does not get the released volume...
	c.sync(volume("a", "1Gi"), claimOf("data2", "1Gi"))
	c.converge(nil)
	if cl := c.claimObj("data2"); cl.Status.Phase != corev1.ClaimPending {
		t.Errorf("claim data2 = %s; want Pending: volume a is Released", cl.Status.Phase)
	}
	// ...until the operator changes the volume in git.
	c.sync(volume("a", "1Gi", volumeLabels("reuse", "yes")), claimOf("data2", "1Gi"))
	c.converge(nil)
	if cl := c.claimObj("data2"); cl.Status.Phase != corev1.ClaimBound || cl.Spec.VolumeName != "a" {
		t.Errorf("claim data2 after volume a changed in git = %s %q; want Bound to a", cl.Status.Phase, cl.Spec.VolumeName)
	}
	c.converged("release")

	// The volume leaves git: its claim is bound again when it can be, else waits.
	c.sync(claimOf("data2", "1Gi"), volume("b", "2Gi"))
	c.converge(nil)
	if cl := c.claimObj("data2"); cl.Spec.VolumeName != "b" {
		t.Errorf("claim data2 after volume a left git = %s %q; want bound to b", cl.Status.Phase, cl.Spec.VolumeName)
	}
	c.converged("volume gone")
}

func TestStorageWithStatus(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(volume("a", "5Gi"), claimOf("data", "1Gi"), claimOf("wait", "1Gi", claimClassOf(nil)))
	c.converge(nil)
	get := func(kind, ns, name string) manifest.Object {
		o, _ := c.state().Git.Get(state.Key{Kind: kind, Namespace: ns, Name: name})
		return WithStatus(c.state(), c.now, o)
	}
	claim := get("PersistentVolumeClaim", "default", "data").(*corev1.PersistentVolumeClaim)
	if claim.Status.Phase != corev1.ClaimBound || claim.Spec.VolumeName != "a" || claim.Status.Capacity.Storage().String() != "5Gi" {
		t.Errorf("WithStatus(claim data) = %s %q %v; want Bound to a, 5Gi", claim.Status.Phase, claim.Spec.VolumeName, claim.Status.Capacity)
	}
	wait := get("PersistentVolumeClaim", "default", "wait").(*corev1.PersistentVolumeClaim)
	if wait.Status.Phase != corev1.ClaimPending || wait.Annotations[AnnotationPending] != msgWaitForConsumer || *wait.Spec.StorageClassName != DefaultStorageClass {
		t.Errorf("WithStatus(claim wait) = %s %v class %v; want Pending, waiting for its first consumer, class %s",
			wait.Status.Phase, wait.Annotations, wait.Spec.StorageClassName, DefaultStorageClass)
	}
	pv := get("PersistentVolume", "", "a").(*corev1.PersistentVolume)
	if cp := c.volumeObj("a"); cp.Annotations[AnnotationBoundByController] != "yes" || cp.Annotations[AnnotationGitUID] == "" {
		t.Errorf("cluster copy of volume a annotations = %v; want the git UID and bound-by-controller kept", cp.Annotations)
	}
	if pv.Status.Phase != corev1.VolumeBound || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "data" {
		t.Errorf("WithStatus(volume a) = %s %v; want Bound to data", pv.Status.Phase, pv.Spec.ClaimRef)
	}
	if cl, ok := Claim(c.state(), "default", "data"); !ok || cl.Spec.VolumeName != "a" {
		t.Errorf("Claim(data) = %v, %v; want the bound copy", cl, ok)
	}
	if v, ok := Volume(c.state(), "a"); !ok || v.Status.Phase != corev1.VolumeBound {
		t.Errorf("Volume(a) = %v, %v; want the bound copy", v, ok)
	}
	var names []string
	for _, cl := range Claims(c.state(), "") {
		names = append(names, cl.Name+"="+string(cl.Status.Phase))
	}
	for _, v := range Volumes(c.state()) {
		names = append(names, v.Name+"="+string(v.Status.Phase))
	}
	if got := strings.Join(names, " "); got != "data=Bound wait=Pending a=Bound" {
		t.Errorf("Claims, Volumes = %s; want data=Bound wait=Pending a=Bound", got)
	}
	c.sync(volume("a", "5Gi"), claimOf("data", "1Gi"), claimOf("wait", "1Gi", claimClassOf(nil)), claimOf("new", "1Gi"), volume("b", "1Gi"))
	names = nil
	for _, cl := range Claims(c.state(), "default") {
		names = append(names, cl.Name+"="+string(cl.Status.Phase))
	}
	for _, v := range Volumes(c.state()) {
		names = append(names, v.Name+"="+string(v.Status.Phase))
	}
	if got := strings.Join(names, " "); got != "data=Bound new=Pending wait=Pending a=Bound b=Pending" {
		t.Errorf("Claims, Volumes before the binder saw the commit = %s; want the new ones listed as written, Pending", got)
	}
	if _, ok := Claim(c.state(), "default", "nope"); ok {
		t.Errorf("Claim(nope) found; want none")
	}
}
