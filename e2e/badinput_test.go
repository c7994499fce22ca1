package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

const baseManifests = `apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {k: v}
`

// TestBadInputKeepsLiveCommit pushes broken commits, one per case, on top of a good one:
// each is reported by `skiff status` with the file, object and field, is not applied, and
// what ran keeps running (the same Podman containers). Then the good state is committed
// again. Also: a ref that does not exist, a repository that disappears and comes back, and
// an image that is not there.
func TestBadInputKeepsLiveCommit(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	repo := gitrepo.New(t)
	repo.Write("base.yaml", baseManifests)
	repo.Write("web.yaml", harness.Deployment("base", 1, "v1"))
	good := repo.Commit("good")
	a := harness.StartAgent(t, repo.URL(), nil)
	a.WaitLive(t, 60*time.Second, good)
	a.WaitPods(t, 90*time.Second, "app=base", 1, nil)
	running := harness.RunningIDs(harness.NodeContainers(t, a.Name))

	outside := filepath.Join(t.TempDir(), "outside.yaml")
	if err := os.WriteFile(outside, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: escaped}\ndata: {k: v}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// stillRunning checks that the live commit and the containers are what they were.
	stillRunning := func(t *testing.T, st harness.Status) {
		t.Helper()
		if st.Live == nil || st.Live.Hash != good {
			t.Errorf("live commit = %+v; want %s unchanged", st.Live, good)
		}
		if got := harness.RunningIDs(harness.NodeContainers(t, a.Name)); !slices.Equal(got, running) {
			t.Errorf("running containers %v; want %v unchanged", got, running)
		}
		if _, err := a.Pods(t, "app=base"); err != nil {
			t.Error(err)
		}
	}
	// restore commits the good manifests again and waits until that commit is live and clean.
	restore := func(t *testing.T, remove ...string) {
		t.Helper()
		for _, f := range remove {
			repo.Remove(f)
		}
		repo.Write("base.yaml", baseManifests)
		repo.Write("web.yaml", harness.Deployment("base", 1, "v1"))
		good = repo.Commit("good again")
		st, code := a.Sync(t)
		if st.Live == nil || st.Live.Hash != good {
			t.Fatalf("after restoring, live = %+v (failed %+v); want %s", st.Live, st.Failed, good)
		}
		if st.Failed != nil || code != 0 {
			t.Errorf("after a good commit became live, skiff sync exits %d and status still reports a failure: %+v", code, st.Failed)
		}
	}

	bigData := strings.Repeat("0123456789abcdef", 10<<20/16)
	for _, c := range []struct {
		name    string
		files   map[string]string // written on top of the good tree
		symlink [2]string         // path, target
		edit    func()
		// The problem status must report (Field, Message: substrings; "" = any).
		file, kind, objName, field, message string
	}{
		{name: "InvalidYAML", files: map[string]string{"bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken\ndata: [\n"},
			file: "bad.yaml"},
		{name: "WrongAPIVersion", files: map[string]string{"web.yaml": strings.Replace(harness.Deployment("base", 1, "v1"), "apps/v1", "apps/v9", 1)},
			file: "web.yaml", kind: "Deployment", objName: "base", field: "apiVersion"},
		{name: "UnknownKind", files: map[string]string{"frob.yaml": "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: f}\n"},
			file: "frob.yaml", kind: "Frobnicator", field: "kind"},
		{name: "MissingImage", files: map[string]string{"web.yaml": strings.Replace(harness.Deployment("base", 1, "v1"), "image: localhost/skiff/demo:latest", "", 1)},
			file: "web.yaml", kind: "Deployment", objName: "base", field: "spec.template.spec.containers[0].image"},
		{name: "DuplicateNames", files: map[string]string{"dup.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: other}\n"},
			file: "dup.yaml", kind: "ConfigMap", objName: "cm", field: "metadata.name", message: "already defined in base.yaml"},
		{name: "SelectorNotMatchingTemplate", files: map[string]string{"web.yaml": strings.Replace(harness.Deployment("base", 1, "v1"), "matchLabels: {app: base}", "matchLabels: {app: other}", 1)},
			file: "web.yaml", kind: "Deployment", objName: "base", field: "spec."},
		{name: "TenMegabyteManifest", files: map[string]string{"big.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  blob: " + bigData + "\n"},
			file: "big.yaml"},
		{name: "SymlinkOutOfRepo", symlink: [2]string{"escape.yaml", outside},
			file: "escape.yaml", message: "outside"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var added []string
			for f, content := range c.files {
				repo.Write(f, content)
				added = append(added, f)
			}
			if c.symlink[0] != "" {
				repo.Symlink(c.symlink[0], c.symlink[1])
				added = append(added, c.symlink[0])
			}
			bad := repo.Commit("bad: " + c.name)
			st, code := a.Sync(t)
			if code != 2 {
				t.Errorf("skiff sync of a refused commit exits %d; want 2", code)
			}
			if st.Failed == nil || st.Failed.Commit.Hash != bad {
				t.Errorf("status failed = %+v; want commit %s reported as not applied", st.Failed, bad)
			} else if p, ok := findProblem(st.Failed.Problems, c.file, c.kind, c.objName, c.field, c.message); !ok {
				t.Errorf("status problems %v; want an error with file %q kind %q name %q field ~%q message ~%q",
					st.Failed.Problems, c.file, c.kind, c.objName, c.field, c.message)
			} else if t.Logf("reported: %s:%d: %s/%s: %s: %s: %s", p.File, p.Doc, p.Kind, p.Name, p.Field, p.Severity, p.Message); false {
			} else if text := a.MustRun(t, "status"); !strings.Contains(text, "NOT applied") ||
				!strings.Contains(text, fmt.Sprintf("%s:%d: ", p.File, p.Doc)) || !strings.Contains(text, p.Message) {
				t.Errorf("skiff status does not show the problem %+v:\n%s", p, text)
			}
			stillRunning(t, st)
			if c.name == "SymlinkOutOfRepo" {
				if out := a.MustRun(t, "get", "configmaps", "-o", "name"); strings.Contains(out, "escaped") {
					t.Errorf("the ConfigMap from outside the repository was applied: %s", out)
				}
			}
			var drop []string
			for _, f := range added {
				if f != "web.yaml" && f != "base.yaml" {
					drop = append(drop, f)
				}
			}
			restore(t, drop...)
		})
	}

	t.Run("RefDoesNotExist", func(t *testing.T) {
		a.Restart(t, map[string]string{"ref": "nope"})
		var st harness.Status
		harness.Eventually(t, 30*time.Second, func() error {
			var err error
			if st, err = a.Status(t); err != nil {
				return err
			}
			if msg := failureText(st); !strings.Contains(msg, "nope") {
				return fmt.Errorf("status does not report the missing ref nope: failed %+v, fetch %+v", st.Failed, st.Fetch)
			}
			return nil
		})
		stillRunning(t, st)
		a.Restart(t, map[string]string{"ref": "main"})
		restore(t)
	})

	t.Run("RepoDisappearsAndComesBack", func(t *testing.T) {
		back := repo.Hide()
		restored := false
		defer func() {
			if !restored {
				back()
			}
		}()
		st, _ := a.Sync(t)
		if msg := failureText(st); msg == "" {
			t.Errorf("status with the repository gone reports no error: failed %+v, fetch %+v", st.Failed, st.Fetch)
		}
		stillRunning(t, st)
		back()
		restored = true
		st, _ = a.Sync(t)
		if st.Fetch == nil || st.Fetch.Error != "" {
			t.Errorf("fetch after the repository came back = %+v; want no error", st.Fetch)
		}
		stillRunning(t, st)
		restore(t)
	})

	t.Run("ImageNotPresent", func(t *testing.T) {
		repo.Write("noimage.yaml", `apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers:
  - name: app
    image: localhost/skiff/does-not-exist:1.0
    imagePullPolicy: IfNotPresent
---
apiVersion: v1
kind: Pod
metadata: {name: neverpull}
spec:
  containers:
  - name: app
    image: localhost/skiff/does-not-exist:1.0
    imagePullPolicy: Never
`)
		head := repo.Commit("a pod whose image is not there")
		if st, _ := a.Sync(t); st.Live == nil || st.Live.Hash != head {
			t.Fatalf("live = %+v, failed %+v; want %s (the manifest is valid)", st.Live, st.Failed, head)
		}
		a.WaitPod(t, 60*time.Second, "noimage", func(p *corev1.Pod) error {
			w := harness.ContainerStatus(p, "app").State.Waiting
			if w == nil || (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") || !strings.Contains(w.Message, "does-not-exist") {
				return fmt.Errorf("waiting %+v; want ErrImagePull or ImagePullBackOff naming the image", w)
			}
			if p.Status.Phase != corev1.PodPending {
				return fmt.Errorf("phase %s; want Pending", p.Status.Phase)
			}
			return nil
		})
		a.WaitPod(t, 60*time.Second, "neverpull", func(p *corev1.Pod) error {
			w := harness.ContainerStatus(p, "app").State.Waiting
			if w == nil || w.Reason != "ErrImageNeverPull" {
				return fmt.Errorf("waiting %+v; want ErrImageNeverPull (imagePullPolicy Never, image not present)", w)
			}
			return nil
		})
		if got := harness.RunningIDs(harness.NodeContainers(t, a.Name)); !slices.Equal(got, running) {
			t.Errorf("running containers %v; want %v unchanged", got, running)
		}
		a.WaitPods(t, 10*time.Second, "app=base", 1, nil)
		repo.Remove("noimage.yaml")
		repo.Commit("drop noimage")
		a.Sync(t)
	})
}

// failureText is what status says about a failing fetch or commit.
func failureText(st harness.Status) string {
	var s []string
	if st.Failed != nil {
		s = append(s, st.Failed.Error)
	}
	if st.Fetch != nil {
		s = append(s, st.Fetch.Error)
	}
	return strings.TrimSpace(strings.Join(s, " "))
}

// findProblem finds an error problem matching every non-empty criterion.
func findProblem(ps []harness.Problem, file, kind, name, field, message string) (harness.Problem, bool) {
	for _, p := range ps {
		if p.Severity != "error" ||
			(file != "" && p.File != file) || (kind != "" && p.Kind != kind) || (name != "" && p.Name != name) ||
			(field != "" && !strings.Contains(p.Field, field)) ||
			(message != "" && !strings.Contains(strings.ToLower(p.Message), message)) {
			continue
		}
		if p.File == "" || p.Doc < 0 {
			continue
		}
		return p, true
	}
	return harness.Problem{}, false
}
