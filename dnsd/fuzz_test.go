package dnsd

import (
	"context"
	"net"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw packets through what the UDP loop does with one (parsePacket:
// header check, accept, unpack) and the whole handler chain, as UDP, TCP and a refused
// client, with a stub upstream. A packet may get no answer; an answer must be one, pack,
// fit the transport and match the query. Seeds live in testdata/fuzz/FuzzServeDNS.
func FuzzServeDNS(f *testing.F) {
	for _, tc := range lookupCases[:8] {
		m := question(tc.Qname, tc.Qtype)
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	s := newTestServer(f, Config{Networks: networks})
	s.Update(clusterStore(f).State())
	s.forward.exchange = func(_ context.Context, q *dns.Msg, _, _ string) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question[0].Name)%2 == 0 {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60}, Minttl: 30}}
		} else {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		}
		return m, nil
	}
	f.Fuzz(func(t *testing.T, packet []byte) {
		r, reject := parsePacket(packet)
		if reject != nil {
			if _, err := reject.Pack(); err != nil || reject.Rcode == dns.RcodeSuccess {
				t.Fatalf("bad error answer %v: %v", reject, err)
			}
			return
		}
		if r == nil {
			return // no answer is due
		}
		for _, remote := range []net.Addr{
			&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353},
			&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353},
			&net.UDPAddr{IP: net.IPv4(192, 0, 2, 99), Port: 5353}, // not allowed
		} {
			w := &testWriter{remote: remote}
			s.handler.ServeDNS(t.Context(), w, r)
			if w.writes > 1 {
				t.Fatalf("%d answers to one query", w.writes)
			}
			if w.msg == nil {
				if !r.Response {
					t.Fatalf("no answer to a query: %v", r)
				}
				continue
			}
			b, err := w.msg.Pack()
			if err != nil {
				t.Fatalf("answer does not pack: %v\n%v", err, w.msg)
			}
			limit := dns.MaxMsgSize
			if _, udp := remote.(*net.UDPAddr); udp && w.msg.Rcode != dns.RcodeBadVers {
				limit = dns.MinMsgSize
				if opt := r.IsEdns0(); opt != nil {
					limit = max(limit, int(opt.UDPSize()))
				}
			}
			if len(b) > limit || w.msg.Id != r.Id || !w.msg.Response {
				t.Fatalf("answer of %d bytes (limit %d), id %d (query %d), response %v", len(b), limit, w.msg.Id, r.Id, w.msg.Response)
			}
		}
	})
}
