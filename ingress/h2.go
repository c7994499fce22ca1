package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 connections are served here rather than by net/http's server, whose handler
// waits for each response's HEADERS frame to be written and flushed before its DATA frame
// follows (two TLS records and two writes per response, and goroutine hops for each).
// Frames are read and written with x/net/http2's Framer (frame and header-block limits,
// CONTINUATION assembly, HPACK). A bodiless GET or HEAD routed to a backend with ready
// endpoints is proxied as in the HTTP/1.1 front end: its head written straight to a
// kept-alive backend connection, the answer sent back as one HEADERS and DATA frames in
// one write. Every other stream runs Server.ServeHTTP (ReverseProxy) behind an
// http.ResponseWriter.
const (
	h2MaxStreams  = 250     // concurrent streams per connection, as net/http
	h2StreamWin   = 1 << 20 // receive window per stream (request bodies)
	h2ConnWin     = 1 << 20 // receive window per connection
	h2WriteBuf    = 16 << 10
	h2ReadBuf     = 16 << 10
	h2MaxDataSize = 16 << 10 // frame payload we send: the least every peer takes
)

// h2Conn is one HTTP/2 connection.
type h2Conn struct {
	s      *Server
	c      *tls.Conn
	tls    tls.ConnectionState
	ip     string
	remote string
	fr     *http2.Framer

	// Writes: frames are written under wmu and flushed by the last writer out.
	wmu      sync.Mutex
	wcond    *sync.Cond // send windows grew, or the connection closed
	writers  atomic.Int32
	bw       *bufio.Writer
	connSend int64 // connection send window
	initSend int64 // the peer's initial stream window
	wErr     error // the first write error; nothing is written after it
	flushCh  chan struct{}
	done     chan struct{} // closed when the connection ends
	closed   bool

	mu       sync.Mutex
	streams  map[uint32]*h2Stream
	maxID    uint32
	goAway   bool // no new streams
	handlers sync.WaitGroup
	served   bool
	busy     atomic.Int32 // open streams
	recvConn atomic.Int64 // connection receive window left
	lastRead atomic.Int64 // unix nanoseconds of the last frame read
	idle     *time.Timer
}

// h2Stream is one request.
type h2Stream struct {
	id     uint32
	send   int64 // send window (under wmu)
	ctx    context.Context
	cancel context.CancelFunc
	body   *h2Body                // nil when the request has no body
	done   bool                   // END_STREAM sent or RST (under wmu)
	gone   atomic.Bool            // the client reset the stream or left
	pc     atomic.Pointer[h1Conn] // the backend connection the fast path waits on
}

// abort ends the stream's work: its context, and a wait on its backend connection.
func (st *h2Stream) abort() {
	st.gone.Store(true)
	st.cancel()
	if pc := st.pc.Load(); pc != nil {
		pc.c.SetReadDeadline(aLongTimeAgo)
	}
}

func (s *Server) serveH2(c *tls.Conn) {
	sc := &h2Conn{
		s: s, c: c, tls: c.ConnectionState(), remote: c.RemoteAddr().String(),
		bw: bufio.NewWriterSize(c, h2WriteBuf), streams: map[uint32]*h2Stream{},
		connSend: 65535, initSend: 65535,
	}
	sc.recvConn.Store(h2ConnWin)
	sc.flushCh, sc.done = make(chan struct{}, 1), make(chan struct{})
	sc.wcond = sync.NewCond(&sc.wmu)
	if host, _, err := net.SplitHostPort(sc.remote); err == nil {
		sc.ip = host
	}
	sc.fr = http2.NewFramer(sc.bw, bufio.NewReaderSize(c, h2ReadBuf)) // frames are read 9 bytes, then the rest
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.fr.MaxHeaderListSize = uint32(s.maxHeaderBytes)
	if !s.trackH2(sc, true) {
		c.Close()
		return
	}
	defer s.trackH2(sc, false)
	sc.serve()
}

