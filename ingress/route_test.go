package ingress

import (
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// compileFor compiles a snapshot with a server that has no listeners.
func compileFor(t *testing.T, cfg Config, st *state.State) (*Server, *table) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s, s.compile(st, time.Now())
}

// routed renders which route a request takes: "<pathType> <path> → <backend>" or "404".
func routed(tab *table, host, path string) string {
	r := tab.match(normalHost(host), path)
	if r == nil {
		return "404"
	}
	return r.pathType + " " + r.rawPath + " → " + r.backend.name
}

// The path examples of https://kubernetes.io/docs/concepts/services-networking/ingress/#examples,
// one row each; a request that matches nothing falls to the default backend.
func TestPathMatchingKubernetesDocs(t *testing.T) {
	for _, tc := range []struct {
		kind    string
		paths   []string // "Type /path"
		request []string
		want    string // the path that matches, or "default"
	}{
		{"Prefix", []string{"Prefix /"}, []string{"/", "/foo", "/foo/bar", "/aaa/bbb/"}, "Prefix /"},
		{"Exact", []string{"Exact /foo"}, []string{"/foo"}, "Exact /foo"},
		{"Exact", []string{"Exact /foo"}, []string{"/bar"}, "default"},
		{"Exact", []string{"Exact /foo"}, []string{"/foo/"}, "default"},
		{"Exact", []string{"Exact /foo/"}, []string{"/foo"}, "default"},
		{"Prefix", []string{"Prefix /foo"}, []string{"/foo", "/foo/"}, "Prefix /foo"},
		{"Prefix", []string{"Prefix /foo/"}, []string{"/foo", "/foo/"}, "Prefix /foo/"},
		{"Prefix", []string{"Prefix /aaa/bb"}, []string{"/aaa/bbb"}, "default"},
		{"Prefix", []string{"Prefix /aaa/bbb"}, []string{"/aaa/bbb"}, "Prefix /aaa/bbb"},
		{"Prefix", []string{"Prefix /aaa/bbb/"}, []string{"/aaa/bbb"}, "Prefix /aaa/bbb/"},   // ignores trailing slash
		{"Prefix", []string{"Prefix /aaa/bbb"}, []string{"/aaa/bbb/"}, "Prefix /aaa/bbb"},    // matches trailing slash
		{"Prefix", []string{"Prefix /aaa/bbb"}, []string{"/aaa/bbb/ccc"}, "Prefix /aaa/bbb"}, // matches subpath
		{"Prefix", []string{"Prefix /aaa/bbb"}, []string{"/aaa/bbbxyz"}, "default"},          // not a string prefix
		{"Prefix", []string{"Prefix /", "Prefix /aaa"}, []string{"/aaa/ccc"}, "Prefix /aaa"}, // matches /aaa prefix
		{"Prefix", []string{"Prefix /", "Prefix /aaa", "Prefix /aaa/bbb"}, []string{"/aaa/bbb"}, "Prefix /aaa/bbb"},
		{"Prefix", []string{"Prefix /", "Prefix /aaa", "Prefix /aaa/bbb"}, []string{"/ccc"}, "Prefix /"},
		{"Prefix", []string{"Prefix /aaa"}, []string{"/ccc"}, "default"},
		{"Mixed", []string{"Prefix /foo", "Exact /foo"}, []string{"/foo"}, "Exact /foo"}, // prefers Exact
	} {
		var paths []string
		for i, p := range tc.paths {
			paths = append(paths, p+" "+"svc"+string(rune('a'+i))+":80")
		}
		w := newWorld(t)
		st := w.sync(ingress("docs", rule("", paths...), defaultBackend("fallback", 80)))
		_, tab := compileFor(t, Config{DefaultClass: true}, st)
		for _, req := range tc.request {
			got := routed(tab, "docs.example.com", req)
			want := "default  → default/fallback:80"
			if tc.want != "default" {
				i := slices.Index(tc.paths, tc.want)
				want = tc.want + " → default/svc" + string(rune('a'+i)) + ":80"
			}
			if got != want {
				t.Errorf("%s %v: route(%q) = %q; want %q", tc.kind, tc.paths, req, got, want)
			}
		}
	}
}

