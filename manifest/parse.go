package manifest

import (
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Options tune parsing.
type Options struct {
	// DefaultNamespace is given to namespaced objects without one ("default" when empty).
	DefaultNamespace string
	// MaxFileSize rejects larger files with an error naming the file (DefaultMaxFileSize
	// when 0).
	MaxFileSize int64
}

// DefaultMaxFileSize is the largest manifest file skiff reads.
const DefaultMaxFileSize = 4 << 20

func (o Options) namespace() string {
	if o.DefaultNamespace == "" {
		return "default"
	}
	return o.DefaultNamespace
}

func (o Options) maxFileSize() int64 {
	if o.MaxFileSize <= 0 {
		return DefaultMaxFileSize
	}
	return o.MaxFileSize
}

// Parse parses the content of one file (name is used in problems and in SourceAnnotation
// only): every YAML document, or the JSON object, of it. Objects defined twice in the file
// are reported; across files, ParseFS does that.
func Parse(name string, data []byte, opts Options) Result {
	objs, problems := parseFile(name, data, opts)
	problems = append(problems, duplicates(objs)...)
	return result([]string{name}, objs, problems)
}

// parsed is one object read from a document.
type parsed struct {
	obj      Object
	file     string
	doc      int
	nameLine int
	apply    bool // an implemented kind without errors: it goes into Result.Objects
}

// fileParser reads the documents of one file.
type fileParser struct {
	name     string
	opts     Options
	objects  []parsed
	problems Problems
}

func parseFile(name string, data []byte, opts Options) (objs []parsed, problems Problems) {
	fp := &fileParser{name: name, opts: opts}
	defer func() {
		// Parsing must never take the agent down: a bug becomes an error on this file.
		if r := recover(); r != nil {
			objs = nil
			problems = append(fp.problems, Problem{File: name, Severity: Error,
				Message: fmt.Sprintf("internal error while parsing this file (please report it): %v", r)})
		}
	}()
	isJSON := strings.HasSuffix(strings.ToLower(name), ".json")
	for _, d := range splitDocuments(data, isJSON) {
		if d.err != nil {
			p := *d.err
			p.File, p.Doc = name, d.index
			fp.problems = append(fp.problems, p)
			continue
		}
		if d.root != nil {
			fp.object(d.root, d.index, 0)
		}
	}
	return fp.objects, fp.problems
}

func (fp *fileParser) add(base Problem, sev Severity, line int, fieldPath, format string, args ...any) {
	base.Severity, base.Line, base.Field, base.Message = sev, line, fieldPath, fmt.Sprintf(format, args...)
	fp.problems = append(fp.problems, base)
}

// object reads one object: a document, or an item of a List (item is 1-based, 0 for a
// document).
func (fp *fileParser) object(n *node, doc, item int) {
	base := Problem{File: fp.name, Doc: doc}
	if n.kind != kMap {
		fp.add(base, Error, n.line, "", "a manifest must be an object with apiVersion and kind, not a %s", n.kind)
		return
	}
	meta := n.get("metadata")
	base.Kind, base.Name, base.Namespace = n.getString("kind"), meta.getString("name"), meta.getString("namespace")
	apiVersion, kind, ok := fp.typeMeta(n, base)
	if !ok {
		return
	}
	action, f, why := classify(apiVersion, kind)
	switch action {
	case kindList:
		if item > 0 {
			fp.add(base, Error, n.keyLine("kind"), "kind", "a List may not contain another List")
			return
		}
		fp.list(n, doc, apiVersion, kind, base)
		return
	case kindUnsupported:
		fp.add(base, Unsupported, n.keyLine("kind"), "", "%s", why)
		return
	case kindError:
		fp.add(base, Error, n.keyLine(f), f, "%s", why)
		return
	}

	gvk := schema.FromAPIVersionAndKind(apiVersion, kind)
	ro, err := Scheme.New(gvk)
	o, ok := ro.(Object)
	if err != nil || !ok {
		fp.add(base, Error, n.keyLine("kind"), "kind", "%s is not in skiff's scheme", gvk)
		return
	}
	if namespaced(kind) && base.Namespace == "" {
		base.Namespace = fp.opts.namespace()
	}
	c := checker{base: base}
	c.check(n, reflect.TypeOf(o), supportRules.kinds[kind], nil)
	fp.problems = append(fp.problems, c.problems...)
	if c.fatal {
		return
	}
	if prob := decodeTyped(n, o); prob != nil {
		fp.add(base, prob.Severity, n.line, "", "%s", prob.Message)
		return
	}
	fp.scope(o, n, base)
	hasErr := c.problems.HasErrors()
	SetDefaults(o)
	for _, e := range validate(o) {
		fp.add(base, e.severity, lineOf(n, e.field), e.field, "%s", e.message)
		hasErr = hasErr || e.severity == Error
	}
	source := fmt.Sprintf("%s#%d", fp.name, doc)
	if item > 0 {
		source = fmt.Sprintf("%s.%d", source, item)
	}
	ann := o.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[SourceAnnotation] = source
	o.SetAnnotations(ann)
	if !Implemented[kind] {
		fp.add(base, Unsupported, n.keyLine("kind"), "", "kind %s is not implemented yet; object ignored", kind)
	}
	fp.objects = append(fp.objects, parsed{obj: o, file: fp.name, doc: doc,
		nameLine: lineOf(n, "metadata.name"), apply: Implemented[kind] && !hasErr})
}

// typeMeta reads apiVersion and kind, reporting when either is missing.
func (fp *fileParser) typeMeta(n *node, base Problem) (apiVersion, kind string, ok bool) {
	ok = true
	for _, f := range []string{"apiVersion", "kind"} {
		v := n.get(f)
		switch {
		case v == nil || v.kind == kNull || v.kind == kString && v.str == "":
			fp.add(base, Error, n.keyLine(f), f, "%s is required: every object needs apiVersion and kind", f)
			ok = false
		case v.kind != kString:
			fp.add(base, Error, v.line, f, "expected a string, got %s", v.describe())
			ok = false
		}
	}
	return n.getString("apiVersion"), n.getString("kind"), ok
}

// scope gives a namespaced object the default namespace and takes it from a cluster-scoped
// one.
func (fp *fileParser) scope(o Object, n *node, base Problem) {
	kind := KindOf(o)
	switch {
	case namespaced(kind) && o.GetNamespace() == "":
		o.SetNamespace(fp.opts.namespace())
	case !namespaced(kind) && o.GetNamespace() != "":
		fp.add(base, Unsupported, lineOf(n, "metadata.namespace"), "metadata.namespace",
			"field ignored: a %s is not in a namespace", kind)
		o.SetNamespace("")
	}
}

// list expands a v1 List (or a typed list such as PodList): each item is an object of its
// own, with source file#doc.item.
func (fp *fileParser) list(n *node, doc int, apiVersion, kind string, base Problem) {
	for _, e := range n.entries {
		switch e.key {
		case "apiVersion", "kind", "metadata", "items":
		default:
			fp.add(base, Error, e.line, e.key, "unknown field")
		}
	}
	items := n.get("items")
	if items == nil || items.kind == kNull {
		return
	}
	if items.kind != kList {
		fp.add(base, Error, items.line, "items", "expected a list, got %s", items.describe())
		return
	}
	itemKind := strings.TrimSuffix(kind, "List")
	for i, it := range items.items {
		if itemKind != "" && it.kind == kMap {
			// Items of a typed list may leave out their apiVersion and kind.
			if it.get("kind") == nil {
				it.entries = append([]entry{{key: "kind", line: it.line, val: &node{kind: kString, str: itemKind, line: it.line}}}, it.entries...)
			}
			if it.get("apiVersion") == nil {
				it.entries = append([]entry{{key: "apiVersion", line: it.line, val: &node{kind: kString, str: apiVersion, line: it.line}}}, it.entries...)
			}
		}
		fp.object(it, doc, i+1)
	}
}

// duplicates reports objects defined more than once (same kind, namespace and name), at
// every definition after the first, and keeps those out of the result.
func duplicates(objs []parsed) Problems {
	var problems Problems
	first := map[string]*parsed{}
	for i := range objs {
		o := &objs[i]
		kind := KindOf(o.obj)
		key := kind + "/" + o.obj.GetNamespace() + "/" + o.obj.GetName()
		f, seen := first[key]
		if !seen {
			first[key] = o
			continue
		}
		o.apply = false
		name := o.obj.GetName()
		if ns := o.obj.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
		problems = append(problems, Problem{File: o.file, Doc: o.doc, Line: o.nameLine, Kind: kind,
			Namespace: o.obj.GetNamespace(), Name: o.obj.GetName(), Field: "metadata.name", Severity: Error,
			Message: fmt.Sprintf("%s %s is already defined in %s (line %d); define each object once",
				kind, name, f.obj.GetAnnotations()[SourceAnnotation], f.nameLine)})
	}
	return problems
}

func result(files []string, objs []parsed, problems Problems) Result {
	r := Result{Files: files, Problems: problems}
	for _, o := range objs {
		if o.apply {
			r.Objects = append(r.Objects, o.obj)
		}
	}
	sortProblems(r.Problems)
	return r
}

// sortProblems orders problems by file, document and line, keeping the order they were
// found in otherwise.
func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Doc != b.Doc {
			return a.Doc < b.Doc
		}
		return a.Line < b.Line
	})
}

// isManifest reports whether a file name has a manifest extension.
func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}
