package ingress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// The HTTP listener's front end serves HTTP/1.1 itself for the request that makes up
// nearly all traffic — GET or HEAD, no body, routed to a backend with ready endpoints. It
// copies the request head to a kept-alive backend connection and the response back as
// bytes, on the connection's own goroutine, without allocating in the common case: no
// http.Request, no header maps, no ReverseProxy. At the first request it does not take
// (a body, an upgrade, Expect, an escaped path, a redirect, a 404 or 503, HTTP/1.0,
// anything malformed or larger than its head buffer) it hands the connection, with the
// bytes already read, to net/http's server, which serves the connection from then on.
// net/http stays the reference: the front end takes only what it answers as net/http and
// ReverseProxy would.
const (
	frontReadBuf  = 8 << 10 // request heads larger than this go to net/http
	frontWriteBuf = 4 << 10
	// A backend slower than this to answer gets a goroutine watching for the client
	// hanging up (net/http keeps one per request; most answers come well before).
	watchAfter = 20 * time.Millisecond
	// maxHeadLines bounds the header lines the front end handles itself.
	maxHeadLines = 64
)

// front accepts the HTTP listener's connections.
type front struct {
	s       *Server
	ln      net.Listener
	tls     bool       // its connections are *tls.Conn, after the handshake
	handoff *connQueue // to net/http's server

	handoffs atomic.Uint64 // connections handed to net/http

	mu       sync.Mutex
	conns    map[*frontConn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

func newFront(s *Server, ln net.Listener, isTLS bool) *front {
	return &front{s: s, ln: ln, tls: isTLS, handoff: newConnQueue(ln.Addr()), conns: map[*frontConn]struct{}{}}
}

// serve accepts until the listener closes.
func (f *front) serve() error {
	return acceptLoop(f.ln, f.s.log, f.add)
}

// add serves a connection.
func (f *front) add(c net.Conn) {
	fc := &frontConn{f: f, c: c}
	f.mu.Lock()
	if f.shutdown {
		f.mu.Unlock()
		c.Close()
		return
	}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	go fc.serve()
}

// acceptLoop accepts connections until the listener closes, backing off as net/http does
// when accepting fails (out of file descriptors and the like).
func acceptLoop(ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return http.ErrServerClosed
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			log.Warn("ingress accept failed", "err", err, "retryIn", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		handle(c)
	}
}

// Shutdown closes the listener and the idle connections, waits for the busy ones to
// finish their request until ctx ends, then closes them.
func (f *front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.shutdown = true
	f.mu.Unlock()
	f.ln.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		for fc := range f.conns {
			if !fc.busy.Load() {
				fc.c.Close()
			}
		}
		f.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			f.mu.Lock()
			for fc := range f.conns {
				fc.c.Close()
			}
			f.mu.Unlock()
			<-done
			return errors.New("ingress: requests still running at shutdown were cut")
		case <-tick.C:
		}
	}
}

// frontConn is one client connection.
type frontConn struct {
	f      *front
	c      net.Conn
	in     stashReader
	br     *bufio.Reader
	bw     *bufio.Writer
	ip     string // the client's address, for X-Forwarded-For
	busy   atomic.Bool
	served bool
	gave   bool // handed to net/http

	// The watcher: a goroutine reading the client while a slow backend thinks.
	watching  bool
	watchDone chan struct{}
	gone      atomic.Bool

	req  frontReq
	resp respHead
}

// stashReader reads the client, first giving back the byte the watcher read.
type stashReader struct {
	c     net.Conn
	b     [1]byte
	stash bool
}

func (r *stashReader) Read(p []byte) (int, error) {
	if r.stash && len(p) > 0 {
		p[0], r.stash = r.b[0], false
		return 1, nil
	}
	return r.c.Read(p)
}