func (sc *h2Conn) serve() {
	go sc.flusher()
	defer close(sc.done)
	defer func() {
		sc.c.Close()
		sc.mu.Lock()
		for _, st := range sc.streams {
			st.abort()
			if st.body != nil {
				st.body.fail(errClientGone)
			}
		}
		sc.mu.Unlock()
		sc.wmu.Lock()
		sc.closed = true
		sc.wcond.Broadcast()
		sc.wmu.Unlock()
		sc.handlers.Wait()
		if !sc.served {
			sc.s.stats.incomplete.note(sc.remote)
		}
	}()
	sc.c.SetReadDeadline(time.Now().Add(sc.s.readHeaderTimeout))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(sc.c, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	sc.write(func() error {
		if err := sc.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWin},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(sc.s.maxHeaderBytes)},
		); err != nil {
			return err
		}
		return sc.fr.WriteWindowUpdate(0, h2ConnWin-65535)
	})
	sc.c.SetReadDeadline(time.Time{})
	// A connection with no open stream and no frame for the idle time is closed. (Read
	// deadlines would cut a frame in half, and long answers need no frames from the
	// client.)
	sc.lastRead.Store(time.Now().UnixNano())
	sc.idle = time.AfterFunc(sc.s.idleTime, sc.checkIdle)
	defer sc.idle.Stop()
	for {
		f, err := sc.fr.ReadFrame()
		sc.lastRead.Store(time.Now().UnixNano())
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				sc.resetStream(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				sc.goAwayNow(http2.ErrCode(ce))
			}
			return
		}
		if err := sc.frame(f); err != nil {
			sc.goAwayNow(*err)
			return
		}
	}
}

// frame handles one frame; a connection error ends the connection.
func (sc *h2Conn) frame(f http2.Frame) *http2.ErrCode {
	protocol := func() *http2.ErrCode { c := http2.ErrCodeProtocol; return &c }
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		var bad *http2.ErrCode
		streams := sc.streamsSnapshot() // sc.mu before sc.wmu, as everywhere
		sc.wmu.Lock()
		f.ForeachSetting(func(s http2.Setting) error {
			if s.Valid() != nil {
				c := http2.ErrCodeProtocol
				bad = &c
				return nil
			}
			switch s.ID {
			case http2.SettingInitialWindowSize:
				delta := int64(s.Val) - sc.initSend
				sc.initSend = int64(s.Val)
				for _, st := range streams {
					st.send += delta
				}
			}
			return nil
		})
		sc.wcond.Broadcast()
		sc.wmu.Unlock()
		if bad != nil {
			return bad
		}
		sc.write(sc.fr.WriteSettingsAck)
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			sc.write(func() error { return sc.fr.WritePing(true, data) })
		}
	case *http2.WindowUpdateFrame:
		sc.wmu.Lock()
		if f.StreamID == 0 {
			sc.connSend += int64(f.Increment)
			if sc.connSend > 1<<31-1 {
				sc.wmu.Unlock()
				c := http2.ErrCodeFlowControl
				return &c
			}
		} else if st := sc.stream(f.StreamID); st != nil {
			st.send += int64(f.Increment)
		}
		sc.wcond.Broadcast()
		sc.wmu.Unlock()
	case *http2.MetaHeadersFrame:
		return sc.headers(f)
	case *http2.DataFrame:
		return sc.data(f)
	case *http2.RSTStreamFrame:
		if st := sc.stream(f.StreamID); st != nil {
			st.abort()
			if st.body != nil {
				st.body.fail(errors.New("the client reset the stream"))
			}
			sc.wmu.Lock()
			st.done = true
			sc.wcond.Broadcast()
			sc.wmu.Unlock()
		}
	case *http2.GoAwayFrame:
		sc.mu.Lock()
		sc.goAway = true
		sc.mu.Unlock()
	case *http2.PushPromiseFrame:
		return protocol()
	}
	return nil // PRIORITY, unknown frames
}

func (sc *h2Conn) stream(id uint32) *h2Stream {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.streams[id]
}

func (sc *h2Conn) streamsSnapshot() []*h2Stream {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := make([]*h2Stream, 0, len(sc.streams))
	for _, st := range sc.streams {
		out = append(out, st)
	}
	return out
}

