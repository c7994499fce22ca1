package ingress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Transport is a lean HTTP/1.1 client for the common proxied request: an idempotent
// method, no body, no upgrade, no Expect. The request is written and the response read on the caller's
// goroutine over a kept-alive connection — no goroutines or channels per connection, as
// http.Transport has — which is most of what a proxy spends beyond its syscalls. Every
// other request goes to the standard transport.
type h1Transport struct {
	dialer   net.Dialer
	fallback *http.Transport

	mu   sync.Mutex
	idle map[string][]*h1Conn // endpoint address → idle connections, most recent last
}

// Idle connections: how many per endpoint, and for how long.
const (
	h1MaxIdle     = maxIdlePerEndpoint
	h1IdleTimeout = backendIdleTimeout
)

func newH1Transport(fallback *http.Transport) *h1Transport {
	return &h1Transport{
		dialer:   net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		fallback: fallback,
		idle:     map[string][]*h1Conn{},
	}
}

type h1Conn struct {
	t         *h1Transport
	addr      string
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

// fast reports whether a request can take the lean path: one that can be sent again when a
// kept-alive connection turns out to be closed. (http.Transport notices such a connection
// before reusing it, thanks to a goroutine reading each idle connection; a POST goes there.)
func fast(r *http.Request) bool {
	if !retryable(r) || len(r.Trailer) > 0 {
		return false
	}
	if _, up := r.Header["Upgrade"]; up {
		return false
	}
	if _, exp := r.Header["Expect"]; exp {
		return false
	}
	return true
}

// RoundTrip sends one request. A request that failed on a kept-alive connection (the
// backend had closed it) is sent again once, on a new connection.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !fast(req) {
		return t.fallback.RoundTrip(req)
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		if errors.Is(err, errFallback) {
			return t.fallback.RoundTrip(req)
		}
		if attempt == 0 && reused && req.Context().Err() == nil {
			continue
		}
		return nil, err
	}
}

// errFallback: a request this client does not write (a header it will not vouch for).
var errFallback = errors.New("use the standard transport")

// get takes an idle connection to addr, or dials one.
func (t *h1Transport) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	conns := t.idle[addr]
	for len(conns) > 0 {
		pc := conns[len(conns)-1]
		if now.Sub(pc.idleSince) > h1IdleTimeout {
			conns[len(conns)-1] = nil
			conns = conns[:len(conns)-1]
			pc.c.Close()
			continue
		}
		conns[len(conns)-1] = nil
		t.idle[addr] = conns[:len(conns)-1]
		t.mu.Unlock()
		return pc, true, nil
	}
	t.idle[addr] = conns
	t.mu.Unlock()
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{t: t, addr: addr, c: c, br: bufio.NewReaderSize(c, 8<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put keeps a connection for the next request to its endpoint.
func (t *h1Transport) put(pc *h1Conn) {
	pc.idleSince = time.Now()
	t.mu.Lock()
	conns := t.idle[pc.addr]
	if len(conns) < h1MaxIdle {
		t.idle[pc.addr] = append(conns, pc)
		pc = nil
	}
	t.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// closeIdle closes the idle connections, all of them or those idle too long.
func (t *h1Transport) closeIdle(all bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, conns := range t.idle {
		keep := conns[:0]
		for _, pc := range conns {
			if all || now.Sub(pc.idleSince) > h1IdleTimeout {
				pc.c.Close()
			} else {
				keep = append(keep, pc)
			}
		}
		clear(conns[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = keep
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes the request and reads the response head; the body is read by the
// caller through h1Body, which gives the connection back at its end.
func (pc *h1Conn) roundTrip(req *http.Request) (resp *http.Response, err error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, errFallback
	}
	bw := pc.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			bw.Reset(pc.c)
			return nil, errFallback
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" {
				continue // ReverseProxy's way of sending none
			}
			if !httpguts.ValidHeaderFieldValue(v) {
				bw.Reset(pc.c)
				return nil, errFallback
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if req.Method == http.MethodPut {
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")

	// The client going away, or the backend not answering in time, ends the wait.
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(aLongTimeAgo) })
	pc.c.SetReadDeadline(time.Now().Add(responseHeaderTimeout))
	if err := bw.Flush(); err != nil {
		stop()
		return nil, err
	}
	resp, err = readFinal(pc.br, req)
	if err != nil {
		stop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
	pc.c.SetReadDeadline(time.Time{})
	b := &h1Body{pc: pc, rc: resp.Body, stop: stop, reuse: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// readFinal reads a backend's answer, passing over 1xx informational responses (103
// Early Hints): they are not passed on. 101 Switching Protocols is returned.
func readFinal(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
		resp.Body.Close()
	}
}

// exchange sends a request to addr on a kept-alive connection or a new one and waits
// for its answer to begin: send writes the request, wait blocks until the first byte.
// A kept-alive connection the backend had closed is replaced once. When gone reports
// the client has left, the error is wrapped with stop, ending backend.each's attempts.
func (t *h1Transport) exchange(ctx context.Context, addr string, send, wait func(*h1Conn) error, gone func() bool) (*h1Conn, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(ctx, addr)
		if err == nil {
			if err = send(pc); err == nil {
				if err = wait(pc); err == nil {
					return pc, nil
				}
			}
			pc.c.Close()
		}
		if gone() {
			return nil, stop(err)
		}
		if attempt > 0 || !reused {
			return nil, err
		}
	}
}

// h1Body hands the connection back once the body has been read to its end, or closes it
// when the body is abandoned.
type h1Body struct {
	pc    *h1Conn
	rc    io.ReadCloser
	stop  func() bool
	reuse bool
	done  bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: back to the pool after a complete body, closed otherwise.
func (b *h1Body) finish(complete bool) {
	b.done = true
	watched := b.stop() // false: the context fired and the connection has a past deadline
	if complete && b.reuse && watched {
		b.pc.t.put(b.pc)
		return
	}
	b.pc.c.Close()
	if !complete {
		b.rc.Close()
	}
}
