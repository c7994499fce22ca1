package volume

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// objects is an in-memory Lookup.
type objects struct {
	mu         sync.Mutex
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func newObjects(objs ...any) *objects {
	o := &objects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, obj := range objs {
		o.put(obj)
	}
	return o
}

func (o *objects) put(obj any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch v := obj.(type) {
	case *corev1.ConfigMap:
		o.configMaps[v.Namespace+"/"+v.Name] = v
	case *corev1.Secret:
		o.secrets[v.Namespace+"/"+v.Name] = v
	}
}

func (o *objects) ConfigMap(ns, name string) (*corev1.ConfigMap, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cm, ok := o.configMaps[ns+"/"+name]
	return cm, ok
}

func (o *objects) Secret(ns, name string) (*corev1.Secret, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.secrets[ns+"/"+name]
	return s, ok
}

var _ Lookup = (*objects)(nil)

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

// gitSource serves checkouts from directories the test made; set moves a revision.
type gitSource struct {
	mu    sync.Mutex
	dirs  map[string]string // repo@revision → dir
	calls int
}

func (g *gitSource) set(repo, rev, dir string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dirs == nil {
		g.dirs = map[string]string{}
	}
	g.dirs[repo+"@"+rev] = dir
}

func (g *gitSource) Checkout(_ context.Context, repo, rev string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	d, ok := g.dirs[repo+"@"+rev]
	if !ok {
		return "", fmt.Errorf("revision %q of %s not found", rev, repo)
	}
	return d, nil
}

var _ GitRepoSource = (*gitSource)(nil)

// writeTree makes a directory from path → content; a content starting with "->" makes a
// symlink, a path ending in "*" an executable.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, "*") {
			p, mode = strings.TrimSuffix(p, "*"), 0o755
		}
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(content), mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// clock is a settable Now for payload directory names.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

// newManager returns a Manager over a fresh directory that unmounts whatever a test left.
func newManager(t *testing.T, cfg Config) (*Manager, string) {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := unmountAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	cfg.Dir = filepath.Join(dir, "pods")
	if cfg.Now == nil {
		c := &clock{now: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)}
		cfg.Now = c.Now
	}
	if cfg.Allocatable == nil {
		cfg.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	}
	return NewManager(cfg), cfg.Dir
}

func newPod(uid string, vols ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: "web-" + uid, UID: types.UID(uid),
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": `say "hi"`},
		},
		Spec: corev1.PodSpec{
			NodeName:   "pi-1",
			Volumes:    vols,
			Containers: []corev1.Container{{Name: "app", Image: "demo"}},
		},
	}
}

// readView reads a volume as a container would: every visible path (through the symlinks)
// with its content and permission bits; hidden ..entries are not part of the view.
func readView(t *testing.T, dir string) map[string]string {
	t.Helper()
	view := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if rel == "" && strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p := filepath.Join(rel, e.Name())
			fi, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() {
				walk(p)
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			view[p] = fmt.Sprintf("%s %s", fi.Mode().Perm(), b)
		}
	}
	walk("")
	return view
}

// checkLayout checks the AtomicWriter layout: ..data → a timestamped directory, and every
// visible top-level entry a symlink name → ..data/name.
func checkLayout(t *testing.T, dir string) {
	t.Helper()
	ts, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil {
		t.Fatalf("..data: %v", err)
	}
	if !strings.HasPrefix(ts, "..2026_11_22_10_") {
		t.Errorf("..data -> %q; want a ..2026_11_22_10_MM_SS.nnnnnnnnn directory", ts)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || target != filepath.Join(dataDirName, e.Name()) {
			t.Errorf("%s -> %q, %v; want a symlink to ..data/%s", e.Name(), target, err, e.Name())
		}
	}
}

// mountsOf returns the mountinfo lines of the mount points at or below root.
func mountsOf(t *testing.T, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == root || strings.HasPrefix(f[4], root+"/")) {
			out[f[4]] = line
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func mode(m int32) *int32 { return &m }

func fileCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(string, fs.DirEntry, error) error { n++; return nil })
	return n
}
