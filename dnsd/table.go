package dnsd

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// SchemaVersion is the version of the Kubernetes DNS schema served (dns-version.<zone> TXT).
const SchemaVersion = "1.1.0"

// table is the compiled, immutable answer set of one state snapshot: every name of the
// cluster zone (records and empty non-terminals) and every PTR of the reverse zones. It is
// built once per snapshot and swapped in atomically; lookups only read it.
//
// Names are lowercase FQDNs. Record slices are shared by every answer and never changed:
// they are clipped (len == cap) so that an append by a reader copies instead of writing
// into them.
type table struct {
	zone  string // "cluster.local."
	soa   *dns.SOA
	names map[string]*node
	ptr   map[string][]dns.RR // "10.0.43.10.in-addr.arpa." → PTRs
	// clashes lists Services with two ports of the same name and protocol (the first wins).
	clashes []string
	// nodes are the cluster's node addresses: clients allowed besides Config.Allow.
	nodes map[netip.Addr]bool
}

// node is one name of the cluster zone. A node with no records is an empty non-terminal
// (it exists: NODATA, not NXDOMAIN).
type node struct {
	a, aaaa, srv, txt, soa []dns.RR
	cname                  *dns.CNAME
	srvExtra               []dns.RR // A/AAAA of the SRV targets, for the additional section
}

// rrs returns the node's records of one type (ANY: all of them).
func (n *node) rrs(qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return n.a
	case dns.TypeAAAA:
		return n.aaaa
	case dns.TypeSRV:
		return n.srv
	case dns.TypeTXT:
		return n.txt
	case dns.TypeSOA:
		return n.soa
	case dns.TypeCNAME:
		if n.cname != nil {
			return []dns.RR{n.cname}
		}
	case dns.TypeANY:
		var all []dns.RR
		if n.cname != nil {
			all = append(all, n.cname)
		}
		return slices.Concat(all, n.soa, n.txt, n.a, n.aaaa, n.srv)
	}
	return nil
}

// builder collects records while a table is compiled.
type builder struct {
	t            *table
	ttl          uint32
	headlessSRVs []*node // SRV names of headless Services: weights and additional records in finish
}

// compile builds the table of a synced snapshot.
func compile(st *state.State, zone string, ttl uint32) *table {
	b := &builder{ttl: ttl, t: &table{zone: zone, names: map[string]*node{}, ptr: map[string][]dns.RR{}}}
	t := b.t
	t.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.dns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  uint32(st.Index), // the Raft index: every node serves the same serial for the same snapshot
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl,
	}
	apex := b.node(zone)
	apex.soa = []dns.RR{t.soa}
	b.node("dns-version." + zone).txt = []dns.RR{&dns.TXT{Hdr: b.hdr("dns-version."+zone, dns.TypeTXT), Txt: []string{SchemaVersion}}}

	// Endpoints are computed per namespace: services.Endpoints matches each Service against
	// the pods of its own namespace only.
	svcs := services.List(st, "")
	var eps map[string]*corev1.Endpoints
	for i := 0; i < len(svcs); {
		ns := svcs[i].Namespace
		j := i
		for j < len(svcs) && svcs[j].Namespace == ns {
			j++
		}
		if needsEndpoints(svcs[i:j]) {
			if eps == nil {
				eps = map[string]*corev1.Endpoints{}
			}
			for _, ep := range services.Endpoints(st, ns) {
				eps[ep.Namespace+"/"+ep.Name] = ep
			}
		}
		i = j
	}
	for _, svc := range svcs {
		b.service(svc, eps[svc.Namespace+"/"+svc.Name])
	}
	b.finish()
	t.nodes = nodeAddrs(st)
	return t
}

// inputs are the objects a table is compiled from. Objects in a snapshot are never
// changed, only replaced, so the same pointers mean the same records: a snapshot that
// changed nothing of these (a Deployment's status, an Event, a failed commit) keeps the table.
type inputs [5][]manifest.Object

func inputsOf(st *state.State) inputs {
	return inputs{
		st.Git.List("Service", ""), st.Git.List("Endpoints", ""),
		st.Cluster.List("Service", ""), st.Cluster.List("Pod", ""), st.Cluster.List("Node", ""),
	}
}

