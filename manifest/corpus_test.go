package manifest

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus.golden")

const corpusDir = "testdata/corpus"

// TestCorpus parses every real-world manifest of testdata/corpus, each file on its own (the
// examples reuse names across files), and records what skiff says about each in
// testdata/corpus.golden: reviewers read there exactly what users will read.
func TestCorpus(t *testing.T) {
	fsys := os.DirFS(corpusDir)
	files := ParseFS(fsys, ".", Options{}).Files
	if len(files) < 200 {
		t.Fatalf("ParseFS(%s) found %d files; want the whole corpus", corpusDir, len(files))
	}
	var body strings.Builder
	var total struct{ docs, apply, warned, ignored, failed int }
	for _, name := range files {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Fatal(err)
		}
		r := Parse(name, data, Options{})
		fmt.Fprintf(&body, "\n== %s\n", name)
		applied := map[int]bool{}
		for _, o := range r.Objects {
			var doc int
			fmt.Sscanf(strings.TrimPrefix(o.GetAnnotations()[SourceAnnotation], name+"#"), "%d", &doc)
			applied[doc] = true
			fmt.Fprintf(&body, "applies: %s\n", describeObjects([]Object{o})[0])
		}
		docProblems := map[int]Problems{}
		for _, p := range r.Problems {
			docProblems[p.Doc] = append(docProblems[p.Doc], p)
			fmt.Fprintln(&body, p)
			checkMessage(t, p)
		}
		for _, d := range splitDocuments(data, strings.HasSuffix(name, ".json")) {
			if d.root == nil && d.err == nil {
				continue
			}
			total.docs++
			ps := docProblems[d.index]
			switch {
			case ps.HasErrors():
				total.failed++
			case applied[d.index] && len(ps) > 0:
				total.warned++
			case applied[d.index]:
				total.apply++
			case len(ps) > 0:
				total.ignored++
			default:
				t.Errorf("Parse(%q) document %d: neither applied nor reported", name, d.index)
			}
		}
	}
	got := fmt.Sprintf(`# What skiff says about the real-world manifests of testdata/corpus, each file parsed on
# its own (as "skiff check FILE" would). Regenerate: go test ./manifest -run TestCorpus -update
#
# %d files, %d objects: %d apply as they are, %d apply with fields ignored (unsupported),
# %d are ignored (kinds skiff does not run, or not yet), %d are refused with errors.
`, len(files), total.docs, total.apply, total.warned, total.ignored, total.failed) + body.String()

	const golden = "testdata/corpus.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./manifest -run TestCorpus -update)", err)
	}
	if got != string(want) {
		t.Errorf("Parse(corpus) differs from %s; run go test ./manifest -run TestCorpus -update and review the diff:\n%s", golden, firstDiff(got, string(want)))
	}
}

// checkMessage fails on problems a user could not act on: empty, or Go's words.
func checkMessage(t *testing.T, p Problem) {
	t.Helper()
	for _, bad := range []string{"json:", "%!", "reflect", "unmarshal", "internal error", "<nil>"} {
		if p.Message == "" || strings.Contains(p.Message, bad) {
			t.Errorf("Parse(%q) problem %q: not a message for users", p.File, p.String())
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return ""
}

// BenchmarkParseFS parses the whole corpus (216 files of real-world manifests).
func BenchmarkParseFS(b *testing.B) {
	fsys := os.DirFS(corpusDir)
	for b.Loop() {
		ParseFS(fsys, ".", Options{})
	}
}

// BenchmarkParseFS100 parses 100 small files: a Deployment and a Service each.
func BenchmarkParseFS100(b *testing.B) {
	fsys := fstest.MapFS{}
	for i := range 100 {
		name := fmt.Sprintf("app%d", i)
		fsys[name+"/app.yaml"] = mapFile(strings.ReplaceAll(deployYAML, "web", name) +
			"---\napiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {selector: {app: " + name + "}, ports: [{port: 80}]}\n")
	}
	for b.Loop() {
		if r := ParseFS(fsys, ".", Options{}); len(r.Objects) != 200 {
			b.Fatalf("ParseFS(100 files) = %d objects, problems %q", len(r.Objects), problemLines(r.Problems))
		}
	}
}

// FuzzParse: no input may panic (parseFile turns a panic into an "internal error" problem,
// which this target treats as a failure), and every problem names its file.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		podYAML, deployYAML, podYAML + "---\n" + deployYAML,
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n  data: {k: v}\n",
		`{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}`,
		"a: &a [*a]\n", bomb(), "kind: Pod: x\n", "- 1\n- 2\n", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: '!!'}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, resources: {limits: {cpu: 1e400}}}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 99999999999, selector: {matchExpressions: [{key: a, operator: In}]}}\n",
		"<<: {apiVersion: v1}\nkind: ConfigMap\nmetadata: {name: m, labels: {? a : b}}\n",
	} {
		f.Add(seed)
	}
	for _, name := range []string{"k8s-examples/web/guestbook/all-in-one/guestbook-all-in-one.yaml", "k8s-examples/_archived/meteor/meteor-controller.json"} {
		if data, err := os.ReadFile(corpusDir + "/" + name); err == nil {
			f.Add(string(data))
		}
	}
	f.Fuzz(func(t *testing.T, data string) {
		for _, name := range []string{"f.yaml", "f.json"} {
			r := Parse(name, []byte(data), Options{})
			for _, p := range r.Problems {
				if p.File != name || strings.Contains(p.Message, "internal error") {
					t.Errorf("Parse(%q) problem %q", data, p.String())
				}
			}
			for _, o := range r.Objects {
				if _, err := Encode(o); err != nil {
					t.Errorf("Parse(%q) object %s does not encode: %v", data, o.GetName(), err)
				}
			}
		}
	})
}
