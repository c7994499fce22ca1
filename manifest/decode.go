package manifest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxObjectSize is the largest object skiff accepts, as JSON: the limit etcd puts on one
// Kubernetes object (1.5 MiB request, rounded down), so what skiff accepts a cluster would.
const MaxObjectSize = 1 << 20

// checker walks one object's document against its API type and its support table rule.
// It reports, each with field path and line: unknown fields (strict decoding), duplicate
// fields, values of the wrong type, and every set field skiff does not support.
type checker struct {
	base     Problem // File, Doc, Kind, Namespace, Name
	problems Problems
	fatal    bool // a value has the wrong type: the object cannot be decoded
}

func (c *checker) add(sev Severity, line int, p *field.Path, format string, args ...any) {
	pr := c.base
	pr.Severity, pr.Line, pr.Message = sev, line, fmt.Sprintf(format, args...)
	if p != nil {
		pr.Field = p.String()
	}
	c.problems = append(c.problems, pr)
}

func (c *checker) wrongType(n *node, p *field.Path, want string) {
	c.fatal = true
	msg := fmt.Sprintf("expected %s, got %s", want, n.describe())
	if want == "a string" && (n.kind == kInt || n.kind == kFloat || n.kind == kBool) {
		msg += fmt.Sprintf("; quote it: \"%s\"", scalarText(n))
	}
	c.add(Error, n.line, p, "%s", msg)
}

func scalarText(n *node) string {
	if n.kind == kBool {
		return fmt.Sprint(n.boolv)
	}
	return n.str
}

// child extends a field path (nil is the root).
func child(p *field.Path, name string) *field.Path {
	if p == nil {
		return field.NewPath(name)
	}
	return p.Child(name)
}

