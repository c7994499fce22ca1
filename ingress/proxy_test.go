package ingress

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyRig is a server with backends a, b and pod-backed c, and clients for both listeners.
type proxyRig struct {
	s        *Server
	w        *world
	ca       *testCA
	h1, h2   *http.Client // HTTPS clients
	plain    *http.Client // HTTP client
	httpsURL func(host, path string) string
	httpURL  func(host, path string) string
}

func newProxyRig(t *testing.T, tune ...func(*Server)) *proxyRig {
	t.Helper()
	a, b, c, cNotReady := echo(t, "a"), echo(t, "b"), echo(t, "c"), echo(t, "c-not-ready")
	r1, r2 := echo(t, "r1"), echo(t, "r2")
	dead := deadAddr(t)
	ca := newTestCA(t)
	w := newWorld(t)
	st := w.sync(
		service("a"), endpoints("a", hostPort(a)),
		service("b"), endpoints("b", hostPort(b)),
		selectorService("c"),
		service("rr"), endpoints("rr", hostPort(r1), hostPort(r2)),
		service("flaky"), endpoints("flaky", dead, hostPort(a)),
		service("dead"), endpoints("dead", dead),
		service("empty"),
		ingress("shop",
			rule("shop.example.com",
				"Prefix / a:80", "Prefix /b b:http", "Prefix /c c:8080", "Prefix /rr rr:80", "Prefix /flaky flaky:80",
				"Prefix /dead dead:80", "Prefix /empty empty:80", "Prefix /missing missing:80", "Prefix /badport a:81"),
			tlsFor("", "shop.example.com")),
		ingress("open", rule("open.example.com", "Prefix / a:80")),
	)
	st = w.put(pod("c-1", "c", hostPort(c), true), pod("c-2", "c", hostPort(cNotReady), false))
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true}, tune...)
	s.Update(st)
	roots := ca.ca.Pool()
	return &proxyRig{
		s: s, w: w, ca: ca,
		h1: client(t, s.HTTPSAddr(), roots, false), h2: client(t, s.HTTPSAddr(), roots, true),
		plain:    client(t, s.HTTPAddr(), nil, false),
		httpsURL: func(host, path string) string { return "https://" + host + path },
		httpURL:  func(host, path string) string { return "http://" + host + path },
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestProxyRouting(t *testing.T) {
	rig := newProxyRig(t)
	_, httpsPort, _ := net.SplitHostPort(rig.s.HTTPSAddr())
	for _, tc := range []struct {
		name       string
		c          *http.Client
		method     string
		url        string
		body       string
		wantStatus int
		wantBody   string // prefix
		wantProto  string
		wantHeader map[string]string
	}{
		{"h2 to a", rig.h2, "GET", rig.httpsURL("shop.example.com", "/"), "", 200, "a GET /", "HTTP/2.0", map[string]string{
			"X-Seen-Host": "shop.example.com", "X-Seen-Proto": "https", "X-Seen-Xff": "127.0.0.1", "X-Seen-Fwd-Host": "shop.example.com"}},
		{"h1 to b by port name, query kept", rig.h1, "GET", rig.httpsURL("shop.example.com", "/b/x?q=1&r=%2F"), "", 200, "b GET /b/x?q=1&r=%2F", "HTTP/1.1", nil},
		{"ready pod only", rig.h2, "GET", rig.httpsURL("shop.example.com", "/c"), "", 200, "c GET /c", "", nil},
		{"post body", rig.h2, "POST", rig.httpsURL("shop.example.com", "/b/form"), "hello=1", 200, "b POST /b/form hello=1", "", nil},
		{"HTTPS HTTP/1.1 POST (handed to net/http) stays HTTPS", rig.h1, "POST", rig.httpsURL("shop.example.com", "/form"), "x=1", 200, "a POST /form x=1",
			"HTTP/1.1", map[string]string{"X-Seen-Proto": "https"}},
		{"HTTPS HTTP/1.1 GET", rig.h1, "GET", rig.httpsURL("shop.example.com", "/g"), "", 200, "a GET /g", "HTTP/1.1", map[string]string{
			"X-Seen-Proto": "https", "X-Seen-Xff": "127.0.0.1", "X-Seen-Host": "shop.example.com"}},
		{"retry a dead endpoint", rig.h1, "GET", rig.httpsURL("shop.example.com", "/flaky"), "", 200, "a GET /flaky", "", nil},
		{"every endpoint dead", rig.h1, "GET", rig.httpsURL("shop.example.com", "/dead"), "", 502, "502 bad gateway", "", nil},
		{"no endpoints", rig.h1, "GET", rig.httpsURL("shop.example.com", "/empty"), "", 503, "503", "", nil},
		{"missing service", rig.h1, "GET", rig.httpsURL("shop.example.com", "/missing"), "", 503, "503", "", nil},
		{"missing port", rig.h1, "GET", rig.httpsURL("shop.example.com", "/badport"), "", 503, "503", "", nil},
		{"unknown host", rig.plain, "GET", rig.httpURL("nobody.example.com", "/"), "", 404, "404", "", nil},
		{"http redirected for a TLS host", rig.plain, "GET", rig.httpURL("shop.example.com", "/b?x=1"), "", 308, "", "", map[string]string{
			"Location": "https://shop.example.com:" + httpsPort + "/b?x=1"}},
		{"http served for other hosts", rig.plain, "GET", rig.httpURL("open.example.com", "/o"), "", 200, "a GET /o", "", map[string]string{
			"X-Seen-Proto": "http", "X-Seen-Host": "open.example.com"}},
		{"http host with port", rig.plain, "GET", rig.httpURL("open.example.com:8080", "/o"), "", 200, "a GET /o", "", map[string]string{
			"X-Seen-Host": "open.example.com:8080"}},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req := must(http.NewRequest(tc.method, tc.url, body))
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed: the edge drops it
		resp, err := tc.c.Do(req)
		if err != nil {
			t.Errorf("%s: %s %s: %v", tc.name, tc.method, tc.url, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || !strings.HasPrefix(string(b), tc.wantBody) {
			t.Errorf("%s: %s %s = %d %q; want %d %q", tc.name, tc.method, tc.url, resp.StatusCode, b, tc.wantStatus, tc.wantBody)
		}
		if tc.wantProto != "" && resp.Proto != tc.wantProto {
			t.Errorf("%s: proto %s; want %s", tc.name, resp.Proto, tc.wantProto)
		}
		for k, v := range tc.wantHeader {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q; want %q", tc.name, k, got, v)
			}
		}
	}

	// Round-robin over ready endpoints.
	seen := map[string]int{}
	for range 10 {
		resp, _, err := get(rig.h2, "GET", rig.httpsURL("shop.example.com", "/rr"), nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.Header.Get("X-Backend")]++
	}
	if seen["r1"] != 5 || seen["r2"] != 5 {
		t.Errorf("10 requests over two endpoints went %v; want 5 each", seen)
	}
	// A dead endpoint is marked down and skipped, and every retryable request succeeds.
	for i := range 6 {
		if resp, body, err := get(rig.h1, "GET", rig.httpsURL("shop.example.com", "/flaky"), nil); err != nil || resp.StatusCode != 200 {
			t.Errorf("GET /flaky #%d = %v %q", i, err, body)
		}
	}
	// Status lists each route with its ready endpoints and each problem.
	hs := hostStatus(t, rig.s.Status(), "shop.example.com")
	for _, want := range []string{"Prefix /rr → default/rr:80 (2 ready)", "Prefix /c → default/c:8080 (1 ready)",
		"Prefix /missing → default/missing:80: Service default/missing not found"} {
		if !contains(hs.Routes, want) {
			t.Errorf("Status routes = %q; want %q", hs.Routes, want)
		}
	}
	for _, want := range []string{"Prefix /missing → default/missing:80: Service default/missing not found (503)",
		"Prefix /badport → default/a:81: Service default/a has no port 81 (it has 80 (http)) (503)",
		"Prefix /empty → default/empty:80: Service default/empty has no ready endpoints (503)"} {
		if !contains(hs.Problems, want) {
			t.Errorf("Status problems = %q; want %q", hs.Problems, want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Retries: only requests that can be sent again, only on a failed connection, on another
// endpoint.
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		body     io.Reader
		eps      []string // "dead" refuses the connection
		wantErr  bool
		attempts int
	}{
		{"GET retried", "GET", nil, []string{"dead", "ok"}, false, 2},
		{"HEAD retried", "HEAD", nil, []string{"dead", "ok"}, false, 2},
		{"PUT retried", "PUT", http.NoBody, []string{"dead", "ok"}, false, 2},
		{"DELETE retried", "DELETE", nil, []string{"dead", "ok"}, false, 2},
		{"POST not retried", "POST", nil, []string{"dead", "ok"}, true, 1},
		{"PATCH not retried", "PATCH", nil, []string{"dead", "ok"}, true, 1},
		{"GET with a body not retried", "GET", strings.NewReader("x"), []string{"dead", "ok"}, true, 1},
		{"at most three endpoints", "GET", nil, []string{"dead", "dead", "dead", "dead", "ok"}, true, 3},
		{"all dead", "GET", nil, []string{"dead", "dead"}, true, 2},
	} {
		ft := &fakeTransport{}
		be := &backend{rt: ft}
		for i, e := range tc.eps {
			be.eps = append(be.eps, &endpoint{addr: fmt.Sprintf("%s-%d", e, i)})
		}
		be.next.Store(^uint32(0)) // the first request starts at eps[0]
		req := httptest.NewRequest(tc.method, "http://x/", tc.body)
		if tc.body == nil {
			req.Body = nil
		}
		_, err := be.RoundTrip(req)
		if (err != nil) != tc.wantErr || ft.calls != tc.attempts {
			t.Errorf("%s: RoundTrip err = %v after %d attempts; want error %v after %d", tc.name, err, ft.calls, tc.wantErr, tc.attempts)
		}
		if !be.eps[0].down(time.Now().UnixNano()) {
			t.Errorf("%s: the dead endpoint is not marked down", tc.name)
		}
	}
}

type fakeTransport struct {
	mu    sync.Mutex
	calls int
}

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if strings.HasPrefix(r.URL.Host, "dead") {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
}

// Websockets (HTTP/1.1 Upgrade) pass through both listeners.
func TestWebsocketUpgrade(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo
	}))
	t.Cleanup(ws.Close)
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("ws"), endpoints("ws", hostPort(ws)), ingress("ws", rule("ws.example.com", "Prefix / ws:80"))))

	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"http", func() (net.Conn, error) { return net.Dial("tcp", s.HTTPAddr()) }},
		{"https", func() (net.Conn, error) {
			return tls.Dial("tcp", s.HTTPSAddr(), &tls.Config{ServerName: "ws.example.com", RootCAs: ca.ca.Pool(), NextProtos: []string{"http/1.1"}})
		}},
	} {
		conn, err := tc.dial()
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("%s: upgrade = %v, %v; want 101", tc.name, resp, err)
			conn.Close()
			continue
		}
		for _, msg := range []string{"ping\n", "pong\n"} {
			io.WriteString(conn, msg)
			line, err := br.ReadString('\n')
			if err != nil || line != msg {
				t.Errorf("%s: echo of %q = %q, %v", tc.name, msg, line, err)
			}
		}
		conn.Close()
	}
}

