package ingress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// While clients send requests over kept-alive HTTP/1.1 and HTTP/2 connections, snapshots
// that change a path are swapped in: no request fails, no connection is dropped, a
// streaming request in flight finishes on the backend it started on, and the new route
// takes effect.
func TestUpdateUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	v1, v2 := echo(t, "v1"), echo(t, "v2")
	release := make(chan struct{})
	slow := echoSlow(t, release)
	ca := newTestCA(t)
	w := newWorld(t)
	w.sync(
		service("v1"), endpoints("v1", hostPort(v1)),
		service("v2"), endpoints("v2", hostPort(v2)),
		service("slow"), endpoints("slow", hostPort(slow)),
		ingress("app", rule("load.example.com", "Prefix / v1:80", "Prefix /slow slow:80")))
	old := w.m.State()
	next := w.add(ingress("app-api", rule("load.example.com", "Prefix /api v2:80")))

	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(old)

	var dials atomic.Int32
	counting := func(addr string, h2 bool) *http.Client {
		c := client(t, addr, ca.ca.Pool(), h2)
		tr := c.Transport.(*http.Transport)
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		return c
	}
	clients := []struct {
		c      *http.Client
		scheme string
	}{
		{counting(s.HTTPAddr(), false), "http"},
		{counting(s.HTTPAddr(), false), "http"},
		{counting(s.HTTPSAddr(), true), "https"},
		{counting(s.HTTPSAddr(), false), "https"},
	}

	// A streaming request that stays in flight across the updates.
	streamDone := make(chan error, 1)
	go func() {
		resp, err := clients[2].c.Get("https://load.example.com/slow")
		if err != nil {
			streamDone <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "start\nend\n" {
			err = io.ErrUnexpectedEOF
		}
		streamDone <- err
	}()

	var (
		ctx, stop       = context.WithCancel(context.Background())
		wg              sync.WaitGroup
		total, failures atomic.Int64
		fromV2          atomic.Int64
		firstFailure    atomic.Pointer[string]
	)
	for _, cl := range clients {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					resp, body, err := get(cl.c, "GET", cl.scheme+"://load.example.com/api/items", nil)
					total.Add(1)
					if err != nil || resp.StatusCode != 200 {
						failures.Add(1)
						msg := body
						if err != nil {
							msg = err.Error()
						}
						firstFailure.CompareAndSwap(nil, &msg)
						continue
					}
					if resp.Header.Get("X-Backend") == "v2" {
						fromV2.Add(1)
					}
				}
			}()
		}
	}
	waitFor(t, "warm-up requests", 10*time.Second, func() bool { return total.Load() >= 100 })
	warmDials := dials.Load()
	// Flip back and forth under load, ending on the new route.
	for i := range 20 {
		if i%2 == 0 {
			s.Update(next)
		} else {
			s.Update(old)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Update(next)
	before := fromV2.Load()
	waitFor(t, "the new path to take effect", 10*time.Second, func() bool { return fromV2.Load() > before+50 })
	close(release)
	select {
	case err := <-streamDone:
		if err != nil {
			t.Errorf("the streaming request across the updates failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the streaming request across the updates did not finish")
	}
	stop()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the updates (first: %s)", n, total.Load(), *firstFailure.Load())
	}
	if d := dials.Load(); d != warmDials {
		t.Errorf("clients dialled %d new connections during the updates; want 0 (open connections kept)", d-warmDials)
	}
	t.Logf("%d requests, %d answered by the new route", total.Load(), fromV2.Load())
}

// echoSlow answers "start\n" at once and "end\n" when release is closed.
func echoSlow(t *testing.T, release <-chan struct{}) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := bufio.NewWriter(w)
		bw.WriteString("start\n")
		bw.Flush()
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "end\n")
	}))
	t.Cleanup(b.Close)
	return b
}
