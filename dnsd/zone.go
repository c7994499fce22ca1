package dnsd

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// maxChase bounds a chain of ExternalName CNAMEs inside the cluster zone.
const maxChase = 8

// clusterZone answers the cluster zone from the current table: authoritative answers,
// NXDOMAIN or NODATA with the zone's SOA, SERVFAIL until the first synced snapshot. The
// target of an ExternalName CNAME outside the zone is resolved through Upstream (cache and
// forward), as CoreDNS does, so a stub resolver gets the address in one round trip.
type clusterZone struct {
	zone     string // "cluster.local."
	dotZone  string // ".cluster.local."
	table    *atomic.Pointer[table]
	Upstream Handler
	Next     Handler
}

func (z *clusterZone) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if name != z.zone && !strings.HasSuffix(name, z.dotZone) {
		z.Next.ServeDNS(ctx, w, r)
		return
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		fail(w, r, dns.RcodeRefused)
		return
	}
	t := z.table.Load()
	if t == nil {
		fail(w, r, dns.RcodeServerFailure) // not synced yet: never a false NXDOMAIN
		return
	}
	m, target := t.answer(r, name, q.Qtype)
	if target != "" {
		z.chase(ctx, w, r, m, t, target, q.Qtype)
	}
	_ = w.WriteMsg(m)
}

// answer looks name up: the records of qtype (owner names in the question's case), or the
// CNAME of an ExternalName Service and its target to resolve, or NODATA / NXDOMAIN with
// the zone's SOA.
func (t *table) answer(r *dns.Msg, name string, qtype uint16) (m *dns.Msg, chase string) {
	m = reply(r, dns.RcodeSuccess)
	m.Authoritative = true
	n := t.names[name]
	if n == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{t.soa}
		return m, ""
	}
	rrs := n.rrs(qtype)
	if len(rrs) == 0 && n.cname != nil {
		rrs, chase = []dns.RR{n.cname}, n.cname.Target
	}
	if len(rrs) == 0 {
		m.Ns = []dns.RR{t.soa}
		return m, ""
	}
	m.Answer = recase(rrs, r.Question[0].Name, name)
	if qtype == dns.TypeSRV {
		m.Extra = n.srvExtra
	}
	return m, chase
}

// chase follows a CNAME: inside the zone from the table, outside through Upstream. The
// final rcode is the target's (RFC 6604).
func (z *clusterZone) chase(ctx context.Context, w dns.ResponseWriter, r, m *dns.Msg, t *table, target string, qtype uint16) {
	answer := m.Answer[:len(m.Answer):len(m.Answer)]
	for range maxChase {
		lt := strings.ToLower(target)
		if lt != z.zone && !strings.HasSuffix(lt, z.dotZone) {
			q := new(dns.Msg)
			q.SetQuestion(target, qtype)
			q.CheckingDisabled = r.CheckingDisabled
			c := &capture{ResponseWriter: w}
			z.Upstream.ServeDNS(ctx, c, q)
			if c.msg == nil {
				m.Rcode = dns.RcodeServerFailure
				break
			}
			m.Authoritative = false
			m.Answer = append(answer, c.msg.Answer...)
			m.Rcode, m.Ns = c.msg.Rcode, c.msg.Ns
			return
		}
		sub := &dns.Msg{Question: []dns.Question{{Name: target, Qtype: qtype, Qclass: dns.ClassINET}}}
		sm, next := t.answer(sub, lt, qtype)
		answer = append(answer, sm.Answer...)
		m.Rcode, m.Ns, m.Extra = sm.Rcode, sm.Ns, sm.Extra
		if next == "" {
			break
		}
		target = next
	}
	m.Answer = answer
}

// recase returns rrs with owner names in the question's case (the records are shared and
// never changed: differing case gets copies).
func recase(rrs []dns.RR, qname, lower string) []dns.RR {
	if qname == lower {
		return rrs
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		if rr.Header().Name == lower {
			rr = dns.Copy(rr)
			rr.Header().Name = qname
		}
		out[i] = rr
	}
	return out
}

