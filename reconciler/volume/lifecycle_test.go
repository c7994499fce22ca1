package volume

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

func TestGitRepo(t *testing.T) {
	const repo = "http://git.lan/team/site.git"
	v1 := writeTree(t, map[string]string{
		"index.html": "v1", "bin/run.sh*": "#!/bin/sh", "latest": "->index.html", ".git": "gitdir: /elsewhere",
	})
	v2 := writeTree(t, map[string]string{"index.html": "v2", "about.html": "about"})
	tests := []struct {
		name      string
		source    corev1.GitRepoVolumeSource
		noSource  bool
		view      map[string]string // after Setup at v1
		moved     map[string]string // after main moves to v2 and Update; nil: not checked
		err       error
		errSubstr string
	}{
		{
			name:   `directory "" is a subdirectory named after the repository`,
			source: corev1.GitRepoVolumeSource{Repository: repo, Revision: "main"},
			view:   map[string]string{"site/index.html": "-rw-r--r-- v1", "site/bin/run.sh": "-rwxr-xr-x #!/bin/sh", "site/latest": "-rw-r--r-- v1"},
			moved:  map[string]string{"site/index.html": "-rw-r--r-- v2", "site/about.html": "-rw-r--r-- about"},
		},
		{
			name:   `directory "." is the repository`,
			source: corev1.GitRepoVolumeSource{Repository: repo, Revision: "main", Directory: "."},
			view:   map[string]string{"index.html": "-rw-r--r-- v1", "bin/run.sh": "-rwxr-xr-x #!/bin/sh", "latest": "-rw-r--r-- v1"},
			moved:  map[string]string{"index.html": "-rw-r--r-- v2", "about.html": "-rw-r--r-- about"},
		},
		{
			name:   "a named directory",
			source: corev1.GitRepoVolumeSource{Repository: repo, Revision: "main", Directory: "www/root"},
			view:   map[string]string{"www/root/index.html": "-rw-r--r-- v1", "www/root/bin/run.sh": "-rwxr-xr-x #!/bin/sh", "www/root/latest": "-rw-r--r-- v1"},
		},
		{
			name:   "a pinned revision does not move",
			source: corev1.GitRepoVolumeSource{Repository: repo, Revision: "v1.0", Directory: "."},
			view:   map[string]string{"index.html": "-rw-r--r-- v1", "bin/run.sh": "-rwxr-xr-x #!/bin/sh", "latest": "-rw-r--r-- v1"},
			moved:  map[string]string{"index.html": "-rw-r--r-- v1", "bin/run.sh": "-rwxr-xr-x #!/bin/sh", "latest": "-rw-r--r-- v1"},
		},
		{name: "directory escaping the volume", source: corev1.GitRepoVolumeSource{Repository: repo, Directory: "../x"}, err: ErrInvalid},
		{name: "unknown revision", source: corev1.GitRepoVolumeSource{Repository: repo, Revision: "nope"}, errSubstr: `revision "nope" of ` + repo + ` not found`},
		{name: "no git source on this node", source: corev1.GitRepoVolumeSource{Repository: repo}, noSource: true, err: ErrNoGitRepos},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			git := &gitSource{}
			git.set(repo, "main", v1)
			git.set(repo, "v1.0", v1)
			cfg := Config{GitRepos: git}
			if tc.noSource {
				cfg.GitRepos = nil
			}
			m, dir := newManager(t, cfg)
			pod := newPod("g", corev1.Volume{Name: "site", VolumeSource: corev1.VolumeSource{GitRepo: &tc.source}})
			pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "site", MountPath: "/usr/share/nginx/html"}}
			err := m.Setup(context.Background(), pod, newObjects())
			if tc.err != nil || tc.errSubstr != "" {
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("Setup() = %v; want %v containing %q", err, tc.err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup() = %v", err)
			}
			vdir := filepath.Join(dir, "g", "volumes", typeGitRepo, "site")
			checkLayout(t, vdir)
			if got := readView(t, vdir); !maps.Equal(got, tc.view) {
				t.Errorf("volume holds %q; want %q", got, tc.view)
			}
			mounts, err := m.Mounts(pod, &pod.Spec.Containers[0])
			if err != nil || len(mounts) != 1 || !mounts[0].ReadOnly || mounts[0].Source != vdir {
				t.Errorf("Mounts() = %+v, %v; want %s read-only", mounts, err, vdir)
			}
			// The same checkout again is not rewritten.
			if changed, err := m.Update(context.Background(), pod, newObjects()); err != nil || len(changed) != 0 {
				t.Errorf("Update() at the same revision = %q, %v; want nothing changed", changed, err)
			}
			if tc.moved == nil {
				return
			}
			git.set(repo, "main", v2)
			changed, err := m.Update(context.Background(), pod, newObjects())
			wantChanged := tc.source.Revision == "main"
			if err != nil || (len(changed) == 1) != wantChanged {
				t.Errorf("Update() after main moved = %q, %v; want changed: %v", changed, err, wantChanged)
			}
			if got := readView(t, vdir); !maps.Equal(got, tc.moved) {
				t.Errorf("after the move the volume holds %q; want %q", got, tc.moved)
			}
		})
	}
}

