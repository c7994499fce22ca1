package dnsd

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// serveUDP reads queries from one UDP socket bound to a specific address. Cluster names,
// the hot path, are answered inline by the reading goroutine: no goroutine per packet, no
// hand-off between threads, one read and one write system call per query. A query that may
// wait on an upstream (forwarded names, ExternalName targets) gets its own goroutine so it
// never holds up the socket. (A socket bound to a wildcard address is served by miekg/dns's
// server instead, which reads the destination address of each packet to answer from it.)
func (s *Server) serveUDP(conn *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable from an earlier answer
		}
		s.servePacket(conn, from, buf[:n])
	}
}

// servePacket answers one packet.
func (s *Server) servePacket(conn *net.UDPConn, from netip.AddrPort, p []byte) {
	w := &udpWriter{conn: conn, remote: from}
	r, reject := parsePacket(p)
	switch {
	case reject != nil:
		_ = w.WriteMsg(reject)
	case r == nil:
	case s.answersInline(r):
		s.ServeDNS(w, r)
	default:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeDNS(w, r)
		}()
	}
}

// parsePacket reads a query as miekg/dns's server does: a packet without a whole header or
// that is a response gets no answer (nil, nil), one the server does not accept or that does
// not parse gets the error answer to send.
func parsePacket(p []byte) (r, reject *dns.Msg) {
	if len(p) < 12 {
		return nil, nil
	}
	dh := dns.Header{Id: binary.BigEndian.Uint16(p), Bits: binary.BigEndian.Uint16(p[2:]),
		Qdcount: binary.BigEndian.Uint16(p[4:]), Ancount: binary.BigEndian.Uint16(p[6:]),
		Nscount: binary.BigEndian.Uint16(p[8:]), Arcount: binary.BigEndian.Uint16(p[10:])}
	fail := func(rcode int) *dns.Msg {
		return &dns.Msg{MsgHdr: dns.MsgHdr{Id: dh.Id, Response: true, Opcode: int(dh.Bits>>11) & 0xf, Rcode: rcode}}
	}
	switch dns.DefaultMsgAcceptFunc(dh) {
	case dns.MsgIgnore:
		return nil, nil
	case dns.MsgReject:
		return nil, fail(dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		return nil, fail(dns.RcodeNotImplemented)
	}
	r = new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		return nil, fail(dns.RcodeFormatError)
	}
	return r, nil
}

// answersInline reports whether r is answered from the tables alone, without waiting on an
// upstream: names of the cluster zone (but ExternalName CNAMEs) and reverse names dnsd is
// authoritative for.
func (s *Server) answersInline(r *dns.Msg) bool {
	if len(r.Question) != 1 {
		return true
	}
	name := strings.ToLower(r.Question[0].Name)
	t := s.table.Load()
	switch {
	case name == s.zone || strings.HasSuffix(name, "."+s.zone):
		if t == nil {
			return true
		}
		n := t.names[name]
		return n == nil || n.cname == nil
	case strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa."):
		return t != nil && t.ptr[name] != nil || s.reverse.network(name) != nil
	}
	return false
}

// udpWriter answers one UDP query.
type udpWriter struct {
	conn   *net.UDPConn
	remote netip.AddrPort
	addr   *net.UDPAddr
}

var packBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	bp := packBuffers.Get().(*[]byte)
	defer packBuffers.Put(bp)
	b, err := m.PackBuffer((*bp)[:cap(*bp)])
	if err != nil {
		return err
	}
	_, err = w.conn.WriteToUDPAddrPort(b, w.remote)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) { return w.conn.WriteToUDPAddrPort(b, w.remote) }
func (w *udpWriter) LocalAddr() net.Addr         { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr {
	if w.addr == nil {
		w.addr = net.UDPAddrFromAddrPort(w.remote)
	}
	return w.addr
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
