package dnsd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/dnsd/dnstest"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// The test cluster: service CIDR 10.43.0.0/16 (fd00:43::/64), pod CIDR 10.42.0.0/16
// (fd00:42::/64).
var (
	serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	podCIDR     = netip.MustParsePrefix("10.42.0.0/16")
	networks    = []netip.Prefix{serviceCIDR, podCIDR, netip.MustParsePrefix("fd00:43::/64"), netip.MustParsePrefix("fd00:42::/64")}
)

// bigPods is the size of the headless Service "big": its A answer does not fit 512 bytes.
const bigPods = 60

// clusterStore returns a store with the test cluster's Services and pods.
func clusterStore(t testing.TB) *state.MemStore {
	t.Helper()
	svc := dnstest.Service
	dual := svc("default", "dual", "10.43.0.20", "http", 80)
	dual.Spec.ClusterIPs = []string{"10.43.0.20", "fd00:43::20"}
	web := svc("default", "web", "10.43.0.10", "http", 80, "dns", 53)
	web.Spec.Ports[1].Protocol = corev1.ProtocolUDP
	tolerant := svc("default", "tolerant", corev1.ClusterIPNone, "p", 80)
	tolerant.Spec.PublishNotReadyAddresses = true
	ext := svc("default", "ext", "")
	ext.Spec.Type, ext.Spec.ExternalName, ext.Spec.Selector = corev1.ServiceTypeExternalName, "www.example.com", nil
	extin := svc("default", "extin", "")
	extin.Spec.Type, extin.Spec.ExternalName, extin.Spec.Selector = corev1.ServiceTypeExternalName, "web.default.svc.cluster.local", nil
	manual := svc("default", "manual", corev1.ClusterIPNone, "pg", 5432)
	manual.Spec.Selector = nil
	manualEP := &corev1.Endpoints{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Endpoints"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "manual"},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.10"}},
			Ports: []corev1.EndpointPort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}}},
	}
	clash := svc("default", "clash", "10.43.0.40", "http", 80, "http", 81)
	git := []manifest.Object{
		svc("default", "kubernetes", "10.43.0.1", "https", 443),
		web, dual, tolerant, ext, extin, manual, manualEP, clash,
		svc("default", "nginx", corev1.ClusterIPNone, "web", 80),
		svc("default", "anon", corev1.ClusterIPNone, "peer", 7000),
		svc("default", "empty", corev1.ClusterIPNone, "web", 80),
		svc("default", "pending", "", "http", 80),
		svc("default", "big", corev1.ClusterIPNone),
		svc("default", "v6", corev1.ClusterIPNone, "web", 80),
		svc("other", "db", "10.43.1.5", "postgres", 5432),
	}
	pod := dnstest.Pod
	pods := []*corev1.Pod{
		pod("default", "web-0", "nginx", "10.42.0.10", true, "nginx"),
		pod("default", "web-1", "nginx", "10.42.0.11", true, "nginx"),
		pod("default", "web-2", "nginx", "10.42.0.12", false, "nginx"),
		pod("default", "anon-a", "anon", "10.42.0.20", true, ""),
		pod("default", "tol-0", "tolerant", "10.42.0.30", false, ""),
		pod("default", "v6-0", "v6", "fd00:42::5", true, "v6"),
	}
	for i := range bigPods {
		pods = append(pods, pod("default", fmt.Sprintf("big-%d", i), "big", fmt.Sprintf("10.42.1.%d", i+1), true, ""))
	}
	m, err := dnstest.Store(t.Context(), git, pods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// upstream is a fake resolver on loopback (UDP and TCP on one port) that counts queries.
type upstream struct {
	addr    string
	release chan struct{} // slow.example.com is answered once this is closed
	mu      sync.Mutex
	seen    map[string]int // "name type net" → queries
}

func (u *upstream) count(name string, qtype uint16, network string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[name+" "+dns.TypeToString[qtype]+" "+network]
}

// startUpstream answers www.example.com A 192.0.2.53 (TTL 300), big.example.com TXT with
// more than fits a UDP answer, slow.example.com once release is closed, and NXDOMAIN with
// example.com's SOA for anything else.
func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{seen: map[string]int{}, release: make(chan struct{})}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		network := "udp"
		if isTCP(w.RemoteAddr()) {
			network = "tcp"
		}
		u.mu.Lock()
		u.seen[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]+" "+network]++
		u.mu.Unlock()
		if strings.EqualFold(q.Name, "slow.example.com.") {
			select {
			case <-u.release:
			case <-time.After(10 * time.Second):
			}
		}
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case strings.EqualFold(q.Name, "www.example.com.") && q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{mustRR(t, q.Name+" 300 IN A 192.0.2.53")}
		case strings.EqualFold(q.Name, "big.example.com.") && q.Qtype == dns.TypeTXT:
			for i := range 40 {
				m.Answer = append(m.Answer, mustRR(t, fmt.Sprintf(`big.example.com. 300 IN TXT "%02d %s"`, i, strings.Repeat("x", 60))))
			}
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{mustRR(t, "example.com. 60 IN SOA ns.example.com. host.example.com. 1 7200 1800 86400 30")}
		}
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		if network == "tcp" {
			size = dns.MaxMsgSize
		}
		m.Truncate(size)
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; l == nil; attempt++ { // the UDP port may be taken for TCP: another one
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if attempt == 10 {
				t.Fatal(err)
			}
		}
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

// fakeClock is the cache's clock in tests: it moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// testServer is a started server and its cache's clock.
type testServer struct {
	*Server
	clock *fakeClock
}

// Target is where a client reaches the server: its address, loopback for a wildcard one.
func (s testServer) Target() string {
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// listenAddrs are the two ways dnsd serves UDP: on a specific address its own loop, on a
// wildcard address miekg/dns's server.
var listenAddrs = []string{"127.0.0.1:0", "0.0.0.0:0"}

func listenOn(addr string) func(*Config) { return func(c *Config) { c.Addr = addr } }

// startServer starts dnsd on a loopback high port with the fake upstream, loaded with st
// when it is not nil. Its cache runs on a fake clock, so forwarded TTLs are exact.
func startServer(t testing.TB, up *upstream, st *state.State, mutate ...func(*Config)) testServer {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Upstreams: []string{up.addr}, Networks: networks,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), podCIDR, serviceCIDR}}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Unix(1_800_000_000, 0).UnixNano())
	s.cache.now = clock.now
	if st != nil {
		s.Update(st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return testServer{s, clock}
}

// query asks addr over network ("udp" or "tcp") and fails the test on a transport error.
func query(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], err)
	}
	return r
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("rr %q: %v", s, err)
	}
	return rr
}

// rrs renders records one a line, sorted, for comparison.
func rrs(list []dns.RR) []string {
	out := make([]string, 0, len(list))
	for _, rr := range list {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	slices.Sort(out)
	return out
}