// check walks n as a value of type t under rule r. A nil rule, or a leaf, means no support
// checks below (the field is supported as a whole, or was already reported).
func (c *checker) check(n *node, t reflect.Type, r *rule, p *field.Path) {
	if n.kind == kNull {
		return // JSON null sets nothing, whatever the type
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if r != nil && r.fields == nil {
		r = nil
	}
	if isSpecial(t) {
		c.special(n, t, p)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.kind != kMap {
			c.wrongType(n, p, "an object")
			return
		}
		c.duplicates(n, p)
		fs := jsonFields(t)
		for i := range n.entries {
			e := &n.entries[i]
			fp := child(p, e.key)
			ft, ok := fs.types[e.key]
			if !ok {
				msg := "unknown field"
				if hint := fieldHint(e.key, fs.order); hint != "" {
					msg += fmt.Sprintf("; did you mean %q?", hint)
				}
				c.add(Error, e.line, fp, "%s", msg)
				continue
			}
			c.entry(e, ft, r, fp)
		}
	case reflect.Map:
		if n.kind != kMap {
			c.wrongType(n, p, "a mapping")
			return
		}
		c.duplicates(n, p)
		for i := range n.entries {
			e := &n.entries[i]
			c.entry(e, t.Elem(), r, p.Key(e.key))
		}
	case reflect.Slice:
		if n.kind != kList {
			c.wrongType(n, p, "a list")
			return
		}
		for i, item := range n.items {
			c.check(item, t.Elem(), r, p.Index(i))
		}
	case reflect.String:
		if n.kind != kString {
			c.wrongType(n, p, "a string")
		}
	case reflect.Bool:
		c.boolean(n, p)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.integer(n, t, p)
	case reflect.Float32, reflect.Float64:
		if n.kind != kInt && n.kind != kFloat {
			c.wrongType(n, p, "a number")
		}
	}
}

// entry checks one field or map key against the support rule of its parent.
func (c *checker) entry(e *entry, t reflect.Type, parent *rule, p *field.Path) {
	var sub *rule
	if parent != nil {
		sub = parent.child(e.key)
		switch {
		case sub != nil && sub.support == Output:
			e.drop = true // status: output, not input; ignored without a word
			return
		case sub == nil || sub.support == Ignored || sub.support == Refused:
			// A field set to its zero value changes nothing, so ignoring it is no lie.
			if !isZeroValue(e.val, t) {
				sev := Unsupported
				if sub != nil && sub.support == Refused {
					sev = Error
				}
				c.add(sev, e.line, p, "%s", supportMessage(sub))
			}
			sub = nil
		}
	}
	c.check(e.val, t, sub, p)
}

func (c *checker) duplicates(n *node, p *field.Path) {
	for _, d := range n.dups {
		c.add(Error, d.line, child(p, d.key), "duplicate field (first given at line %d)", d.firstLine)
	}
}

// yaml11Bools are the booleans of YAML 1.1, which Kubernetes' YAML reader still accepts.
var yaml11Bools = map[string]bool{"yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"y": true, "Y": true, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
	"n": false, "N": false}

func (c *checker) boolean(n *node, p *field.Path) {
	if n.kind == kBool {
		return
	}
	if b, ok := yaml11Bools[n.str]; ok && n.kind == kString {
		n.kind, n.boolv = kBool, b
		return
	}
	c.wrongType(n, p, "true or false")
}

func (c *checker) integer(n *node, t reflect.Type, p *field.Path) {
	if n.kind != kInt && !(n.kind == kFloat && n.num == math.Trunc(n.num)) {
		c.wrongType(n, p, "an integer")
		return
	}
	lo, hi := math.Inf(-1), math.Inf(1)
	switch t.Kind() {
	case reflect.Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	case reflect.Int64, reflect.Int:
		lo, hi = math.MinInt64, math.MaxInt64
	case reflect.Uint8:
		lo, hi = 0, math.MaxUint8
	case reflect.Uint16:
		lo, hi = 0, math.MaxUint16
	case reflect.Uint32:
		lo, hi = 0, math.MaxUint32
	case reflect.Int16:
		lo, hi = math.MinInt16, math.MaxInt16
	case reflect.Int8:
		lo, hi = math.MinInt8, math.MaxInt8
	default:
		lo = 0
	}
	// float64 cannot hold MaxInt64 exactly; the kInt value decides at the edge.
	if n.num < lo || n.num > hi || (n.kind == kFloat && math.Abs(n.num) >= 1<<63) {
		c.fatal = true
		c.add(Error, n.line, p, "integer %s out of range for %s", n.str, t.Kind())
	}
}

var (
	quantityType    = reflect.TypeOf(resource.Quantity{})
	intOrStringType = reflect.TypeOf(intstr.IntOrString{})
	timeType        = reflect.TypeOf(metav1.Time{})
	microTimeType   = reflect.TypeOf(metav1.MicroTime{})
	bytesType       = reflect.TypeOf([]byte(nil))
	unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	rawType         = reflect.TypeOf(runtime.RawExtension{})
)

// isSpecial reports whether t decodes itself from JSON (a quantity, an int-or-string, a
// time, base64 bytes, raw JSON): checked by value, not field by field.
func isSpecial(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return t == bytesType
	}
	if v, ok := specialCache.Load(t); ok {
		return v.(bool)
	}
	special := reflect.PointerTo(t).Implements(unmarshalerType)
	specialCache.Store(t, special)
	return special
}

var specialCache sync.Map // reflect.Type → bool

