package dnsd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/dnsd/dnstest"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// A node that has not loaded a synced snapshot must not deny names that may exist.
func TestServfailBeforeSync(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up, nil)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"kubernetes.default.svc.cluster.local.", dns.TypeA, dns.RcodeServerFailure},
		{"nope.svc.cluster.local.", dns.TypeA, dns.RcodeServerFailure},
		{"1.0.43.10.in-addr.arpa.", dns.TypePTR, dns.RcodeServerFailure}, // inside the service CIDR
		{"www.example.com.", dns.TypeA, dns.RcodeSuccess},                // forwarding works already
	}
	ask := func(when string) {
		for _, network := range []string{"udp", "tcp"} {
			for _, tc := range tests {
				r := query(t, network, s.Addr(), question(tc.name, tc.qtype))
				if r.Rcode != tc.rcode {
					t.Errorf("%s: Lookup(%s %s %s) = %s; want %s", when, network, tc.name, dns.TypeToString[tc.qtype],
						dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
			}
		}
	}
	ask("never updated")
	s.Update(state.Empty()) // a state that never synced changes nothing
	ask("updated with an unsynced state")
	if s.Ready() {
		t.Error("Ready() = true before a synced snapshot")
	}

	s.Update(clusterStore(t).State())
	r := query(t, "udp", s.Addr(), question("kubernetes.default.svc.cluster.local.", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !s.Ready() {
		t.Errorf("after a synced snapshot: Lookup(kubernetes) = %s %v, Ready() = %v; want the address", dns.RcodeToString[r.Rcode], r.Answer, s.Ready())
	}
}

// Clients outside Allow and the nodes get REFUSED for every name: dnsd is not an open
// resolver.
func TestRefusedOutsideAllow(t *testing.T) {
	up := startUpstream(t)
	m := clusterStore(t)
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "n2"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.3"}}}}
	if err := m.Apply(t.Context(), &state.Command{Put: state.Wrap[manifest.Object](node)}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, up, m.State(), func(c *Config) {
		c.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	tests := []struct {
		from  string
		name  string
		rcode int
	}{
		{"127.0.0.2", "kubernetes.default.svc.cluster.local.", dns.RcodeRefused},
		{"127.0.0.2", "www.example.com.", dns.RcodeRefused},
		{"127.0.0.2", "1.0.43.10.in-addr.arpa.", dns.RcodeRefused},
		{"127.0.0.1", "kubernetes.default.svc.cluster.local.", dns.RcodeSuccess},
		{"127.0.0.1", "www.example.com.", dns.RcodeSuccess},
		{"127.0.0.3", "kubernetes.default.svc.cluster.local.", dns.RcodeSuccess}, // a node
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			var local net.Addr = &net.UDPAddr{IP: net.ParseIP(tc.from)}
			if network == "tcp" {
				local = &net.TCPAddr{IP: net.ParseIP(tc.from)}
			}
			c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}}
			r, _, err := c.Exchange(question(tc.name, dns.TypeA), s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tc.rcode || tc.rcode == dns.RcodeRefused && len(r.Answer) > 0 {
				t.Errorf("Lookup(%s %s from %s) = %s %v; want %s", network, tc.name, tc.from, dns.RcodeToString[r.Rcode], r.Answer, dns.RcodeToString[tc.rcode])
			}
		}
	}
	if n := up.count("www.example.com.", dns.TypeA, "udp"); n != 1 {
		t.Errorf("upstream saw %d queries; want 1 (refused clients reach nothing, the second allowed query is a cache hit)", n)
	}
}

// A large answer is truncated over UDP to the client's buffer (TC set, so it retries over
// TCP) and whole over TCP.
func TestTruncation(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up, clusterStore(t).State())
	tests := []struct {
		network string
		name    string
		qtype   uint16
		edns    uint16 // 0: no EDNS0
		want    int    // answers
		tc      bool
	}{
		{"udp", "big.default.svc.cluster.local.", dns.TypeA, 0, -1, true},
		{"udp", "big.default.svc.cluster.local.", dns.TypeA, 4096, bigPods, false},
		{"udp", "big.default.svc.cluster.local.", dns.TypeA, 600, -1, true},
		{"tcp", "big.default.svc.cluster.local.", dns.TypeA, 0, bigPods, false},
		{"udp", "big.example.com.", dns.TypeTXT, 0, -1, true}, // forwarded: dnsd itself got it over TCP
		{"tcp", "big.example.com.", dns.TypeTXT, 0, 40, false},
	}
	for _, tc := range tests {
		m := question(tc.name, tc.qtype)
		if tc.edns > 0 {
			m.SetEdns0(tc.edns, false)
		}
		r := query(t, tc.network, s.Addr(), m)
		r.Compress = true
		size := r.Len() // as it came: compressed
		limit := dns.MaxMsgSize
		if tc.network == "udp" {
			limit = max(dns.MinMsgSize, int(tc.edns))
		}
		if r.Truncated != tc.tc || tc.want >= 0 && len(r.Answer) != tc.want || tc.want < 0 && len(r.Answer) >= bigPods || size > limit {
			t.Errorf("Lookup(%s %s, edns %d) = TC %v, %d answers, %d bytes; want TC %v, %d answers, at most %d bytes",
				tc.network, tc.name, tc.edns, r.Truncated, len(r.Answer), size, tc.tc, tc.want, limit)
		}
		if (r.IsEdns0() != nil) != (tc.edns > 0) {
			t.Errorf("Lookup(%s %s, edns %d): response EDNS0 = %v; want it only when asked", tc.network, tc.name, tc.edns, r.IsEdns0())
		}
	}
	if udp, tcp := up.count("big.example.com.", dns.TypeTXT, "udp"), up.count("big.example.com.", dns.TypeTXT, "tcp"); udp != 1 || tcp != 1 {
		t.Errorf("upstream saw big.example.com over UDP %d and TCP %d times; want once each (truncated, retried over TCP, then cached)", udp, tcp)
	}
}

// Forwarded answers are cached for their TTL, negative ones for the SOA's negative TTL.
func TestForwardCache(t *testing.T) {
	up := startUpstream(t)
	s := startServer(t, up, nil)
	tests := []struct {
		name     string
		advance  time.Duration // clock moves before the query
		rcode    int
		ttl      uint32 // of the first answer or authority record
		upstream int    // queries the upstream has seen after this one
	}{
		{"www.example.com.", 0, dns.RcodeSuccess, 300, 1},
		{"WWW.example.com.", 10 * time.Second, dns.RcodeSuccess, 290, 1},  // a hit, counted down
		{"www.example.com.", 290 * time.Second, dns.RcodeSuccess, 300, 2}, // expired: asked again
		{"nx.example.com.", 0, dns.RcodeNameError, 30, 1},                 // negative TTL: min(SOA TTL, MINIMUM)
		{"nx.example.com.", 29 * time.Second, dns.RcodeNameError, 1, 1},
		{"nx.example.com.", time.Second, dns.RcodeNameError, 30, 2},
	}
	for _, tc := range tests {
		s.clock.advance(tc.advance)
		r := query(t, "udp", s.Addr(), question(tc.name, dns.TypeA))
		var ttl uint32
		switch {
		case len(r.Answer) > 0:
			ttl = r.Answer[0].Header().Ttl
			if r.Answer[0].Header().Name != tc.name {
				t.Errorf("Lookup(%s) answer owner %q; want the question's case", tc.name, r.Answer[0].Header().Name)
			}
		case len(r.Ns) > 0:
			ttl = r.Ns[0].Header().Ttl
		}
		got := up.count(strings.ToLower(tc.name), dns.TypeA, "udp")
		if r.Rcode != tc.rcode || ttl != tc.ttl || got != tc.upstream {
			t.Errorf("Lookup(%s) after %v = %s TTL %d, upstream %d; want %s TTL %d, upstream %d",
				tc.name, tc.advance, dns.RcodeToString[r.Rcode], ttl, got, dns.RcodeToString[tc.rcode], tc.ttl, tc.upstream)
		}
	}
}

// Every upstream down: SERVFAIL, and nothing is cached.
func TestForwardFailure(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := newTestServer(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	s.forward.exchange = func(context.Context, *dns.Msg, string, string) (*dns.Msg, error) {
		return nil, errors.New("connection refused")
	}
	w := &testWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000}}
	s.handler.ServeDNS(t.Context(), w, question("www.example.com.", dns.TypeA))
	if w.msg == nil || w.msg.Rcode != dns.RcodeServerFailure || s.cache.Len() != 0 {
		t.Errorf("Lookup(www.example.com) with no upstream = %v, cache %d; want SERVFAIL, nothing cached", w.msg, s.cache.Len())
	}
}

// A query waiting on a slow upstream holds up nothing else: cluster names are answered
// meanwhile on the same socket, from the same client.
func TestSlowUpstreamBlocksNothing(t *testing.T) {
	up := startUpstream(t)
	for _, listen := range listenAddrs {
		s := startServer(t, up, clusterStore(t).State(), listenOn(listen))
		conn, err := net.Dial("udp", s.Target())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		send := func(id uint16, name string) {
			m := question(name, dns.TypeA)
			m.Id = id
			b, _ := m.Pack()
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		send(1, "slow.example.com.")
		for i := range 20 {
			send(uint16(100+i), "kubernetes.default.svc.cluster.local.")
		}
		buf := make([]byte, dns.MaxMsgSize)
		var order []uint16
		for len(order) < 21 {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("%s: answers %v: %v", listen, order, err)
			}
			var r dns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			order = append(order, r.Id)
			if len(order) == 20 { // every cluster answer is in: let the upstream answer
				select {
				case up.release <- struct{}{}:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the upstream is not waiting; answers %v", listen, order)
				}
			}
		}
		if order[20] != 1 {
			t.Errorf("%s: answer order %v; want the 20 cluster answers before the slow one", listen, order)
		}
	}
}

// A pod's readiness flip in a new snapshot changes the answers as soon as Update returns.
func TestReadinessChange(t *testing.T) {
	up := startUpstream(t)
	m := clusterStore(t)
	s := startServer(t, up, m.State())
	steps := []struct {
		pod   string
		ready bool
		a     []string // nginx A
		srv   int      // _web._tcp.nginx SRV records
		web0  int      // web-0.nginx rcode
	}{
		{"", false, []string{"10.42.0.10", "10.42.0.11"}, 2, dns.RcodeSuccess},
		{"web-2", true, []string{"10.42.0.10", "10.42.0.11", "10.42.0.12"}, 3, dns.RcodeSuccess},
		{"web-0", false, []string{"10.42.0.11", "10.42.0.12"}, 2, dns.RcodeNameError},
		{"web-1", false, []string{"10.42.0.12"}, 1, dns.RcodeNameError},
		{"web-2", false, nil, 0, dns.RcodeNameError},
	}
	for _, step := range steps {
		if step.pod != "" {
			st, err := dnstest.SetReady(t.Context(), m, "default", step.pod, step.ready)
			if err != nil {
				t.Fatal(err)
			}
			s.Update(st)
		}
		r := query(t, "udp", s.Addr(), question("nginx.default.svc.cluster.local.", dns.TypeA))
		var got []string
		for _, rr := range r.Answer {
			got = append(got, rr.(*dns.A).A.String())
		}
		srv := query(t, "udp", s.Addr(), question("_web._tcp.nginx.default.svc.cluster.local.", dns.TypeSRV))
		web0 := query(t, "udp", s.Addr(), question("web-0.nginx.default.svc.cluster.local.", dns.TypeA))
		if !slices.Equal(got, step.a) || len(srv.Answer) != step.srv || web0.Rcode != step.web0 {
			t.Errorf("after %s ready=%v: nginx A = %v, SRV %d, web-0 %s; want %v, SRV %d, web-0 %s", step.pod, step.ready,
				got, len(srv.Answer), dns.RcodeToString[web0.Rcode], step.a, step.srv, dns.RcodeToString[step.web0])
		}
		if len(step.a) == 0 && r.Rcode != dns.RcodeNameError {
			t.Errorf("headless Service without ready endpoints: rcode %s; want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
	}
}

// Malformed and unusual packets get the right error or no answer, and never stop the server.
func TestBadPackets(t *testing.T) {
	up := startUpstream(t)
	st := clusterStore(t).State()
	valid := func(mutate func(*dns.Msg)) []byte {
		m := question("kubernetes.default.svc.cluster.local.", dns.TypeA)
		m.Id = 0x4242
		mutate(m)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		packet []byte
		rcode  int // -1: no answer at all
	}{
		{"shorter than a header", []byte{0x42, 0x42, 0x01}, -1},
		{"garbage after a header", append(valid(func(*dns.Msg) {})[:12], 0xff, 0xff, 0xff), dns.RcodeFormatError},
		{"question cut short", valid(func(*dns.Msg) {})[:20], dns.RcodeFormatError},
		{"two questions", valid(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), dns.RcodeFormatError},
		{"no question", valid(func(m *dns.Msg) { m.Question = nil }), dns.RcodeFormatError},
		{"a response", valid(func(m *dns.Msg) { m.Response = true }), -1},
		{"opcode UPDATE", valid(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }), dns.RcodeNotImplemented},
		{"opcode NOTIFY", valid(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		{"EDNS version 1", valid(func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }), dns.RcodeBadVers},
		{"class CHAOS in the cluster zone", valid(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		{"compression pointer loop", append(valid(func(*dns.Msg) {})[:12], 0xc0, 0x0c, 0, 1, 0, 1), dns.RcodeFormatError},
		{"label longer than 63", append(append(valid(func(*dns.Msg) {})[:12], 64), append(bytes.Repeat([]byte{'a'}, 64), 0, 0, 1, 0, 1)...), dns.RcodeFormatError},
	}
	buf := make([]byte, dns.MaxMsgSize)
	for _, listen := range listenAddrs {
		s := startServer(t, up, st, listenOn(listen))
		for _, tc := range tests {
			testBadPacket(t, s.Target(), listen+"/"+tc.name, tc.packet, tc.rcode, valid(func(m *dns.Msg) { m.Id = 0x1111 }), buf)
		}
	}
}

// testBadPacket sends a bad packet, then a good one whose answer (ID 0x1111) proves the
// server is still alive, and checks the bad one got rcode (-1: no answer at all).
func testBadPacket(t *testing.T, target, name string, packet []byte, rcode int, good, buf []byte) {
	t.Run(name, func(t *testing.T) {
		conn, err := net.Dial("udp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range [][]byte{packet, good} {
			if _, err := conn.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		var rcodes []int
		alive := false
		deadline := time.Now().Add(5 * time.Second)
		for !alive || rcode >= 0 && len(rcodes) == 0 {
			_ = conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("answers %v, alive %v: %v", rcodes, alive, err)
			}
			var r dns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("unpack answer: %v", err)
			}
			if r.Id == 0x1111 {
				alive = r.Rcode == dns.RcodeSuccess
			} else {
				rcodes = append(rcodes, r.Rcode)
			}
		}
		want := []int{rcode}
		if rcode < 0 { // no answer is due: none may come within a moment more
			want = nil
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, err := conn.Read(buf); err == nil && n >= 4 {
				rcodes = append(rcodes, int(buf[3]&0xf))
			}
		}
		if !slices.Equal(rcodes, want) {
			t.Errorf("%s: answers with rcodes %v; want %v", name, rcodes, want)
		}
	})
}

// A snapshot that changed nothing DNS is made of keeps the table; one that did replaces it;
// an older snapshot than the one served is ignored.
func TestUpdateRebuildsOnlyOnChange(t *testing.T) {
	m := clusterStore(t)
	s := newTestServer(t, Config{})
	old := m.State()
	s.Update(old)
	steps := []struct {
		name    string
		cmd     *state.Command
		rebuilt bool
	}{
		{"a ConfigMap", &state.Command{Put: state.Wrap[manifest.Object](&corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cm"}})}, false},
		{"a failed commit", &state.Command{Reject: &state.Failure{Error: "fetch failed"}}, false},
		{"a new pod", &state.Command{Put: state.Wrap[manifest.Object](dnstest.Pod("default", "web-9", "nginx", "10.42.0.19", true, "nginx"))}, true},
		{"a Service deleted", &state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Service", Namespace: "other", Name: "db"}}}}, true},
	}
	for _, step := range steps {
		before := s.table.Load()
		if err := m.Apply(t.Context(), step.cmd); err != nil {
			t.Fatal(err)
		}
		s.Update(m.State())
		if rebuilt := s.table.Load() != before; rebuilt != step.rebuilt {
			t.Errorf("Update after %s: rebuilt = %v; want %v", step.name, rebuilt, step.rebuilt)
		}
	}
	cur := s.table.Load()
	s.Update(old)
	if s.table.Load() != cur {
		t.Error("Update with an older snapshot replaced the table")
	}
}

// Two ports with one name and protocol: the first gets the SRV record and the clash is
// logged once, not on every snapshot.
func TestPortClashLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	s := newTestServer(t, Config{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	st := clusterStore(t).State()
	s.Update(st)
	s.Update(st)
	if n := strings.Count(buf.String(), "clashing ports"); n != 1 || !strings.Contains(buf.String(), "default/clash port http/TCP") {
		t.Errorf("log = %q; want one warning naming default/clash port http/TCP", buf.String())
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct {
		ns, domain, server string
		searches           []string
	}{
		{"default", "cluster.local", "10.0.0.5", []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
		{"shop", "edge.lan.", "10.0.0.5", []string{"shop.svc.edge.lan", "svc.edge.lan", "edge.lan"}},
		{"x", "", "192.168.1.2", []string{"x.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
	}
	for _, tc := range tests {
		servers, searches, options := ResolvConf(tc.ns, tc.domain, tc.server)
		if !slices.Equal(servers, []string{tc.server}) || !slices.Equal(searches, tc.searches) || !slices.Equal(options, []string{"ndots:5"}) {
			t.Errorf("ResolvConf(%q, %q, %q) = %v %v %v; want [%s] %v [ndots:5]", tc.ns, tc.domain, tc.server,
				servers, searches, options, tc.server, tc.searches)
		}
	}
}

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 192.0.2.1\nnameserver 10.0.0.5\nnameserver 2001:db8::53\nsearch lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cfg       Config
		upstreams []string
		err       string
	}{
		{"from resolv.conf, without dnsd itself", Config{Addr: "10.0.0.5:53", ResolvConf: rc},
			[]string{"192.0.2.1:53", "[2001:db8::53]:53"}, ""},
		{"configured, port 53 by default", Config{Addr: "127.0.0.1:0", Upstreams: []string{"192.0.2.1", "192.0.2.2:5353"}},
			[]string{"192.0.2.1:53", "192.0.2.2:5353"}, ""},
		{"loopback upstream on a wildcard listener's port", Config{Addr: ":53", Upstreams: []string{"127.0.0.1:53", "127.0.0.53:53", "192.0.2.1"}},
			[]string{"192.0.2.1:53"}, ""},
		{"bad domain", Config{Addr: "127.0.0.1:0", Domain: "bad..domain", Upstreams: []string{"192.0.2.1"}}, nil, "not a domain name"},
		{"bad addr", Config{Addr: "nope", Upstreams: []string{"192.0.2.1"}}, nil, "addr"},
		{"upstream by name", Config{Addr: "127.0.0.1:0", Upstreams: []string{"dns.example:53"}}, nil, "not ip:port"},
		{"no resolv.conf", Config{Addr: "127.0.0.1:0", ResolvConf: filepath.Join(dir, "missing")}, nil, "missing"},
	}
	for _, tc := range tests {
		s, err := New(tc.cfg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("New(%s) error = %v; want one containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%s): %v", tc.name, err)
			continue
		}
		if !slices.Equal(s.forward.upstreams, tc.upstreams) {
			t.Errorf("New(%s) upstreams = %v; want %v", tc.name, s.forward.upstreams, tc.upstreams)
		}
	}
}

// Start binds synchronously (a taken port is an error), a server starts once, Stop is
// idempotent.
func TestStartStop(t *testing.T) {
	s := newTestServer(t, Config{})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v; want ErrStarted", err)
	}
	taken := newTestServer(t, Config{Addr: s.Addr()})
	if err := taken.Start(t.Context()); err == nil {
		t.Errorf("Start on a taken port %s succeeded", s.Addr())
		_ = taken.Stop()
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, ErrStarted) {
		t.Errorf("Start after Stop = %v; want ErrStarted", err)
	}
}
