package state

import (
	"sort"

	"github.com/skiffhq/skiff/manifest"
)

// Key names one object: kind, namespace ("" for cluster-scoped kinds) and name.
type Key struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String renders the key as kind/namespace/name (or kind/name when cluster-scoped).
func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// KeyOf returns the key of an object.
func KeyOf(o manifest.Object) Key {
	return Key{Kind: manifest.KindOf(o), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Objects is an immutable set of objects indexed by kind, then key. The zero value is empty.
// Methods that change the set return a new one sharing everything that did not change.
type Objects struct {
	byKind map[string]map[Key]manifest.Object
	n      int
}

// NewObjects builds a set from a list; a later object with the same key wins.
func NewObjects(objs ...manifest.Object) Objects {
	var s Objects
	m := map[string]map[Key]manifest.Object{}
	for _, o := range objs {
		k := KeyOf(o)
		if m[k.Kind] == nil {
			m[k.Kind] = map[Key]manifest.Object{}
		}
		if _, dup := m[k.Kind][k]; !dup {
			s.n++
		}
		m[k.Kind][k] = o
	}
	s.byKind = m
	return s
}

// Len returns the number of objects.
func (s Objects) Len() int { return s.n }

// Get returns the object with key k.
func (s Objects) Get(k Key) (manifest.Object, bool) {
	o, ok := s.byKind[k.Kind][k]
	return o, ok
}

// Count returns the number of objects of one kind.
func (s Objects) Count(kind string) int { return len(s.byKind[kind]) }

// List returns the objects of one kind in namespace ns ("" for all namespaces), sorted by
// namespace then name.
func (s Objects) List(kind, ns string) []manifest.Object {
	m := s.byKind[kind]
	out := make([]manifest.Object, 0, len(m))
	for k, o := range m {
		if ns == "" || k.Namespace == ns {
			out = append(out, o)
		}
	}
	sortObjects(out)
	return out
}

// All returns every object, sorted by kind, namespace and name.
func (s Objects) All() []manifest.Object {
	kinds := make([]string, 0, len(s.byKind))
	for k := range s.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	out := make([]manifest.Object, 0, s.n)
	for _, k := range kinds {
		out = append(out, s.List(k, "")...)
	}
	return out
}

// With returns a set with o added or replaced.
func (s Objects) With(o manifest.Object) Objects {
	k := KeyOf(o)
	out := s.cloneKind(k.Kind)
	if _, ok := out.byKind[k.Kind][k]; !ok {
		out.n++
	}
	out.byKind[k.Kind][k] = o
	return out
}

// Without returns a set with the object at k removed.
func (s Objects) Without(k Key) Objects {
	if _, ok := s.byKind[k.Kind][k]; !ok {
		return s
	}
	out := s.cloneKind(k.Kind)
	delete(out.byKind[k.Kind], k)
	out.n--
	return out
}

// Builder changes a set in place, copying each kind's map at most once: a command putting
// a thousand objects costs one copy per kind, not one per object.
type Builder struct {
	s      Objects
	cloned map[string]bool
	top    bool
}

// Builder starts changing a copy of s; s itself never changes.
func (s Objects) Builder() *Builder { return &Builder{s: s, cloned: map[string]bool{}} }

func (b *Builder) kind(kind string) map[Key]manifest.Object {
	if !b.top {
		m := make(map[string]map[Key]manifest.Object, len(b.s.byKind)+1)
		for k, v := range b.s.byKind {
			m[k] = v
		}
		b.s.byKind, b.top = m, true
	}
	if !b.cloned[kind] {
		m := make(map[Key]manifest.Object, len(b.s.byKind[kind])+1)
		for k, o := range b.s.byKind[kind] {
			m[k] = o
		}
		b.s.byKind[kind] = m
		b.cloned[kind] = true
	}
	return b.s.byKind[kind]
}

// Get looks at the set as changed so far.
func (b *Builder) Get(k Key) (manifest.Object, bool) { return b.s.Get(k) }

// Put adds or replaces o.
func (b *Builder) Put(o manifest.Object) {
	k := KeyOf(o)
	m := b.kind(k.Kind)
	if _, ok := m[k]; !ok {
		b.s.n++
	}
	m[k] = o
}

// Delete removes the object at k.
func (b *Builder) Delete(k Key) {
	if _, ok := b.s.Get(k); !ok {
		return
	}
	delete(b.kind(k.Kind), k)
	b.s.n--
}

// Objects returns the changed set; the builder must not be used afterwards.
func (b *Builder) Objects() Objects { return b.s }

// cloneKind copies the top-level map and the map of one kind, so that kind can be changed.
func (s Objects) cloneKind(kind string) Objects {
	out := Objects{byKind: make(map[string]map[Key]manifest.Object, len(s.byKind)+1), n: s.n}
	for k, m := range s.byKind {
		out.byKind[k] = m
	}
	m := make(map[Key]manifest.Object, len(s.byKind[kind])+1)
	for k, o := range s.byKind[kind] {
		m[k] = o
	}
	out.byKind[kind] = m
	return out
}

func sortObjects(objs []manifest.Object) {
	sort.Slice(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}

// Typed converts a list of objects to a list of one concrete type, skipping others.
func Typed[T manifest.Object](objs []manifest.Object) []T {
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
