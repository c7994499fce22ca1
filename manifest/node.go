package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// node is one YAML value resolved the way a JSON decoder sees it (aliases expanded, merge
// keys applied, duplicate keys set aside) that still knows the line it came from.
type node struct {
	kind    nodeKind
	line    int
	str     string  // kString: the value; kInt, kFloat: the literal as written (for messages)
	num     float64 // kInt, kFloat
	intv    int64   // kInt
	boolv   bool    // kBool
	entries []entry // kMap, in document order, without duplicates
	dups    []entry // kMap: keys given more than once (the later ones), reported by the checker
	items   []*node // kList
}

type nodeKind uint8

const (
	kNull nodeKind = iota
	kString
	kBool
	kInt
	kFloat
	kMap
	kList
)

func (k nodeKind) String() string {
	return [...]string{"null", "string", "boolean", "integer", "number", "object", "list"}[k]
}

// entry is one key of a mapping.
type entry struct {
	key       string
	line      int // line of the key
	firstLine int // dups only: where the key was first given
	val       *node
	drop      bool // left out of the JSON (fields skiff ignores silently: status)
}

// get returns the value of key in a mapping, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != kMap {
		return nil
	}
	for i := range n.entries {
		if n.entries[i].key == key {
			return n.entries[i].val
		}
	}
	return nil
}

// getString returns the value of key when it is a string.
func (n *node) getString(key string) string {
	if v := n.get(key); v != nil && v.kind == kString {
		return v.str
	}
	return ""
}

// keyLine returns the line of key in a mapping, or the mapping's own line.
func (n *node) keyLine(key string) int {
	if n == nil {
		return 0
	}
	for _, e := range n.entries {
		if e.key == key {
			return e.line
		}
	}
	return n.line
}

// empty reports whether the value sets nothing: null, an empty mapping or an empty list.
func (n *node) empty() bool {
	switch n.kind {
	case kNull:
		return true
	case kMap:
		return len(n.entries) == 0
	case kList:
		return len(n.items) == 0
	}
	return false
}

// describe names a scalar's type and value for messages: `string "80"`, `integer 8080`.
func (n *node) describe() string {
	switch n.kind {
	case kString:
		s := n.str
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return fmt.Sprintf("string %q", s)
	case kInt, kFloat:
		return fmt.Sprintf("%s %s", n.kind, n.str)
	case kBool:
		return fmt.Sprintf("boolean %t", n.boolv)
	}
	return n.kind.String()
}

// maxNodes bounds the values one document may expand to. An object that fits the 1 MiB
// limit has fewer values than this; YAML aliases could otherwise expand a small file into
// billions of values ("billion laughs").
const maxNodes = MaxObjectSize / 2

// maxAliasGrowth is how many values aliases may add to a document beyond twice what it
// spells out: plenty for anchors reused as intended, and it refuses an alias bomb before a
// single value is built.
const maxAliasGrowth = 100_000

// expandedSize counts the values a YAML tree stands for once its aliases are expanded, and
// the nodes it spells out; both saturate at limit.
func expandedSize(y *yaml.Node, memo map[*yaml.Node]int, active map[*yaml.Node]bool, limit int) (expanded, spelled int) {
	if y.Kind == yaml.AliasNode {
		if y.Alias == nil || active[y.Alias] {
			return 1, 1 // reported by the converter
		}
		if n, ok := memo[y.Alias]; ok {
			return n, 1
		}
		active[y.Alias] = true
		n, _ := expandedSize(y.Alias, memo, active, limit)
		delete(active, y.Alias)
		memo[y.Alias] = n
		return n, 1
	}
	expanded, spelled = 1, 1
	for _, c := range y.Content {
		e, s := expandedSize(c, memo, active, limit)
		expanded, spelled = min(expanded+e, limit), min(spelled+s, limit)
	}
	return expanded, spelled
}

// yamlDoc is one YAML document of a file.
type yamlDoc struct {
	index int   // 1-based
	root  *node // nil for an empty document
	err   *Problem
}