func (fc *frontConn) serve() {
	f := fc.f
	defer func() {
		if !fc.gave {
			fc.c.Close()
			if !fc.served {
				f.s.stats.incomplete.note(fc.c.RemoteAddr().String())
			}
		}
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		f.wg.Done()
	}()
	fc.in.c = fc.c
	fc.br = bufio.NewReaderSize(&fc.in, frontReadBuf)
	fc.bw = bufio.NewWriterSize(fc.c, frontWriteBuf)
	if host, _, err := net.SplitHostPort(fc.c.RemoteAddr().String()); err == nil {
		fc.ip = host
	}
	for first := true; ; first = false {
		head, err := fc.readHead(first)
		if err != nil {
			return
		}
		fc.busy.Store(true)
		b := fc.route(head)
		if b == nil {
			fc.handoff()
			return
		}
		fc.served = true
		fc.br.Discard(len(head)) // head stays valid: the reader is not read until the next request
		keep := fc.proxy(b)
		if !keep {
			fc.bw.Flush()
			return
		}
		f.mu.Lock()
		down := f.shutdown
		f.mu.Unlock()
		if down {
			fc.bw.Flush()
			return
		}
	}
}

// readHead waits for a whole request head in the read buffer: until the idle timeout
// for its first byte (the header timeout for a new connection), then the header timeout.
// A head that does not fit comes back nil, for net/http.
func (fc *frontConn) readHead(first bool) ([]byte, error) {
	s, br := fc.f.s, fc.br
	if br.Buffered() == 0 {
		if fc.bw.Buffered() > 0 {
			if err := fc.bw.Flush(); err != nil {
				return nil, err
			}
		}
		fc.busy.Store(false) // idle: Stop may close it now that every answer is out
		wait := s.idleTime
		if first {
			wait = s.readHeaderTimeout
		}
		fc.c.SetReadDeadline(time.Now().Add(wait))
		if _, err := br.Peek(1); err != nil {
			return nil, err
		}
	}
	timed := first
	for {
		n := br.Buffered()
		p, _ := br.Peek(n)
		if i := bytes.Index(p, crlfcrlf); i >= 0 {
			return p[:i+4], nil
		}
		if n == br.Size() {
			return nil, nil
		}
		if !timed {
			fc.c.SetReadDeadline(time.Now().Add(s.readHeaderTimeout))
			timed = true
		}
		if _, err := br.Peek(n + 1); err != nil {
			return nil, err
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// frontReq is a parsed request head; its slices point into the read buffer.
type frontReq struct {
	line  []byte // request line with its CRLF
	host  []byte // Host header value
	head  bool   // HEAD
	close bool   // Connection: close
	headLines
}

// headLines are the header lines of a head, and those not passed on (hop-by-hop,
// X-Forwarded-*).
type headLines struct {
	lines [maxHeadLines][]byte
	n     int
	drop  uint64 // bit i: lines[i]
}

// next takes the next header line off rest, checks it is well-formed (a token, a colon,
// a value without control characters, CRLF; not a continuation line) and keeps it.
func (hl *headLines) next(rest *[]byte) (name, value []byte, idx int, ok bool) {
	i := bytes.IndexByte(*rest, '\n')
	line := (*rest)[:i+1]
	*rest = (*rest)[i+1:]
	if hl.n == maxHeadLines || len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, nil, 0, false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, 0, false
	}
	name, value = line[:colon], trimOWS(line[colon+1:len(line)-2])
	for _, c := range name {
		if !httpguts.IsTokenRune(rune(c)) {
			return nil, nil, 0, false
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, 0, false
		}
	}
	idx = hl.n
	hl.lines[idx] = line
	hl.n++
	return name, value, idx, true
}

// route parses head and finds its backend; nil when net/http should answer.
func (fc *frontConn) route(head []byte) *backend {
	r := &fc.req
	if head == nil || !r.parse(head) {
		return nil
	}
	t := fc.f.s.tab.Load()
	if t == nil || !t.synced {
		return nil
	}
	host := normalHost(bstr(r.host))
	if !fc.f.tls && t.redirects(host) {
		return nil
	}
	path := r.line[4 : len(r.line)-len(" HTTP/1.1\r\n")]
	if r.head {
		path = path[1:]
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	rt := t.match(host, bstr(path))
	if rt == nil || rt.backend.proxy == nil || len(rt.backend.eps) == 0 {
		return nil
	}
	return rt.backend
}

// bstr views b as a string for a lookup that does not keep it.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parse takes a head the front end serves itself, and reports whether it is one: a GET or
// HEAD of an unescaped origin-form path over HTTP/1.1, one valid Host, well-formed header
// lines, no body, no upgrade, no Expect, no Connection options but close and keep-alive.
func (r *frontReq) parse(head []byte) bool {
	end := bytes.IndexByte(head, '\n')
	line := head[:end+1]
	switch {
	case bytes.HasPrefix(line, []byte("GET /")):
		r.head = false
	case bytes.HasPrefix(line, []byte("HEAD /")):
		r.head = true
	default:
		return false
	}
	if !bytes.HasSuffix(line, []byte(" HTTP/1.1\r\n")) {
		return false
	}
	target := line[bytes.IndexByte(line, ' ')+1 : len(line)-len(" HTTP/1.1\r\n")]
	query := false
	for _, c := range target {
		switch {
		case c <= ' ' || c >= 0x7f || c == '#':
			return false
		case c == '?':
			query = true
		case c == '%' && !query, c == ';' && query: // net/http unescapes paths; ReverseProxy cleans such queries
			return false
		}
	}
	r.line, r.host, r.close, r.n, r.drop = line, nil, false, 0, 0
	for rest := head[end+1 : len(head)-2]; len(rest) > 0; {
		name, value, idx, ok := r.next(&rest)
		if !ok {
			return false
		}
		switch {
		case fold(name, "Host"):
			if r.host != nil || !httpguts.ValidHostHeader(bstr(value)) {
				return false
			}
			r.host = value
		case fold(name, "Content-Length"), fold(name, "Transfer-Encoding"), fold(name, "Upgrade"),
			fold(name, "Expect"), fold(name, "Te"), fold(name, "Trailer"):
			return false
		case fold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				switch tok = trimOWS(tok); {
				case fold(tok, "close"):
					r.close = true
				case fold(tok, "keep-alive"), len(tok) == 0:
				default:
					return false // it names headers to drop: net/http's ReverseProxy does that
				}
			}
			r.drop |= 1 << idx
		case fold(name, "Keep-Alive"), fold(name, "Proxy-Connection"), fold(name, "Proxy-Authorization"),
			fold(name, "X-Forwarded-For"), fold(name, "X-Forwarded-Host"), fold(name, "X-Forwarded-Proto"):
			r.drop |= 1 << idx
		}
	}
	return r.host != nil
}

func fold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var (
	errClientGone = errors.New("the client closed the connection")
	errNoUpgrade  = errors.New("101 Switching Protocols without an upgrade")
)

var bgCtx = context.Background()

// proxy sends the request to the backend and relays its answer; false when the client
// connection must close.
func (fc *frontConn) proxy(b *backend) bool {
	s, r := fc.f.s, &fc.req
	start := time.Now()
	var pc *h1Conn
	wait := func(c *h1Conn) error { return fc.wait(c, start.Add(responseHeaderTimeout)) }
	err := b.each(true, func(addr string) (err error) {
		pc, err = s.h1.exchange(bgCtx, addr, fc.send, wait, fc.gone.Load)
		return err
	})
	if err != nil {
		fc.stopWatch()
		if fc.gone.Load() {
			return false
		}
		s.log.Debug("ingress: backend failed", "host", string(r.host), "request", string(bytes.TrimSpace(r.line)), "err", err)
		fc.writeError(http.StatusBadGateway, "502 bad gateway: the backend did not answer\n")
		return !r.close
	}
	ok := fc.relay(pc, start.Add(responseHeaderTimeout))
	gone := fc.stopWatch()
	return ok && !gone && !r.close
}

// send writes the request head to the backend: the client's request line and headers,
// less hop-by-hop and incoming X-Forwarded-* headers, plus this hop's X-Forwarded-*.
func (fc *frontConn) send(pc *h1Conn) error {
	r, bw := &fc.req, pc.bw
	bw.Write(r.line)
	for i := range r.n {
		if r.drop&(1<<i) == 0 {
			bw.Write(r.lines[i])
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(fc.ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.Write(r.host)
	if fc.f.tls {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	}
	return bw.Flush()
}

// wait blocks until the backend has sent something, flushing what the client has been
// given first. deadline (zero: none) bounds the wait; once it has lasted watchAfter, a
// watcher ends it when the client hangs up.
func (fc *frontConn) wait(pc *h1Conn, deadline time.Time) error {
	if pc.br.Buffered() > 0 {
		return nil
	}
	if fc.bw.Buffered() > 0 {
		if err := fc.bw.Flush(); err != nil {
			fc.gone.Store(true)
			return errClientGone
		}
	}
	if !fc.watching {
		pc.c.SetReadDeadline(time.Now().Add(watchAfter))
		_, err := pc.br.Peek(1)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		fc.startWatch(pc.c)
	}
	pc.c.SetReadDeadline(deadline)
	if fc.gone.Load() { // the watcher's abort may have come before this deadline
		return errClientGone
	}
	_, err := pc.br.Peek(1)
	if err != nil && fc.gone.Load() {
		return errClientGone
	}
	return err
}

// startWatch reads the client in the background: a hang-up aborts the backend read; a
// byte (the next pipelined request) is kept for later.
func (fc *frontConn) startWatch(backend net.Conn) {
	fc.c.SetReadDeadline(time.Time{})
	fc.watching = true
	done := make(chan struct{})
	fc.watchDone = done
	go func() {
		defer close(done)
		n, err := fc.c.Read(fc.in.b[:])
		if n > 0 {
			fc.in.stash = true
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			fc.gone.Store(true)
			backend.SetReadDeadline(aLongTimeAgo)
		}
	}()
}

// stopWatch ends the watcher and reports whether the client hung up.
func (fc *frontConn) stopWatch() bool {
	if fc.watching {
		fc.c.SetReadDeadline(aLongTimeAgo)
		<-fc.watchDone
		fc.c.SetReadDeadline(time.Time{})
		fc.watching = false
	}
	return fc.gone.Load()
}

// relay copies the backend's response to the client and gives the backend connection
// back (or closes it). Heads it does not take apart itself — 1xx, bodies delimited by the
// connection's end, Connection options, heads over the buffer — go through
// http.ReadResponse. false: the client connection must close.
func (fc *frontConn) relay(pc *h1Conn, deadline time.Time) bool {
	h := &fc.resp
	ok, err := readRespHead(pc, deadline, h, &fc.gone)
	if err != nil {
		return fc.relayFailed(pc, err, false)
	}
	if !ok {
		return fc.relaySlow(pc)
	}
	bw := fc.bw
	bw.WriteString("HTTP/1.1")
	bw.Write(h.status[len("HTTP/1.x"):])
	for i := range h.n {
		if h.drop&(1<<i) == 0 {
			bw.Write(h.lines[i])
		}
	}
	if fc.req.close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	pc.br.Discard(h.size)
	switch {
	case fc.req.head || h.code == 204 || h.code == 304:
	case h.chunked:
		err = fc.copyChunked(pc)
	default:
		err = fc.copyN(pc, h.length)
	}
	if err != nil {
		return fc.relayFailed(pc, err, true)
	}
	if h.close {
		pc.c.Close()
	} else {
		fc.f.s.h1.put(pc)
	}
	return true
}

// relayFailed closes the backend connection after a failed response: a 502 when nothing
// was sent yet, a cut connection otherwise.
func (fc *frontConn) relayFailed(pc *h1Conn, err error, started bool) bool {
	pc.c.Close()
	if started || fc.gone.Load() {
		return false
	}
	fc.f.s.log.Debug("ingress: backend failed", "host", string(fc.req.host), "err", err)
	fc.writeError(http.StatusBadGateway, "502 bad gateway: the backend did not answer\n")
	return !fc.req.close
}

// respHead is a parsed response head; slices point into the backend's read buffer.
type respHead struct {
	status []byte // status line with CRLF
	code   int
	headLines
	size    int   // head bytes
	length  int64 // Content-Length, -1 when absent
	chunked bool
	close   bool // the backend closes the connection after this response
}

// readRespHead waits for the whole response head and parses it; false (no error) when it
// is one for http.ReadResponse. gone is set by whoever aborts the read.
func readRespHead(pc *h1Conn, deadline time.Time, h *respHead, gone *atomic.Bool) (bool, error) {
	br := pc.br
	timed := false
	var head []byte
	for {
		n := br.Buffered()
		p, _ := br.Peek(n)
		if i := bytes.Index(p, crlfcrlf); i >= 0 {
			head = p[:i+4]
			break
		}
		if n == br.Size() {
			return false, nil
		}
		if !timed {
			pc.c.SetReadDeadline(deadline)
			if gone.Load() { // an abort that came before this deadline
				return false, errClientGone
			}
			timed = true
		}
		if _, err := br.Peek(n + 1); err != nil {
			return false, err
		}
	}
	return h.parse(head), nil
}

func (h *respHead) parse(head []byte) bool {
	end := bytes.IndexByte(head, '\n')
	line := head[:end+1]
	// "HTTP/1.1 200 OK\r\n": a version we know, three digits, not 1xx.
	if len(line) < len("HTTP/1.1 200\r\n") || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		line[7] != '0' && line[7] != '1' || line[8] != ' ' || line[len(line)-2] != '\r' ||
		len(line) > 14 && line[12] != ' ' {
		return false
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 200 || code > 999 {
		return false
	}
	h.status, h.code, h.size, h.length, h.close, h.chunked, h.n, h.drop = line, code, len(head), -1, line[7] == '0', false, 0, 0
	for rest := head[end+1 : len(head)-2]; len(rest) > 0; {
		name, value, idx, ok := h.next(&rest)
		if !ok {
			return false
		}
		switch {
		case fold(name, "Content-Length"):
			n, err := strconv.ParseInt(bstr(value), 10, 64)
			if err != nil || n < 0 || h.length >= 0 && h.length != n {
				return false
			}
			h.length = n
		case fold(name, "Transfer-Encoding"):
			if !fold(value, "chunked") || h.chunked {
				return false
			}
			h.chunked = true
		case fold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				switch tok = trimOWS(tok); {
				case fold(tok, "close"):
					h.close = true
				case fold(tok, "keep-alive"):
					h.close = false
				case len(tok) == 0:
				default:
					return false
				}
			}
			h.drop |= 1 << idx
		case fold(name, "Keep-Alive"), fold(name, "Proxy-Connection"), fold(name, "Upgrade"),
			fold(name, "Proxy-Authenticate"), fold(name, "Te"):
			h.drop |= 1 << idx
		}
	}
	if h.chunked && h.length >= 0 {
		return false
	}
	// A body that ends with the connection: net/http chunks it.
	return h.chunked || h.length >= 0 || h.code == 204 || h.code == 304
}

// copyN copies n body bytes, flushing the client whenever the backend makes it wait.
func (fc *frontConn) copyN(pc *h1Conn, n int64) error {
	br := pc.br
	for n > 0 {
		if err := fc.wait(pc, time.Time{}); err != nil {
			return err
		}
		k := int(min(int64(br.Buffered()), n))
		p, _ := br.Peek(k)
		if _, err := fc.bw.Write(p); err != nil {
			fc.gone.Store(true)
			return errClientGone
		}
		br.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyChunked copies a chunked body as it is — chunks, last chunk, trailers — reading the
// chunk sizes to find its end.
func (fc *frontConn) copyChunked(pc *h1Conn) error {
	for {
		line, err := fc.backendLine(pc)
		if err != nil {
			return err
		}
		size := line
		if i := bytes.IndexAny(size, ";\r"); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseUint(bstr(trimOWS(size)), 16, 62)
		if err != nil {
			return errors.New("malformed chunk size")
		}
		fc.bw.Write(line)
		pc.br.Discard(len(line))
		if n == 0 {
			break
		}
		if err := fc.copyN(pc, int64(n)); err != nil {
			return err
		}
		if line, err = fc.backendLine(pc); err != nil || len(line) != 2 || line[0] != '\r' {
			return errors.New("malformed chunk end")
		}
		fc.bw.Write(line)
		pc.br.Discard(2)
	}
	for { // trailers, then the empty line
		line, err := fc.backendLine(pc)
		if err != nil {
			return err
		}
		fc.bw.Write(line)
		pc.br.Discard(len(line))
		if len(line) <= 2 {
			return nil
		}
	}
}

// backendLine waits for a whole line from the backend (CRLF-terminated, within the
// buffer) and returns it unread.
func (fc *frontConn) backendLine(pc *h1Conn) ([]byte, error) {
	br := pc.br
	for {
		if err := fc.wait(pc, time.Time{}); err != nil {
			return nil, err
		}
		n := br.Buffered()
		p, _ := br.Peek(n)
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			if i == 0 || p[i-1] != '\r' {
				return nil, errors.New("malformed line")
			}
			return p[:i+1], nil
		}
		if n == br.Size() {
			return nil, errors.New("line too long")
		}
		if _, err := br.Peek(n + 1); err != nil {
			return nil, err
		}
	}
}

// relaySlow relays a response through http.ReadResponse and Response.Write.
func (fc *frontConn) relaySlow(pc *h1Conn) bool {
	method := http.MethodGet
	if fc.req.head {
		method = http.MethodHead
	}
	resp, err := readFinal(pc.br, &http.Request{Method: method})
	if err != nil {
		return fc.relayFailed(pc, err, false)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		return fc.relayFailed(pc, errNoUpgrade, false)
	}
	backendClose := resp.Close
	removeHopHeaders(resp.Header)
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	resp.Close = fc.req.close
	if resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 {
		resp.TransferEncoding = []string{"chunked"} // as net/http answers a body of unknown length
	}
	if resp.Body != http.NoBody {
		// Bodies are not timed; the watcher ends a read the client no longer waits for.
		if !fc.watching {
			fc.startWatch(pc.c)
		}
		pc.c.SetReadDeadline(time.Time{})
		if fc.gone.Load() {
			return fc.relayFailed(pc, errClientGone, false)
		}
		resp.Body = &waitingBody{fc: fc, pc: pc, ReadCloser: resp.Body}
	}
	if err := resp.Write(fc.bw); err != nil {
		return fc.relayFailed(pc, err, true)
	}
	if backendClose {
		pc.c.Close()
	} else {
		fc.f.s.h1.put(pc)
	}
	return true
}

// waitingBody flushes the client before reading a backend that has nothing buffered. A
// watcher runs meanwhile: a client hanging up aborts the read.
type waitingBody struct {
	fc *frontConn
	pc *h1Conn
	io.ReadCloser
}

func (b *waitingBody) Read(p []byte) (int, error) {
	if b.pc.br.Buffered() == 0 && b.fc.bw.Buffered() > 0 {
		if err := b.fc.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return b.ReadCloser.Read(p)
}

// removeHopHeaders removes hop-by-hop headers and those Connection names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range bytes.SplitSeq([]byte(v), []byte(",")) {
			if tok = trimOWS(tok); len(tok) > 0 {
				h.Del(string(tok))
			}
		}
	}
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
}

// writeError answers with a short text, as http.Error does.
func (fc *frontConn) writeError(code int, text string) {
	bw := fc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: ")
	bw.WriteString(time.Now().UTC().Format(http.TimeFormat))
	bw.WriteString("\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(text)))
	if fc.req.close {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if !fc.req.head {
		bw.WriteString(text)
	}
}

// handoff gives the connection, with what was read from it, to net/http's server.
func (fc *frontConn) handoff() {
	if fc.bw.Flush() != nil { // answers to earlier pipelined requests go first
		return
	}
	p, _ := fc.br.Peek(fc.br.Buffered())
	prefix := bytes.Clone(p)
	if fc.in.stash {
		prefix = append(prefix, fc.in.b[0])
	}
	fc.c.SetDeadline(time.Time{})
	fc.gave = true
	fc.f.handoffs.Add(1)
	fc.f.handoff.push(&prefixConn{Conn: fc.c, prefix: prefix})
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close after an error response, so the client reads it.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connQueue is the listener net/http's server accepts handed-off connections from.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
