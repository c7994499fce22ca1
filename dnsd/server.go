// Package dnsd is skiff's cluster DNS: every node serves the Kubernetes DNS-based service
// discovery schema (version 1.1.0) for its cluster zone from its own state snapshot, over
// UDP and TCP, and forwards other names to its upstream resolvers with a small cache.
//
// A query goes through a chain of handlers, CoreDNS-style:
//
//	head (opcode, EDNS0, truncation) → acl (REFUSED outside Config.Allow)
//	  → cluster zone → reverse zone → cache → forward
//
// The cluster and reverse zones answer from a table compiled from each snapshot by Update
// and swapped in atomically: a query never waits for an update, and sees one snapshot.
//
// Where the specification leaves room, dnsd does what CoreDNS's kubernetes plugin does:
//   - an endpoint without a hostname is named by its IP with dashes (10-42-0-7.<svc>...);
//   - SRV records have priority 0 and equal weights; a headless Service's SRV port is the
//     endpoint's (target) port, where clients connect; the targets' addresses are added as
//     additional records;
//   - an ExternalName CNAME is followed for the client: inside the zone from the table,
//     outside through the cache and the upstreams; the rcode is the target's (RFC 6604);
//   - empty non-terminals (svc.<zone>, <ns>.svc.<zone>, _tcp.<svc>...) are NODATA, never
//     NXDOMAIN (RFC 8020); a Service whose cluster IP is not allocated yet is NODATA;
//   - a Service with two ports of one name and protocol (Kubernetes rejects it) keeps the
//     first for SRV, and the clash is logged once;
//   - wildcard queries (*.<ns>.svc...), deprecated by the specification, and the legacy
//     pod records (<ip-dashed>.<ns>.pod.<zone>) are not served: NXDOMAIN;
//   - the SOA serial is the snapshot's Raft index, the same on every node.
package dnsd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/state"
)

// Errors.
var (
	ErrNoUpstream = errors.New("no upstream resolver")
	ErrBadAnswer  = errors.New("answer does not match the question")
	errWritten    = errors.New("response already written")
	ErrStarted    = errors.New("dnsd already started")
)

// Config configures a Server.
type Config struct {
	Addr      string   // host:port, UDP and TCP
	Domain    string   // cluster zone; default "cluster.local"
	Upstreams []string // resolvers for other names ("ip:port" or "ip"); empty = /etc/resolv.conf
	// Allow are the clients answered (pod CIDR, service CIDR, loopback); the addresses of the
	// cluster's nodes, from each snapshot, are allowed too. Others get REFUSED. Empty =
	// loopback only (and the nodes).
	Allow []netip.Prefix
	// Networks are the service and pod CIDRs: dnsd is authoritative for their reverse zones
	// (an unknown address there is NXDOMAIN). Other reverse names are forwarded.
	Networks  []netip.Prefix
	TTL       uint32 // answers' TTL; default 5
	CacheSize int    // forwarded answers kept; default 1000, negative = no cache
	Log       *slog.Logger
	// ResolvConf is read for Upstreams when none are given; default /etc/resolv.conf.
	ResolvConf string
}

// Default values.
const (
	DefaultDomain    = "cluster.local"
	DefaultTTL       = 5
	DefaultCacheSize = 1000
)

// Server is a node's DNS server.
type Server struct {
	cfg      Config
	zone     string // "cluster.local."
	log      *slog.Logger
	table    atomic.Pointer[table]
	handler  Handler
	cache    *cache
	forward  *forward
	reverse  *reverseZone
	clashes  atomic.Pointer[string] // last logged port clashes, to log a change once
	updating sync.Mutex             // one Update at a time; guards index and inputs
	index    uint64                 // of the newest snapshot seen
	last     *state.State           // the newest snapshot seen
	inputs   inputs                 // of the table served

	mu      sync.Mutex
	servers []*dns.Server
	udp     []*net.UDPConn // served by serveUDP
	wg      sync.WaitGroup // serveUDP loops and the queries they handed to goroutines
	addr    string
	cancel  context.CancelFunc
	ctx     context.Context
}