// reverseZone answers PTR queries for Service IPs and headless endpoints. Inside the
// configured networks (the service and pod CIDRs) it is authoritative: an unknown address is
// NXDOMAIN, and SERVFAIL before the first snapshot. Other reverse names go on to Next
// (forwarded), as CoreDNS's "fallthrough in-addr.arpa ip6.arpa" does.
type reverseZone struct {
	table    *atomic.Pointer[table]
	networks []reverseNet
	Next     Handler
}

// reverseNet is one network dnsd is authoritative for, with its reverse zone.
type reverseNet struct {
	prefix netip.Prefix
	zone   string // "43.10.in-addr.arpa."
	soa    *dns.SOA
}

func (z *reverseZone) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if !strings.HasSuffix(name, ".in-addr.arpa.") && !strings.HasSuffix(name, ".ip6.arpa.") {
		z.Next.ServeDNS(ctx, w, r)
		return
	}
	t := z.table.Load()
	var ptrs []dns.RR
	if t != nil {
		ptrs = t.ptr[name]
	}
	net := z.network(name)
	if ptrs == nil && net == nil {
		z.Next.ServeDNS(ctx, w, r)
		return
	}
	if t == nil {
		fail(w, r, dns.RcodeServerFailure)
		return
	}
	m := reply(r, dns.RcodeSuccess)
	m.Authoritative = true
	switch {
	case ptrs != nil && (q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY):
		m.Answer = recase(ptrs, q.Name, name)
	case ptrs == nil && isAddress(name):
		m.Rcode = dns.RcodeNameError
		fallthrough
	default:
		m.Ns = []dns.RR{z.soa(name, net, t)}
	}
	_ = w.WriteMsg(m)
}

// network returns the configured network a reverse name falls in: for a whole address,
// the network containing it; for a partial name, one whose reverse zone contains it.
func (z *reverseZone) network(name string) *reverseNet {
	ip, full := parseReverse(name)
	for i := range z.networks {
		n := &z.networks[i]
		if full && n.prefix.Contains(ip) || !full && (name == n.zone || strings.HasSuffix(name, "."+n.zone)) {
			return n
		}
	}
	return nil
}

// soa is the SOA for a negative answer: the network's, or for a known address outside
// every configured network, one at the address's parent.
func (z *reverseZone) soa(name string, net *reverseNet, t *table) dns.RR {
	if net != nil {
		return net.soa
	}
	soa := *t.soa
	soa.Hdr.Name = name[strings.IndexByte(name, '.')+1:]
	return &soa
}

// reverseNets prepares the reverse zones of networks.
func reverseNets(networks []netip.Prefix, zone string, ttl uint32) []reverseNet {
	out := make([]reverseNet, 0, len(networks))
	for _, p := range networks {
		p = p.Masked()
		name := reverseZoneName(p)
		out = append(out, reverseNet{prefix: p, zone: name, soa: &dns.SOA{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  "ns.dns." + zone, Mbox: "hostmaster." + zone,
			Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl,
		}})
	}
	return out
}

// reverseZoneName is the reverse zone that holds a prefix: its whole octets (IPv4) or
// nibbles (IPv6), e.g. 10.43.0.0/16 → 43.10.in-addr.arpa.
func reverseZoneName(p netip.Prefix) string {
	rev, _ := dns.ReverseAddr(p.Addr().String()) // "d.c.b.a.in-addr.arpa."
	unit, labels := 8, 4
	if p.Addr().Is6() {
		unit, labels = 4, 32
	}
	drop := labels - p.Bits()/unit
	for range drop {
		rev = rev[strings.IndexByte(rev, '.')+1:]
	}
	return rev
}

// parseReverse reads the address of a whole reverse name (4 octets or 32 nibbles).
func parseReverse(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		l := strings.Split(v4, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
		return ip, err == nil
	}
	v6, ok := strings.CutSuffix(name, ".ip6.arpa.")
	if !ok || len(v6) != 63 {
		return netip.Addr{}, false
	}
	var b [16]byte
	for i := 0; i < 32; i++ {
		c := v6[62-2*i]
		if i < 31 && v6[62-2*i-1] != '.' {
			return netip.Addr{}, false
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			return netip.Addr{}, false
		}
		b[i/2] |= v << (4 * (1 - i%2))
	}
	return netip.AddrFrom16(b), true
}

func isAddress(name string) bool {
	_, ok := parseReverse(name)
	return ok
}
