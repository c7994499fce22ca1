package ingress

import (
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// matchKind is how a compiled route compares paths. ImplementationSpecific compiles to
// prefix.
type matchKind uint8

const (
	matchExact matchKind = iota
	matchPrefix
)

func (k matchKind) String() string {
	if k == matchExact {
		return "Exact"
	}
	return "Prefix"
}

// route is one compiled path of a host: immutable once the table is published.
type route struct {
	kind    matchKind
	path    string // Exact: as written; Prefix: without a trailing slash, "/" for the root
	backend *backend
	// For status and conflict messages.
	pathType string // as written in the Ingress
	rawPath  string
	from     string // namespace/name of the Ingress
}

// matches reports whether the route takes a request path. It allocates nothing.
func (r *route) matches(p string) bool {
	if r.kind == matchExact {
		return p == r.path
	}
	if r.path == "/" {
		return true
	}
	return len(p) >= len(r.path) && p[:len(r.path)] == r.path && (len(p) == len(r.path) || p[len(r.path)] == '/')
}

// compilePath turns an Ingress path into its matcher: kind and normalised path.
func compilePath(pathType *networkingv1.PathType, p string) (matchKind, string) {
	if pathType != nil && *pathType == networkingv1.PathTypeExact {
		return matchExact, p
	}
	// Prefix and ImplementationSpecific (which means Prefix here).
	if p == "" {
		return matchPrefix, "/"
	}
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return matchPrefix, p
}

// vhost is the routes of one host, longest path first, Exact before Prefix on a tie.
type vhost struct {
	routes []*route
}

func (v *vhost) sort() {
	sort.SliceStable(v.routes, func(i, j int) bool {
		a, b := v.routes[i], v.routes[j]
		if len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		return a.kind < b.kind
	})
}

// match returns the first (so the best) route taking path p, or nil.
func (v *vhost) match(p string) *route {
	if v == nil {
		return nil
	}
	for _, r := range v.routes {
		if r.matches(p) {
			return r
		}
	}
	return nil
}

// match finds the route for a normalised host and a request path: exact host, then the
// wildcard one label up, then rules without a host, then the default backend. nil is 404.
func (t *table) match(host, p string) *route {
	if p == "" {
		p = "/"
	}
	if host != "" {
		if r := t.hosts[host].match(p); r != nil {
			return r
		}
		if i := strings.IndexByte(host, '.'); i > 0 {
			if r := t.wild[host[i+1:]].match(p); r != nil {
				return r
			}
		}
	}
	if r := t.anyHost.match(p); r != nil {
		return r
	}
	return t.def
}

// redirects reports whether plain HTTP requests for host go to HTTPS: the host, or the
// wildcard one label up, is listed in some Ingress's spec.tls.
func (t *table) redirects(host string) bool {
	if len(t.tlsHosts) == 0 && len(t.tlsWild) == 0 || host == "" {
		return false
	}
	if t.tlsHosts[host] {
		return true
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return t.tlsWild[host[i+1:]]
	}
	return false
}

// normalHost turns a Host header into the form rules use: no port, no trailing dot, lower
// case. It allocates only for a host with upper-case letters.
func normalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	if n := len(h); n > 0 && h[n-1] == '.' {
		h = h[:n-1]
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