// headers opens a stream.
func (sc *h2Conn) headers(f *http2.MetaHeadersFrame) *http2.ErrCode {
	id := f.StreamID
	sc.mu.Lock()
	if st := sc.streams[id]; st != nil {
		sc.mu.Unlock()
		if st.body == nil || st.body.ended() { // the client had ended its side (RFC 9113 5.1)
			st.abort()
			sc.endStream(st, http2.ErrCodeStreamClosed)
			return nil
		}
		if !f.StreamEnded() { // trailers must end the stream
			c := http2.ErrCodeProtocol
			return &c
		}
		st.body.fail(io.EOF) // trailers of a request body end it
		return nil
	}
	if id%2 == 0 {
		sc.mu.Unlock()
		c := http2.ErrCodeProtocol
		return &c
	}
	if id <= sc.maxID { // a stream that has ended (late trailers, say)
		sc.mu.Unlock()
		sc.resetStream(id, http2.ErrCodeStreamClosed)
		return nil
	}
	sc.maxID = id
	if sc.goAway || len(sc.streams) >= h2MaxStreams {
		sc.mu.Unlock()
		sc.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), http.LocalAddrContextKey, sc.c.LocalAddr()))
	st := &h2Stream{id: id, ctx: ctx, cancel: cancel}
	sc.wmu.Lock()
	st.send = sc.initSend
	sc.wmu.Unlock()
	if !f.StreamEnded() {
		st.body = &h2Body{sc: sc, st: st}
		st.body.cond = sync.NewCond(&st.body.mu)
	}
	sc.streams[id] = st
	sc.served = true
	sc.mu.Unlock()
	sc.busy.Add(1)

	if f.Truncated { // headers over the limit: 431, as net/http answers
		sc.handlers.Add(1)
		sc.s.workers.run(func() {
			defer sc.handlers.Done()
			sc.answer(st, http.StatusRequestHeaderFieldsTooLarge, "431 request header fields too large")
		})
		return nil
	}
	rq, err := newH2Request(f)
	if err != nil {
		sc.endStream(st, http2.ErrCodeProtocol)
		return nil
	}
	sc.handlers.Add(1)
	sc.s.workers.run(func() { sc.run(st, rq) })
	return nil
}

// answer ends a stream with a short text answer.
func (sc *h2Conn) answer(st *h2Stream, code int, text string) {
	w := newH2Writer(sc, st, false)
	http.Error(w, text, code)
	w.finish()
}

// h2Request is a request's head, from its header block.
type h2Request struct {
	method, scheme, authority, path string
	fields                          []hpack.HeaderField // regular fields
}

func newH2Request(f *http2.MetaHeadersFrame) (*h2Request, error) {
	rq := &h2Request{
		method: f.PseudoValue("method"), scheme: f.PseudoValue("scheme"),
		authority: f.PseudoValue("authority"), path: f.PseudoValue("path"),
		fields: append([]hpack.HeaderField(nil), f.RegularFields()...),
	}
	if rq.method == "" || rq.method != "CONNECT" && (rq.path == "" || rq.scheme == "") || f.PseudoValue("protocol") != "" {
		return nil, errors.New("missing or extra pseudo-headers")
	}
	for _, hf := range rq.fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, fmt.Errorf("connection-specific header %q", hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
		case "host":
			if rq.authority == "" {
				rq.authority = hf.Value
			}
		}
	}
	return rq, nil
}

// run serves one stream on its own goroutine.
func (sc *h2Conn) run(st *h2Stream, rq *h2Request) {
	defer sc.handlers.Done()
	defer sc.endStream(st, http2.ErrCodeInternal) // when nothing ended it
	defer func() {
		if p := recover(); p != nil {
			sc.s.log.Error("ingress: HTTP/2 stream panicked", "panic", p)
			sc.endStream(st, http2.ErrCodeInternal)
		}
	}()
	if st.body == nil && (rq.method == http.MethodGet || rq.method == http.MethodHead) {
		if b := sc.route(rq); b != nil {
			sc.proxy(st, rq, b)
			return
		}
	}
	sc.handle(st, rq)
}

// route finds the backend of a request the fast path takes, or nil.
func (sc *h2Conn) route(rq *h2Request) *backend {
	path, query, _ := strings.Cut(rq.path, "?")
	// Escaped paths are unescaped to route (net/http's way); ReverseProxy cleans queries
	// with semicolons; fragments are not sent.
	if strings.ContainsAny(path, "%#") || strings.ContainsAny(query, ";#") || !strings.HasPrefix(path, "/") ||
		!httpguts.ValidHostHeader(rq.authority) {
		return nil
	}
	for _, hf := range rq.fields {
		if hf.Name == "te" || hf.Name == "expect" || hf.Name == "content-length" {
			return nil
		}
		if !httpguts.ValidHeaderFieldValue(hf.Value) {
			return nil
		}
	}
	t := sc.s.tab.Load()
	if t == nil || !t.synced {
		return nil
	}
	rt := t.match(normalHost(rq.authority), path)
	if rt == nil || rt.backend.proxy == nil || len(rt.backend.eps) == 0 {
		return nil
	}
	return rt.backend
}

