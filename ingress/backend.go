package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// Transport limits toward backends.
const (
	dialTimeout           = 3 * time.Second
	responseHeaderTimeout = 60 * time.Second
	backendIdleTimeout    = 90 * time.Second
	maxIdlePerEndpoint    = 256
	// downFor is how long an endpoint that refused a connection is skipped (it is still
	// tried when every endpoint is down).
	downFor = 5 * time.Second
	// maxAttempts bounds the endpoints one retryable request tries.
	maxAttempts = 3
	// flushInterval bounds how long a trickling response waits in buffers.
	flushInterval = 100 * time.Millisecond
)

// endpoint is one ready address of a backend. Its state outlives a table: the server keeps
// one per address across updates, so a dead pod stays marked down after a recompile.
type endpoint struct {
	addr      string       // ip:port
	downUntil atomic.Int64 // unix nanoseconds; 0 when up
}

func (e *endpoint) down(now int64) bool {
	d := e.downUntil.Load()
	return d != 0 && now < d
}

// backend is one Service port behind one or more routes: its ready endpoints and the
// reverse proxy that reaches them. Problem, when set, is why it cannot serve (503).
type backend struct {
	name    string // namespace/service:port
	problem string
	eps     []*endpoint
	next    atomic.Uint32
	proxy   *httputil.ReverseProxy
	rt      http.RoundTripper
	onError func(*backend, error)
}

// RoundTrip sends the request to the next endpoint, round-robin, and for a retryable request
// (idempotent method, no body) tries further endpoints when the connection fails.
func (b *backend) RoundTrip(req *http.Request) (*http.Response, error) {
	var resp *http.Response
	tried := 0
	err := b.each(retryable(req), func(addr string) error {
		r := req
		if tried > 0 { // a fresh request value for each further attempt
			r = req.Clone(req.Context())
		}
		tried++
		r.URL.Host = addr
		var err error
		resp, err = b.rt.RoundTrip(r)
		if err != nil && req.Context().Err() != nil {
			return stop(err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// stopErr ends each's attempts (the client went away).
type stopErr struct{ error }

func (e stopErr) Unwrap() error { return e.error }

func stop(err error) error { return stopErr{err} }

// each calls try with the next endpoint's address, round-robin, until it succeeds; when
// retry is set it tries up to maxAttempts endpoints, those not marked down first. An
// endpoint that refuses connections is marked down for a while. try returns stop(err) to
// give up at once. each returns the last error.
func (b *backend) each(retry bool, try func(addr string) error) error {
	n := len(b.eps)
	if n == 0 { // the table changed under a request that had found endpoints: cannot happen
		return errNoEndpoints
	}
	start := int(b.next.Add(1))
	attempts := 1
	if retry {
		attempts = min(n, maxAttempts)
	}
	var now int64
	var lastErr error
	tried := 0
	// First pass skips endpoints marked down, the second takes only those.
	for pass := 0; pass < 2 && tried < attempts; pass++ {
		for i := 0; i < n && tried < attempts; i++ {
			ep := b.eps[(start+i)%n]
			if ep.downUntil.Load() != 0 {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				if ep.down(now) != (pass == 1) {
					continue
				}
			} else if pass == 1 {
				continue
			}
			tried++
			err := try(ep.addr)
			if err == nil {
				if ep.downUntil.Load() != 0 {
					ep.downUntil.Store(0)
				}
				return nil
			}
			var st stopErr
			if errors.As(err, &st) {
				return st.error
			}
			lastErr = err
			if isDialError(err) {
				ep.downUntil.Store(time.Now().Add(downFor).UnixNano())
			}
			if b.onError != nil {
				b.onError(b, fmt.Errorf("endpoint %s: %w", ep.addr, err))
			}
			if !retry {
				return err
			}
		}
	}
	return lastErr
}

var errNoEndpoints = errors.New("no ready endpoints")

// retryable: a request that can be sent again as it is.
func retryable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// rewrite prepares the outbound request; the endpoint is chosen by backend.RoundTrip. The
// client's Host goes to the backend as is.
func rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "backend.invalid"
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// newTransport is the one keep-alive transport every backend shares, so connections to an
// endpoint survive table swaps.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never an HTTP_PROXY from the environment
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   maxIdlePerEndpoint,
		IdleConnTimeout:       backendIdleTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies with.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// proxyError answers a request whose backend could not be reached.
func proxyError(log func(string, ...any)) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			return // the client went away
		}
		log("ingress: backend failed", "host", r.Host, "path", r.URL.Path, "err", err)
		http.Error(w, "502 bad gateway: the backend did not answer", http.StatusBadGateway)
	}
}
