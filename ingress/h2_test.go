package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Every kind of backend answer reaches an HTTP/2 client intact, and the backend gets
// what an HTTP/1.1 backend expects.
func TestH2Responses(t *testing.T) {
	be := newRawBackend(t)
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("raw"), endpoints("raw", be.ln.Addr().String()), ingress("raw", rule("raw.example.com", "Prefix / raw:80"))))
	c := client(t, s.HTTPSAddr(), ca.ca.Pool(), true)

	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		header             map[string]string // "" = absent
		trailer            string            // X-Sum
		sent               []string          // in what the backend received
	}{
		{name: "plain", method: "GET", path: "/plain?q=%2F", status: 200, body: "hello",
			header: map[string]string{"X-B": "1", "Keep-Alive": "", "Proxy-Connection": ""},
			sent: []string{"GET /plain?q=%2F HTTP/1.1\r\n", "Host: raw.example.com\r\n", "x-custom: a\r\n", "cookie: a=1; b=2\r\n",
				"X-Forwarded-For: 127.0.0.1\r\n", "X-Forwarded-Host: raw.example.com\r\n", "X-Forwarded-Proto: https\r\n"}},
		{name: "HEAD", method: "HEAD", path: "/plain", status: 200, header: map[string]string{"Content-Length": "5"}},
		{name: "chunked with trailers", method: "GET", path: "/chunked", status: 200, body: "hello world", trailer: "42"},
		{name: "HTTP/1.0 backend", method: "GET", path: "/http10", status: 200, body: "ok"},
		{name: "Connection options", method: "GET", path: "/connopt", status: 200, body: "ok", header: map[string]string{"X-Secret": ""}},
		{name: "body until close", method: "GET", path: "/eof", status: 200, body: "until eof"},
		{name: "1xx skipped", method: "GET", path: "/hints", status: 200, body: "hints"},
		{name: "204", method: "GET", path: "/204", status: 204},
		{name: "malformed answer", method: "GET", path: "/bad", status: 502, body: "502 bad gateway: the backend did not answer\n"},
		{name: "1 MiB answer", method: "GET", path: "/big", status: 200, body: strings.Repeat("x", 1<<20)},
		{name: "2 MiB request body", method: "POST", path: "/upload", status: 200, body: "default",
			sent: []string{"POST /upload HTTP/1.1\r\n", strings.Repeat("u", 1<<10)}},
	} {
		var body io.Reader
		if tc.method == "POST" {
			body = strings.NewReader(strings.Repeat("u", 2<<20))
		}
		req := must(http.NewRequest(tc.method, "https://raw.example.com"+tc.path, body))
		req.Header.Set("X-Custom", "a")
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.AddCookie(&http.Cookie{Name: "a", Value: "1"})
		req.AddCookie(&http.Cookie{Name: "b", Value: "2"})
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.ProtoMajor != 2 || resp.StatusCode != tc.status || tc.body != "" && string(got) != tc.body {
			t.Errorf("%s: %s %d %.60q (%v); want HTTP/2 %d %.60q", tc.name, resp.Proto, resp.StatusCode, got, err, tc.status, tc.body)
		}
		for k, v := range tc.header {
			if g := resp.Header.Get(k); g != v {
				t.Errorf("%s: %s = %q; want %q", tc.name, k, g, v)
			}
		}
		if g := resp.Trailer.Get("X-Sum"); g != tc.trailer {
			t.Errorf("%s: trailer X-Sum = %q; want %q", tc.name, g, tc.trailer)
		}
		last := be.last()
		for _, want := range tc.sent {
			if !strings.Contains(last, want) {
				t.Errorf("%s: the backend received %.300q; want it to contain %.60q", tc.name, last, want)
			}
		}
		if strings.Contains(last, "6.6.6.6") {
			t.Errorf("%s: the spoofed X-Forwarded-For reached the backend", tc.name)
		}
		if tc.method == "POST" && !strings.HasSuffix(last, strings.Repeat("u", 2<<20)) {
			t.Errorf("%s: the backend got %d bytes; want the 2 MiB body", tc.name, len(last))
		}
	}
}

