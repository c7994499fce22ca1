package dnsd

import (
	"fmt"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// lookupCase is one query and its whole expected answer, as in CoreDNS's lookup tests.
type lookupCase struct {
	Qname  string
	Qtype  uint16
	Rcode  int
	AA     bool
	Answer []string
	Ns     []string
	Extra  []string // checked when not nil
}

const (
	soa     = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 2 7200 1800 86400 5"
	soaPods = "42.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
	soaExt  = "example.com. 30 IN SOA ns.example.com. host.example.com. 1 7200 1800 86400 30"
)

// lookupCases cover every record type and rcode of the Kubernetes DNS specification, and
// dnsd's choices where it leaves room (see the package documentation).
var lookupCases = []lookupCase{
	// 2.2 schema version.
	{Qname: "dns-version.cluster.local.", Qtype: dns.TypeTXT, AA: true,
		Answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
	{Qname: "dns-version.cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}},
	// 2.3.1 ClusterIP A / AAAA.
	{Qname: "kubernetes.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"kubernetes.default.svc.cluster.local. 5 IN A 10.43.0.1"}},
	{Qname: "kubernetes.default.svc.cluster.local.", Qtype: dns.TypeAAAA, AA: true, Ns: []string{soa}},
	{Qname: "dual.default.svc.cluster.local.", Qtype: dns.TypeAAAA, AA: true,
		Answer: []string{"dual.default.svc.cluster.local. 5 IN AAAA fd00:43::20"}},
	{Qname: "dual.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"dual.default.svc.cluster.local. 5 IN A 10.43.0.20"}},
	{Qname: "db.other.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"db.other.svc.cluster.local. 5 IN A 10.43.1.5"}},
	{Qname: "kubernetes.default.svc.cluster.local.", Qtype: dns.TypeANY, AA: true,
		Answer: []string{"kubernetes.default.svc.cluster.local. 5 IN A 10.43.0.1"}},
	// 2.3.2 ClusterIP SRV: per named port, targeting the Service, its address as additional.
	{Qname: "_https._tcp.kubernetes.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true,
		Answer: []string{"_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 kubernetes.default.svc.cluster.local."},
		Extra:  []string{"kubernetes.default.svc.cluster.local. 5 IN A 10.43.0.1"}},
	{Qname: "_dns._udp.web.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true,
		Answer: []string{"_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."},
		Extra:  []string{"web.default.svc.cluster.local. 5 IN A 10.43.0.10"}},
	{Qname: "_http._udp.web.default.svc.cluster.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	{Qname: "_tcp.web.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true, Ns: []string{soa}}, // empty non-terminal
	{Qname: "_http._tcp.web.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}},
	// Two ports named http/TCP: the first wins.
	{Qname: "_http._tcp.clash.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true,
		Answer: []string{"_http._tcp.clash.default.svc.cluster.local. 5 IN SRV 0 100 80 clash.default.svc.cluster.local."},
		Extra:  []string{"clash.default.svc.cluster.local. 5 IN A 10.43.0.40"}},
	// 2.3.3 ClusterIP PTR, IPv4 and IPv6.
	{Qname: "1.0.43.10.in-addr.arpa.", Qtype: dns.TypePTR, AA: true,
		Answer: []string{"1.0.43.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local."}},
	{Qname: "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR, AA: true,
		Answer: []string{"0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local."}},
	// 2.4.1 headless: one A per ready endpoint; a not-ready one is left out.
	{Qname: "nginx.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true, Answer: []string{
		"nginx.default.svc.cluster.local. 5 IN A 10.42.0.10",
		"nginx.default.svc.cluster.local. 5 IN A 10.42.0.11"}},
	{Qname: "nginx.default.svc.cluster.local.", Qtype: dns.TypeAAAA, AA: true, Ns: []string{soa}},
	{Qname: "v6.default.svc.cluster.local.", Qtype: dns.TypeAAAA, AA: true,
		Answer: []string{"v6.default.svc.cluster.local. 5 IN AAAA fd00:42::5"}},
	// Endpoint names: StatefulSet hostname + subdomain, or the IP with dashes.
	{Qname: "web-0.nginx.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"web-0.nginx.default.svc.cluster.local. 5 IN A 10.42.0.10"}},
	{Qname: "web-2.nginx.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	{Qname: "v6-0.v6.default.svc.cluster.local.", Qtype: dns.TypeAAAA, AA: true,
		Answer: []string{"v6-0.v6.default.svc.cluster.local. 5 IN AAAA fd00:42::5"}},
	{Qname: "10-42-0-20.anon.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"10-42-0-20.anon.default.svc.cluster.local. 5 IN A 10.42.0.20"}},
	// publishNotReadyAddresses: the not-ready pod is published.
	{Qname: "tolerant.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"tolerant.default.svc.cluster.local. 5 IN A 10.42.0.30"}},
	// No ready endpoint: NXDOMAIN, as the specification says.
	{Qname: "empty.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	// 2.4.2 headless SRV: ready endpoint × named port, targeting the endpoint names.
	{Qname: "_web._tcp.nginx.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true, Answer: []string{
		"_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-0.nginx.default.svc.cluster.local.",
		"_web._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-1.nginx.default.svc.cluster.local."},
		Extra: []string{
			"web-0.nginx.default.svc.cluster.local. 5 IN A 10.42.0.10",
			"web-1.nginx.default.svc.cluster.local. 5 IN A 10.42.0.11"}},
	{Qname: "_peer._tcp.anon.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true,
		Answer: []string{"_peer._tcp.anon.default.svc.cluster.local. 5 IN SRV 0 100 7000 10-42-0-20.anon.default.svc.cluster.local."},
		Extra:  []string{"10-42-0-20.anon.default.svc.cluster.local. 5 IN A 10.42.0.20"}},
	// Selector-less headless Service with manual Endpoints.
	{Qname: "manual.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"manual.default.svc.cluster.local. 5 IN A 192.0.2.10"}},
	{Qname: "_pg._tcp.manual.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true,
		Answer: []string{"_pg._tcp.manual.default.svc.cluster.local. 5 IN SRV 0 100 5432 192-0-2-10.manual.default.svc.cluster.local."},
		Extra:  []string{"192-0-2-10.manual.default.svc.cluster.local. 5 IN A 192.0.2.10"}},
	// 2.4.3 headless PTR, to the endpoint name; an unknown pod address is NXDOMAIN.
	{Qname: "10.0.42.10.in-addr.arpa.", Qtype: dns.TypePTR, AA: true,
		Answer: []string{"10.0.42.10.in-addr.arpa. 5 IN PTR web-0.nginx.default.svc.cluster.local."}},
	{Qname: "20.0.42.10.in-addr.arpa.", Qtype: dns.TypePTR, AA: true,
		Answer: []string{"20.0.42.10.in-addr.arpa. 5 IN PTR 10-42-0-20.anon.default.svc.cluster.local."}},
	{Qname: "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.4.0.0.0.0.d.f.ip6.arpa.", Qtype: dns.TypePTR, AA: true,
		Answer: []string{"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.4.0.0.0.0.d.f.ip6.arpa. 5 IN PTR v6-0.v6.default.svc.cluster.local."}},
	{Qname: "12.0.42.10.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soaPods}},
	{Qname: "0.42.10.in-addr.arpa.", Qtype: dns.TypePTR, AA: true, Ns: []string{soaPods}},
	{Qname: "10.0.42.10.in-addr.arpa.", Qtype: dns.TypeA, AA: true, Ns: []string{soaPods}},
	// A reverse name outside the cluster's networks is forwarded.
	{Qname: "4.3.2.1.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: []string{soaExt}},
	// 2.5 ExternalName: the CNAME, followed (upstream or inside the zone) for other types.
	{Qname: "ext.default.svc.cluster.local.", Qtype: dns.TypeA, Answer: []string{
		"ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
		"www.example.com. 300 IN A 192.0.2.53"}},
	{Qname: "ext.default.svc.cluster.local.", Qtype: dns.TypeCNAME, AA: true,
		Answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME www.example.com."}},
	{Qname: "ext.default.svc.cluster.local.", Qtype: dns.TypeAAAA, Rcode: dns.RcodeNameError,
		Answer: []string{"ext.default.svc.cluster.local. 5 IN CNAME www.example.com."}, Ns: []string{soaExt}},
	{Qname: "extin.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true, Answer: []string{
		"extin.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
		"web.default.svc.cluster.local. 5 IN A 10.43.0.10"}},
	// NODATA (NOERROR, SOA) for names that exist, NXDOMAIN for names that do not.
	{Qname: "pending.default.svc.cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}}, // no cluster IP yet
	{Qname: "cluster.local.", Qtype: dns.TypeSOA, AA: true, Answer: []string{soa}},
	{Qname: "cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}},
	{Qname: "svc.cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}},
	{Qname: "other.svc.cluster.local.", Qtype: dns.TypeA, AA: true, Ns: []string{soa}},
	{Qname: "db.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	{Qname: "nope.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	{Qname: "x.kubernetes.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	{Qname: "pod.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	// Wildcards are deprecated by the specification and not served.
	{Qname: "*.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, AA: true, Ns: []string{soa}},
	// Names compare case-insensitively; answers carry the question's case.
	{Qname: "KuBeRnEtEs.Default.SVC.cluster.LOCAL.", Qtype: dns.TypeA, AA: true,
		Answer: []string{"KuBeRnEtEs.Default.SVC.cluster.LOCAL. 5 IN A 10.43.0.1"}},
	{Qname: "_Web._TCP.nginx.default.svc.cluster.local.", Qtype: dns.TypeSRV, AA: true, Answer: []string{
		"_Web._TCP.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-0.nginx.default.svc.cluster.local.",
		"_Web._TCP.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-1.nginx.default.svc.cluster.local."}},
	// Other names are forwarded.
	{Qname: "www.example.com.", Qtype: dns.TypeA, Answer: []string{"www.example.com. 300 IN A 192.0.2.53"}},
	{Qname: "nx.example.com.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []string{soaExt}},
}

func TestLookup(t *testing.T) {
	up := startUpstream(t)
	st := clusterStore(t).State()
	for _, listen := range listenAddrs {
		s := startServer(t, up, st, listenOn(listen))
		for _, network := range []string{"udp", "tcp"} {
			for _, tc := range lookupCases {
				t.Run(fmt.Sprintf("%s/%s/%s/%s", listen, network, dns.TypeToString[tc.Qtype], tc.Qname), func(t *testing.T) {
					r := query(t, network, s.Target(), question(tc.Qname, tc.Qtype))
					check(t, tc, r)
				})
			}
		}
	}
}

// check compares a response with a case, failing as "Lookup(name TYPE) = ...; want ...".
func check(t *testing.T, tc lookupCase, r *dns.Msg) {
	t.Helper()
	q := fmt.Sprintf("%s %s", tc.Qname, dns.TypeToString[tc.Qtype])
	if r.Rcode != tc.Rcode {
		t.Errorf("Lookup(%s) rcode = %s; want %s", q, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.Rcode])
	}
	if r.Authoritative != tc.AA {
		t.Errorf("Lookup(%s) AA = %v; want %v", q, r.Authoritative, tc.AA)
	}
	// (The reply's ID is the query's: Exchange refuses any other. A random query ID is 0
	// once in 65536, so 0 says nothing.)
	if !r.RecursionAvailable || r.Truncated {
		t.Errorf("Lookup(%s) flags RA=%v TC=%v; want RA and no TC", q, r.RecursionAvailable, r.Truncated)
	}
	if len(r.Question) != 1 || r.Question[0].Name != tc.Qname {
		t.Errorf("Lookup(%s) question = %v; want the question back", q, r.Question)
	}
	for _, sec := range []struct {
		name      string
		got, want []string
	}{
		{"answer", rrs(r.Answer), norm(t, tc.Answer)},
		{"authority", rrs(r.Ns), norm(t, tc.Ns)},
		{"additional", rrs(r.Extra), norm(t, tc.Extra)},
	} {
		if sec.name == "additional" && tc.Extra == nil {
			continue
		}
		if !slices.Equal(sec.got, sec.want) {
			t.Errorf("Lookup(%s) %s = %q; want %q", q, sec.name, sec.got, sec.want)
		}
	}
}

// norm renders expected records as the server's records render.
func norm(t *testing.T, list []string) []string {
	rs := make([]dns.RR, len(list))
	for i, s := range list {
		rs[i] = mustRR(t, s)
	}
	return rrs(rs)
}