func TestRouteHostsAndPaths(t *testing.T) {
	w := newWorld(t)
	st := w.sync(
		ingress("shop",
			rule("shop.example.com", "Prefix / web:80", "Prefix /api api:80", "Exact /api/health health:80",
				"ImplementationSpecific /static static:http", "Exact /Case case:80"),
			rule("bare.example.com"), rule("bare.example.org")), // hosts without paths: fall through
		ingress("wild", rule("*.example.com", "Prefix / wild:80"), rule("*.apps.example.com", "Prefix /x appsx:80")),
		ingress("catch", rule("", "Prefix /public public:80", `ImplementationSpecific "" catchall:80`)),
		ingress("fallback", defaultBackend("fallback", 80)),
	)
	_, tab := compileFor(t, Config{DefaultClass: true}, st)
	checkRoutes(t, tab, []routeCase{
		{"shop.example.com", "/", "Prefix / → default/web:80"},
		{"shop.example.com", "", "Prefix / → default/web:80"},
		{"shop.example.com", "/api", "Prefix /api → default/api:80"},
		{"shop.example.com", "/api/", "Prefix /api → default/api:80"},
		{"shop.example.com", "/api/v1/items", "Prefix /api → default/api:80"},
		{"shop.example.com", "/apiv1", "Prefix / → default/web:80"},
		{"shop.example.com", "/api/health", "Exact /api/health → default/health:80"},
		{"shop.example.com", "/api/health/", "Prefix /api → default/api:80"},
		{"shop.example.com", "/static/site.css", "ImplementationSpecific /static → default/static:http"},
		{"shop.example.com", "/staticfiles", "Prefix / → default/web:80"},
		{"shop.example.com", "/Case", "Exact /Case → default/case:80"},
		{"shop.example.com", "/case", "Prefix / → default/web:80"}, // paths are case-sensitive
		{"SHOP.Example.COM:8443", "/api", "Prefix /api → default/api:80"},
		{"shop.example.com.", "/api", "Prefix /api → default/api:80"},
		// *.example.com matches exactly one label.
		{"bar.example.com", "/anything", "Prefix / → default/wild:80"},
		{"a.apps.example.com", "/x/1", "Prefix /x → default/appsx:80"},
		{"a.apps.example.com", "/y", "ImplementationSpecific  → default/catchall:80"}, // not *.example.com: two labels
		{"baz.bar.example.com", "/", "ImplementationSpecific  → default/catchall:80"},
		{"example.com", "/", "ImplementationSpecific  → default/catchall:80"},
		{"example.com", "/public/a", "Prefix /public → default/public:80"},
		// A host's own rules win over rules without a host, whatever the path length.
		{"bar.example.com", "/public/a", "Prefix / → default/wild:80"},
		// A host without paths falls through to its wildcard, then to the rules without a host.
		{"bare.example.com", "/public", "Prefix / → default/wild:80"},
		{"bare.example.org", "/public", "Prefix /public → default/public:80"},
		{"bare.example.org", "/", "ImplementationSpecific  → default/catchall:80"},
		{"", "/", "ImplementationSpecific  → default/catchall:80"},
		{"10.0.0.1:80", "/public", "Prefix /public → default/public:80"},
		{"[::1]:80", "/x", "ImplementationSpecific  → default/catchall:80"},
	})

	// Without rules for every host, the default backend takes the rest; without it, 404.
	w2 := newWorld(t)
	_, tab2 := compileFor(t, Config{DefaultClass: true}, w2.sync(ingress("shop", rule("shop.example.com", "Exact /only web:80"))))
	checkRoutes(t, tab2, []routeCase{
		{"shop.example.com", "/only", "Exact /only → default/web:80"},
		{"shop.example.com", "/", "404"},
		{"other.example.com", "/only", "404"},
	})
	w3 := newWorld(t)
	_, tab3 := compileFor(t, Config{DefaultClass: true}, w3.sync(ingress("d", defaultBackend("fallback", 80), rule("shop.example.com", "Exact /only web:80"))))
	checkRoutes(t, tab3, []routeCase{{"shop.example.com", "/", "default  → default/fallback:80"}})
}

type routeCase struct{ host, path, want string }