// h2Client speaks raw HTTP/2 frames to the server.
type h2Client struct {
	t   *testing.T
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, s *Server, ca *testCA) *h2Client {
	t.Helper()
	conn, err := tls.Dial("tcp", s.HTTPSAddr(), &tls.Config{ServerName: "slow.example.com", RootCAs: ca.ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	c := &h2Client{t: t, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.buf)
	c.fr.WriteSettings()
	c.fr.WriteWindowUpdate(0, 1<<30)
	return c
}

// headers opens stream id with a request; extra fields follow the pseudo-headers.
func (c *h2Client) headers(id uint32, method, path string, end bool, extra ...string) {
	c.buf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "slow.example.com", ":path", path}, extra...)
	for i := 0; i < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	block := c.buf.Bytes()
	frag := block[:min(len(block), 16<<10)]
	block = block[len(frag):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		c.t.Fatal(err)
	}
	for len(block) > 0 { // the rest in CONTINUATION frames
		frag = block[:min(len(block), 16<<10)]
		block = block[len(frag):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			c.t.Fatal(err)
		}
	}
}

// until reads frames until match says so; it fails the test when the connection ends.
func (c *h2Client) until(what string, match func(http2.Frame) bool) http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

func (c *h2Client) rst(id uint32) http2.ErrCode {
	c.t.Helper()
	f := c.until("RST_STREAM", func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	})
	return f.(*http2.RSTStreamFrame).ErrCode
}

// answer reads the status of stream id's answer.
func (c *h2Client) answer(id uint32) string {
	c.t.Helper()
	f := c.until("HEADERS", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id
	})
	return f.(*http2.MetaHeadersFrame).PseudoValue("status")
}

// The HTTP/2 protocol's sharp edges: each case leaves the connection usable (or ends it
// with the right GOAWAY), and the server's stream count goes back to zero.
func TestH2Protocol(t *testing.T) {
	release := make(chan struct{})
	slow := echoSlow(t, release)
	fast := echo(t, "fast")
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("slow"), endpoints("slow", hostPort(slow)), service("fast"), endpoints("fast", hostPort(fast)),
		ingress("slow", rule("slow.example.com", "Prefix /slow slow:80", "Prefix / fast:80"))))

	t.Run("ping", func(t *testing.T) {
		c := dialH2(t, s, ca)
		c.fr.WritePing(false, [8]byte{1, 2, 3})
		f := c.until("PING ack", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
		if f.(*http2.PingFrame).Data != [8]byte{1, 2, 3} {
			t.Errorf("PING ack data = %v", f.(*http2.PingFrame).Data)
		}
	})
	t.Run("even stream id ends the connection", func(t *testing.T) {
		c := dialH2(t, s, ca)
		c.headers(2, "GET", "/", true)
		f := c.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
		if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeProtocol {
			t.Errorf("GOAWAY %v; want PROTOCOL_ERROR", code)
		}
	})
	t.Run("connection-specific header resets the stream only", func(t *testing.T) {
		c := dialH2(t, s, ca)
		c.headers(1, "GET", "/", true, "connection", "keep-alive")
		if code := c.rst(1); code != http2.ErrCodeProtocol {
			t.Errorf("RST_STREAM %v; want PROTOCOL_ERROR", code)
		}
		c.headers(3, "GET", "/", true)
		if st := c.answer(3); st != "200" {
			t.Errorf("next stream answered %q; want 200", st)
		}
	})
	t.Run("headers over the limit", func(t *testing.T) {
		c := dialH2(t, s, ca)
		var big []string // 9 × 7.5 KB: over the 64 KiB list, in the block's last frame
		for i := range 9 {
			big = append(big, "x-big-"+string(rune('0'+i)), strings.Repeat("b", 7500))
		}
		c.headers(1, "GET", "/", true, big...)
		if st := c.answer(1); st != "431" {
			t.Errorf("answered %q; want 431", st)
		}
	})
	t.Run("CONNECT", func(t *testing.T) {
		c := dialH2(t, s, ca)
		c.buf.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "CONNECT"}, {Name: ":authority", Value: "elsewhere:443"}} {
			c.enc.WriteField(f)
		}
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.buf.Bytes(), EndHeaders: true})
		if st := c.answer(1); st != "405" {
			t.Errorf("answered %q; want 405", st)
		}
	})
	t.Run("HEADERS on an ended stream", func(t *testing.T) {
		c := dialH2(t, s, ca)
		c.headers(1, "GET", "/", true)
		c.answer(1)
		c.headers(1, "GET", "/", true)
		if code := c.rst(1); code != http2.ErrCodeStreamClosed {
			t.Errorf("RST_STREAM %v; want STREAM_CLOSED", code)
		}
	})
	t.Run("rapid reset", func(t *testing.T) {
		c := dialH2(t, s, ca)
		for id := uint32(1); id < 2000; id += 2 {
			c.headers(id, "GET", "/slow", true)
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		// Streams may be refused while the reset ones unwind; then one is served.
		deadline := time.Now().Add(5 * time.Second)
		for id := uint32(2001); ; id += 2 {
			c.headers(id, "GET", "/", true)
			f := c.until("an answer or a refusal", func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					return f.StreamID == id
				case *http2.RSTStreamFrame:
					return f.StreamID == id
				}
				return false
			})
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				if st := h.PseudoValue("status"); st != "200" {
					t.Errorf("after 1000 reset streams a stream answered %q; want 200", st)
				}
				break
			}
			if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeRefusedStream || time.Now().After(deadline) {
				t.Fatalf("after 1000 reset streams: RST_STREAM %v", code)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("stream limit", func(t *testing.T) {
		c := dialH2(t, s, ca)
		for i := range h2MaxStreams {
			c.headers(uint32(2*i+1), "GET", "/slow", true)
		}
		over := uint32(2*h2MaxStreams + 1)
		c.headers(over, "GET", "/slow", true)
		if code := c.rst(over); code != http2.ErrCodeRefusedStream {
			t.Errorf("stream %d: RST_STREAM %v; want REFUSED_STREAM", over, code)
		}
		close(release)
		done := 0
		c.until("every answer", func(f http2.Frame) bool {
			if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
				done++
			}
			return done == h2MaxStreams
		})
	})
	waitFor(t, "every stream to end", 5*time.Second, func() bool {
		s.h2mu.Lock()
		defer s.h2mu.Unlock()
		for sc := range s.h2conns {
			if sc.busy.Load() != 0 {
				return false
			}
		}
		return true
	})
}

