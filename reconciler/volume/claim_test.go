package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// claimObjects is a Lookup that is also a ClaimLookup.
type claimObjects struct {
	*objects
	claims map[string]*corev1.PersistentVolumeClaim
	pvs    map[string]*corev1.PersistentVolume
}

func (o *claimObjects) PersistentVolumeClaim(ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	c, ok := o.claims[ns+"/"+name]
	return c, ok
}

func (o *claimObjects) PersistentVolume(name string) (*corev1.PersistentVolume, bool) {
	pv, ok := o.pvs[name]
	return pv, ok
}

var _ ClaimLookup = (*claimObjects)(nil)

func withVolumes(objs ...any) *claimObjects {
	o := &claimObjects{objects: newObjects(), claims: map[string]*corev1.PersistentVolumeClaim{}, pvs: map[string]*corev1.PersistentVolume{}}
	for _, obj := range objs {
		switch v := obj.(type) {
		case *corev1.PersistentVolumeClaim:
			o.claims[v.Namespace+"/"+v.Name] = v
		case *corev1.PersistentVolume:
			o.pvs[v.Name] = v
		}
	}
	return o
}

// boundClaim is claim "data" bound to volume pv, as the leader's binder leaves it.
func boundClaim(pv string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data", UID: "claim-uid"},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: pv},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

func pvFor(name string, src corev1.PersistentVolumeSource, mods ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: src,
			ClaimRef: &corev1.ObjectReference{Namespace: "default", Name: "data", UID: "claim-uid"}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
	for _, m := range mods {
		m(pv)
	}
	return pv
}

func provisionedBy(who string) func(*corev1.PersistentVolume) {
	return func(pv *corev1.PersistentVolume) {
		pv.Annotations = map[string]string{annotationProvisionedBy: who}
	}
}

func claimPod(uid string, readOnly bool, mounts ...corev1.VolumeMount) *corev1.Pod {
	pod := newPod(uid, corev1.Volume{Name: "store", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: readOnly}}})
	pod.Spec.Containers[0].VolumeMounts = mounts
	return pod
}