// proxy sends a bodiless GET or HEAD to the backend as HTTP/1.1 and the answer back.
func (sc *h2Conn) proxy(st *h2Stream, rq *h2Request, b *backend) {
	s := sc.s
	var pc *h1Conn
	send := func(c *h1Conn) error { st.pc.Store(c); return sc.send(c, rq) }
	wait := func(c *h1Conn) error { return waitStream(st, c, time.Now().Add(responseHeaderTimeout)) }
	left := func() bool { return st.ctx.Err() != nil }
	err := b.each(true, func(addr string) (err error) {
		pc, err = s.h1.exchange(st.ctx, addr, send, wait, left)
		return err
	})
	if err != nil {
		if st.ctx.Err() == nil {
			s.log.Debug("ingress: backend failed", "host", rq.authority, "path", rq.path, "err", err)
			w := newH2Writer(sc, st, rq.method == http.MethodHead)
			http.Error(w, "502 bad gateway: the backend did not answer", http.StatusBadGateway)
			w.finish()
		}
		sc.endStream(st, http2.ErrCodeCancel)
		return
	}
	ok := sc.relay(st, rq, pc)
	st.pc.Store(nil)
	gone := st.gone.Load() // after the Store: an abort either sees nil or set gone first
	sc.endStream(st, 0)
	if gone || !ok {
		pc.c.Close()
	} else {
		s.h1.put(pc)
	}
}

// send writes the request head to the backend: method, path, Host, the client's fields
// less incoming X-Forwarded-* (cookies joined into one header, as HTTP/1.1 wants), and
// this hop's X-Forwarded-*.
func (sc *h2Conn) send(pc *h1Conn, rq *h2Request) error {
	bw := pc.bw
	bw.WriteString(rq.method)
	bw.WriteByte(' ')
	bw.WriteString(rq.path)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(rq.authority)
	bw.WriteString("\r\n")
	cookies := 0
	for _, hf := range rq.fields {
		switch hf.Name {
		case "host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "proxy-authorization":
			continue
		case "cookie":
			cookies++
			continue
		}
		bw.WriteString(hf.Name)
		bw.WriteString(": ")
		bw.WriteString(hf.Value)
		bw.WriteString("\r\n")
	}
	if cookies > 0 { // HTTP/2 sends cookies as separate fields; HTTP/1.1 wants one header
		bw.WriteString("cookie: ")
		n := 0
		for _, hf := range rq.fields {
			if hf.Name == "cookie" {
				if n > 0 {
					bw.WriteString("; ")
				}
				bw.WriteString(hf.Value)
				n++
			}
		}
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(sc.ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(rq.authority)
	bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	return bw.Flush()
}

// waitStream waits for the backend's first byte until deadline, or until the stream is
// aborted.
func waitStream(st *h2Stream, pc *h1Conn, deadline time.Time) error {
	if pc.br.Buffered() > 0 {
		return nil
	}
	pc.c.SetReadDeadline(deadline)
	if st.gone.Load() { // an abort that came before this deadline
		return errClientGone
	}
	_, err := pc.br.Peek(1)
	if err != nil && st.gone.Load() {
		return errClientGone
	}
	return err
}

// relay sends the backend's answer on the stream; false when the backend connection
// cannot be reused.
func (sc *h2Conn) relay(st *h2Stream, rq *h2Request, pc *h1Conn) bool {
	head := rq.method == http.MethodHead
	var h respHead
	ok, err := readRespHeadCtx(st, pc, time.Now().Add(responseHeaderTimeout), &h)
	if err != nil {
		sc.badGateway(st, head, err)
		return false
	}
	if !ok {
		return sc.relaySlow(st, head, pc)
	}
	bodiless := head || h.code == 204 || h.code == 304
	bp := respBlock(&h)
	defer blockPool.Put(bp)
	block := *bp
	pc.br.Discard(h.size)
	switch {
	case bodiless:
		sc.writeHeaders(st, block, true, nil)
	case !h.chunked && int64(pc.br.Buffered()) >= h.length && h.length <= int64(h2MaxDataSize):
		// The whole answer is here: HEADERS and DATA in one write.
		p, _ := pc.br.Peek(int(h.length))
		if err := sc.writeHeaders(st, block, true, p); err != nil {
			return false
		}
		pc.br.Discard(int(h.length))
	default:
		if err := sc.writeHeaders(st, block, false, nil); err != nil {
			return false
		}
		pc.c.SetReadDeadline(time.Time{}) // bodies are not timed
		if st.gone.Load() {
			return false
		}
		var body io.Reader = io.LimitReader(pc.br, h.length)
		if h.chunked {
			body = httputil.NewChunkedReader(pc.br)
		}
		if err := sc.copyBody(st, body); err != nil {
			sc.endStream(st, http2.ErrCodeCancel)
			return false
		}
		var trailers []byte
		if h.chunked {
			if trailers, err = readTrailers(pc.br); err != nil {
				sc.endStream(st, http2.ErrCodeCancel)
				return false
			}
		}
		if err := sc.finishStream(st, trailers); err != nil {
			return false
		}
	}
	return !h.close
}

// readRespHeadCtx reads a response head like the HTTP/1.1 front end, with no client to
// flush.
func readRespHeadCtx(st *h2Stream, pc *h1Conn, deadline time.Time, h *respHead) (bool, error) {
	return readRespHead(pc, deadline, h, &st.gone)
}

// respBlock encodes the response's status and header lines as an HTTP/2 header block:
// names lower-cased; hop-by-hop headers, Transfer-Encoding and Trailer dropped.
func respBlock(h *respHead) *[]byte {
	bp := blockPool.Get().(*[]byte)
	b := appendStatus((*bp)[:0], h.code)
	for i := range h.n {
		if h.drop&(1<<i) != 0 {
			continue
		}
		line := h.lines[i]
		colon := bytes.IndexByte(line, ':')
		name := line[:colon]
		if fold(name, "Transfer-Encoding") || fold(name, "Trailer") {
			continue
		}
		b = appendFieldLower(b, name, trimOWS(line[colon+1:len(line)-2]))
	}
	*bp = b
	return bp
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// readTrailers reads the trailer lines after a chunked body's last chunk.
func readTrailers(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return out, nil
		}
		name, value, ok := strings.Cut(s, ":")
		if !ok {
			return nil, errors.New("malformed trailer")
		}
		out = appendField(out, strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value))
	}
}

