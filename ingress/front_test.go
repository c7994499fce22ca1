package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawBackend answers each path with a canned raw response and records the request heads
// it receives, byte for byte.
type rawBackend struct {
	ln    net.Listener
	mu    sync.Mutex
	heads []string
}

var rawResponses = map[string]string{
	"/plain":   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\nhello",
	"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
	"/http10":  "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"/connopt": "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nok",
	"/eof":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil eof",
	"/hints":   "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints",
	"/204":     "HTTP/1.1 204 No Content\r\n\r\n",
	"/bad":     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
	"/big":     "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("x", 1<<20),
}

func newRawBackend(t *testing.T) *rawBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &rawBackend{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head.Bytes()), br)))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		b.mu.Lock()
		b.heads = append(b.heads, head.String()+string(body))
		b.mu.Unlock()
		resp, ok := rawResponses[req.URL.Path]
		if !ok {
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ndefault"
		}
		if req.Method == "HEAD" {
			resp, _, _ = strings.Cut(resp, "\r\n\r\n")
			resp += "\r\n\r\n"
		}
		io.WriteString(c, resp)
		if strings.HasPrefix(resp, "HTTP/1.0") || req.URL.Path == "/eof" {
			return
		}
	}
}

func (b *rawBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.heads) == 0 {
		return ""
	}
	return b.heads[len(b.heads)-1]
}

