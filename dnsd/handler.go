package dnsd

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Handler answers a query or passes it to the next handler of the chain, as CoreDNS plugins
// do. A handler writes exactly one response to w or calls its Next.
type Handler interface {
	ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg)
}

// advertisedUDPSize is the EDNS0 buffer size dnsd announces (the DNS flag day 2020 value).
const advertisedUDPSize = 1232

// reply starts a response to r: same ID and question, recursion available (dnsd resolves
// other names for its clients).
func reply(r *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	m.RecursionAvailable = true
	return m
}

// fail writes an empty response with rcode.
func fail(w dns.ResponseWriter, r *dns.Msg, rcode int) {
	_ = w.WriteMsg(reply(r, rcode))
}

// head is the first handler: it answers what is not a plain query itself and wraps the
// writer so every response leaves with the client's EDNS0 and fits the transport.
type head struct{ Next Handler }

func (h head) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	switch {
	case r.Response:
		return // never answer a response: it could be a reflection
	case r.Opcode != dns.OpcodeQuery:
		fail(w, r, dns.RcodeNotImplemented)
		return
	case len(r.Question) != 1:
		fail(w, r, dns.RcodeFormatError)
		return
	}
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		m := reply(r, dns.RcodeBadVers) // RFC 6891 6.1.3: only version 0
		m.SetEdns0(advertisedUDPSize, false)
		_ = w.WriteMsg(m)
		return
	}
	h.Next.ServeDNS(ctx, &replyWriter{ResponseWriter: w, req: r}, r)
}

// replyWriter finishes a response: it answers EDNS0 with EDNS0 (and only then), and
// truncates to what the transport carries: the client's EDNS0 buffer size (512 without)
// over UDP, with the TC bit so the client retries over TCP, where the full answer fits.
type replyWriter struct {
	dns.ResponseWriter
	req  *dns.Msg
	done bool
}

func (w *replyWriter) WriteMsg(m *dns.Msg) error {
	if w.done {
		return errWritten
	}
	w.done = true
	finish(w.req, m, isTCP(w.RemoteAddr()))
	return w.ResponseWriter.WriteMsg(m)
}

// finish sets a response's OPT record and truncates it for the transport.
func finish(req, m *dns.Msg, tcp bool) {
	for i, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT { // from upstream: ours replaces it
			m.Extra = append(m.Extra[:i:i], m.Extra[i+1:]...)
			break
		}
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(advertisedUDPSize)
		o.SetDo(opt.Do())
		m.Extra = append(m.Extra, o)
	}
	if tcp {
		size = dns.MaxMsgSize
		m.Compress = true
	}
	m.Truncate(size)
}

func isTCP(a net.Addr) bool {
	_, ok := a.(*net.TCPAddr)
	return ok
}

// acl refuses clients outside the allowed prefixes and the cluster's node addresses (from
// the current table): dnsd is not an open resolver.
type acl struct {
	Allow []netip.Prefix
	table *atomic.Pointer[table]
	Next  Handler
}

func (a acl) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	if !a.allowed(w.RemoteAddr()) {
		fail(w, r, dns.RcodeRefused)
		return
	}
	a.Next.ServeDNS(ctx, w, r)
}

func (a acl) allowed(addr net.Addr) bool {
	var ip netip.Addr
	switch addr := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(addr.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(addr.IP)
	default:
		return false
	}
	ip = ip.Unmap()
	for _, p := range a.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	t := a.table.Load()
	return t != nil && t.nodes[ip]
}

// capture is a ResponseWriter that keeps the response instead of sending it: the cache
// and the CNAME chase read a handler's answer through it.
type capture struct {
	dns.ResponseWriter
	msg *dns.Msg
}

func (c *capture) WriteMsg(m *dns.Msg) error {
	if c.msg != nil {
		return errWritten
	}
	c.msg = m
	return nil
}