// relaySlow relays an answer whose head the fast parser leaves to http.ReadResponse.
func (sc *h2Conn) relaySlow(st *h2Stream, head bool, pc *h1Conn) bool {
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	pc.c.SetReadDeadline(time.Now().Add(responseHeaderTimeout))
	if st.gone.Load() {
		return false
	}
	resp, err := readFinal(pc.br, &http.Request{Method: method})
	if err != nil {
		sc.badGateway(st, head, err)
		return false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		sc.badGateway(st, head, errNoUpgrade)
		return false
	}
	pc.c.SetReadDeadline(time.Time{})
	if st.gone.Load() {
		return false
	}
	removeHopHeaders(resp.Header)
	w := newH2Writer(sc, st, head)
	for k, v := range resp.Header {
		w.hdr[k] = v
	}
	for k := range resp.Trailer {
		w.hdr.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(flushEach{w}, resp.Body)
	if err != nil {
		sc.endStream(st, http2.ErrCodeCancel)
		return false
	}
	for k, v := range resp.Trailer {
		w.hdr[k] = v
	}
	w.finish()
	return !resp.Close
}

// flushEach writes through to the stream at once (bodies of unknown length stream).
type flushEach struct{ w *h2Writer }

func (f flushEach) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.FlushError()
	}
	return n, err
}

func (sc *h2Conn) badGateway(st *h2Stream, head bool, err error) {
	if st.gone.Load() {
		sc.endStream(st, http2.ErrCodeCancel)
		return
	}
	sc.s.log.Debug("ingress: backend failed", "err", err)
	w := newH2Writer(sc, st, head)
	http.Error(w, "502 bad gateway: the backend did not answer", http.StatusBadGateway)
	w.finish()
}

// copyBody sends a body as DATA frames, as the backend delivers it.
func (sc *h2Conn) copyBody(st *h2Stream, body io.Reader) error {
	buf := make([]byte, h2MaxDataSize)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if werr := sc.writeData(st, buf[:n], false); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkIdle closes the connection when it has been idle for the idle time.
func (sc *h2Conn) checkIdle() {
	idleFor := time.Since(time.Unix(0, sc.lastRead.Load()))
	if sc.busy.Load() == 0 && idleFor >= sc.s.idleTime {
		sc.goAwayNow(http2.ErrCodeNo)
		sc.c.Close()
		return
	}
	sc.idle.Reset(max(sc.s.idleTime-idleFor, time.Second))
}

// workerPool runs stream handlers on goroutines that outlive a stream, so the stacks they
// grew are used again (a new goroutine per stream spends more on growing its stack than
// on the stream).
type workerPool struct{ ch chan func() }

const workerIdle = 10 * time.Second

func (p *workerPool) run(f func()) {
	select {
	case p.ch <- f:
	default:
		go p.work(f)
	}
}

func (p *workerPool) work(f func()) {
	f()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		select {
		case f := <-p.ch:
			f()
			t.Reset(workerIdle)
		case <-t.C:
			return
		}
	}
}