func TestGitRepoAfterRestart(t *testing.T) {
	// A new Manager (the agent restarted) compares the served tree instead of rewriting it.
	const repo = "/srv/git/app"
	src := writeTree(t, map[string]string{"a": "1"})
	git := &gitSource{}
	git.set(repo, "", src)
	m, dir := newManager(t, Config{GitRepos: git})
	pod := newPod("g", corev1.Volume{Name: "app", VolumeSource: corev1.VolumeSource{GitRepo: &corev1.GitRepoVolumeSource{Repository: repo}}})
	mustDo(t, m.Setup(context.Background(), pod, newObjects()))
	restarted := NewManager(m.cfg)
	changed, err := restarted.Update(context.Background(), pod, newObjects())
	if err != nil || len(changed) != 0 {
		t.Errorf("Update() after a restart = %q, %v; want nothing changed", changed, err)
	}
	if got := readView(t, filepath.Join(dir, "g", "volumes", typeGitRepo, "app")); got["app/a"] != "-rw-r--r-- 1" {
		t.Errorf("volume holds %q", got)
	}
}

func TestGitRepoAcrossFilesystems(t *testing.T) {
	// A checkout on another filesystem than the pods directory is copied, not hard-linked.
	const repo = "file:///srv/git/app"
	src := t.TempDir()
	mustDo(t, mountTmpfs(src, 1<<20, 0o755))
	t.Cleanup(func() { unmountAll(src) })
	mustDo(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh"), 0o755))
	git := &gitSource{}
	git.set(repo, "main", src)
	m, dir := newManager(t, Config{GitRepos: git})
	pod := newPod("c", corev1.Volume{Name: "app", VolumeSource: corev1.VolumeSource{GitRepo: &corev1.GitRepoVolumeSource{Repository: repo, Revision: "main"}}})
	mustDo(t, m.Setup(context.Background(), pod, newObjects()))
	served := filepath.Join(dir, "c", "volumes", typeGitRepo, "app", "app", "run.sh")
	want := map[string]string{"app/run.sh": "-rwxr-xr-x #!/bin/sh"}
	if got := readView(t, filepath.Dir(filepath.Dir(served))); !maps.Equal(got, want) {
		t.Errorf("volume holds %q; want %q", got, want)
	}
	a, errA := os.Stat(served)
	b, errB := os.Stat(filepath.Join(src, "run.sh"))
	if errA != nil || errB != nil || os.SameFile(a, b) {
		t.Errorf("served file %v, %v: want a copy, not the source's inode", errA, errB)
	}
}

func TestMounts(t *testing.T) {
	lk := newObjects(configMap("cfg", map[string]string{"app.conf": "x=1"}))
	vols := []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
	}
	tests := []struct {
		name    string
		mount   corev1.VolumeMount
		env     []corev1.EnvVar
		prepare func(t *testing.T, scratch string)
		source  string // relative to the pod's volumes directory
		ro      bool
		err     error
		msg     string
	}{
		{name: "emptyDir read-write", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/data"}, source: "empty-dir/scratch"},
		{name: "emptyDir read-only", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/data", ReadOnly: true}, source: "empty-dir/scratch", ro: true},
		{name: "configMap always read-only", mount: corev1.VolumeMount{Name: "config", MountPath: "/etc/app"}, source: "configmap/config", ro: true},
		{name: "subPath created in an emptyDir", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/var/lib/db", SubPath: "db/data"}, source: "empty-dir/scratch/db/data"},
		{name: "subPath to a configMap key resolves through ..data", mount: corev1.VolumeMount{Name: "config", MountPath: "/etc/app.conf", SubPath: "app.conf"}, source: "configmap/config/..2026_11_22_10_00_01.123456789/app.conf", ro: true},
		{name: "subPath missing in a configMap", mount: corev1.VolumeMount{Name: "config", MountPath: "/x", SubPath: "other"}, err: ErrNotFound},
		{name: "subPath with ..", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "a/../../.."}, err: ErrInvalid, msg: "must not contain '..'"},
		{name: "absolute subPath", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "/etc"}, err: ErrInvalid, msg: "relative"},
		{name: "subPath through a symlink out of the volume", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "evil/shadow"},
			prepare: func(t *testing.T, scratch string) { mustDo(t, os.Symlink("/etc", filepath.Join(scratch, "evil"))) },
			err:     ErrInvalid, msg: "outside the volume"},
		{name: "subPath through a relative symlink climbing out", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "up"},
			prepare: func(t *testing.T, scratch string) { mustDo(t, os.Symlink("../../..", filepath.Join(scratch, "up"))) },
			err:     ErrInvalid, msg: "outside the volume"},
		{name: "subPath through a symlink inside the volume", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "current"},
			prepare: func(t *testing.T, scratch string) {
				mustDo(t, os.Mkdir(filepath.Join(scratch, "v2"), 0o755))
				mustDo(t, os.Symlink("v2", filepath.Join(scratch, "current")))
			},
			source: "empty-dir/scratch/v2"},
		{name: "subPathExpr from the downward API", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(POD_NAME)/$(NODE)/$$"},
			env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			},
			source: "empty-dir/scratch/web-m/pi-1/$"},
		{name: "subPathExpr with a plain env value referring to another", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(DIR)"},
			env:    []corev1.EnvVar{{Name: "BASE", Value: "logs"}, {Name: "DIR", Value: "$(BASE)/app"}},
			source: "empty-dir/scratch/logs/app"},
		{name: "subPathExpr with a missing variable", mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(NOPE)"}, err: ErrInvalid, msg: "missing value for NOPE"},
		{name: "unknown volume", mount: corev1.VolumeMount{Name: "cache", MountPath: "/cache"}, err: ErrInvalid,
			msg: `pod default/web-m: container "app": volumeMount "cache" at /cache: the pod has no volume named "cache"`},
		{name: "relative mountPath", mount: corev1.VolumeMount{Name: "scratch", MountPath: "data"}, err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := newManager(t, Config{})
			pod := newPod("m", vols...)
			c := &pod.Spec.Containers[0]
			c.VolumeMounts, c.Env = []corev1.VolumeMount{tc.mount}, tc.env
			mustDo(t, m.Setup(context.Background(), pod, lk))
			base := filepath.Join(dir, "m", "volumes")
			if tc.prepare != nil {
				tc.prepare(t, filepath.Join(base, typeEmptyDir, "scratch"))
			}
			mounts, err := m.Mounts(pod, c)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Mounts() = %+v, %v; want %v containing %q", mounts, err, tc.err, tc.msg)
				}
				return
			}
			want := Mount{Source: filepath.Join(base, tc.source), Destination: tc.mount.MountPath, ReadOnly: tc.ro}
			if err != nil || len(mounts) != 1 || mounts[0] != want {
				t.Fatalf("Mounts() = %+v, %v; want %+v", mounts, err, want)
			}
			if _, err := os.Stat(want.Source); err != nil {
				t.Errorf("mount source: %v", err)
			}
		})
	}
	t.Run("before Setup", func(t *testing.T) {
		m, _ := newManager(t, Config{})
		pod := newPod("m", vols...)
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/data"}}
		if _, err := m.Mounts(pod, &pod.Spec.Containers[0]); !errors.Is(err, ErrNotSetUp) {
			t.Errorf("Mounts() = %v; want ErrNotSetUp", err)
		}
	})
}

