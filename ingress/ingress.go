package ingress

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/skiffhq/skiff/state"
)

// Config configures the ingress of one node.
type Config struct {
	HTTP, HTTPS string // listen host:port ("" = off)
	// Class is the ingressClassName served (default "skiff"); Ingresses without a class are
	// served too when DefaultClass is set.
	Class        string
	DefaultClass bool
	// Issue returns a certificate from the cluster CA for hosts without one (kept in memory
	// only). nil: such hosts have no certificate and their handshakes fail.
	Issue func(hosts []string) (*tls.Certificate, error)
	Log   *slog.Logger
}

// Server limits toward clients (tests shorten them on the Server).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownGrace     = 5 * time.Second
	// renewEvery is how often certificates are checked when no snapshot arrives.
	renewEvery = time.Hour
)

// Errors; check with errors.Is.
var (
	ErrStarted = errors.New("ingress already started")
	ErrConfig  = errors.New("invalid ingress configuration")
)

// Server is the ingress of one node: an HTTP and an HTTPS listener routing by the current
// table. Update swaps tables; requests already routed finish on the backend they found.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tab       atomic.Pointer[table]
	transport *http.Transport // for what h1 does not take: bodies, upgrades
	h1        *h1Transport
	buffers   bufferPool
	errorLog  *log.Logger
	stats     listenerStats
	conns     sync.Map // net.Conn → *connInfo

	mu          sync.Mutex // serialises compiles; guards what follows
	last        *state.State
	issued      map[string]*issued
	secrets     map[[32]byte]*parsedSecret
	nextSecrets map[[32]byte]*parsedSecret
	eps         map[string]*endpoint
	lastProblem map[string]bool

	started                     bool
	httpSrv, httpsSrv           *http.Server
	front, tlsFront             *front // HTTP/1.1 on each listener; they hand net/http what they do not serve
	httpsLn                     net.Listener
	tlsConfig                   *tls.Config
	h2mu                        sync.Mutex
	h2conns                     map[*h2Conn]struct{} // nil once stopping
	workers                     workerPool
	httpAddr, httpsAddr         string
	httpsPortSuffix             string // ":8443" in redirects, "" for 443
	done                        chan struct{}
	wg                          sync.WaitGroup
	readHeaderTimeout, idleTime time.Duration
	maxHeaderBytes              int
}

// New checks the configuration and returns a server that listens once started.
func New(cfg Config) (*Server, error) {
	if cfg.Class == "" {
		cfg.Class = "skiff"
	}
	for _, a := range []struct{ name, v string }{{"http", cfg.HTTP}, {"https", cfg.HTTPS}} {
		if a.v == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a.v)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s listen address %q is not host:port", ErrConfig, a.name, a.v)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: cfg.Log.With("component", "ingress"),
		transport:         newTransport(),
		issued:            map[string]*issued{},
		secrets:           map[[32]byte]*parsedSecret{},
		eps:               map[string]*endpoint{},
		lastProblem:       map[string]bool{},
		h2conns:           map[*h2Conn]struct{}{},
		workers:           workerPool{ch: make(chan func())},
		done:              make(chan struct{}),
		readHeaderTimeout: readHeaderTimeout,
		idleTime:          idleTimeout,
		maxHeaderBytes:    maxHeaderBytes,
	}
	s.h1 = newH1Transport(s.transport)
	s.errorLog = log.New(errorLogWriter{s}, "", 0)
	return s, nil
}

// Start binds the listeners and serves in the background. ctx bounds the binding; the
// server runs until Stop.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ErrStarted
	}
	var lc net.ListenConfig
	var httpsLn net.Listener
	if s.cfg.HTTPS != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.HTTPS)
		if err != nil {
			return fmt.Errorf("ingress https: %w", err)
		}
		httpsLn = ln
		s.httpsAddr = ln.Addr().String()
		if _, port, _ := net.SplitHostPort(s.httpsAddr); port != "443" {
			s.httpsPortSuffix = ":" + port
		}
		s.httpsSrv = s.newHTTPServer()
		s.tlsConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			CipherSuites:   tls12Suites,
			NextProtos:     []string{"h2", "http/1.1"},
			GetCertificate: s.getCertificate,
		}
	}
	if s.cfg.HTTP != "" {
		ln, err := lc.Listen(ctx, "tcp", s.cfg.HTTP)
		if err != nil {
			if httpsLn != nil {
				httpsLn.Close()
			}
			return fmt.Errorf("ingress http: %w", err)
		}
		s.httpAddr = ln.Addr().String()
		s.httpSrv = s.newHTTPServer()
		s.front = newFront(s, ln, false)
		s.serve("http", s.front.serve)
		s.serve("http (net/http)", func() error { return s.httpSrv.Serve(s.front.handoff) })
	}
	if httpsLn != nil {
		s.httpsLn = httpsLn
		s.tlsFront = newFront(s, httpsLn, true)
		s.serve("https", func() error { return acceptLoop(httpsLn, s.log, func(c net.Conn) { go s.serveTLS(c) }) })
		s.serve("https (net/http)", func() error { return s.httpsSrv.Serve(s.tlsFront.handoff) })
	}
	s.started = true
	s.wg.Add(1)
	go s.renewLoop(ctx)
	s.log.Info("ingress listening", "http", s.httpAddr, "https", s.httpsAddr, "class", s.cfg.Class, "defaultClass", s.cfg.DefaultClass)
	return nil
}