// --- writing ---

// write runs fn with the connection's writer; the last writer out flushes.
func (sc *h2Conn) write(fn func() error) error {
	sc.writers.Add(1)
	sc.wmu.Lock()
	defer sc.unlockW()
	if sc.wErr != nil {
		return sc.wErr
	}
	if err := fn(); err != nil {
		sc.wErr = err
		sc.c.Close()
		return err
	}
	return nil
}

func (sc *h2Conn) unlockW() {
	if sc.writers.Add(-1) == 0 && sc.wErr == nil && sc.bw.Buffered() > 0 {
		select { // the flusher writes it, after the streams that can run now add theirs
		case sc.flushCh <- struct{}{}:
		default:
		}
	}
	sc.wmu.Unlock()
}

// flusher writes what the streams have written, once per scheduling round: answers that
// become ready together (one poll of the backends) leave in one TLS record and one write.
func (sc *h2Conn) flusher() {
	for {
		select {
		case <-sc.flushCh:
		case <-sc.done:
			return
		}
		runtime.Gosched()
		sc.wmu.Lock()
		if sc.wErr == nil && sc.bw.Buffered() > 0 {
			if err := sc.bw.Flush(); err != nil {
				sc.wErr = err
				sc.c.Close()
			}
		}
		sc.wmu.Unlock()
	}
}

var statusText [600]string

func statusString(code int) string {
	if code >= 0 && code < len(statusText) {
		if s := statusText[code]; s != "" {
			return s
		}
	}
	return strconv.Itoa(code)
}

func init() {
	for c := 100; c < len(statusText); c++ {
		statusText[c] = strconv.Itoa(c)
	}
}

// writeHeaders sends a header block as HEADERS (and CONTINUATION) frames and, with data,
// a DATA frame right after it in the same write. end: the stream ends with these.
func (sc *h2Conn) writeHeaders(st *h2Stream, block []byte, end bool, data []byte) error {
	return sc.write(func() error {
		if st.done {
			return nil
		}
		first := true
		for first || len(block) > 0 {
			n := min(len(block), h2MaxDataSize)
			frag, rest := block[:n], block[n:]
			var err error
			if first {
				err = sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: frag,
					EndStream: end && len(data) == 0, EndHeaders: len(rest) == 0})
			} else {
				err = sc.fr.WriteContinuation(st.id, len(rest) == 0, frag)
			}
			if err != nil {
				return err
			}
			block, first = rest, false
		}
		if len(data) == 0 {
			return nil
		}
		// data fits one frame and the initial windows, which only a peer that lowered
		// them would refuse: then it waits like any other DATA.
		if int64(len(data)) > min(sc.connSend, st.send) {
			return sc.dataLocked(st, data, end)
		}
		sc.connSend -= int64(len(data))
		st.send -= int64(len(data))
		return sc.fr.WriteData(st.id, end, data)
	})
}

// writeData sends data as DATA frames within the send windows, waiting for the peer's
// WINDOW_UPDATEs.
func (sc *h2Conn) writeData(st *h2Stream, data []byte, end bool) error {
	return sc.write(func() error { return sc.dataLocked(st, data, end) })
}

var errStreamDone = errors.New("stream closed")