func TestClaimVolumes(t *testing.T) {
	root := t.TempDir()
	volumesDir := filepath.Join(root, "volumes")
	allowed := filepath.Join(root, "srv")
	mustDo(t, os.MkdirAll(filepath.Join(allowed, "disk1"), 0o755))
	hostPath := func(p string) corev1.PersistentVolumeSource {
		return corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p}}
	}
	local := func(p string) corev1.PersistentVolumeSource {
		return corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: p}}
	}
	pending := boundClaim("")
	pending.Status.Phase = corev1.ClaimPending
	otherClaim := pvFor("pv-x", hostPath(allowed), func(pv *corev1.PersistentVolume) { pv.Spec.ClaimRef.UID = "another" })
	tests := []struct {
		name       string
		cfg        Config
		lookup     Lookup
		readOnly   bool
		mount      corev1.VolumeMount
		source     string // Mounts' Source
		readOnlyMt bool
		err        error
		msg        string
	}{
		{name: "provisioned: a directory under VolumesDir", cfg: Config{VolumesDir: volumesDir},
			lookup: withVolumes(boundClaim("pvc-1"), pvFor("pvc-1", hostPath("/var/lib/skiff/volumes/pvc-1"), provisionedBy("skiff.io/local-path"))),
			mount:  corev1.VolumeMount{Name: "store", MountPath: "/data"}, source: filepath.Join(volumesDir, "pvc-1")},
		{name: "provisioned, mounted read-only by the pod", cfg: Config{VolumesDir: volumesDir}, readOnly: true,
			lookup: withVolumes(boundClaim("pvc-1"), pvFor("pvc-1", hostPath("/var/lib/skiff/volumes/pvc-1"), provisionedBy("skiff.io/local-path"))),
			mount:  corev1.VolumeMount{Name: "store", MountPath: "/data"}, source: filepath.Join(volumesDir, "pvc-1"), readOnlyMt: true},
		{name: "provisioned, with a subPath made inside", cfg: Config{VolumesDir: volumesDir},
			lookup: withVolumes(boundClaim("pvc-1"), pvFor("pvc-1", hostPath("/x"), provisionedBy("skiff.io/local-path"))),
			mount:  corev1.VolumeMount{Name: "store", MountPath: "/data", SubPath: "pg/data"}, source: filepath.Join(volumesDir, "pvc-1", "pg", "data")},
		{name: "provisioned, but the agent has no volumes directory",
			lookup: withVolumes(boundClaim("pvc-1"), pvFor("pvc-1", hostPath("/x"), provisionedBy("skiff.io/local-path"))),
			err:    ErrUnsupported, msg: `volume "pvc-1" was provisioned by skiff, but this agent has no volumes directory`},
		{name: "hostPath volume from git, made when missing", cfg: Config{HostPathAllow: []string{allowed}},
			lookup: withVolumes(boundClaim("pv-a"), pvFor("pv-a", hostPath(filepath.Join(allowed, "new")))),
			mount:  corev1.VolumeMount{Name: "store", MountPath: "/data", ReadOnly: true}, source: filepath.Join(allowed, "new"), readOnlyMt: true},
		{name: "a volume from git claiming to be provisioned is a hostPath volume", cfg: Config{VolumesDir: volumesDir, HostPathAllow: []string{allowed}},
			lookup: withVolumes(boundClaim("pv-a"), pvFor("pv-a", hostPath(filepath.Join(root, "etc")), func(pv *corev1.PersistentVolume) {
				pv.Annotations = map[string]string{annotationProvisionedBy: provisioner, annotationGitUID: "git"}
			})),
			err: ErrHostPathNotAllowed, msg: `volume "pv-a": hostPath not allowed: ` + filepath.Join(root, "etc")},
		{name: "hostPath volume outside the allow-list", cfg: Config{HostPathAllow: []string{allowed}},
			lookup: withVolumes(boundClaim("pv-a"), pvFor("pv-a", hostPath("/etc"))),
			err:    ErrHostPathNotAllowed, msg: "--host-path-allow=/etc"},
		{name: "local volume", cfg: Config{HostPathAllow: []string{allowed}},
			lookup: withVolumes(boundClaim("pv-l"), pvFor("pv-l", local(filepath.Join(allowed, "disk1")))),
			mount:  corev1.VolumeMount{Name: "store", MountPath: "/data"}, source: filepath.Join(allowed, "disk1")},
		{name: "local volume whose directory is missing", cfg: Config{HostPathAllow: []string{allowed}},
			lookup: withVolumes(boundClaim("pv-l"), pvFor("pv-l", local(filepath.Join(allowed, "disk9")))),
			err:    ErrHostPathType, msg: `local volume "pv-l": hostPath type check failed: ` + filepath.Join(allowed, "disk9") + " is not a directory"},
		{name: "claim not bound yet", lookup: withVolumes(pending),
			err: ErrNotBound, msg: `pod default/web-c: volume "store": waiting for volume: persistentVolumeClaim "data" is not bound yet (Pending)`},
		{name: "claim missing", lookup: withVolumes(), err: ErrNotFound, msg: `persistentVolumeClaim "data": not found`},
		{name: "its volume missing", lookup: withVolumes(boundClaim("pv-gone")),
			err: ErrNotBound, msg: `waiting for volume: volume "pv-gone" of persistentVolumeClaim "data" does not exist`},
		{name: "its volume bound to another claim", cfg: Config{HostPathAllow: []string{allowed}}, lookup: withVolumes(boundClaim("pv-x"), otherClaim),
			err: ErrNotBound, msg: `waiting for volume: volume "pv-x" is not bound to persistentVolumeClaim "data"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, tc.cfg)
			pod := claimPod("c", tc.readOnly, tc.mount)
			err := m.Setup(context.Background(), pod, tc.lookup)
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Setup(%s) = %v; want %v containing %q", tc.name, err, tc.err, tc.msg)
				}
				return
			}
			mounts, err := m.Mounts(pod, &pod.Spec.Containers[0])
			if err != nil {
				t.Fatalf("Mounts(%s) = %v", tc.name, err)
			}
			want := Mount{Source: tc.source, Destination: tc.mount.MountPath, ReadOnly: tc.readOnlyMt}
			if len(mounts) != 1 || mounts[0] != want {
				t.Fatalf("Mounts(%s) = %+v; want %+v", tc.name, mounts, want)
			}
			if fi, err := os.Stat(tc.source); err != nil || !fi.IsDir() {
				t.Errorf("mount source %s: %v, %v; want a directory", tc.source, fi, err)
			}
		})
	}
}

// TestClaimOutlivesPods: what a pod writes to its claim's volume is there for the pod that
// replaces it (same claim, new UID); tearing a pod down leaves the data alone.
func TestClaimOutlivesPods(t *testing.T) {
	volumesDir := filepath.Join(t.TempDir(), "volumes")
	m, podsDir := newManager(t, Config{VolumesDir: volumesDir})
	lk := withVolumes(boundClaim("pvc-1"), pvFor("pvc-1", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}},
		provisionedBy("skiff.io/local-path")))
	mnt := corev1.VolumeMount{Name: "store", MountPath: "/var/lib/db"}
	first := claimPod("first", false, mnt)
	mustDo(t, m.Setup(context.Background(), first, lk))
	mounts, err := m.Mounts(first, &first.Spec.Containers[0])
	mustDo(t, err)
	mustDo(t, os.WriteFile(filepath.Join(mounts[0].Source, "PG_VERSION"), []byte("16"), 0o600))
	if fi, err := os.Stat(mounts[0].Source); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("provisioned volume %s: %v, %v; want a 0777 directory every container user can write", mounts[0].Source, fi, err)
	}
	mustDo(t, m.Setup(context.Background(), first, lk)) // idempotent
	mustDo(t, m.Teardown(context.Background(), first.UID))
	if _, err := os.Lstat(filepath.Join(podsDir, "first")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod directory after Teardown: %v; want it gone", err)
	}

	second := claimPod("second", false, mnt)
	mustDo(t, m.Setup(context.Background(), second, lk))
	mounts, err = m.Mounts(second, &second.Spec.Containers[0])
	mustDo(t, err)
	if b, err := os.ReadFile(filepath.Join(mounts[0].Source, "PG_VERSION")); err != nil || string(b) != "16" {
		t.Errorf("the replacement pod reads %q, %v from its claim; want the first pod's data", b, err)
	}

	// The claim is bound again to another volume (its node was removed): the link follows.
	lk.claims["default/data"] = boundClaim("pvc-2")
	lk.pvs["pvc-2"] = pvFor("pvc-2", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}, provisionedBy("skiff.io/local-path"))
	mustDo(t, m.Setup(context.Background(), second, lk))
	if mounts, err = m.Mounts(second, &second.Spec.Containers[0]); err != nil || mounts[0].Source != filepath.Join(volumesDir, "pvc-2") {
		t.Errorf("Mounts after the claim was bound again = %+v, %v; want %s", mounts, err, filepath.Join(volumesDir, "pvc-2"))
	}
	mustDo(t, m.Teardown(context.Background(), second.UID))

	// The leader deleted pvc-1's PersistentVolume: its directory goes; pvc-2's stays, and so
	// does anything that is not a provisioned volume's.
	mustDo(t, os.Mkdir(filepath.Join(volumesDir, "lost+found"), 0o700))
	removed, err := m.CleanupVolumes(context.Background(), func(name string) bool { return name == "pvc-2" })
	mustDo(t, err)
	entries, _ := os.ReadDir(volumesDir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(removed, []string{"pvc-1"}) || !slices.Equal(left, []string{"lost+found", "pvc-2"}) {
		t.Errorf("CleanupVolumes removed %v, left %v; want pvc-1 removed, lost+found and pvc-2 left", removed, left)
	}
}