// The front end's answers, and what the backend receives, request by request; each
// request is sent twice on one connection, to check the connection is kept (or not).
func TestFrontEnd(t *testing.T) {
	be := newRawBackend(t)
	w := newWorld(t)
	s := startServer(t, Config{DefaultClass: true})
	s.Update(w.sync(service("raw"), endpoints("raw", be.ln.Addr().String()), ingress("raw", rule("raw.example.com", "Prefix / raw:80"))))

	const host = "Host: raw.example.com\r\n"
	for _, tc := range []struct {
		name        string
		req         string
		status      int
		body        string
		header      map[string]string // "" = absent
		sent, unset []string          // in / not in what the backend received
		handoff     bool              // served by net/http
		closes      bool              // the connection closes after the answer
	}{
		{name: "GET, hop-by-hop and spoofed headers dropped",
			req: "GET /plain?q=%2F HTTP/1.1\r\n" + host + "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nProxy-Authorization: x\r\n" +
				"Keep-Alive: 1\r\nConnection: keep-alive\r\nX-Custom: a\r\nUser-Agent: t\r\n\r\n",
			status: 200, body: "hello", header: map[string]string{"X-B": "1", "Keep-Alive": "", "Proxy-Connection": ""},
			sent: []string{"GET /plain?q=%2F HTTP/1.1\r\n", host, "X-Custom: a\r\n", "User-Agent: t\r\n", "X-Forwarded-For: 127.0.0.1\r\n",
				"X-Forwarded-Host: raw.example.com\r\n", "X-Forwarded-Proto: http\r\n"},
			unset: []string{"6.6.6.6", "https", "Proxy-Authorization", "Keep-Alive", "Connection"}},
		{name: "HEAD", req: "HEAD /plain HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "",
			header: map[string]string{"Content-Length": "5"}, sent: []string{"HEAD /plain HTTP/1.1\r\n"}},
		{name: "chunked with extensions and trailers", req: "GET /chunked HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "hello world"},
		{name: "HTTP/1.0 backend", req: "GET /http10 HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "ok"},
		{name: "Connection options in the response", req: "GET /connopt HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "ok",
			header: map[string]string{"X-Secret": ""}},
		{name: "body until the backend closes", req: "GET /eof HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "until eof"},
		{name: "1xx skipped", req: "GET /hints HTTP/1.1\r\n" + host + "\r\n", status: 200, body: "hints", header: map[string]string{"Link": ""}},
		{name: "204", req: "GET /204 HTTP/1.1\r\n" + host + "\r\n", status: 204},
		{name: "malformed response", req: "GET /bad HTTP/1.1\r\n" + host + "\r\n", status: 502, body: "502 bad gateway: the backend did not answer\n"},
		{name: "1 MiB body", req: "GET /big HTTP/1.1\r\n" + host + "\r\n", status: 200, body: strings.Repeat("x", 1<<20)},
		{name: "client asks to close", req: "GET /plain HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", status: 200, body: "hello",
			unset: []string{"Connection"}, closes: true},
		{name: "POST with a body", req: "POST /form HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\na=1", status: 200, body: "default",
			sent: []string{"POST /form HTTP/1.1\r\n", "a=1"}, handoff: true},
		{name: "escaped path", req: "GET /pl%61in HTTP/1.1\r\n" + host + "\r\n", status: 200, handoff: true},
		{name: "HTTP/1.0 client", req: "GET /plain HTTP/1.0\r\n" + host + "\r\n", status: 200, body: "hello", handoff: true, closes: true},
		{name: "Expect", req: "GET /plain HTTP/1.1\r\n" + host + "Expect: 100-continue\r\n\r\n", status: 200, body: "hello", handoff: true},
		{name: "Connection names a header", req: "GET /plain HTTP/1.1\r\n" + host + "Connection: X-Hop\r\nX-Hop: 1\r\n\r\n", status: 200,
			body: "hello", unset: []string{"X-Hop"}, handoff: true},
		{name: "no Host", req: "GET /plain HTTP/1.1\r\n\r\n", status: 400, handoff: true, closes: true},
		{name: "two Hosts", req: "GET /plain HTTP/1.1\r\n" + host + host + "\r\n", status: 400, handoff: true, closes: true},
		{name: "head over the front end's buffer", req: "GET /plain HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n",
			status: 200, body: "hello", sent: []string{"X-Big: bbbb"}, handoff: true},
		{name: "unknown host", req: "GET / HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n", status: 404, handoff: true},
	} {
		conn, err := net.Dial("tcp", s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		before := s.front.handoffs.Load()
		br := bufio.NewReader(conn)
		for round := range 2 {
			if round == 1 && tc.closes {
				if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Errorf("%s: the connection stayed open (%d, %v); want it closed", tc.name, n, err)
				}
				break
			}
			io.WriteString(conn, tc.req)
			method, _, _ := strings.Cut(tc.req, " ")
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Errorf("%s #%d: %v", tc.name, round, err)
				break
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != tc.status || tc.body != "" && string(body) != tc.body || resp.Proto != strings.Fields(tc.req)[2] {
				t.Errorf("%s #%d: %s %d %.60q (%v); want %s %d %.60q", tc.name, round, resp.Proto, resp.StatusCode, body, err,
					strings.Fields(tc.req)[2], tc.status, tc.body)
			}
			if resp.Close != tc.closes { // the answer says Connection: close
				t.Errorf("%s #%d: the answer's Connection: close is %v; want %v", tc.name, round, resp.Close, tc.closes)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: response %s = %q; want %q", tc.name, k, got, v)
				}
			}
			if tc.name == "chunked with extensions and trailers" && resp.Trailer.Get("X-Sum") != "42" {
				t.Errorf("%s: trailer X-Sum = %q; want 42", tc.name, resp.Trailer.Get("X-Sum"))
			}
			if tc.status < 400 {
				got := be.last()
				for _, want := range tc.sent {
					if !strings.Contains(got, want) {
						t.Errorf("%s: the backend received %q; want it to contain %q", tc.name, got, want)
					}
				}
				for _, not := range tc.unset {
					if strings.Contains(got, not) {
						t.Errorf("%s: the backend received %q; want no %q", tc.name, got, not)
					}
				}
			}
		}
		conn.Close()
		if got := s.front.handoffs.Load() - before; got != 0 != tc.handoff {
			t.Errorf("%s: %d connections handed to net/http; want handoff %v", tc.name, got, tc.handoff)
		}
	}
}

// Requests sent back to back in one write get their answers in order; a connection moves
// to net/http at its first request the front end does not take, and stays served.
func TestFrontEndPipelineAndHandoff(t *testing.T) {
	be := newRawBackend(t)
	w := newWorld(t)
	s := startServer(t, Config{DefaultClass: true})
	s.Update(w.sync(service("raw"), endpoints("raw", be.ln.Addr().String()), ingress("raw", rule("raw.example.com", "Prefix / raw:80"))))
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const host = "Host: raw.example.com\r\n"
	reqs := []struct{ req, body string }{
		{"GET /plain HTTP/1.1\r\n" + host + "\r\n", "hello"},
		{"GET /chunked HTTP/1.1\r\n" + host + "\r\n", "hello world"},
		{"POST /p HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", "default"},
		{"GET /plain HTTP/1.1\r\n" + host + "\r\n", "hello"},
	}
	var all strings.Builder
	for _, r := range reqs {
		all.WriteString(r.req)
	}
	io.WriteString(conn, all.String())
	br := bufio.NewReader(conn)
	for i, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != r.body {
			t.Errorf("answer %d = %d %q; want 200 %q (backend saw %q)", i, resp.StatusCode, body, r.body, be.heads)
		}
	}
	if n := s.front.handoffs.Load(); n != 1 {
		t.Errorf("%d handoffs; want 1", n)
	}
}

// Stop lets a request in flight finish and closes idle connections at once.
func TestFrontEndStop(t *testing.T) {
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		<-release
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
	}()
	w := newWorld(t)
	s, err := New(Config{HTTP: "127.0.0.1:0", DefaultClass: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Update(w.sync(service("slow"), endpoints("slow", ln.Addr().String()), ingress("slow", rule("slow.example.com", "Prefix / slow:80"))))
	idle, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(busy, "GET /x HTTP/1.1\r\nHost: slow.example.com\r\n\r\n")
	waitFor(t, "the request to reach the backend", 5*time.Second, func() bool {
		s.front.mu.Lock()
		defer s.front.mu.Unlock()
		for fc := range s.front.conns {
			if fc.busy.Load() {
				return true
			}
		}
		return false
	})
	stopped := make(chan error)
	go func() { stopped <- s.Stop() }()
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("idle connection during Stop: read %d, %v; want EOF", n, err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in flight during Stop: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "late" {
		t.Errorf("the request in flight got %q; want %q", body, "late")
	}
	if err := <-stopped; err != nil {
		t.Errorf("Stop = %v", err)
	}
}

// FuzzFrontParse: every head the front end takes itself, net/http reads the same way —
// method, target, host — and every header the backend gets is one net/http saw.
func FuzzFrontParse(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x?y=1 HTTP/1.1\r\nHost: a.b:80\r\nConnection: close\r\n\r\n",
		"GET /a HTTP/1.1\r\nhost: A\r\nX-Forwarded-For: 1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n X-Fold: 1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET /a%20 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, head string) {
		i := strings.Index(head, "\r\n\r\n")
		if i < 0 {
			return
		}
		head = head[:i+4]
		var r frontReq
		if !r.parse([]byte(head)) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			t.Fatalf("front end took %q; net/http: %v", head, err)
		}
		method, rest, _ := strings.Cut(strings.TrimSuffix(string(r.line), " HTTP/1.1\r\n"), " ")
		if req.Method != method || req.RequestURI != rest || req.Host != string(r.host) || req.ContentLength != 0 || req.Close != r.close {
			t.Fatalf("%q: front end read %s %s host %q close %v; net/http %s %s host %q close %v length %d",
				head, method, rest, r.host, r.close, req.Method, req.RequestURI, req.Host, req.Close, req.ContentLength)
		}
		for j := range r.n {
			if r.drop&(1<<j) != 0 {
				continue
			}
			name, value, _ := strings.Cut(strings.TrimSuffix(string(r.lines[j]), "\r\n"), ":")
			if strings.EqualFold(name, "Host") {
				continue
			}
			if !contains(req.Header.Values(name), strings.Trim(value, " \t")) {
				t.Fatalf("%q: the front end forwards %s: %q; net/http read %q", head, name, value, req.Header.Values(name))
			}
		}
	})
}