func (sc *h2Conn) dataLocked(st *h2Stream, data []byte, end bool) error {
	for {
		if st.done || sc.closed {
			return errStreamDone
		}
		if len(data) == 0 {
			if end {
				return sc.fr.WriteData(st.id, true, nil)
			}
			return nil
		}
		n := int64(min(len(data), h2MaxDataSize))
		n = min(n, sc.connSend, st.send)
		if n <= 0 {
			// Flush what is written, then wait for the window, not counted as a writer
			// (the others flush for themselves meanwhile).
			if err := sc.bw.Flush(); err != nil {
				return err
			}
			sc.writers.Add(-1)
			sc.wcond.Wait()
			sc.writers.Add(1)
			continue
		}
		if err := sc.fr.WriteData(st.id, end && int(n) == len(data), data[:n]); err != nil {
			return err
		}
		sc.connSend -= n
		st.send -= n
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

// finishStream ends the stream: trailers, or an empty DATA frame with END_STREAM.
func (sc *h2Conn) finishStream(st *h2Stream, trailers []byte) error {
	if len(trailers) > 0 {
		return sc.writeHeaders(st, trailers, true, nil)
	}
	return sc.writeData(st, nil, true)
}

// endStream forgets a stream; code != 0 resets it unless it had ended.
func (sc *h2Conn) endStream(st *h2Stream, code http2.ErrCode) {
	sc.wmu.Lock()
	wasDone := st.done
	st.done = true
	sc.wmu.Unlock()
	if !wasDone && (code != 0 || st.body != nil && !st.body.ended()) {
		// A reset, or (after a complete answer) "stop sending the body": NO_ERROR.
		sc.write(func() error { return sc.fr.WriteRSTStream(st.id, code) })
	}
	st.cancel()
	if st.body != nil {
		st.body.fail(errStreamDone)
		st.body.returnUnread()
	}
	sc.mu.Lock()
	if _, ok := sc.streams[st.id]; ok {
		delete(sc.streams, st.id)
		sc.busy.Add(-1)
	}
	sc.mu.Unlock()
}

func (sc *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	sc.write(func() error { return sc.fr.WriteRSTStream(id, code) })
}

func (sc *h2Conn) goAwayNow(code http2.ErrCode) {
	sc.mu.Lock()
	last := sc.maxID
	sc.mu.Unlock()
	sc.write(func() error { // at once: the connection may close right after
		if err := sc.fr.WriteGoAway(last, code, nil); err != nil {
			return err
		}
		return sc.bw.Flush()
	})
}

// --- request bodies ---

// data delivers a DATA frame to its stream's body.
func (sc *h2Conn) data(f *http2.DataFrame) *http2.ErrCode {
	n := int64(f.Length)
	if sc.recvConn.Add(-n) < 0 {
		c := http2.ErrCodeFlowControl
		return &c
	}
	st := sc.stream(f.StreamID)
	if st == nil || st.body == nil {
		sc.returnConn(n) // a stream already ended: its window comes back at once
		if f.StreamID > sc.maxID {
			c := http2.ErrCodeProtocol
			return &c
		}
		return nil
	}
	if pad := n - int64(len(f.Data())); pad > 0 {
		sc.returnConn(pad)
		sc.write(func() error { return sc.fr.WriteWindowUpdate(st.id, uint32(pad)) })
	}
	if !st.body.put(f.Data(), f.StreamEnded()) {
		sc.returnConn(int64(len(f.Data())))
		sc.endStream(st, http2.ErrCodeFlowControl)
		return nil
	}
	return nil
}

// returnConn gives back connection receive window (reader goroutine, or a body reader).
func (sc *h2Conn) returnConn(n int64) {
	sc.recvConn.Add(n)
	sc.write(func() error { return sc.fr.WriteWindowUpdate(0, uint32(n)) })
}

// h2Body is a request body: what the client sent and the handler has not read.
type h2Body struct {
	sc     *h2Conn
	st     *h2Stream
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	err    error // io.EOF at END_STREAM
	closed bool
	held   int64 // bytes received and not yet given back as window
}

// put adds received data; false when the client sent more than its window.
func (b *h2Body) put(p []byte, end bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		b.mu.Unlock()
		b.sc.returnConn(int64(len(p)))
		b.mu.Lock()
		return true
	}
	if int64(len(b.buf)+len(p)) > h2StreamWin {
		return false
	}
	b.buf = append(b.buf, p...)
	b.held += int64(len(p))
	if end {
		b.err = io.EOF
	}
	b.cond.Broadcast()
	return true
}

func (b *h2Body) ended() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

func (b *h2Body) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) == 0 && b.err == nil {
		b.cond.Wait()
	}
	if len(b.buf) == 0 {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	b.held -= int64(n)
	b.mu.Unlock()
	// The window comes back as the handler reads.
	b.sc.returnConn(int64(n))
	if b.st != nil {
		b.sc.write(func() error { return b.sc.fr.WriteWindowUpdate(b.st.id, uint32(n)) })
	}
	return n, nil
}

func (b *h2Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.returnUnread()
	return nil
}

// returnUnread gives back the connection window of data nobody will read.
func (b *h2Body) returnUnread() {
	b.mu.Lock()
	n := b.held
	b.held, b.buf = 0, nil
	b.mu.Unlock()
	if n > 0 {
		b.sc.returnConn(n)
	}
}

// --- every other stream: Server.ServeHTTP ---