func (a *inputs) same(b *inputs) bool {
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// nodeAddrs returns the addresses of the cluster's nodes.
func nodeAddrs(st *state.State) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, n := range state.Typed[*corev1.Node](st.Cluster.List("Node", "")) {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}

// needsEndpoints reports whether any of the Services is headless (only headless Services
// publish their endpoints in DNS).
func needsEndpoints(svcs []*corev1.Service) bool {
	for _, s := range svcs {
		if services.Headless(s) && s.Spec.Type != corev1.ServiceTypeExternalName {
			return true
		}
	}
	return false
}

func (b *builder) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.ttl}
}

func (b *builder) node(name string) *node {
	n := b.t.names[name]
	if n == nil {
		n = &node{}
		b.t.names[name] = n
	}
	return n
}

// addr returns an A or AAAA record for ip.
func (b *builder) addr(name string, ip netip.Addr) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: b.hdr(name, dns.TypeA), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: b.hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
}

// addAddr adds ip to a node once.
func (b *builder) addAddr(n *node, name string, ip netip.Addr) {
	list := &n.a
	if !ip.Is4() {
		list = &n.aaaa
	}
	for _, rr := range *list {
		if sameIP(rr, ip) {
			return
		}
	}
	*list = append(*list, b.addr(name, ip))
}

func (b *builder) addPTR(ip netip.Addr, target string) {
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return
	}
	for _, rr := range b.t.ptr[rev] {
		if rr.(*dns.PTR).Ptr == target {
			return
		}
	}
	b.t.ptr[rev] = append(b.t.ptr[rev], &dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}

// service adds one Service's records.
func (b *builder) service(svc *corev1.Service, ep *corev1.Endpoints) {
	base := strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + b.t.zone)
	if _, ok := dns.IsDomainName(base); !ok {
		return
	}
	b.portClashes(svc)
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		target := dns.Fqdn(strings.TrimSpace(svc.Spec.ExternalName))
		if _, ok := dns.IsDomainName(target); !ok || target == "." {
			return
		}
		b.node(base).cname = &dns.CNAME{Hdr: b.hdr(base, dns.TypeCNAME), Target: target}
	case services.Headless(svc):
		b.headless(svc, base, ep)
	default:
		b.clusterIP(svc, base)
	}
}

// clusterIP: A/AAAA for the cluster IPs, PTR back, SRV per named port targeting the Service.
func (b *builder) clusterIP(svc *corev1.Service, base string) {
	n := b.node(base) // exists even before its IP is allocated: NODATA, never NXDOMAIN
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		b.addAddr(n, base, ip)
		b.addPTR(ip, base)
	}
	if len(n.a)+len(n.aaaa) == 0 {
		return // no address yet: an SRV target must resolve
	}
	for _, p := range svc.Spec.Ports {
		name, ok := srvName(p.Name, p.Protocol, base)
		if !ok {
			continue
		}
		sn := b.node(name)
		if len(sn.srv) > 0 {
			continue // a clashing port: the first of the name and protocol wins
		}
		sn.srv = []dns.RR{&dns.SRV{Hdr: b.hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: base}}
		sn.srvExtra = slices.Concat(n.a, n.aaaa)
	}
}

// portClashes records a Service with two ports of the same name and protocol (Kubernetes
// rejects it; a Service written that way still resolves: the first port wins).
func (b *builder) portClashes(svc *corev1.Service) {
	for i, p := range svc.Spec.Ports {
		for _, q := range svc.Spec.Ports[:i] {
			if p.Name != "" && strings.EqualFold(p.Name, q.Name) && protocol(p.Protocol) == protocol(q.Protocol) {
				b.t.clashes = append(b.t.clashes, svc.Namespace+"/"+svc.Name+" port "+p.Name+"/"+string(protocol(p.Protocol)))
			}
		}
	}
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// headless: one A/AAAA per ready endpoint on the Service name and on the endpoint's own
// name (<hostname or ip-dashed>.<service>...), PTR back to the endpoint name, and SRV per
// ready endpoint × named port, targeting the endpoint name.
func (b *builder) headless(svc *corev1.Service, base string, ep *corev1.Endpoints) {
	if ep == nil {
		return
	}
	type srvKey struct{ name, target string }
	seen := map[srvKey]bool{}
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses { // ready (or all, with publishNotReadyAddresses)
			ip, err := netip.ParseAddr(a.IP)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			host := strings.ToLower(a.Hostname)
			if host == "" || strings.Contains(host, ".") {
				host = dashed(ip)
			}
			target := host + "." + base
			if _, ok := dns.IsDomainName(target); !ok {
				continue
			}
			b.addAddr(b.node(base), base, ip)
			tn := b.node(target)
			b.addAddr(tn, target, ip)
			b.addPTR(ip, target)
			for _, p := range ss.Ports {
				name, ok := srvName(p.Name, p.Protocol, base)
				if !ok {
					continue
				}
				k := srvKey{name, target}
				if seen[k] {
					continue // a clashing port, or a second address of the same hostname
				}
				seen[k] = true
				sn := b.node(name)
				if len(sn.srv) == 0 {
					b.headlessSRVs = append(b.headlessSRVs, sn)
				}
				sn.srv = append(sn.srv, &dns.SRV{Hdr: b.hdr(name, dns.TypeSRV), Priority: 0, Port: uint16(p.Port), Target: target})
			}
		}
	}
}