func (s *Server) serve(name string, run func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ingress listener stopped", "listener", name, "err", err)
		}
	}()
}

func (s *Server) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.readHeaderTimeout,
		IdleTimeout:       s.idleTime,
		MaxHeaderBytes:    s.maxHeaderBytes,
		ErrorLog:          s.errorLog,
		ConnContext:       s.connContext,
		ConnState:         s.connState,
	}
}

// renewLoop recompiles the last snapshot now and then, so certificates from the cluster
// CA are renewed and expired Secrets reported even when no snapshot arrives; and closes
// backend connections idle too long.
func (s *Server) renewLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	sweep := time.NewTicker(h1IdleTimeout / 3)
	defer sweep.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-ctx.Done():
			return
		case <-sweep.C:
			s.h1.closeIdle(false)
		case <-t.C:
			s.mu.Lock()
			last := s.last
			s.mu.Unlock()
			if last != nil {
				s.Update(last)
			}
		}
	}
}

// Stop closes the listeners, lets requests in flight finish for a few seconds, then
// closes what is left.
func (s *Server) Stop() error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	close(s.done)
	srvs := []*http.Server{s.httpSrv, s.httpsSrv}
	fronts := []*front{s.front, s.tlsFront}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, f := range fronts {
		if f != nil {
			errs = append(errs, f.Shutdown(ctx))
		}
	}
	if s.httpsLn != nil {
		s.httpsLn.Close()
		errs = append(errs, s.shutdownH2(ctx))
	}
	for _, srv := range srvs {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, srv.Close())
		}
	}
	s.wg.Wait()
	s.h1.closeIdle(true)
	s.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// serveTLS does the TLS handshake of an HTTPS connection, then serves HTTP/2 or HTTP/1.1.