func checkRoutes(t *testing.T, tab *table, cases []routeCase) {
	t.Helper()
	for _, tc := range cases {
		if got := routed(tab, tc.host, tc.path); got != tc.want {
			t.Errorf("route(%q, %q) = %q; want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

// Several Ingresses merge into one table; a duplicate host/path is taken by the oldest
// Ingress, whatever the names, and reported.
func TestRouteMergeAndConflicts(t *testing.T) {
	w := newWorld(t)
	w.sync(ingress("z-old", rule("shop.example.com", "Prefix /x old:80"), defaultBackend("old-default", 80),
		tlsFor("", "shop.example.com")))
	st := w.add(
		ingress("a-new", rule("shop.example.com", "Prefix /x/ new:80", "Exact /x exact:80", "ImplementationSpecific /x impl:80"),
			rule("shop.example.com", "Prefix /y y:80"), defaultBackend("new-default", 80)),
		ingress("other", inNamespace("team"), rule("shop.example.com", "Prefix /z z:80")),
	)
	_, tab := compileFor(t, Config{DefaultClass: true}, st)
	checkRoutes(t, tab, []routeCase{
		{"shop.example.com", "/x", "Exact /x → default/exact:80"},
		{"shop.example.com", "/x/1", "Prefix /x → default/old:80"},
		{"shop.example.com", "/y", "Prefix /y → default/y:80"},
		{"shop.example.com", "/z/1", "Prefix /z → team/z:80"}, // backends resolve in the Ingress's namespace
		{"shop.example.com", "/q", "default  → default/old-default:80"},
	})
	st2 := hostStatus(t, tab.status, "shop.example.com")
	if want := []string{"default/z-old", "default/a-new", "team/other"}; !slices.Equal(st2.Ingresses, want) {
		t.Errorf("Ingresses = %v; want %v (oldest first)", st2.Ingresses, want)
	}
	wantProblems := []string{
		"Prefix /x/ of Ingress default/a-new ignored: Prefix /x of Ingress default/z-old already routes it (the oldest wins)",
		"ImplementationSpecific /x of Ingress default/a-new ignored: Prefix /x of Ingress default/z-old already routes it (the oldest wins)",
	}
	for _, p := range wantProblems {
		if !slices.Contains(st2.Problems, p) {
			t.Errorf("shop.example.com problems = %q; want %q among them", st2.Problems, p)
		}
	}
	def := hostStatus(t, tab.status, DefaultHost)
	if want := "defaultBackend of Ingress default/a-new ignored: Ingress default/z-old already sets one (the oldest wins)"; !slices.Contains(def.Problems, want) {
		t.Errorf("* problems = %q; want %q", def.Problems, want)
	}
}

func TestIngressClass(t *testing.T) {
	objs := []manifest.Object{
		ingress("ours", class("skiff"), rule("ours.example.com", "Prefix / a:80")),
		ingress("theirs", class("nginx"), rule("theirs.example.com", "Prefix / b:80")),
		ingress("none", rule("none.example.com", "Prefix / c:80")),
		ingress("legacy", func(i *networkingv1.Ingress) {
			i.Annotations = map[string]string{AnnotationClass: "skiff"}
		}, rule("legacy.example.com", "Prefix / d:80")),
	}
	for _, tc := range []struct {
		name         string
		cfg          Config
		served       []string
		ignoredHosts map[string]string
	}{
		{"default class", Config{Class: "skiff", DefaultClass: true},
			[]string{"ours.example.com", "none.example.com", "legacy.example.com"},
			map[string]string{"theirs.example.com": `Ingress default/theirs ignored: its class "nginx" is not "skiff"`}},
		{"not the default class", Config{Class: "skiff"},
			[]string{"ours.example.com", "legacy.example.com"},
			map[string]string{
				"theirs.example.com": `Ingress default/theirs ignored: its class "nginx" is not "skiff"`,
				"none.example.com":   `Ingress default/none ignored: it has no ingressClassName and class "skiff" is not the default class here`,
			}},
		{"another class", Config{Class: "nginx"},
			[]string{"theirs.example.com"},
			map[string]string{"ours.example.com": `Ingress default/ours ignored: its class "skiff" is not "nginx"`}},
	} {
		w := newWorld(t)
		_, tab := compileFor(t, tc.cfg, w.sync(objs...))
		for _, h := range []string{"ours.example.com", "theirs.example.com", "none.example.com", "legacy.example.com"} {
			got := routed(tab, h, "/")
			if served := slices.Contains(tc.served, h); served != (got != "404") {
				t.Errorf("%s: route(%q) = %q; served want %v", tc.name, h, got, served)
			}
		}
		for h, msg := range tc.ignoredHosts {
			if st := hostStatus(t, tab.status, h); !slices.Contains(st.Problems, msg) {
				t.Errorf("%s: status of %s = %q; want %q", tc.name, h, st.Problems, msg)
			}
		}
	}
}

func TestNormalHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"example.com:8080", "example.com"},
		{"example.com.", "example.com"},
		{"example.com.:443", "example.com"},
		{"[::1]:443", "[::1]"},
		{"[::1]", "[::1]"},
		{"", ""},
	} {
		if got := normalHost(tc.in); got != tc.want {
			t.Errorf("normalHost(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// Routing a request allocates nothing.
func TestMatchAllocatesNothing(t *testing.T) {
	w := newWorld(t)
	_, tab := compileFor(t, Config{DefaultClass: true, HTTPS: "127.0.0.1:0"}, w.sync(
		ingress("a", rule("shop.example.com", "Prefix / web:80", "Prefix /api api:80", "Exact /api/health h:80"),
			rule("*.example.com", "Prefix /w w:80"), rule("", "Prefix /p p:80"), tlsFor("", "*.apps.example.com", "www.example.org"))))
	for _, tc := range []struct {
		host string
		want bool
	}{{"www.example.org", true}, {"a.apps.example.com", true}, {"apps.example.com", false}, {"shop.example.com", false}} {
		if got := tab.redirects(tc.host); got != tc.want {
			t.Errorf("redirects(%q) = %v; want %v", tc.host, got, tc.want)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, h := range []string{"shop.example.com", "x.example.com:443", "other.org"} {
			_ = tab.redirects(normalHost(h))
			_ = tab.match(normalHost(h), "/api/v1")
		}
	})
	if allocs != 0 {
		t.Errorf("match allocates %v times per run; want 0", allocs)
	}
}

func hostStatus(t *testing.T, sts []HostStatus, host string) HostStatus {
	t.Helper()
	for _, s := range sts {
		if s.Host == host {
			return s
		}
	}
	var hosts []string
	for _, s := range sts {
		hosts = append(hosts, s.Host)
	}
	t.Fatalf("no status for host %q (hosts: %s)", host, strings.Join(hosts, ", "))
	return HostStatus{}
}