// finish adds the empty non-terminals, SRV weights and additional records, sorts every
// record set (every node answers the same order for the same snapshot) and clips them.
func (b *builder) finish() {
	t := b.t
	names := make([]string, 0, len(t.names))
	for name := range t.names {
		names = append(names, name)
	}
	for _, name := range names {
		for p := parent(name, t.zone); p != ""; p = parent(p, t.zone) {
			if _, ok := t.names[p]; ok {
				break
			}
			t.names[p] = &node{}
		}
	}
	for _, n := range t.names {
		sortRRs(n.a)
		sortRRs(n.aaaa)
	}
	for _, n := range b.headlessSRVs { // equal weights; the targets' addresses as additional records
		sortRRs(n.srv)
		w := uint16(max(1, 100/len(n.srv)))
		added := make(map[string]bool, len(n.srv))
		for _, rr := range n.srv {
			srv := rr.(*dns.SRV)
			srv.Weight = w
			if tn := t.names[srv.Target]; tn != nil && !added[srv.Target] {
				added[srv.Target] = true
				n.srvExtra = append(n.srvExtra, tn.a...)
				n.srvExtra = append(n.srvExtra, tn.aaaa...)
			}
		}
	}
	for _, n := range t.names {
		n.a, n.aaaa, n.srv = slices.Clip(n.a), slices.Clip(n.aaaa), slices.Clip(n.srv)
		n.srvExtra = slices.Clip(n.srvExtra)
	}
	for k, v := range t.ptr {
		sortRRs(v)
		t.ptr[k] = slices.Clip(v)
	}
	slices.Sort(t.clashes)
	t.clashes = slices.Compact(t.clashes)
}

// parent returns the parent of name inside zone, "" at the apex or outside.
func parent(name, zone string) string {
	if name == zone || !strings.HasSuffix(name, "."+zone) {
		return ""
	}
	i := strings.IndexByte(name, '.')
	return name[i+1:]
}

// srvName returns _<port>._<proto>.<base>; unnamed ports have no SRV record.
func srvName(port string, proto corev1.Protocol, base string) (string, bool) {
	if port == "" {
		return "", false
	}
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	name := "_" + strings.ToLower(port) + "._" + strings.ToLower(string(proto)) + "." + base
	_, ok := dns.IsDomainName(name)
	return name, ok
}

// dashed is the system-assigned hostname of an endpoint without one: its IP with dashes
// (10-1-2-3, fd00--1), as CoreDNS names them.
func dashed(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	return strings.ReplaceAll(ip.String(), ":", "-")
}

func sameIP(rr dns.RR, ip netip.Addr) bool {
	switch rr := rr.(type) {
	case *dns.A:
		return ip.Is4() && netip.AddrFrom4([4]byte(rr.A.To4())) == ip
	case *dns.AAAA:
		return ip.Is6() && netip.AddrFrom16([16]byte(rr.AAAA.To16())) == ip
	}
	return false
}

// sortRRs orders records by their text, so answers are deterministic.
func sortRRs(rrs []dns.RR) {
	if len(rrs) < 2 {
		return
	}
	keys := make(map[dns.RR]string, len(rrs))
	for _, rr := range rrs {
		keys[rr] = sortKey(rr)
	}
	slices.SortFunc(rrs, func(a, b dns.RR) int { return strings.Compare(keys[a], keys[b]) })
}

func sortKey(rr dns.RR) string {
	switch rr := rr.(type) {
	case *dns.A:
		ip, _ := netip.AddrFromSlice(rr.A.To4())
		return string(ip.AsSlice())
	case *dns.AAAA:
		return string(rr.AAAA.To16())
	case *dns.SRV:
		return rr.Target + " " + strconv.Itoa(int(rr.Port))
	case *dns.PTR:
		return rr.Ptr
	}
	return rr.String()
}