// splitDocuments reads every YAML document of data. A syntax error ends the file: the
// documents before it are returned, then one with err set.
func splitDocuments(data []byte, isJSON bool) []yamlDoc {
	if isJSON {
		data = unescapeJSONSlash(data)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []yamlDoc
	for i := 1; ; i++ {
		var yn yaml.Node
		err := dec.Decode(&yn)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			line, msg := yamlErrorLine(err)
			docs = append(docs, yamlDoc{index: i, err: &Problem{Line: line, Severity: Error,
				Message: "invalid YAML: " + msg}})
			return docs
		}
		if e, s := expandedSize(&yn, map[*yaml.Node]int{}, map[*yaml.Node]bool{}, maxNodes+1); e > min(2*s+maxAliasGrowth, maxNodes) {
			docs = append(docs, yamlDoc{index: i, err: &Problem{Line: yn.Line, Severity: Error,
				Message: "YAML aliases expand this document to far more values than it spells out; write them out"}})
			continue
		}
		c := converter{budget: maxNodes, active: map[*yaml.Node]bool{}}
		root := c.convert(&yn)
		d := yamlDoc{index: i, root: root}
		if c.err != nil {
			d.err = c.err
		} else if root.kind == kNull {
			d.root = nil
		}
		docs = append(docs, d)
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErrorLine extracts the 1-based line from a yaml.v3 syntax error. yaml.v3 prints the
// line of scanner errors 1-based but the line of parser errors ("did not find expected
// ...", counted from the start of the enclosing construct) 0-based, and leaves the line out
// when its 0-based number is 0.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		const prefix = "yaml: "
		if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
			msg = msg[len(prefix):]
		}
		return 1, msg
	}
	line, _ := strconv.Atoi(m[1])
	msg = m[2]
	if parserError(msg) {
		line++
	}
	return line, msg
}

// parserError reports whether a yaml.v3 message comes from its parser (not its scanner).
func parserError(msg string) bool {
	for _, p := range []string{
		"did not find expected key", "did not find expected node content",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected '-' indicator", "did not find expected <document start>",
		"found undefined tag handle", "found duplicate %YAML directive",
		"found incompatible YAML document", "found duplicate %TAG directive",
	} {
		if msg == p {
			return true
		}
	}
	return false
}

// unescapeJSONSlash rewrites the JSON escape `\/` (which yaml.v3 does not know) to `/`
// inside strings. Lines do not move.
func unescapeJSONSlash(data []byte) []byte {
	if !bytes.Contains(data, []byte(`\/`)) {
		return data
	}
	out := make([]byte, 0, len(data))
	inString, escaped := false, false
	for _, b := range data {
		switch {
		case escaped:
			escaped = false
			if b == '/' {
				out[len(out)-1] = '/'
				continue
			}
		case inString && b == '\\':
			escaped = true
		case b == '"':
			inString = !inString
		}
		out = append(out, b)
	}
	return out
}

// converter turns a yaml.v3 node tree into a node tree.
type converter struct {
	budget int
	active map[*yaml.Node]bool // anchors being expanded: an alias to one of them is a cycle
	err    *Problem
}

func (c *converter) fail(line int, format string, args ...any) *node {
	if c.err == nil {
		c.err = &Problem{Line: line, Severity: Error, Message: fmt.Sprintf(format, args...)}
	}
	return &node{kind: kNull, line: line}
}

func (c *converter) convert(y *yaml.Node) *node {
	if c.err != nil {
		return &node{kind: kNull}
	}
	if c.budget--; c.budget < 0 {
		return c.fail(y.Line, "document expands to more values than fit in the %s object limit (YAML aliases?)", humanSize(MaxObjectSize))
	}
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{kind: kNull, line: y.Line}
		}
		return c.convert(y.Content[0])
	case yaml.AliasNode:
		if y.Alias == nil {
			return c.fail(y.Line, "invalid YAML: alias without anchor")
		}
		if c.active[y.Alias] {
			return c.fail(y.Line, "invalid YAML: alias *%s refers to a value that contains it", y.Value)
		}
		c.active[y.Alias] = true
		n := c.convert(y.Alias)
		delete(c.active, y.Alias)
		return n
	case yaml.SequenceNode:
		n := &node{kind: kList, line: y.Line, items: make([]*node, 0, len(y.Content))}
		for _, item := range y.Content {
			n.items = append(n.items, c.convert(item))
		}
		return n
	case yaml.MappingNode:
		return c.mapping(y)
	case yaml.ScalarNode:
		return c.scalar(y)
	}
	return c.fail(y.Line, "invalid YAML node")
}