// Responses stream as the backend writes them, and request bodies stream to the backend
// while its answer streams back (HTTP/2, full duplex).
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.URL.Path == "/duplex" {
			rc.EnableFullDuplex()
			w.WriteHeader(200)
			rc.Flush()
			br := bufio.NewReader(r.Body)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				io.WriteString(w, "echo "+line)
				rc.Flush()
			}
		}
		io.WriteString(w, "first\n")
		rc.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	}))
	t.Cleanup(stream.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("st"), endpoints("st", hostPort(stream)), ingress("st", rule("st.example.com", "Prefix / st:80"))))

	// Response streaming, over HTTP/1.1 and HTTP/2.
	for _, c := range []*http.Client{client(t, s.HTTPAddr(), nil, false), client(t, s.HTTPSAddr(), ca.ca.Pool(), true)} {
		scheme := "http"
		if c.Transport.(*http.Transport).ForceAttemptHTTP2 {
			scheme = "https"
		}
		resp, err := c.Get(scheme + "://st.example.com/events")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); line != "first\n" {
			t.Errorf("%s: first line = %q, %v; want it before the backend finishes", scheme, line, err)
		}
		if scheme == "https" {
			close(release)
		}
		resp.Body.Close()
	}

	// Full duplex over HTTP/2: each line comes back before the next is sent.
	pr, pw := io.Pipe()
	c := client(t, s.HTTPSAddr(), ca.ca.Pool(), true)
	req := must(http.NewRequest("POST", "https://st.example.com/duplex", pr))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, msg := range []string{"one\n", "two\n", "three\n"} {
		go io.WriteString(pw, msg)
		line, err := br.ReadString('\n')
		if line != "echo "+msg {
			t.Errorf("duplex: got %q, %v; want %q", line, err, "echo "+msg)
		}
	}
	pw.Close()
}

