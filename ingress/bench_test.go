package ingress

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxy measures one request through the ingress to a backend, over kept-alive
// HTTP/1.1 and over HTTP/2 with TLS; allocations include the client's.
func BenchmarkProxy(b *testing.B) {
	be := echo(b, "bench")
	ca := newTestCA(b)
	w := newWorld(b)
	s := startServer(b, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(service("be"), endpoints("be", hostPort(be)), ingress("be", rule("be.example.com", "Prefix / be:80"))))
	for _, tc := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"h1", client(b, s.HTTPAddr(), nil, false), "http://be.example.com/x"},
		{"h2", client(b, s.HTTPSAddr(), ca.ca.Pool(), true), "https://be.example.com/x"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tc.c.Get(tc.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