// New checks cfg and builds a server that answers SERVFAIL for the cluster zone until the
// first Update with a synced snapshot.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	zone := dns.CanonicalName(cfg.Domain)
	if _, ok := dns.IsDomainName(zone); !ok || zone == "." {
		return nil, fmt.Errorf("dnsd: domain %q is not a domain name", cfg.Domain)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dnsd: addr %q: %w", cfg.Addr, err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ups, err := upstreams(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.Allow) == 0 {
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}

	s := &Server{cfg: cfg, zone: zone, log: cfg.Log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.forward = newForward(ups, cfg.Log)
	var outside Handler = s.forward
	if cfg.CacheSize > 0 {
		s.cache = newCache(cfg.CacheSize, s.forward)
		outside = s.cache
	}
	s.reverse = &reverseZone{table: &s.table, networks: reverseNets(cfg.Networks, zone, cfg.TTL), Next: outside}
	cluster := &clusterZone{zone: zone, dotZone: "." + zone, table: &s.table, Upstream: outside, Next: s.reverse}
	s.handler = head{Next: acl{Allow: cfg.Allow, table: &s.table, Next: cluster}}
	return s, nil
}

// upstreams resolves the forwarders: the configured ones (port 53 when none is given), or
// the nameservers of resolv.conf; never dnsd's own address.
func upstreams(cfg Config) ([]string, error) {
	list := cfg.Upstreams
	if len(list) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		rc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dnsd: upstreams from %s: %w", path, err)
		}
		list = rc.Servers
	}
	var out []string
	for _, u := range list {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		host, _, _ := net.SplitHostPort(u)
		if _, err := netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("dnsd: upstream %q is not ip:port", u)
		}
		if !loops(u, cfg.Addr) {
			out = append(out, u)
		}
	}
	return out, nil
}

// loops reports whether forwarding to upstream would reach dnsd itself.
func loops(upstream, listen string) bool {
	uh, up, _ := net.SplitHostPort(upstream)
	lh, lp, _ := net.SplitHostPort(listen)
	if up != lp {
		return false
	}
	u, _ := netip.ParseAddr(uh)
	l, err := netip.ParseAddr(lh)
	return u == l || (lh == "" || err == nil && l.IsUnspecified()) && u.IsLoopback()
}

// Update compiles the records of a snapshot and swaps them in. Snapshots that were never
// synced are ignored: until the first synced one the cluster zone answers SERVFAIL.
func (s *Server) Update(st *state.State) {
	if st == nil || !st.Synced() {
		return
	}
	s.updating.Lock()
	defer s.updating.Unlock()
	if s.table.Load() != nil && (st.Index < s.index || st == s.last) {
		return // an older snapshot than the one served, or the same
	}
	s.last = st
	s.index = st.Index
	in := inputsOf(st)
	if s.table.Load() != nil && in.same(&s.inputs) {
		return // nothing the records are made of changed
	}
	start := time.Now()
	t := compile(st, s.zone, s.cfg.TTL)
	s.table.Store(t)
	s.inputs = in
	clashes := strings.Join(t.clashes, ", ")
	if old := s.clashes.Swap(&clashes); (old == nil || *old != clashes) && clashes != "" {
		s.log.Warn("services with clashing ports: the first port of a name and protocol gets the SRV record", "ports", clashes)
	}
	s.log.Debug("dns records updated", "index", st.Index, "names", len(t.names), "ptr", len(t.ptr), "took", time.Since(start))
}

// Ready reports whether the cluster zone is being answered (a synced snapshot was loaded).
func (s *Server) Ready() bool { return s.table.Load() != nil }

// ServeDNS answers one query: it makes Server a dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { s.handler.ServeDNS(s.ctx, w, r) }