// Bad clients — slow headers, enormous headers, plain HTTP on the TLS port — are cut off
// and reported; everyone else is served meanwhile.
func TestBadClients(t *testing.T) {
	rig := newProxyRig(t, func(s *Server) { s.readHeaderTimeout = 300 * time.Millisecond })
	ok := func(when string) {
		t.Helper()
		resp, body, err := get(rig.plain, "GET", rig.httpURL("open.example.com", "/"), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: a good request failed: %v %q", when, err, body)
		}
	}
	for _, tc := range []struct {
		name string
		addr string
		send string
		want string // prefix of what the server answers before it closes ("" = nothing)
	}{
		{"slowloris", rig.s.HTTPAddr(), "GET / HTTP/1.1\r\nHost: open.example.com\r\nX-Slow: 1", ""},
		{"enormous headers", rig.s.HTTPAddr(), "GET / HTTP/1.1\r\nHost: open.example.com\r\nX-Big: " + strings.Repeat("x", 200<<10) + "\r\n\r\n",
			"HTTP/1.1 431"},
		{"malformed request", rig.s.HTTPAddr(), "GARBAGE\r\n\r\n", "HTTP/1.1 400"},
		{"plain HTTP to the TLS port", rig.s.HTTPSAddr(), "GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n", "HTTP/1.0 400"},
	} {
		conn, err := net.Dial("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn.SetDeadline(start.Add(5 * time.Second))
		go io.WriteString(conn, tc.send)
		ok("during " + tc.name)
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Errorf("%s: the server did not close the connection: %v", tc.name, err)
		}
		if !strings.HasPrefix(string(got), tc.want) || tc.want == "" && len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
			t.Errorf("%s: server answered %.40q; want %q", tc.name, got, tc.want)
		}
		ok("after " + tc.name)
	}
	def := hostStatus(t, rig.s.Status(), DefaultHost)
	waitFor(t, "listener problems in Status", 5*time.Second, func() bool {
		def = hostStatus(t, rig.s.Status(), DefaultHost)
		return containsPrefix(def.Problems, "3 connections closed before sending a complete request") &&
			containsPrefix(def.Problems, "1 TLS handshakes failed (last: ")
	})
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Before the first synced snapshot every request gets 503, with a Retry-After.
func TestNotSynced(t *testing.T) {
	s := startServer(t, Config{DefaultClass: true})
	resp, _, err := get(client(t, s.HTTPAddr(), nil, false), "GET", "http://any.example.com/", nil)
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("before sync: %v %v; want 503 with Retry-After", resp, err)
	}
	if st := s.Status(); len(st) != 1 || len(st[0].Problems) == 0 {
		t.Errorf("Status before sync = %+v; want the default host with a problem", st)
	}
	s.Update(newWorld(t).sync(service("x")))
	resp, _, err = get(client(t, s.HTTPAddr(), nil, false), "GET", "http://any.example.com/", nil)
	if err != nil || resp.StatusCode != 404 {
		t.Errorf("after sync with no Ingress: %v %v; want 404", resp, err)
	}
}
