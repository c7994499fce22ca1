package dnsd

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/skiffhq/skiff/dnsd/dnstest"
)

// BenchmarkUpdate compiles the records of 500 Services and 2000 pods: what Update costs
// every node on a snapshot that changed them (a pod's readiness, a Service).
func BenchmarkUpdate(b *testing.B) {
	m, err := dnstest.Synthetic(b.Context(), 500, 2000)
	if err != nil {
		b.Fatal(err)
	}
	st := m.State()
	b.ReportAllocs()
	for b.Loop() {
		compile(st, "cluster.local.", DefaultTTL)
	}
}

// BenchmarkUpdateUnchanged is what Update costs on a snapshot that changed nothing DNS is
// made of: collecting and comparing the inputs.
func BenchmarkUpdateUnchanged(b *testing.B) {
	m, err := dnstest.Synthetic(b.Context(), 500, 2000)
	if err != nil {
		b.Fatal(err)
	}
	prev := inputsOf(m.State())
	b.ReportAllocs()
	for b.Loop() {
		in := inputsOf(m.State())
		if !in.same(&prev) {
			b.Fatal("inputs differ")
		}
	}
}

// BenchmarkServeDNS answers cluster names through the whole handler chain and packs the
// answer, without the network: the per-query cost of dnsd itself.
func BenchmarkServeDNS(b *testing.B) {
	m, err := dnstest.Synthetic(b.Context(), 500, 2000)
	if err != nil {
		b.Fatal(err)
	}
	s := newTestServer(b, Config{})
	s.Update(m.State())
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"svc-0.ns-0.svc.cluster.local.", dns.TypeA},
		{"_http._tcp.svc-0.ns-0.svc.cluster.local.", dns.TypeSRV},
		{"svc-3.ns-3.svc.cluster.local.", dns.TypeA},
		{"_peer._tcp.svc-3.ns-3.svc.cluster.local.", dns.TypeSRV},
		{"SVC-0.Ns-0.svc.cluster.local.", dns.TypeA},
		{"nope.ns-0.svc.cluster.local.", dns.TypeA},
	} {
		b.Run(dns.TypeToString[q.qtype]+"/"+q.name, func(b *testing.B) {
			r := new(dns.Msg)
			r.SetQuestion(q.name, q.qtype)
			w := &testWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
			b.ReportAllocs()
			for b.Loop() {
				w.msg = nil
				s.handler.ServeDNS(b.Context(), w, r)
				if _, err := w.msg.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