func TestSetupUnsupported(t *testing.T) {
	tests := []struct {
		name   string
		source corev1.VolumeSource
		err    error
		msg    string
	}{
		{name: "persistentVolumeClaim without a ClaimLookup", source: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
			err: ErrUnsupported, msg: `pod default/web-x: volume "v": persistentVolumeClaim volumes need the cluster's claims and volumes, which this agent's lookup does not give`},
		{name: "nfs", source: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nas", Path: "/"}}, err: ErrUnsupported, msg: "nfs volumes are not supported"},
		{name: "csi", source: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "x"}}, err: ErrUnsupported, msg: "csi volumes are not supported"},
		{name: "no source", source: corev1.VolumeSource{}, err: ErrInvalid, msg: "no source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, Config{})
			err := m.Setup(context.Background(), newPod("x", corev1.Volume{Name: "v", VolumeSource: tc.source}), newObjects())
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Setup() = %v; want %v containing %q", err, tc.err, tc.msg)
			}
		})
	}
}

// everything is a pod using one volume of every kind that leaves something on the host.
func everything(uid string) *corev1.Pod {
	return newPod(uid,
		corev1.Volume{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("8Mi"))}}},
		corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		corev1.Volume{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}},
	)
}

func TestTeardownAndCleanup(t *testing.T) {
	lk := newObjects(configMap("cfg", map[string]string{"a": "1"}), secret("creds", map[string]string{"t": "x"}))
	tests := []struct {
		name  string
		pods  []string
		keep  []string // Cleanup keeps these; nil: Teardown of every pod instead
		gone  []string
		stays []string
	}{
		{name: "teardown removes mounts and directories", pods: []string{"p1"}, gone: []string{"p1"}},
		{name: "teardown of a pod with nothing on the host", pods: []string{}, gone: []string{"never"}},
		{name: "cleanup removes only unknown pods", pods: []string{"p1", "p2", "p3"}, keep: []string{"p2"}, gone: []string{"p1", "p3"}, stays: []string{"p2"}},
		{name: "cleanup keeping everything", pods: []string{"p1"}, keep: []string{"p1"}, stays: []string{"p1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := newManager(t, Config{})
			for _, uid := range tc.pods {
				mustDo(t, m.Setup(context.Background(), everything(uid), lk))
			}
			if n := len(mountsOf(t, filepath.Join(dir, "p1"))); len(tc.pods) > 0 && n != 3 {
				t.Fatalf("%d mounts for p1 after Setup; want 3 (memory emptyDir, secret, projected)", n)
			}
			if tc.keep == nil {
				for _, uid := range tc.gone {
					mustDo(t, m.Teardown(context.Background(), types.UID(uid)))
					mustDo(t, m.Teardown(context.Background(), types.UID(uid))) // twice is fine
				}
			} else {
				// A fresh Manager, as after an agent restart.
				keep := map[types.UID]bool{}
				for _, k := range tc.keep {
					keep[types.UID(k)] = true
				}
				mustDo(t, NewManager(m.cfg).Cleanup(context.Background(), func(uid types.UID) bool { return keep[uid] }))
			}
			for _, uid := range tc.gone {
				if mounts := mountsOf(t, filepath.Join(dir, uid)); len(mounts) != 0 {
					t.Errorf("pod %s still mounted: %v", uid, mounts)
				}
				if _, err := os.Lstat(filepath.Join(dir, uid)); !os.IsNotExist(err) {
					t.Errorf("pod %s directory left: %v", uid, err)
				}
			}
			for _, uid := range tc.stays {
				if n := len(mountsOf(t, filepath.Join(dir, uid))); n != 3 {
					t.Errorf("kept pod %s has %d mounts; want 3", uid, n)
				}
				if got := readView(t, filepath.Join(dir, uid, "volumes", typeSecret, "creds")); got["t"] != "-rw-r--r-- x" {
					t.Errorf("kept pod %s secret volume holds %q", uid, got)
				}
			}
		})
	}
	t.Run("invalid UID", func(t *testing.T) {
		m, _ := newManager(t, Config{})
		if err := m.Teardown(context.Background(), "../.."); !errors.Is(err, ErrInvalid) {
			t.Errorf("Teardown(../..) = %v; want ErrInvalid", err)
		}
	})
}

func TestRemoveStaysOnOneFilesystem(t *testing.T) {
	// If a mount under a pod survived unmounting, removal must not empty it.
	root := t.TempDir()
	inner := filepath.Join(root, "pod", "foreign")
	mustDo(t, os.MkdirAll(inner, 0o755))
	mustDo(t, mountTmpfs(inner, 1<<20, 0o755))
	t.Cleanup(func() { unmountAll(root) })
	mustDo(t, os.WriteFile(filepath.Join(inner, "precious"), []byte("keep"), 0o644))
	err := removeAllOneFilesystem(filepath.Join(root, "pod"))
	if err == nil || !strings.Contains(err.Error(), "another filesystem is mounted there") {
		t.Errorf("removeAllOneFilesystem() = %v; want a refusal", err)
	}
	if b, err := os.ReadFile(filepath.Join(inner, "precious")); err != nil || string(b) != "keep" {
		t.Errorf("file on the other filesystem: %q, %v; want it kept", b, err)
	}
}