func (s *Server) serveTLS(c net.Conn) {
	tc := tls.Server(c, s.tlsConfig)
	tc.SetDeadline(time.Now().Add(s.readHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		if !strings.Contains(err.Error(), "invalid SNI") { // counted where it was refused
			s.stats.handshake.note(c.RemoteAddr().String() + ": " + err.Error())
		}
		c.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		s.serveH2(tc)
		return
	}
	s.tlsFront.add(tc)
}

// looksLikeHTTP: a TLS record header that is the start of a plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// trackH2 adds or removes an HTTP/2 connection; false when the server is stopping.
func (s *Server) trackH2(sc *h2Conn, add bool) bool {
	s.h2mu.Lock()
	defer s.h2mu.Unlock()
	if s.h2conns == nil {
		return false
	}
	if add {
		s.h2conns[sc] = struct{}{}
	} else {
		delete(s.h2conns, sc)
	}
	return true
}

// shutdownH2 sends GOAWAY on every HTTP/2 connection, waits until their streams are done
// or ctx ends, and closes them.
func (s *Server) shutdownH2(ctx context.Context) error {
	s.h2mu.Lock()
	conns := s.h2conns
	s.h2conns = nil
	s.h2mu.Unlock()
	for sc := range conns {
		sc.mu.Lock()
		sc.goAway = true
		sc.mu.Unlock()
		sc.goAwayNow(http2.ErrCodeNo)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for len(conns) > 0 && err == nil {
		for sc := range conns {
			if sc.busy.Load() == 0 {
				sc.write(sc.bw.Flush) // the last answers may still wait for the flusher
				sc.c.Close()
				delete(conns, sc)
			}
		}
		select {
		case <-ctx.Done():
			err = errors.New("ingress: HTTP/2 streams still running at shutdown were cut")
		case <-tick.C:
		}
	}
	for sc := range conns {
		sc.c.Close()
	}
	return err
}

// HTTPAddr is the bound address of the HTTP listener ("" when off or not started).
func (s *Server) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// HTTPSAddr is the bound address of the HTTPS listener ("" when off or not started).
func (s *Server) HTTPSAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpsAddr
}

// Update compiles a snapshot (routes, backends, certificates) and swaps it in atomically.
// Call it with every snapshot.
func (s *Server) Update(st *state.State) {
	if st == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.compile(st, time.Now())
	s.last = st
	s.tab.Store(t)
	s.logProblems(t)
}

// logProblems logs the problems that are new in this table.
func (s *Server) logProblems(t *table) {
	now := map[string]bool{}
	for _, h := range t.status {
		for _, p := range h.Problems {
			key := h.Host + "\x00" + p
			now[key] = true
			if !s.lastProblem[key] {
				s.log.Warn("ingress problem", "host", h.Host, "problem", p)
			}
		}
	}
	s.lastProblem = now
}

// Status reports every host: its Ingresses, routes, certificate and problems. The first
// entry is DefaultHost, which also carries the listeners' problems (unknown or invalid SNI,
// failed handshakes, connections that never sent a complete request).
func (s *Server) Status() []HostStatus {
	t := s.tab.Load()
	var out []HostStatus
	if t == nil {
		out = []HostStatus{{Host: DefaultHost, Problems: []string{"no cluster state yet: every request gets 503"}}}
	} else {
		out = make([]HostStatus, len(t.status))
		for i, h := range t.status { // callers may change what they get
			h.Ingresses, h.Routes, h.Problems = slices.Clone(h.Ingresses), slices.Clone(h.Routes), slices.Clone(h.Problems)
			out[i] = h
		}
		if !t.synced {
			out[0].Problems = append(out[0].Problems, "this node has never synced a commit: every request gets 503")
		}
	}
	out[0].Problems = append(out[0].Problems, s.listenerProblems()...)
	return out
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ci, _ := r.Context().Value(connKey{}).(*connInfo); ci != nil {
		if !ci.served.Load() {
			ci.served.Store(true)
		}
		if r.TLS == nil { // net/http sees a handed-over TLS connection as a plain one
			r.TLS = ci.tls
		}
	}
	t := s.tab.Load()
	if t == nil || !t.synced {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "503 service unavailable: this node has not synced the cluster state yet", http.StatusServiceUnavailable)
		return
	}
	host := normalHost(r.Host)
	if r.TLS == nil && t.redirects(host) {
		http.Redirect(w, r, "https://"+host+s.httpsPortSuffix+r.URL.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	rt := t.match(host, r.URL.Path)
	if rt == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if rt.backend.proxy == nil {
		http.Error(w, "503 service unavailable: no ready backend", http.StatusServiceUnavailable)
		return
	}
	rt.backend.proxy.ServeHTTP(w, r)
}

func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	proxyError(s.log.Debug)(w, r, err)
}

// --- listener problems ---

// counter counts one kind of event and keeps the last detail.
type counter struct {
	n    atomic.Uint64
	last atomic.Pointer[string]
}

func (c *counter) note(detail string) {
	c.n.Add(1)
	c.last.Store(&detail)
}

func (c *counter) get() (uint64, string) {
	n := c.n.Load()
	if p := c.last.Load(); p != nil {
		return n, *p
	}
	return n, ""
}

type listenerStats struct {
	unknownSNI, invalidSNI, handshake, incomplete counter
}

func (s *Server) listenerProblems() []string {
	ls := &s.stats
	var out []string
	if n, last := ls.invalidSNI.get(); n > 0 {
		out = append(out, fmt.Sprintf("%d TLS handshakes refused for an invalid SNI (last %q)", n, last))
	}
	if n, last := ls.unknownSNI.get(); n > 0 {
		out = append(out, fmt.Sprintf("%d TLS handshakes named a host no Ingress serves (last %q); they got the default certificate", n, last))
	}
	if n, last := ls.handshake.get(); n > 0 {
		out = append(out, fmt.Sprintf("%d TLS handshakes failed (last: %s)", n, last))
	}
	if n, last := ls.incomplete.get(); n > 0 {
		out = append(out, fmt.Sprintf("%d connections closed before sending a complete request: too slow (over %s for the headers), headers over %d KiB, malformed, or idle (last from %s)",
			n, s.readHeaderTimeout, s.maxHeaderBytes>>10, last))
	}
	return out
}

type connKey struct{}

// connInfo follows one client connection, to count those that never made a request.
type connInfo struct {
	served atomic.Bool
	tls    *tls.ConnectionState // of a TLS connection handed over after its handshake
}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{}
	if pc, ok := c.(*prefixConn); ok {
		if tc, ok := pc.Conn.(*tls.Conn); ok {
			st := tc.ConnectionState()
			ci.tls = &st
		}
	}
	s.conns.Store(c, ci)
	return context.WithValue(ctx, connKey{}, ci)
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	v, ok := s.conns.LoadAndDelete(c)
	if !ok || st == http.StateHijacked || v.(*connInfo).served.Load() {
		return
	}
	if tc, isTLS := c.(*tls.Conn); isTLS && !tc.ConnectionState().HandshakeComplete {
		return // counted as a failed handshake
	}
	s.stats.incomplete.note(c.RemoteAddr().String())
}

// errorLogWriter receives net/http's own log lines: failed TLS handshakes are counted for
// Status, the rest go to the debug log.
type errorLogWriter struct{ s *Server }

var handshakePrefix = []byte("http: TLS handshake error from ")

func (w errorLogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	if rest, ok := bytes.CutPrefix(line, handshakePrefix); ok {
		if !bytes.Contains(rest, []byte("invalid SNI")) { // counted where it was refused
			w.s.stats.handshake.note(string(rest))
		}
		return len(p), nil
	}
	w.s.log.Debug(string(line))
	return len(p), nil
}