func (c *checker) special(n *node, t reflect.Type, p *field.Path) {
	switch t {
	case quantityType:
		switch n.kind {
		case kInt, kFloat:
		case kString:
			if _, err := resource.ParseQuantity(n.str); err != nil {
				c.fatal = true
				c.add(Error, n.line, p, "invalid quantity %q: write a number with an optional suffix, such as 500m, 2, 128Mi or 1G", n.str)
			}
		default:
			c.wrongType(n, p, "a quantity (such as 500m, 128Mi)")
		}
	case intOrStringType:
		if n.kind == kString {
			return
		}
		if n.kind != kInt {
			c.wrongType(n, p, "an integer or a string")
			return
		}
		c.integer(n, reflect.TypeOf(int32(0)), p)
	case timeType, microTimeType:
		if n.kind != kString {
			c.wrongType(n, p, "a time (RFC 3339)")
		} else if _, err := time.Parse(time.RFC3339, n.str); err != nil {
			c.fatal = true
			c.add(Error, n.line, p, "invalid time %q: write it as RFC 3339, such as 2024-01-02T15:04:05Z", n.str)
		}
	case bytesType:
		if n.kind != kString {
			c.wrongType(n, p, "a base64 string")
		} else if _, err := base64.StdEncoding.DecodeString(n.str); err != nil {
			c.fatal = true
			c.add(Error, n.line, p, "value is not valid base64 (for plain text in a Secret, use stringData)")
		}
	case rawType:
	default:
		// Another self-decoding type: its own decoder judges it.
	}
}

// isZeroValue reports whether n, decoded into t, would leave it at its zero value: a field
// set like that changes nothing. A pointer field set to anything but null is set.
func isZeroValue(n *node, t reflect.Type) bool {
	if n.kind == kNull {
		return true
	}
	if t.Kind() == reflect.Pointer {
		// A pointer to a scalar is set by any value (false, 0); one to an object or a
		// list only by a non-empty one (affinity: {} sets nothing).
		if e := t.Elem(); e.Kind() == reflect.Struct && !isSpecial(e) || e.Kind() == reflect.Map || e.Kind() == reflect.Slice {
			return n.empty()
		}
		return false
	}
	if isSpecial(t) {
		return false
	}
	switch t.Kind() {
	case reflect.String:
		return n.kind == kString && n.str == ""
	case reflect.Bool:
		return n.kind == kBool && !n.boolv
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return (n.kind == kInt || n.kind == kFloat) && n.num == 0
	case reflect.Map, reflect.Slice, reflect.Struct:
		return n.empty()
	}
	return false
}

// structFields are the JSON fields of a struct type, embedded structs flattened.
type structFields struct {
	order []string
	types map[string]reflect.Type
}

var fieldCache sync.Map // reflect.Type → *structFields

func jsonFields(t reflect.Type) *structFields {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*structFields)
	}
	fs := &structFields{types: map[string]reflect.Type{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
				add(f.Type) // inline: TypeMeta, VolumeSource, ProbeHandler...
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := fs.types[name]; !dup {
				fs.order = append(fs.order, name)
				fs.types[name] = f.Type
			}
		}
	}
	add(t)
	fieldCache.Store(t, fs)
	return fs
}

// fieldHint finds the field meant by an unknown one: same letters in another case, or a
// typo of one or two letters.
func fieldHint(key string, fields []string) string {
	best, bestDist := "", 3
	if len(key) < 5 {
		bestDist = 2
	}
	for _, f := range fields {
		if strings.EqualFold(f, key) {
			return f
		}
		if d := editDistance(f, key); d < bestDist {
			best, bestDist = f, d
		}
	}
	return best
}

// decodeTyped renders the checked document as JSON and decodes it into proto, a new object
// of its API type, as the API server would (case-sensitive, sigs.k8s.io/json).
func decodeTyped(root *node, proto Object) *Problem {
	data, ok := appendJSON(make([]byte, 0, 1024), root, MaxObjectSize)
	if !ok {
		return &Problem{Severity: Error, Message: fmt.Sprintf(
			"object is larger than %s as JSON: Kubernetes (etcd) stores no object that large; move data into several ConfigMaps or a volume",
			humanSize(MaxObjectSize))}
	}
	if err := utiljson.Unmarshal(data, proto); err != nil {
		return &Problem{Severity: Error, Message: "cannot decode: " + err.Error()}
	}
	return nil
}

// humanSize renders a byte count as KiB or MiB.
func humanSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
