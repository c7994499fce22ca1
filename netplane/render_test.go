package netplane

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func withInternalLocal() []manifest.Object {
	local := corev1.ServiceInternalTrafficPolicyLocal
	return append(standardGit(), fsvc("weblocal", "10.43.0.18", app("web"), func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = &local
	}))
}

// TestRenderGolden renders fixture states and compares them with testdata/*.nft; run
// with -update to rewrite them after a deliberate change (and read the diff).
func TestRenderGolden(t *testing.T) {
	tests := []struct {
		golden  string
		git     []manifest.Object
		cluster []manifest.Object
		node    string
	}{
		{"empty.nft", nil, nil, "n1"},
		{"standard-n1.nft", withInternalLocal(), standardCluster(), "n1"},
		{"standard-n2.nft", withInternalLocal(), standardCluster(), "n2"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			f := newFixture(t, tt.git, tt.cluster...)
			got := Render(RenderInput{State: f.state(), Node: tt.node, ClusterCIDR: clusterCIDR}).Text
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render(%s) differs from %s:\n%s", tt.node, path, diffLines(string(want), got))
			}
		})
	}
}

// diffLines shows the first lines that differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + b
		}
	}
	return ""
}
