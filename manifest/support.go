package manifest

import (
	_ "embed"
	"fmt"
	"reflect"
	"sort"
)

// Support says what skiff does with a field.
type Support string

const (
	Supported Support = "supported"   // skiff acts on the field
	Ignored   Support = "unsupported" // reported as Unsupported; the object still applies
	Refused   Support = "refused"     // reported as Error: ignoring it would change what runs
	Output    Support = "output"      // status: dropped silently, it is output, not input
)

// SupportRow is one line of the support table: a field of a kind and what skiff does with
// it. Field is written as in problems, with [] for list items and [key] for map keys
// ([*] for any other key): spec.template.spec.containers[].resources.limits[cpu].
type SupportRow struct {
	Kind    string
	Field   string
	Support Support
	Note    string
}

//go:embed support.yaml
var supportYAML []byte

// rule is a node of the support table.
type rule struct {
	support Support
	note    string
	fields  map[string]*rule // nil: a leaf (for Supported: everything below is supported)
}

type ruleSet struct {
	kinds map[string]*rule
}

var supportRules = mustLoadRules(supportYAML)

// child returns the rule for a child field or map key: the named one, else "*", else nil
// (not supported).
func (r *rule) child(key string) *rule {
	if c, ok := r.fields[key]; ok {
		return c
	}
	return r.fields["*"]
}

func mustLoadRules(data []byte) ruleSet {
	docs := splitDocuments(data, false)
	if len(docs) != 1 || docs[0].err != nil {
		panic(fmt.Sprintf("support.yaml: %v", docs))
	}
	kinds := docs[0].root.get("kinds")
	if kinds == nil || kinds.kind != kMap {
		panic("support.yaml: no kinds")
	}
	rs := ruleSet{kinds: map[string]*rule{}}
	memo := map[*node]*rule{}
	for _, e := range kinds.entries {
		rs.kinds[e.key] = toRule(e.val, e.key, memo)
	}
	return rs
}

// toRule reads one node of support.yaml: ok, ignore, {ok|warn|error: note} or a mapping of
// children.
func toRule(n *node, where string, memo map[*node]*rule) *rule {
	if r, ok := memo[n]; ok {
		return r
	}
	r := &rule{}
	switch {
	case n.kind == kString && n.str == "ok":
		r.support = Supported
	case n.kind == kString && n.str == "ignore":
		r.support = Output
	case n.kind == kMap && len(n.entries) == 1 && n.entries[0].val.kind == kString &&
		(n.entries[0].key == "ok" || n.entries[0].key == "warn" || n.entries[0].key == "error"):
		r.support = map[string]Support{"ok": Supported, "warn": Ignored, "error": Refused}[n.entries[0].key]
		r.note = n.entries[0].val.str
	case n.kind == kMap:
		r.support = Supported
		r.fields = map[string]*rule{}
		for _, e := range n.entries {
			r.fields[e.key] = toRule(e.val, where+"."+e.key, memo)
		}
	default:
		panic(fmt.Sprintf("support.yaml: %s: want ok, ignore, {ok|warn|error: note} or a mapping", where))
	}
	memo[n] = r
	return r
}

// SupportTable lists, for every kind skiff reads, each field of the Kubernetes API type and
// what skiff does with it: the fields of support.yaml, and every other field of the type as
// "unsupported" (without descending into it). Kinds come in the order of Resources, fields
// in the order of the API type. It is the README's support table; Implemented says which
// kinds run today.
func SupportTable() []SupportRow {
	var rows []SupportRow
	for _, k := range tableKinds() {
		rows = appendRows(rows, k.kind, "", k.typ, k.rule)
	}
	return rows
}

// tableKind is a kind of the support table with its API type.
type tableKind struct {
	kind string
	typ  reflect.Type
	rule *rule
}

// tableKinds lists the kinds of the support table in the order of Resources.
func tableKinds() []tableKind {
	var ks []tableKind
	for _, res := range Resources {
		r, ok := supportRules.kinds[res.Kind]
		if !ok {
			continue
		}
		if obj, err := Scheme.New(res.GVK); err == nil {
			ks = append(ks, tableKind{res.Kind, reflect.TypeOf(obj), r})
		}
	}
	return ks
}

func appendRows(rows []SupportRow, kind, path string, t reflect.Type, r *rule) []SupportRow {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if r.fields == nil || isSpecial(t) {
		return append(rows, SupportRow{Kind: kind, Field: path, Support: r.support, Note: r.note})
	}
	switch t.Kind() {
	case reflect.Slice:
		return appendRows(rows, kind, path+"[]", t.Elem(), r)
	case reflect.Map:
		keys := make([]string, 0, len(r.fields))
		for k := range r.fields {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { // "*" last
			return keys[j] == "*" || keys[i] != "*" && keys[i] < keys[j]
		})
		for _, k := range keys {
			rows = appendRows(rows, kind, path+"["+k+"]", t.Elem(), r.fields[k])
		}
		return rows
	case reflect.Struct:
		fs := jsonFields(t)
		for _, name := range fs.order {
			c := r.child(name)
			if c == nil {
				c = &rule{support: Ignored}
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			rows = appendRows(rows, kind, p, fs.types[name], c)
		}
		return rows
	}
	return append(rows, SupportRow{Kind: kind, Field: path, Support: r.support, Note: r.note})
}

// supportMessage words a support problem for a field.
func supportMessage(r *rule) string {
	switch {
	case r != nil && r.support == Refused && r.note != "":
		return "not supported by skiff: " + r.note
	case r != nil && r.support == Refused:
		return "not supported by skiff"
	case r != nil && r.note != "":
		return "field ignored: " + r.note
	}
	return "field not supported by skiff; ignored"
}

// checkRulePaths returns the fields of support.yaml that the API types do not have: a
// test keeps the table honest.
func checkRulePaths() []string {
	var bad []string
	kinds := tableKinds()
	if len(kinds) != len(supportRules.kinds) {
		bad = append(bad, "support.yaml has kinds missing from Resources or the scheme")
	}
	for _, k := range kinds {
		bad = append(bad, missingFields(k.kind, k.typ, k.rule)...)
	}
	sort.Strings(bad)
	return bad
}

func missingFields(path string, t reflect.Type, r *rule) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if r.fields == nil {
		return nil
	}
	var bad []string
	switch {
	case t.Kind() == reflect.Map:
		for k, c := range r.fields {
			bad = append(bad, missingFields(path+"["+k+"]", t.Elem(), c)...)
		}
	case t.Kind() == reflect.Struct && !isSpecial(t):
		fs := jsonFields(t)
		for k, c := range r.fields {
			ft, ok := fs.types[k]
			if !ok && k != "*" {
				bad = append(bad, path+"."+k)
				continue
			}
			if ok {
				bad = append(bad, missingFields(path+"."+k, ft, c)...)
			}
		}
	default:
		bad = append(bad, fmt.Sprintf("%s: %s has no fields", path, t))
	}
	return bad
}
