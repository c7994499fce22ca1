package manifest

import (
	"fmt"
	"strings"
)

// Severity says whether a problem stops a commit from being applied.
type Severity string

const (
	// Error: the commit is not applied; the last good commit stays live.
	Error Severity = "error"
	// Unsupported: the field or kind is ignored, loudly; the rest of the object applies.
	Unsupported Severity = "unsupported"
)

// Problem is one thing wrong with a manifest, located as precisely as we can.
type Problem struct {
	File      string   `json:"file"`           // path relative to the synced directory
	Doc       int      `json:"doc"`            // 1-based index of the YAML document in File; 0: the whole file
	Line      int      `json:"line,omitempty"` // 1-based line of Field in File, 0 when unknown
	Kind      string   `json:"kind,omitempty"` // object kind, when known
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name,omitempty"`  // object name, when known
	Field     string   `json:"field,omitempty"` // field path: spec.template.spec.containers[0].image
	Severity  Severity `json:"severity"`
	Message   string   `json:"message"`
}

// String renders the problem as `file:doc: kind/name: field: severity: message`, the line
// format of `skiff check`.
func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", p.File, p.Doc)
	if p.Kind != "" || p.Name != "" {
		kind, name := p.Kind, p.Name
		if kind == "" {
			kind = "?"
		}
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(&b, "%s/%s: ", kind, name)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, "%s: ", p.Field)
	}
	fmt.Fprintf(&b, "%s: %s", p.Severity, p.Message)
	if p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

// Problems is a list of problems with helpers for the common questions.
type Problems []Problem

// HasErrors reports whether any problem has Error severity.
func (ps Problems) HasErrors() bool {
	for _, p := range ps {
		if p.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the problems with Error severity.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == Error {
			out = append(out, p)
		}
	}
	return out
}

// SourceAnnotation records on every object parsed from git where it came from:
// "path/to/file.yaml#2" (file and 1-based document index); an item of a List gets its
// 1-based index after a dot: "path/to/list.yaml#2.3" is the third item of the List in the
// second document.
const SourceAnnotation = "skiff.io/source"

// Result is everything parsed from one tree of manifests.
type Result struct {
	Objects  []Object // valid objects with defaults applied, in file then document order
	Problems Problems // every error and unsupported field, in file, document, line order
	Files    []string // the manifest files found, in the order they were read
}