// Start listens on Config.Addr, UDP (one SO_REUSEPORT socket per CPU, so the kernel spreads
// queries over them) and TCP, and serves until Stop or ctx ends. It returns once listening.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.servers != nil {
		return ErrStarted
	}
	tcp, conns, err := listen(ctx, s.cfg.Addr)
	if err != nil {
		return err
	}
	addr := tcp.Addr().String()
	s.addr = addr
	s.servers = append(s.servers, &dns.Server{Listener: tcp, Handler: s, ReadTimeout: 5 * time.Second})
	host, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		for _, pc := range conns {
			s.udp = append(s.udp, pc.(*net.UDPConn))
			s.wg.Add(1)
			go s.serveUDP(pc.(*net.UDPConn))
		}
	} else {
		for _, pc := range conns {
			s.servers = append(s.servers, &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.MaxMsgSize})
		}
	}
	for _, srv := range s.servers {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("dns server stopped", "addr", addr, "err", err)
			}
		}()
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Stop()
		case <-s.ctx.Done():
		}
	}()
	s.log.Info("cluster dns listening", "addr", addr, "zone", s.zone, "upstreams", s.forward.upstreams)
	return nil
}

// listen binds TCP on addr, then one UDP socket per CPU on the same port (SO_REUSEPORT).
// For port 0 the kernel picks the TCP port; when that port is taken for UDP it tries again.
func listen(ctx context.Context, addr string) (net.Listener, []net.PacketConn, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		var plain net.ListenConfig // TCP without SO_REUSEPORT: binding fails when the port is taken
		tcp, err := plain.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsd: listen tcp %s: %w", addr, err)
		}
		bound := tcp.Addr().String()
		lc := net.ListenConfig{Control: reusePort}
		var conns []net.PacketConn
		for range max(1, runtime.GOMAXPROCS(0)) {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				tcp.Close()
				for _, c := range conns {
					c.Close()
				}
				conns = nil
				if port == "0" && attempt < 10 && errors.Is(err, syscall.EADDRINUSE) {
					break
				}
				return nil, nil, fmt.Errorf("dnsd: listen udp %s: %w", bound, err)
			}
			conns = append(conns, pc)
		}
		if len(conns) == max(1, runtime.GOMAXPROCS(0)) {
			return tcp, conns, nil
		}
	}
}

// Addr returns the address the server listens on (with the port chosen for ":0").
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listeners and waits for the servers to end. Queries being forwarded are
// cancelled.
func (s *Server) Stop() error {
	s.mu.Lock()
	servers, udp := s.servers, s.udp
	s.servers, s.udp = []*dns.Server{}, nil // not nil: a stopped server does not start again
	s.mu.Unlock()
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, c := range udp {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil && !strings.Contains(err.Error(), "not started") {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// WriteZone writes the cluster zone and the PTR records of the current snapshot in zone file
// format (sorted; nothing before the first synced snapshot).
func (s *Server) WriteZone(w io.Writer) error {
	t := s.table.Load()
	if t == nil {
		return nil
	}
	var lines []string
	for _, n := range t.names {
		for _, rr := range n.rrs(dns.TypeANY) {
			lines = append(lines, rr.String())
		}
	}
	for _, ptrs := range t.ptr {
		for _, rr := range ptrs {
			lines = append(lines, rr.String())
		}
	}
	slices.Sort(lines)
	if i := slices.Index(lines, t.soa.String()); i > 0 { // the SOA first
		lines = slices.Insert(slices.Delete(lines, i, i+1), 0, t.soa.String())
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

// ResolvConf is what a ClusterFirst pod of namespace gets in /etc/resolv.conf: the cluster
// DNS server, the search path <ns>.svc.<domain> svc.<domain> <domain>, and ndots:5.
func ResolvConf(namespace, domain string, server string) (servers, searches, options []string) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		domain = DefaultDomain
	}
	return []string{server},
		[]string{namespace + ".svc." + domain, "svc." + domain, domain},
		[]string{"ndots:5"}
}

// reusePort lets one UDP socket per CPU share the port: the kernel spreads queries over them.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