// A client that resets its stream while the backend thinks ends the backend's request.
func TestH2ClientGone(t *testing.T) {
	var canceled atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // net/http notices a client leaving once the body is read
		select {
		case <-r.Context().Done():
			canceled.Add(1)
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(be.Close)
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("be"), endpoints("be", hostPort(be)), ingress("be", rule("be.example.com", "Prefix / be:80"))))
	c := client(t, s.HTTPSAddr(), ca.ca.Pool(), true)
	for _, method := range []string{"GET", "POST"} { // the raw path and ServeHTTP
		req := must(http.NewRequest(method, "https://be.example.com/slow", nil))
		if method == "POST" {
			req.Body = io.NopCloser(strings.NewReader("x"))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := c.Do(req.WithContext(ctx))
		cancel()
		if err == nil {
			t.Fatalf("%s: the request succeeded; want the client's deadline", method)
		}

	}
	waitFor(t, "the backend's requests to end", 5*time.Second, func() bool { return canceled.Load() == 2 })
}

// Stop sends GOAWAY and lets a stream in flight finish; an idle connection is closed.
func TestH2StopAndIdle(t *testing.T) {
	release := make(chan struct{})
	slow := echoSlow(t, release)
	ca := newTestCA(t)
	w := newWorld(t)
	s, err := New(Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	if err != nil {
		t.Fatal(err)
	}
	s.idleTime = 300 * time.Millisecond
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Update(w.sync(service("slow"), endpoints("slow", hostPort(slow)), ingress("slow", rule("slow.example.com", "Prefix / slow:80"))))

	idle := dialH2(t, s, ca)
	idle.until("GOAWAY when idle", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })

	c := dialH2(t, s, ca)
	c.headers(1, "GET", "/", true)
	c.answer(1)
	time.Sleep(2 * s.idleTime) // a stream in flight keeps the connection open past the idle time
	stopped := make(chan error)
	go func() { stopped <- s.Stop() }()
	c.until("GOAWAY at Stop", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	close(release)
	c.until("the rest of the answer", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamEnded()
	})
	if err := <-stopped; err != nil {
		t.Errorf("Stop = %v", err)
	}
}

// A request body holds at most the stream's window: a client sending more is refused.
func TestH2BodyWindow(t *testing.T) {
	sc := &h2Conn{bw: bufio.NewWriter(io.Discard)} // window updates go nowhere
	sc.fr = http2.NewFramer(sc.bw, nil)
	b := &h2Body{sc: sc, st: &h2Stream{id: 1}}
	b.cond = sync.NewCond(&b.mu)
	if !b.put(make([]byte, h2StreamWin-1), false) || !b.put([]byte{1}, false) {
		t.Fatal("a body within the window was refused")
	}
	if b.put([]byte{1}, false) {
		t.Error("a byte over the window was taken")
	}
	p := make([]byte, 10)
	if n, err := b.Read(p); n != 10 || err != nil || b.held != h2StreamWin-10 {
		t.Errorf("Read = %d, %v (held %d)", n, err, b.held)
	}
}
