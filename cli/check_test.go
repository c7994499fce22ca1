package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/manifest"
)

const checkPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: nginx:1.25
`

// checkRepo writes a small repository of manifests: a good one, one with a warning, one
// with an error.
func checkRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"good/pod.yaml":    checkPod,
		"warn/pod.yaml":    strings.Replace(checkPod, "spec:\n", "spec:\n  serviceAccountName: robot\n", 1),
		"bad/deploy.yaml":  "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\n",
		"bad/notes.txt":    "not a manifest",
		"bad/.git/x.yaml":  "{",
		"bad/svc.json":     `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}`,
		"other/hpa.yml":    "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n",
		"other/typo.yaml":  strings.Replace(checkPod, "image:", "imgae:", 1),
		"other/empty.yaml": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheck(t *testing.T) {
	dir := checkRepo(t)
	in := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct {
		args    []string
		stdout  []string
		stderr  string
		code    int // 0: no error
		errText string
	}{
		{[]string{in("good")}, nil, "1 file, 1 object, 0 errors, 0 unsupported\n", 0, ""},
		{[]string{in("good/pod.yaml")}, nil, "1 file, 1 object, 0 errors, 0 unsupported\n", 0, ""},
		{[]string{in("warn")}, []string{
			in("warn/pod.yaml") + ":1: Pod/web: spec.serviceAccountName: unsupported: field ignored: skiff has no Kubernetes API: no service accounts, no tokens (line 6)",
		}, "1 file, 1 object, 0 errors, 1 unsupported\n", 0, ""},
		{[]string{in("bad"), in("good")}, []string{
			in("bad/deploy.yaml") + ":1: Deployment/old: apiVersion: error: extensions/v1beta1 Deployment is no longer served; use apps/v1 (line 1)",
		}, "3 files, 2 objects, 1 error, 0 unsupported\n", 1, "check: 1 error: manifests have errors"},
		{[]string{in("other"), in("warn/pod.yaml")}, []string{
			in("other/hpa.yml") + ":1: HorizontalPodAutoscaler/h: unsupported: kind HorizontalPodAutoscaler is not supported by skiff; object ignored (line 2)",
			in("other/typo.yaml") + ":1: Pod/web: spec.containers[0].image: error: image is required (line 7)",
			in("other/typo.yaml") + ":1: Pod/web: spec.containers[0].imgae: error: unknown field; did you mean \"image\"? (line 8)",
			in("warn/pod.yaml") + ":1: Pod/web: spec.serviceAccountName: unsupported: field ignored: skiff has no Kubernetes API: no service accounts, no tokens (line 6)",
		}, "4 files, 1 object, 2 errors, 2 unsupported\n", 1, "check: 2 errors: manifests have errors"},
		{[]string{"--namespace", "shop", in("good")}, nil, "1 file, 1 object, 0 errors, 0 unsupported\n", 0, ""},
		{[]string{in("missing")}, nil, "", 1, "check: stat " + in("missing") + ": no such file or directory"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		cmd := newCheckCmd()
		cmd.SetArgs(tt.args)
		cmd.SetOut(&stdout)
		cmd.SetErr(&stderr)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		var lines []string
		if s := strings.TrimSuffix(stdout.String(), "\n"); s != "" {
			lines = strings.Split(s, "\n")
		}
		if !reflect.DeepEqual(lines, tt.stdout) {
			t.Errorf("check %q printed\n\t%s\nwant\n\t%s", tt.args, strings.Join(lines, "\n\t"), strings.Join(tt.stdout, "\n\t"))
		}
		if stderr.String() != tt.stderr {
			t.Errorf("check %q summary = %q; want %q", tt.args, stderr.String(), tt.stderr)
		}
		code, errText := 0, ""
		if err != nil {
			code, errText = ExitCode(err), err.Error()
		}
		if code != tt.code || errText != tt.errText {
			t.Errorf("check %q = exit %d, %q; want exit %d, %q", tt.args, code, errText, tt.code, tt.errText)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	dir := checkRepo(t)
	tests := []struct {
		path string
		want []manifest.Problem
	}{
		{"good", []manifest.Problem{}},
		{"bad", []manifest.Problem{{File: filepath.Join(dir, "bad/deploy.yaml"), Doc: 1, Line: 1, Kind: "Deployment",
			Name: "old", Field: "apiVersion", Severity: manifest.Error,
			Message: "extensions/v1beta1 Deployment is no longer served; use apps/v1"}}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		cmd := newCheckCmd()
		cmd.SetArgs([]string{"-o", "json", filepath.Join(dir, tt.path)})
		cmd.SetOut(&stdout)
		cmd.SetErr(&stderr)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		_ = cmd.Execute()
		var got []manifest.Problem
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("check -o json %s printed %q: %v", tt.path, stdout.String(), err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("check -o json %s = %+v; want %+v", tt.path, got, tt.want)
		}
	}
}

// The demo repository (`skiff demo`, make demo) is what new users see first: it must apply
// with no error and no "unsupported" warning, and create one object of each kind it shows off.
func TestDemoRepositoryIsClean(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := writeDemoRepo(&out, dir); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := newCheckCmd()
	cmd.SetArgs([]string{"-o", "json", filepath.Join(dir, "repo")})
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		t.Fatalf("check demo repo: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var problems []manifest.Problem
	if err := json.Unmarshal(stdout.Bytes(), &problems); err != nil || len(problems) > 0 {
		t.Fatalf("demo repository problems: %+v (%v)", problems, err)
	}
	res, err := checkPath(filepath.Join(dir, "repo"), manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range res.Objects {
		kinds[o.GetObjectKind().GroupVersionKind().Kind]++
	}
	want := map[string]int{"ConfigMap": 1, "Secret": 1, "Deployment": 2, "Service": 1, "Ingress": 1}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("demo repository objects = %v; want %v", kinds, want)
	}
}