func (c *converter) mapping(y *yaml.Node) *node {
	n := &node{kind: kMap, line: y.Line}
	seen := map[string]int{} // key → line
	var merges []*yaml.Node
	for i := 0; i+1 < len(y.Content); i += 2 {
		k, v := y.Content[i], y.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			return c.fail(k.Line, "invalid YAML: a mapping key must be a string, not a %s", yamlKindName(k.Kind))
		}
		val := c.convert(v)
		if first, dup := seen[k.Value]; dup {
			n.dups = append(n.dups, entry{key: k.Value, line: k.Line, firstLine: first, val: val})
			continue
		}
		seen[k.Value] = k.Line
		n.entries = append(n.entries, entry{key: k.Value, line: k.Line, val: val})
	}
	// Merge keys (<<: *base or <<: [*a, *b]) add the keys not given explicitly; the first
	// mapping listed wins.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			merged := c.convert(s)
			if merged.kind != kMap {
				if merged.kind != kNull {
					return c.fail(s.Line, "invalid YAML: << must merge a mapping, not a %s", merged.kind)
				}
				continue
			}
			for _, e := range merged.entries {
				if _, ok := seen[e.key]; !ok {
					seen[e.key] = e.line
					n.entries = append(n.entries, e)
				}
			}
		}
	}
	return n
}

func yamlKindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}

func (c *converter) scalar(y *yaml.Node) *node {
	n := &node{kind: kString, line: y.Line, str: y.Value}
	switch y.ShortTag() {
	case "!!null":
		n.kind, n.str = kNull, ""
	case "!!bool":
		var b bool
		if err := y.Decode(&b); err != nil {
			return c.fail(y.Line, "invalid boolean %q", y.Value)
		}
		n.kind, n.boolv = kBool, b
	case "!!int":
		var v any
		if err := y.Decode(&v); err != nil {
			return c.fail(y.Line, "invalid integer %q", y.Value)
		}
		switch i := v.(type) {
		case int:
			n.kind, n.intv, n.num = kInt, int64(i), float64(i)
		case int64:
			n.kind, n.intv, n.num = kInt, i, float64(i)
		case uint64: // beyond int64: a number no field can hold
			n.kind, n.num = kFloat, float64(i)
		default:
			return c.fail(y.Line, "invalid integer %q", y.Value)
		}
	case "!!float":
		var f float64
		if err := y.Decode(&f); err != nil {
			return c.fail(y.Line, "invalid number %q", y.Value)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return c.fail(y.Line, "invalid number %q: JSON has no NaN or infinity; quote it if it is a string", y.Value)
		}
		n.kind, n.num = kFloat, f
	}
	// Everything else (strings, timestamps, !!binary, custom tags) is the string as written.
	if n.kind == kString && !utf8.ValidString(n.str) {
		return c.fail(y.Line, "invalid UTF-8 in string")
	}
	return n
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// appendJSON renders n as JSON, leaving out dropped entries. It stops and returns false
// once the output would exceed limit bytes.
func appendJSON(b []byte, n *node, limit int) ([]byte, bool) {
	if len(b) > limit {
		return b, false
	}
	var ok bool
	switch n.kind {
	case kNull:
		b = append(b, "null"...)
	case kString:
		b = appendJSONString(b, n.str)
	case kBool:
		b = strconv.AppendBool(b, n.boolv)
	case kInt:
		b = strconv.AppendInt(b, n.intv, 10)
	case kFloat:
		b = append(b, formatFloat(n.num)...)
	case kMap:
		b = append(b, '{')
		first := true
		for _, e := range n.entries {
			if e.drop {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, e.key)
			b = append(b, ':')
			if b, ok = appendJSON(b, e.val, limit); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	case kList:
		b = append(b, '[')
		for i, item := range n.items {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendJSON(b, item, limit); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	return b, len(b) <= limit
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
