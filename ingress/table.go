package ingress

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// AnnotationClass is the legacy way to name an Ingress's class, read when
// spec.ingressClassName is unset.
const AnnotationClass = "kubernetes.io/ingress.class"

// DefaultHost names, in Status, everything not tied to one host: rules without a host,
// the defaultBackend, the default certificate and the listeners' own problems.
const DefaultHost = "*"

// HostStatus is what `skiff status` shows for one host.
type HostStatus struct {
	Host      string   `json:"host"`                // "shop.example.com", "*.example.com", or DefaultHost
	Ingresses []string `json:"ingresses,omitempty"` // namespace/name of the Ingresses that route it
	// Routes in match order: "Prefix /api → default/api:80 (2 ready)".
	Routes []string `json:"routes,omitempty"`
	// Certificate is where the HTTPS certificate comes from: "secret namespace/name" or
	// "cluster CA"; empty when HTTPS is off or no certificate could be had.
	Certificate string    `json:"certificate,omitempty"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	Redirect    bool      `json:"redirect,omitempty"` // plain HTTP is redirected to HTTPS
	Problems    []string  `json:"problems,omitempty"`
}

// table is one compiled snapshot: immutable once published.
type table struct {
	synced   bool
	hosts    map[string]*vhost // exact hosts
	wild     map[string]*vhost // "foo.com" for *.foo.com
	anyHost  *vhost            // rules without a host
	def      *route            // defaultBackend
	tlsHosts map[string]bool   // hosts listed in spec.tls (redirected to HTTPS)
	tlsWild  map[string]bool   // "foo.com" for *.foo.com listed in spec.tls
	certs    certs
	status   []HostStatus
}

// hostBuild collects one host's rules from every Ingress.
type hostBuild struct {
	name      string // "" for rules without a host
	routes    []*route
	byMatch   map[matchKey]*route
	ingresses []string
	secret    *secretRef // the first spec.tls entry with a secretName for this host
	listed    bool       // named in some spec.tls
	problems  []string
}

type matchKey struct {
	kind matchKind
	path string
}

type secretRef struct{ ns, name, from string }

func (r *secretRef) String() string { return r.ns + "/" + r.name }

func (h *hostBuild) addIngress(ref string) {
	if n := len(h.ingresses); n == 0 || h.ingresses[n-1] != ref {
		h.ingresses = append(h.ingresses, ref)
	}
}

func (h *hostBuild) problemf(format string, args ...any) {
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// builder compiles one state snapshot. It runs with s.mu held.
type builder struct {
	s        *Server
	st       *state.State
	now      time.Time
	hosts    map[string]*hostBuild
	anyHost  *hostBuild // rules without a host, defaultBackend, listener problems
	ignored  map[string][]string
	def      *route
	defCert  *secretRef
	backends map[string]*backend
	eps      map[state.Key]*corev1.Endpoints
	usedEps  map[string]*endpoint
}

// compile builds the routing table for a snapshot.
func (s *Server) compile(st *state.State, now time.Time) *table {
	b := &builder{
		s: s, st: st, now: now,
		hosts:    map[string]*hostBuild{},
		anyHost:  &hostBuild{name: DefaultHost, byMatch: map[matchKey]*route{}},
		ignored:  map[string][]string{},
		backends: map[string]*backend{},
		eps:      map[state.Key]*corev1.Endpoints{},
		usedEps:  map[string]*endpoint{},
	}
	ings := state.Typed[*networkingv1.Ingress](st.Git.List("Ingress", ""))
	sort.SliceStable(ings, func(i, j int) bool { // oldest first: the oldest wins a conflict
		a, b := ings[i].CreationTimestamp, ings[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return false // List is sorted by namespace, then name
	})
	for _, ing := range ings {
		if why := s.ignores(ing); why != "" {
			b.ignore(ing, why)
			continue
		}
		b.add(ing)
	}
	t := b.finish()
	t.synced = st.Synced()
	s.eps = b.usedEps
	return t
}

// Serves reports whether ing is for this server's class (the others are ignored, and
// status says so).
func (s *Server) Serves(ing *networkingv1.Ingress) bool { return s.ignores(ing) == "" }

// ignores says why an Ingress is not for this class, or "" when it is.
func (s *Server) ignores(ing *networkingv1.Ingress) string {
	class := ""
	if c := ing.Spec.IngressClassName; c != nil {
		class = *c
	} else if a := ing.Annotations[AnnotationClass]; a != "" {
		class = a
	}
	switch {
	case class == "" && !s.cfg.DefaultClass:
		return fmt.Sprintf("it has no ingressClassName and class %q is not the default class here", s.cfg.Class)
	case class != "" && class != s.cfg.Class:
		return fmt.Sprintf("its class %q is not %q", class, s.cfg.Class)
	}
	return ""
}

func refOf(ing *networkingv1.Ingress) string { return ing.Namespace + "/" + ing.Name }

func (b *builder) ignore(ing *networkingv1.Ingress, why string) {
	msg := fmt.Sprintf("Ingress %s ignored: %s", refOf(ing), why)
	seen := map[string]bool{}
	for _, r := range ing.Spec.Rules {
		seen[r.Host] = true
	}
	for _, t := range ing.Spec.TLS {
		for _, h := range t.Hosts {
			seen[h] = true
		}
	}
	if ing.Spec.DefaultBackend != nil || len(seen) == 0 {
		seen[""] = true
	}
	for h := range seen {
		if h == "" {
			b.anyHost.problemf("%s", msg)
		} else {
			b.ignored[h] = append(b.ignored[h], msg)
		}
	}
}

func (b *builder) host(name string) *hostBuild {
	if name == "" {
		return b.anyHost
	}
	h := b.hosts[name]
	if h == nil {
		h = &hostBuild{name: name, byMatch: map[matchKey]*route{}}
		b.hosts[name] = h
	}
	return h
}

func (b *builder) add(ing *networkingv1.Ingress) {
	ref := refOf(ing)
	if db := ing.Spec.DefaultBackend; db != nil {
		b.anyHost.addIngress(ref)
		if b.def == nil {
			b.def = &route{kind: matchPrefix, path: "/", pathType: "default", rawPath: "", from: ref, backend: b.backend(ing.Namespace, db)}
		} else {
			b.anyHost.problemf("defaultBackend of Ingress %s ignored: Ingress %s already sets one (the oldest wins)", ref, b.def.from)
		}
	}
	var ruleHosts []string
	for _, rule := range ing.Spec.Rules {
		h := b.host(rule.Host)
		h.addIngress(ref)
		if rule.Host != "" {
			ruleHosts = append(ruleHosts, rule.Host)
		}
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			kind, norm := compilePath(p.PathType, p.Path)
			pt := string(networkingv1.PathTypeImplementationSpecific)
			if p.PathType != nil {
				pt = string(*p.PathType)
			}
			r := &route{kind: kind, path: norm, pathType: pt, rawPath: p.Path, from: ref}
			k := matchKey{kind, norm}
			if prev := h.byMatch[k]; prev != nil {
				h.problemf("%s %s of Ingress %s ignored: %s %s of Ingress %s already routes it (the oldest wins)",
					pt, orRoot(p.Path), ref, prev.pathType, orRoot(prev.rawPath), prev.from)
				continue
			}
			r.backend = b.backend(ing.Namespace, &p.Backend)
			h.byMatch[k] = r
			h.routes = append(h.routes, r)
		}
	}
	for _, t := range ing.Spec.TLS {
		hosts := t.Hosts
		if len(hosts) == 0 {
			hosts = ruleHosts
			if len(hosts) == 0 && t.SecretName != "" { // no hosts at all: the default certificate
				if b.defCert == nil {
					b.defCert = &secretRef{ns: ing.Namespace, name: t.SecretName, from: ref}
					b.anyHost.addIngress(ref)
				} else {
					b.anyHost.problemf("default certificate secret %s/%s of Ingress %s ignored: secret %s of Ingress %s came first (the oldest wins)",
						ing.Namespace, t.SecretName, ref, b.defCert, b.defCert.from)
				}
				continue
			}
		}
		for _, hn := range hosts {
			h := b.host(hn)
			h.addIngress(ref)
			h.listed = true
			if t.SecretName == "" {
				continue
			}
			sr := &secretRef{ns: ing.Namespace, name: t.SecretName, from: ref}
			switch {
			case h.secret == nil:
				h.secret = sr
			case h.secret.String() != sr.String():
				h.problemf("TLS secret %s of Ingress %s ignored: secret %s of Ingress %s came first (the oldest wins)", sr, ref, h.secret, h.secret.from)
			}
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return `""`
	}
	return p
}

// backend resolves an Ingress backend to its Service port and ready endpoints, once per
// compile.
func (b *builder) backend(ns string, ib *networkingv1.IngressBackend) *backend {
	if ib.Service == nil {
		return &backend{name: ns + "/<resource>", problem: "resource backends are not supported; name a Service"}
	}
	name, port := ib.Service.Name, ib.Service.Port
	portText := port.Name
	if portText == "" {
		portText = strconv.Itoa(int(port.Number))
	}
	key := ns + "/" + name + ":" + portText
	if be := b.backends[key]; be != nil {
		return be
	}
	be := &backend{name: key, rt: b.s.h1}
	b.backends[key] = be
	svc, ok := services.Get(b.st, ns, name)
	switch {
	case !ok:
		be.problem = fmt.Sprintf("Service %s/%s not found", ns, name)
		return be
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		be.problem = fmt.Sprintf("Service %s/%s is of type ExternalName, which the ingress does not proxy to", ns, name)
		return be
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if port.Name != "" && p.Name == port.Name || port.Name == "" && p.Port == port.Number {
			sp = p
			break
		}
	}
	if sp == nil {
		be.problem = fmt.Sprintf("Service %s/%s has no port %s (it has %s)", ns, name, portText, portList(svc))
		return be
	}
	if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
		be.problem = fmt.Sprintf("port %s of Service %s/%s is %s, not TCP", portText, ns, name, sp.Protocol)
		return be
	}
	k := state.KeyOf(svc)
	ep, ok := b.eps[k]
	if !ok {
		ep = services.EndpointsOf(b.st, svc)
		b.eps[k] = ep
	}
	if ep != nil {
		for _, ss := range ep.Subsets {
			for _, p := range ss.Ports {
				if p.Name != sp.Name || p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
					continue
				}
				for _, a := range ss.Addresses {
					be.eps = append(be.eps, b.endpoint(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port)))))
				}
			}
		}
	}
	if len(be.eps) == 0 {
		be.problem = fmt.Sprintf("Service %s/%s has no ready endpoints", ns, name)
		return be
	}
	be.proxy = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    be,
		BufferPool:   &b.s.buffers,
		ErrorHandler: b.s.proxyError,
		ErrorLog:     b.s.errorLog,
		// Fixed-length bodies that trickle are flushed at least this often; bodies of
		// unknown length and event streams are flushed at once (ReverseProxy does that).
		FlushInterval: flushInterval,
	}
	return be
}

func portList(svc *corev1.Service) string {
	if len(svc.Spec.Ports) == 0 {
		return "no ports"
	}
	var out []string
	for _, p := range svc.Spec.Ports {
		s := strconv.Itoa(int(p.Port))
		if p.Name != "" {
			s += " (" + p.Name + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// endpoint returns the server's state for an address, shared across tables.
func (b *builder) endpoint(addr string) *endpoint {
	if e := b.usedEps[addr]; e != nil {
		return e
	}
	e := b.s.eps[addr]
	if e == nil {
		e = &endpoint{addr: addr}
	}
	b.usedEps[addr] = e
	return e
}

// secret loads and checks a TLS Secret (parsed certificates are cached by content).
func (b *builder) secret(ref *secretRef) (*cert, error) {
	o, ok := b.st.Git.Get(state.Key{Kind: "Secret", Namespace: ref.ns, Name: ref.name})
	if !ok {
		return nil, fmt.Errorf("not found")
	}
	sec := o.(*corev1.Secret)
	d := secretDigest(sec)
	p, ok := b.s.secrets[d]
	if !ok {
		c, err := secretCert(sec)
		if err != nil && sec.Type != corev1.SecretTypeTLS {
			err = fmt.Errorf("%w (its type is %q, not %s)", err, sec.Type, corev1.SecretTypeTLS)
		}
		p = &parsedSecret{c: c, err: err}
	}
	b.s.nextSecrets[d] = p
	if p.err != nil {
		return nil, p.err
	}
	if err := validAt(p.c.leaf, b.now); err != nil {
		return nil, err
	}
	return &cert{tls: p.c.tls, leaf: p.c.leaf, source: sourceSecret + ref.String()}, nil
}

// finish sorts routes, picks certificates and writes the status.
func (b *builder) finish() *table {
	s := b.s
	t := &table{
		hosts: map[string]*vhost{}, wild: map[string]*vhost{}, tlsHosts: map[string]bool{}, tlsWild: map[string]bool{},
		certs: certs{exact: map[string]*cert{}, wild: map[string]*cert{}},
		def:   b.def,
	}
	https := s.cfg.HTTPS != ""
	s.nextSecrets = map[[32]byte]*parsedSecret{}
	names := make([]string, 0, len(b.hosts))
	for n := range b.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	usedIssued := map[string]bool{}
	for _, n := range names {
		h := b.hosts[n]
		v := &vhost{routes: h.routes}
		v.sort()
		wild := strings.HasPrefix(n, "*.")
		switch {
		case wild && len(v.routes) > 0:
			t.wild[n[2:]] = v
		case len(v.routes) > 0:
			t.hosts[n] = v
		}
		switch {
		case !h.listed || !https:
		case wild:
			t.tlsWild[n[2:]] = true
		default:
			t.tlsHosts[n] = true
		}
		st := HostStatus{Host: n, Ingresses: h.ingresses, Redirect: h.listed && https}
		if https {
			c := b.hostCert(h)
			if c == nil {
				usedIssued[n] = true
				var err error
				if c, err = s.issue(n, b.now); err != nil && (h.secret == nil || s.cfg.Issue != nil) {
					h.problemf("HTTPS: %v", err)
				}
			}
			if c != nil {
				st.Certificate, st.NotAfter = c.source, c.leaf.NotAfter
				if wild {
					t.certs.wild[n[2:]] = c
				} else {
					t.certs.exact[n] = c
				}
			}
		}
		st.Routes = routeLines(v.routes, nil)
		st.Problems = append(h.problems, backendProblems(v.routes)...)
		st.Problems = append(st.Problems, b.ignored[n]...)
		delete(b.ignored, n)
		t.status = append(t.status, st)
	}
	for n, msgs := range b.ignored { // hosts only ignored Ingresses name
		t.status = append(t.status, HostStatus{Host: n, Problems: msgs})
	}
	// Everything else: rules without a host, the default backend, the default certificate.
	rest := b.anyHost
	v := &vhost{routes: rest.routes}
	v.sort()
	if len(v.routes) > 0 {
		t.anyHost = v
	}
	def := HostStatus{Host: DefaultHost, Ingresses: rest.ingresses}
	if https {
		var c *cert
		if b.defCert != nil {
			var err error
			if c, err = b.secret(b.defCert); err != nil {
				rest.problemf("default certificate: TLS secret %s of Ingress %s: %v; serving a cluster CA certificate instead", b.defCert, b.defCert.from, err)
				c = nil
			}
		}
		if c == nil {
			var err error
			if c, err = s.issue(DefaultCertName, b.now); err != nil {
				rest.problemf("default certificate: %v", err)
			}
			usedIssued[DefaultCertName] = true
		}
		if c != nil {
			t.certs.def = c
			def.Certificate, def.NotAfter = c.source, c.leaf.NotAfter
		}
	}
	def.Routes = routeLines(v.routes, b.def)
	def.Problems = append(rest.problems, backendProblems(append(append([]*route(nil), v.routes...), b.def))...)
	sort.Slice(t.status, func(i, j int) bool { return t.status[i].Host < t.status[j].Host })
	t.status = append([]HostStatus{def}, t.status...)
	for n := range s.issued {
		if !usedIssued[n] {
			delete(s.issued, n)
		}
	}
	s.secrets, s.nextSecrets = s.nextSecrets, nil
	return t
}

// hostCert returns the certificate of a host's TLS secret, or nil (with the problem noted)
// when it has none or it cannot be used.
func (b *builder) hostCert(h *hostBuild) *cert {
	if h.secret == nil {
		return nil
	}
	c, err := b.secret(h.secret)
	if err == nil && !covers(c.leaf, h.name) {
		err = fmt.Errorf("the certificate (for %s) does not cover %s", certNames(c.leaf), h.name)
	}
	if err != nil {
		fallback := "serving a cluster CA certificate instead"
		if b.s.cfg.Issue == nil {
			fallback = "no certificate to serve"
		}
		h.problemf("TLS secret %s of Ingress %s: %v; %s", h.secret, h.secret.from, err, fallback)
		return nil
	}
	return c
}

func certNames(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return fmt.Sprintf("CN=%s, no DNS names", c.Subject.CommonName)
}

// routeLines renders routes for Status, in match order; def is the defaultBackend.
func routeLines(rs []*route, def *route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s → %s", r.kind, r.path, backendLine(r.backend)))
	}
	if def != nil {
		out = append(out, "default → "+backendLine(def.backend))
	}
	return out
}

func backendLine(be *backend) string {
	if be.problem != "" {
		return be.name + ": " + be.problem
	}
	return fmt.Sprintf("%s (%d ready)", be.name, len(be.eps))
}

// backendProblems lists each unusable backend of some routes once.
func backendProblems(rs []*route) []string {
	var out []string
	seen := map[*backend]bool{}
	for _, r := range rs {
		if r == nil || r.backend.problem == "" || seen[r.backend] {
			continue
		}
		seen[r.backend] = true
		out = append(out, fmt.Sprintf("%s %s → %s: %s (503)", r.kind, r.path, r.backend.name, r.backend.problem))
	}
	return out
}
