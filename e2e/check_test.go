package e2e

import (
	"github.com/skiffhq/skiff/e2e/harness"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkLine is the line format of `skiff check`: file:doc: kind/name: field: severity: message.
var checkLine = regexp.MustCompile(`^(\S+):(\d+): (?:([A-Za-z]+|\?)/(\S+): )?(?:(\S+): )?(error|unsupported): (.+)$`)

// TestCheckCommand runs `skiff check DIR` offline (no agent) on repositories with errors,
// with only unsupported fields, and with nothing wrong: exit codes and one line per problem.
func TestCheckCommand(t *testing.T) {
	needsPodman(t) // not Podman, but the built binary: part of the end-to-end run
	t.Parallel()
	pdb := "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: pdb}\nspec: {minAvailable: 1}\n"
	finalizers := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, finalizers: [example.com/keep]}\ndata: {k: v}\n"
	noImage := strings.Replace(harness.Deployment("web", 1, "x"), "image: localhost/skiff/demo:latest", "", 1)
	for _, c := range []struct {
		name     string
		files    map[string]string
		wantCode int
		want     []string // each a line prefix (after DIR/), in order
	}{
		{
			name:     "ErrorAndWarning",
			files:    map[string]string{"a-web.yaml": noImage, "b-pdb.yaml": pdb},
			wantCode: 1,
			want: []string{
				"a-web.yaml:1: Deployment/web: spec.template.spec.containers[0].image: error: ",
				"b-pdb.yaml:1: PodDisruptionBudget/pdb: unsupported: ",
			},
		},
		{
			name:     "OnlyUnsupported",
			files:    map[string]string{"pdb.yaml": pdb, "sub/cm.yaml": finalizers},
			wantCode: 0,
			want: []string{
				"pdb.yaml:1: PodDisruptionBudget/pdb: unsupported: ",
				"sub/cm.yaml:1: ConfigMap/cm: metadata.finalizers: unsupported: ",
			},
		},
		{
			name:     "Clean",
			files:    map[string]string{"web.yaml": harness.Deployment("web", 1, "x"), "solo.yaml": soloPod},
			wantCode: 0,
		},
		{
			name:     "SecondDocument",
			files:    map[string]string{"multi.yaml": soloPod + "---\n" + strings.Replace(soloPod, "name: solo", "name: solo2", 1) + "    ports: [{containerPort: 99999}]\n"},
			wantCode: 1,
			want:     []string{"multi.yaml:2: Pod/solo2: spec.containers[0].ports[0].containerPort: error: "},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, content := range c.files {
				p := filepath.Join(dir, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := harness.RunSkiff(t, nil, "check", dir)
			if r.Code != c.wantCode {
				t.Errorf("skiff check %s: exit %d; want %d\nstdout: %s\nstderr: %s", c.name, r.Code, c.wantCode, r.Stdout, r.Stderr)
			}
			var lines []string
			if out := strings.TrimRight(r.Stdout, "\n"); out != "" {
				lines = strings.Split(out, "\n")
			}
			if len(lines) != len(c.want) {
				t.Fatalf("skiff check %s printed %d lines; want %d:\n%s%s", c.name, len(lines), len(c.want), r.Stdout, r.Stderr)
			}
			for i, l := range lines {
				if !checkLine.MatchString(l) {
					t.Errorf("line %q is not file:doc: kind/name: field: severity: message", l)
				}
				if want := filepath.Join(dir, c.want[i]); !strings.HasPrefix(l, want) {
					t.Errorf("line %d = %q; want it to start with %q", i+1, l, want)
				}
			}
		})
	}

	t.Run("MissingPath", func(t *testing.T) {
		r := harness.RunSkiff(t, nil, "check", filepath.Join(t.TempDir(), "nope"))
		if r.Code == 0 || !strings.Contains(r.Stderr, "nope") {
			t.Errorf("skiff check of a missing path: exit %d, stderr %q; want a failure naming it", r.Code, r.Stderr)
		}
	})
}
