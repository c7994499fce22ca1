package dnsd

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// newTestServer returns a server on a loopback high port (not started) with a dead upstream,
// for tests that call its handler directly.
func newTestServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = []string{"127.0.0.1:1"}
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// testWriter is a ResponseWriter that keeps the response.
type testWriter struct {
	remote net.Addr
	msg    *dns.Msg
	writes int
}

func (w *testWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *testWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *testWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *testWriter) Close() error                { return nil }
func (w *testWriter) TsigStatus() error           { return nil }
func (w *testWriter) TsigTimersOnly(bool)         {}
func (w *testWriter) Hijack()                     {}
func (w *testWriter) WriteMsg(m *dns.Msg) error {
	w.msg = m
	w.writes++
	return nil
}
