package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lean HTTP/1.1 client toward backends: every kind of response framing, kept-alive
// connections reused only when the response allows it, 1xx skipped, trailers passed on.
func TestBackendResponses(t *testing.T) {
	var conns atomic.Int32
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/plain":
			io.WriteString(w, "plain body")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part one, ")
			http.NewResponseController(w).Flush()
			io.WriteString(w, "part two")
			w.Header().Set("X-Sum", "42")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "after hints")
		case "/eof": // HTTP/1.0 style: the body ends when the connection does
			conn, brw, _ := http.NewResponseController(w).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil eof")
			brw.Flush()
			conn.Close()
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		default:
			http.NotFound(w, r)
		}
	}))
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	w := newWorld(t)
	s := startServer(t, Config{DefaultClass: true})
	s.Update(w.sync(service("be"), endpoints("be", hostPort(be)), ingress("be", rule("be.example.com", "Prefix / be:80"))))
	c := client(t, s.HTTPAddr(), nil, false)

	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		trailer      string // X-Sum
		newConns     int32  // backend connections opened by this request
	}{
		{"GET", "/plain", 200, "plain body", "", 1},
		{"GET", "/plain", 200, "plain body", "", 0},
		{"HEAD", "/plain", 200, "", "", 0},
		{"GET", "/204", 204, "", "", 0},
		{"GET", "/304", 304, "", "", 0},
		{"DELETE", "/404", 404, "404 page not found\n", "", 0},
		{"GET", "/chunked", 200, "part one, part two", "42", 0},
		{"GET", "/hints", 200, "after hints", "", 0},
		{"OPTIONS", "/plain", 200, "plain body", "", 0},
		{"GET", "/eof", 200, "until eof", "", 0}, // its connection is not kept
		{"GET", "/plain", 200, "plain body", "", 1},
		{"GET", "/close", 200, "closing", "", 0}, // nor this one
		{"GET", "/plain", 200, "plain body", "", 1},
	} {
		before := conns.Load()
		req := must(http.NewRequest(tc.method, "http://be.example.com"+tc.path, nil))
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || string(body) != tc.body || resp.Trailer.Get("X-Sum") != tc.trailer {
			t.Errorf("%s %s = %d %q (trailer %q, err %v); want %d %q (trailer %q)", tc.method, tc.path,
				resp.StatusCode, body, resp.Trailer.Get("X-Sum"), err, tc.status, tc.body, tc.trailer)
		}
		if got := conns.Load() - before; got != tc.newConns {
			t.Errorf("%s %s opened %d backend connections; want %d", tc.method, tc.path, got, tc.newConns)
		}
	}
}

// A backend that closes a kept-alive connection without saying so: the next GET is sent
// again on a new connection and succeeds.
func TestBackendClosedKeptAliveConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				body := fmt.Sprintf("conn %d", n)
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				// and close, although the response promised to keep the connection
			}()
		}
	}()
	w := newWorld(t)
	s := startServer(t, Config{DefaultClass: true})
	s.Update(w.sync(service("be"), endpoints("be", ln.Addr().String()), ingress("be", rule("be.example.com", "Prefix / be:80"))))
	c := client(t, s.HTTPAddr(), nil, false)
	for i := 1; i <= 3; i++ {
		if i > 1 { // let the close reach the proxy's idle connection
			time.Sleep(20 * time.Millisecond)
		}
		resp, body, err := get(c, "GET", "http://be.example.com/", nil)
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(body, "conn ") {
			t.Errorf("GET #%d = %v %q; want 200 from a fresh connection", i, err, body)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("the backend accepted %d connections; want 3 (one per request)", n)
	}
}

// A client that gives up while the backend thinks: the backend sees its request end, and
// the connection is not reused.
func TestClientGoneWhileBackendThinks(t *testing.T) {
	canceled := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(be.Close)
	w := newWorld(t)
	s := startServer(t, Config{DefaultClass: true})
	s.Update(w.sync(service("be"), endpoints("be", hostPort(be)), ingress("be", rule("be.example.com", "Prefix / be:80"))))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req := must(http.NewRequestWithContext(ctx, "GET", "http://be.example.com/slow", nil))
	if _, err := client(t, s.HTTPAddr(), nil, false).Do(req); err == nil {
		t.Fatal("the request succeeded; want the client's deadline")
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request did not end when the client went away")
	}
}
