package manifest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestYAMLErrorLine(t *testing.T) {
	tests := []struct {
		err      string
		line     int
		message  string
		describe string
	}{
		{"yaml: line 3: mapping values are not allowed in this context", 3, "mapping values are not allowed in this context", "scanner errors are 1-based"},
		{"yaml: line 1: did not find expected ',' or ']'", 2, "did not find expected ',' or ']'", "parser errors are 0-based"},
		{"yaml: mapping values are not allowed in this context", 1, "mapping values are not allowed in this context", "no line: the first"},
	}
	for _, tt := range tests {
		line, msg := yamlErrorLine(errors.New(tt.err))
		if line != tt.line || msg != tt.message {
			t.Errorf("yamlErrorLine(%q) = %d, %q; want %d, %q (%s)", tt.err, line, msg, tt.line, tt.message, tt.describe)
		}
	}
}

func TestUnescapeJSONSlash(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a": "http:\/\/x"}`, `{"a": "http://x"}`},
		{`{"a": "back\\/slash"}`, `{"a": "back\\/slash"}`},
		{`{"a": "quote\"\/"}`, `{"a": "quote\"/"}`},
		{`{"a": "plain"}`, `{"a": "plain"}`},
	}
	for _, tt := range tests {
		if got := string(unescapeJSONSlash([]byte(tt.in))); got != tt.want {
			t.Errorf("unescapeJSONSlash(%s) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestLineOf(t *testing.T) {
	docs := splitDocuments([]byte(`apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app.kubernetes.io/name: web
spec:
  containers:
  - name: a
    image: x
  - name: b
    ports:
    - containerPort: 80
`), false)
	root := docs[0].root
	tests := []struct {
		path string
		line int
	}{
		{"kind", 2},
		{"metadata.name", 4},
		{"metadata.labels[app.kubernetes.io/name]", 6},
		{"spec.containers[0].image", 10},
		{"spec.containers[1]", 11},
		{"spec.containers[1].image", 11}, // missing: the container
		{"spec.containers[1].ports[0].containerPort", 13},
		{"spec.containers[7].image", 8}, // no such item: the list
		{"spec.volumes", 7},
	}
	for _, tt := range tests {
		if got := lineOf(root, tt.path); got != tt.line {
			t.Errorf("lineOf(%q) = %d; want %d", tt.path, got, tt.line)
		}
	}
}

func TestConvertYAML(t *testing.T) {
	tests := []struct {
		name, yaml string
		json       string // rendered document, when it converts
		err        string // the problem, when it does not
	}{
		{"scalars", "a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: 2024-01-02\ng: 0x10\nh: 1e3\n",
			`{"a":1,"b":1.5,"c":true,"d":null,"e":"1","f":"2024-01-02","g":16,"h":1000}`, ""},
		{"merge keys and aliases", "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: *b\n",
			`{"base":{"x":1,"y":2},"c":{"y":3,"x":1},"d":{"x":1,"y":2}}`, ""},
		{"control characters", "a: \"\\u0001\\t\\n\\\"\"\n", `{"a":"\u0001\t\n\""}`, ""},
		{"not a number", "a: .nan\n", "", `invalid number ".nan": JSON has no NaN or infinity; quote it if it is a string`},
		{"mapping key", "? [a]\n: b\n", "", "invalid YAML: a mapping key must be a string, not a list"},
		{"alias bomb", bomb(), "", "YAML aliases expand this document to far more values than it spells out; write them out"},
	}
	for _, tt := range tests {
		docs := splitDocuments([]byte(tt.yaml), false)
		if len(docs) != 1 {
			t.Errorf("splitDocuments(%s) = %d documents; want 1", tt.name, len(docs))
			continue
		}
		d := docs[0]
		var gotErr, gotJSON string
		if d.err != nil {
			gotErr = d.err.Message
		} else {
			b, _ := appendJSON(nil, d.root, MaxObjectSize)
			gotJSON = string(b)
		}
		if gotErr != tt.err || gotJSON != tt.json {
			t.Errorf("convert(%s) = %s, error %q; want %s, error %q", tt.name, gotJSON, gotErr, tt.json, tt.err)
		}
	}
}

// bomb is a "billion laughs" document: ten levels of ten aliases.
func bomb() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		prev := "*a" + string(rune('0'+i-1))
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [" + strings.Repeat(prev+", ", 9) + prev + "]\n")
	}
	return b.String()
}

func TestSplitDocuments(t *testing.T) {
	docs := splitDocuments([]byte("a: 1\n---\n---\nb: 2\n---\n"), false)
	var got []string
	for _, d := range docs {
		if d.root == nil {
			got = append(got, "empty")
			continue
		}
		b, _ := appendJSON(nil, d.root, MaxObjectSize)
		got = append(got, string(b))
	}
	want := []string{`{"a":1}`, "empty", `{"b":2}`, "empty"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitDocuments(4 documents) = %q; want %q", got, want)
	}
}
