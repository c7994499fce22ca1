package volume

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestContentVolumes(t *testing.T) {
	lk := newObjects(
		configMap("app-config", map[string]string{"app.properties": "color=blue\n", "log.level": "debug"}),
		&corev1.ConfigMap{ObjectMeta: configMap("bin", nil).ObjectMeta, BinaryData: map[string][]byte{"blob": {0, 1, 2}}},
		secret("db", map[string]string{"user": "admin", "password": "s3cret"}),
		&corev1.Secret{ObjectMeta: secret("tls", nil).ObjectMeta, StringData: map[string]string{"tls.key": "KEY"}},
	)
	withResources := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}
	}
	tests := []struct {
		name   string
		source corev1.VolumeSource
		pod    func(*corev1.Pod)
		kind   string // directory type under volumes/
		view   map[string]string
		tmpfs  bool
		err    error  // errors.Is
		errMsg string // substring of the error
	}{
		{
			name:   "configMap every key",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}},
			kind:   typeConfigMap,
			view:   map[string]string{"app.properties": "-rw-r--r-- color=blue\n", "log.level": "-rw-r--r-- debug"},
		},
		{
			name: "configMap items with nested paths, item mode and defaultMode",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
				DefaultMode:          mode(0o440),
				Items: []corev1.KeyToPath{
					{Key: "app.properties", Path: "conf/app/app.properties"},
					{Key: "log.level", Path: "level", Mode: mode(0o600)},
				},
			}},
			kind: typeConfigMap,
			view: map[string]string{"conf/app/app.properties": "-r--r----- color=blue\n", "level": "-rw------- debug"},
		},
		{
			name:   "configMap binaryData",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "bin"}}},
			kind:   typeConfigMap,
			view:   map[string]string{"blob": "-rw-r--r-- \x00\x01\x02"},
		},
		{
			name:   "configMap missing and optional is an empty volume",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}},
			kind:   typeConfigMap,
			view:   map[string]string{},
		},
		{
			name:   "configMap missing",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}},
			err:    ErrNotFound, errMsg: `pod default/web-1: volume "v": configmap "nope" not found`,
		},
		{
			name: "configMap item key missing",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"},
				Items: []corev1.KeyToPath{{Key: "color", Path: "color"}}}},
			err: ErrNotFound, errMsg: `configmap "app-config" references non-existent key "color"`,
		},
		{
			name: "configMap item key missing and optional is skipped",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Optional: ptr(true),
				Items: []corev1.KeyToPath{{Key: "color", Path: "color"}, {Key: "log.level", Path: "level"}}}},
			kind: typeConfigMap,
			view: map[string]string{"level": "-rw-r--r-- debug"},
		},
		{
			name:   "configMap item path escaping the volume",
			source: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Items: []corev1.KeyToPath{{Key: "log.level", Path: "../level"}}}},
			err:    ErrInvalid, errMsg: "must not contain '..'",
		},
		{
			name:   "secret on tmpfs",
			source: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db", DefaultMode: mode(0o400)}},
			kind:   typeSecret, tmpfs: true,
			view: map[string]string{"user": "-r-------- admin", "password": "-r-------- s3cret"},
		},
		{
			name:   "secret stringData",
			source: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}},
			kind:   typeSecret, tmpfs: true,
			view: map[string]string{"tls.key": "-rw-r--r-- KEY"},
		},
		{
			name:   "secret missing",
			source: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}},
			err:    ErrNotFound, errMsg: `secret "gone" not found`,
		},
		{
			name: "downwardAPI pod fields in Kubernetes' format",
			source: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
				{Path: "uid", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}},
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
				{Path: "app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}},
			}}},
			kind: typeDownwardAPI,
			view: map[string]string{
				"name": "-rw-r--r-- web-1", "namespace": "-rw-r--r-- default", "uid": "-rw-r--r-- 1",
				"labels":      "-rw-r--r-- app=\"web\"\ntier=\"front\"",
				"annotations": "-rw-r--r-- note=\"say \\\"hi\\\"\"",
				"app":         "-rw-r--r-- web",
			},
		},
		{
			name: "downwardAPI container resources with divisors",
			source: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "mem_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
				{Path: "mem_request", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "requests.memory"}},
				{Path: "cpu_request", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}},
				{Path: "cpu_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu"}},
			}}},
			pod:  withResources,
			kind: typeDownwardAPI,
			view: map[string]string{
				"mem_limit":   "-rw-r--r-- 64",
				"mem_request": "-rw-r--r-- 67108864", // defaults to the limit
				"cpu_request": "-rw-r--r-- 250",
				"cpu_limit":   "-rw-r--r-- 4", // unset: the node's allocatable
			},
		},
		{
			name: "downwardAPI unsupported field",
			source: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "ip", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}},
			err: ErrUnsupported, errMsg: `fieldPath "status.podIP"`,
		},
		{
			name: "downwardAPI resource of an unknown container",
			source: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "m", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "side", Resource: "limits.memory"}}}}},
			err: ErrInvalid, errMsg: `no container named "side"`,
		},
		{
			name: "projected configMap, secret and downwardAPI on tmpfs",
			source: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: mode(0o444), Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Items: []corev1.KeyToPath{{Key: "log.level", Path: "config/level"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Items: []corev1.KeyToPath{{Key: "password", Path: "secret/password", Mode: mode(0o400)}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
			}}},
			kind: typeProjected, tmpfs: true,
			view: map[string]string{"config/level": "-r--r--r-- debug", "secret/password": "-r-------- s3cret", "name": "-r--r--r-- web-1"},
		},
		{
			name: "projected without secrets stays on disk",
			source: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Items: []corev1.KeyToPath{{Key: "log.level", Path: "level"}}}},
			}}},
			kind: typeProjected,
			view: map[string]string{"level": "-rw-r--r-- debug"},
		},
		{
			name: "projected sources writing the same path",
			source: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Items: []corev1.KeyToPath{{Key: "log.level", Path: "x"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Items: []corev1.KeyToPath{{Key: "user", Path: "x"}}}},
			}}},
			err: ErrInvalid, errMsg: `both write "x"`,
		},
		{
			name: "projected serviceAccountToken",
			source: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}},
			err: ErrUnsupported, errMsg: "serviceAccountToken",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := newManager(t, Config{})
			pod := newPod("1", corev1.Volume{Name: "v", VolumeSource: tc.source})
			if tc.pod != nil {
				tc.pod(pod)
			}
			err := m.Setup(context.Background(), pod, lk)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errMsg) {
					t.Fatalf("Setup() = %v; want %v containing %q", err, tc.err, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup() = %v", err)
			}
			vdir := filepath.Join(dir, "1", "volumes", tc.kind, "v")
			checkLayout(t, vdir)
			if got := readView(t, vdir); !maps.Equal(got, tc.view) {
				t.Errorf("volume holds %q; want %q", got, tc.view)
			}
			if _, mounted := mountsOf(t, vdir)[vdir]; mounted != tc.tmpfs {
				t.Errorf("tmpfs mounted on %s: %v; want %v", vdir, mounted, tc.tmpfs)
			}
			// Setup again changes nothing and mounts nothing twice.
			before, _ := os.Readlink(filepath.Join(vdir, dataDirName))
			if err := m.Setup(context.Background(), pod, lk); err != nil {
				t.Fatalf("second Setup() = %v", err)
			}
			after, _ := os.Readlink(filepath.Join(vdir, dataDirName))
			if before != after || len(mountsOf(t, vdir)) != map[bool]int{true: 1}[tc.tmpfs] {
				t.Errorf("second Setup rewrote ..data %s -> %s or mounted again (%d mounts)", before, after, len(mountsOf(t, vdir)))
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	cmVol := corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	optVol := corev1.Volume{Name: "extra", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Optional: ptr(true)}}}
	secVol := corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}
	emptyVol := corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	tests := []struct {
		name    string
		change  func(o *objects)
		changed []string
		config  map[string]string // view of the config volume afterwards
		extra   map[string]string
		err     error
	}{
		{
			name:   "nothing changed rewrites nothing",
			change: func(*objects) {},
			config: map[string]string{"a": "-rw-r--r-- 1", "b": "-rw-r--r-- 2"},
			extra:  map[string]string{},
		},
		{
			name:    "a changed value shows up in place",
			change:  func(o *objects) { o.put(configMap("cfg", map[string]string{"a": "10", "b": "2"})) },
			changed: []string{"config"},
			config:  map[string]string{"a": "-rw-r--r-- 10", "b": "-rw-r--r-- 2"},
			extra:   map[string]string{},
		},
		{
			name:    "a removed key disappears and an added one appears",
			change:  func(o *objects) { o.put(configMap("cfg", map[string]string{"a": "1", "c": "3"})) },
			changed: []string{"config"},
			config:  map[string]string{"a": "-rw-r--r-- 1", "c": "-rw-r--r-- 3"},
			extra:   map[string]string{},
		},
		{
			name:    "an optional configMap created later fills its volume",
			change:  func(o *objects) { o.put(configMap("later", map[string]string{"x": "y"})) },
			changed: []string{"extra"},
			config:  map[string]string{"a": "-rw-r--r-- 1", "b": "-rw-r--r-- 2"},
			extra:   map[string]string{"x": "-rw-r--r-- y"},
		},
		{
			name:    "a changed secret",
			change:  func(o *objects) { o.put(secret("creds", map[string]string{"token": "new"})) },
			changed: []string{"creds"},
			config:  map[string]string{"a": "-rw-r--r-- 1", "b": "-rw-r--r-- 2"},
			extra:   map[string]string{},
		},
		{
			name: "a deleted configMap keeps the old files and reports it",
			change: func(o *objects) {
				o.mu.Lock()
				delete(o.configMaps, "default/cfg")
				o.mu.Unlock()
			},
			config: map[string]string{"a": "-rw-r--r-- 1", "b": "-rw-r--r-- 2"},
			extra:  map[string]string{},
			err:    ErrNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := newManager(t, Config{})
			lk := newObjects(configMap("cfg", map[string]string{"a": "1", "b": "2"}), secret("creds", map[string]string{"token": "old"}))
			pod := newPod("u", cmVol, optVol, secVol, emptyVol)
			if err := m.Setup(context.Background(), pod, lk); err != nil {
				t.Fatal(err)
			}
			cdir := filepath.Join(dir, "u", "volumes", typeConfigMap, "config")
			before, _ := os.Readlink(filepath.Join(cdir, dataDirName))
			tc.change(lk)
			changed, err := m.Update(context.Background(), pod, lk)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Update() error = %v; want %v", err, tc.err)
			}
			if strings.Join(changed, ",") != strings.Join(tc.changed, ",") {
				t.Errorf("Update() changed %q; want %q", changed, tc.changed)
			}
			if got := readView(t, cdir); !maps.Equal(got, tc.config) {
				t.Errorf("config volume holds %q; want %q", got, tc.config)
			}
			if got := readView(t, filepath.Join(dir, "u", "volumes", typeConfigMap, "extra")); !maps.Equal(got, tc.extra) {
				t.Errorf("extra volume holds %q; want %q", got, tc.extra)
			}
			after, _ := os.Readlink(filepath.Join(cdir, dataDirName))
			if wantSwap := strings.Contains(strings.Join(changed, ","), "config"); (before != after) != wantSwap {
				t.Errorf("..data %s -> %s; want a swap: %v", before, after, wantSwap)
			}
			checkLayout(t, cdir)
			// A second Update with nothing new changes nothing and leaves one payload directory.
			again, _ := m.Update(context.Background(), pod, lk)
			if len(again) != 0 {
				t.Errorf("second Update() changed %q; want nothing", again)
			}
			if n := len(payloadDirs(t, cdir)); n != 1 {
				t.Errorf("%d payload directories after a quiet Update; want 1", n)
			}
		})
	}
}

func payloadDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "..") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestAtomicUpdateSeenByReader updates a ConfigMap volume over and over while a reader
// reads it as a container would; every read must see one complete version, and two files read
// through one ..data must come from the same version.
func TestAtomicUpdateSeenByReader(t *testing.T) {
	const updates = 60
	const size = 64 << 10
	version := func(i int) map[string]string {
		c := string(rune('a' + i%26))
		return map[string]string{"one": strings.Repeat(c, size), "two": strings.Repeat(c, size/2)}
	}
	for _, medium := range []string{"configMap on disk", "secret on tmpfs"} {
		t.Run(medium, func(t *testing.T) {
			m, dir := newManager(t, Config{Now: time.Now})
			lk := newObjects(configMap("cfg", version(0)), secret("cfg", version(0)))
			src := corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}
			kind := typeConfigMap
			if medium == "secret on tmpfs" {
				src, kind = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cfg"}}, typeSecret
			}
			pod := newPod("r", corev1.Volume{Name: "v", VolumeSource: src})
			if err := m.Setup(context.Background(), pod, lk); err != nil {
				t.Fatal(err)
			}
			vdir := filepath.Join(dir, "r", "volumes", kind, "v")

			var reads atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var bad atomic.Value
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					one, err1 := os.ReadFile(filepath.Join(vdir, "one"))
					data, err2 := os.Open(filepath.Join(vdir, dataDirName)) // one snapshot
					if err1 != nil || err2 != nil {
						bad.Store(errors.Join(err1, err2).Error())
						return
					}
					a, errA := os.ReadFile(filepath.Join("/proc/self/fd", strconv.Itoa(int(data.Fd())), "one"))
					b, errB := os.ReadFile(filepath.Join("/proc/self/fd", strconv.Itoa(int(data.Fd())), "two"))
					data.Close()
					switch {
					case errA != nil || errB != nil:
						bad.Store(errors.Join(errA, errB).Error())
						return
					case len(one) != size || strings.Count(string(one), string(one[:1])) != size:
						bad.Store("torn read of one: " + string(one[:min(len(one), 10)]))
						return
					case len(a) != size || len(b) != size/2 || a[0] != b[0] || strings.Count(string(a), string(a[:1])) != size:
						bad.Store("one and two through one ..data differ: " + string(a[:1]) + string(b[:1]))
						return
					}
					reads.Add(1)
				}
			}()
			for i := 1; i <= updates && bad.Load() == nil; i++ {
				lk.put(configMap("cfg", version(i)))
				lk.put(secret("cfg", version(i)))
				changed, err := m.Update(context.Background(), pod, lk)
				if err != nil || len(changed) != 1 {
					t.Fatalf("Update() = %q, %v; want [v]", changed, err)
				}
				// Let the reader finish at least one read against this version.
				want := reads.Load() + 1
				deadline := time.Now().Add(5 * time.Second)
				for reads.Load() < want && bad.Load() == nil {
					if time.Now().After(deadline) {
						t.Fatal("reader made no progress within 5s")
					}
					runtime.Gosched()
				}
			}
			close(stop)
			wg.Wait()
			if msg := bad.Load(); msg != nil {
				t.Fatalf("reader saw a broken state: %v", msg)
			}
			if got := readView(t, vdir)["two"]; !strings.HasSuffix(got, version(updates)["two"]) {
				t.Errorf("after %d updates two = %.20q...; want version %d", updates, got, updates)
			}
			if n := reads.Load(); n < updates {
				t.Errorf("reader made %d reads; want at least %d", n, updates)
			}
		})
	}
}