// handle runs the stream through Server.ServeHTTP.
func (sc *h2Conn) handle(st *h2Stream, rq *h2Request) {
	if rq.method == http.MethodConnect { // an ingress is not a forward proxy
		sc.answer(st, http.StatusMethodNotAllowed, "405 method not allowed: CONNECT")
		return
	}
	u, err := url.ParseRequestURI(rq.path)
	if err != nil {
		sc.endStream(st, http2.ErrCodeProtocol)
		return
	}
	hdr := make(http.Header, len(rq.fields))
	var cookies []string
	for _, hf := range rq.fields {
		switch hf.Name {
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		case "host": // :authority is the host
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	tlsState := sc.tls
	req := (&http.Request{
		Method: rq.method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: hdr, Host: rq.authority,
		RemoteAddr: sc.remote, RequestURI: rq.path, TLS: &tlsState, Body: http.NoBody, ContentLength: 0,
	}).WithContext(st.ctx)
	if st.body != nil {
		req.Body = st.body
		req.ContentLength = -1
		if cl := hdr.Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				req.ContentLength = n
			}
		}
	}
	w := newH2Writer(sc, st, rq.method == http.MethodHead)
	sc.s.ServeHTTP(w, req)
	w.finish()
}

// h2Writer is the http.ResponseWriter of a stream.
type h2Writer struct {
	sc       *h2Conn
	st       *h2Stream
	head     bool
	hdr      http.Header
	status   int
	sent     bool // HEADERS sent
	buf      []byte
	failed   bool
	trailer  []string // declared before the headers went out
	declared bool     // trailer is filled in
}

func newH2Writer(sc *h2Conn, st *h2Stream, head bool) *h2Writer {
	return &h2Writer{sc: sc, st: st, head: head, hdr: http.Header{}}
}

func (w *h2Writer) Header() http.Header { return w.hdr }

func (w *h2Writer) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.sc.writeHeaders(w.st, headerBlock(code, w.hdr, nil), false, nil) // informational
		return
	}
	w.status = code
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errStreamDone
	}
	if w.head || w.status == 204 || w.status == 304 {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= h2MaxDataSize {
		return len(p), w.FlushError()
	}
	return len(p), nil
}

func (w *h2Writer) Flush() { w.FlushError() }

func (w *h2Writer) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.sendHeaders(false, nil); err != nil {
		return err
	}
	if len(w.buf) > 0 {
		err := w.sc.writeData(w.st, w.buf, false)
		w.buf = w.buf[:0]
		if err != nil {
			w.failed = true
			return err
		}
	}
	return nil
}

// sendHeaders sends the HEADERS frame once, with data in the same write.
func (w *h2Writer) sendHeaders(end bool, data []byte) error {
	if w.sent {
		return nil
	}
	w.sent = true
	w.declareTrailers()
	if _, ok := w.hdr["Date"]; !ok {
		w.hdr["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	err := w.sc.writeHeaders(w.st, headerBlock(w.status, w.hdr, w.trailer), end, data)
	if err != nil {
		w.failed = true
	}
	return err
}

// declareTrailers notes the trailers the handler announced in its "Trailer" header,
// before the headers go out.
func (w *h2Writer) declareTrailers() {
	if w.declared {
		return
	}
	w.declared = true
	for _, v := range w.hdr["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				w.trailer = append(w.trailer, http.CanonicalHeaderKey(k))
			}
		}
	}
}

// headerBlock encodes a status and header map as an HTTP/2 header block, less
// connection-specific headers, trailers and the "Trailer:" prefix keys (sent at the end).
func headerBlock(status int, h http.Header, trailers []string) []byte {
	b := appendStatus(nil, status)
	for k, vs := range h {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Trailer":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || slices.Contains(trailers, k) {
			continue
		}
		name := strings.ToLower(k)
		for _, v := range vs {
			b = appendField(b, name, v)
		}
	}
	return b
}

// finish sends what the handler left: headers, data, trailers, END_STREAM.
func (w *h2Writer) finish() {
	defer w.sc.endStream(w.st, 0)
	if w.failed {
		return
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.declareTrailers()
	var trailers []byte
	for k, vs := range w.hdr {
		name, isPrefixed := strings.CutPrefix(k, http.TrailerPrefix)
		if !isPrefixed && !slices.Contains(w.trailer, k) {
			continue
		}
		for _, v := range vs {
			trailers = appendField(trailers, strings.ToLower(name), v)
		}
	}
	if !w.sent && len(trailers) == 0 && len(w.buf) <= h2MaxDataSize {
		w.sendHeaders(true, w.buf) // one HEADERS frame, the data in the same write
		return
	}
	if w.sendHeaders(false, nil) != nil {
		return
	}
	if len(trailers) > 0 {
		if w.FlushError() == nil {
			w.sc.writeHeaders(w.st, trailers, true, nil)
		}
		return
	}
	w.sc.writeData(w.st, w.buf, true)
}
