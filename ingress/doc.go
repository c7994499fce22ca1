// Package ingress terminates HTTP and HTTPS for the cluster on every node and proxies each
// request to a ready endpoint of the Service a networking.k8s.io/v1 Ingress names.
//
// Every state snapshot is compiled once (Server.Update) into an immutable routing table —
// hosts, paths, backends with their ready endpoints, certificates by SNI, and the status
// `skiff status` prints — and swapped in atomically, so a git push changes routing without
// dropping an in-flight request or an open connection. Requests are proxied with
// httputil.ReverseProxy{Rewrite: ...}, one per backend, over one shared keep-alive transport.
//
// # Routing
//
// A request's host (the Host header or HTTP/2 :authority, port and trailing dot removed,
// lower-cased) selects, in order, and falls through to the next when no path matches:
//
//  1. the rules for exactly that host;
//  2. the rules for the wildcard host one label up ("*.foo.com" matches bar.foo.com, not
//     foo.com and not baz.bar.foo.com);
//  3. the rules without a host (they match every host);
//  4. the defaultBackend (of the oldest Ingress that has one);
//  5. 404.
//
// Within a host the longest matching path wins; on a tie Exact beats Prefix. Paths:
//
//   - Exact: the request path equals the path, case-sensitively (/foo does not match /foo/).
//   - Prefix: element-wise on "/": /foo matches /foo, /foo/ and /foo/bar, not /foobar; a
//     trailing slash in the rule is ignored (/foo/ is the same rule as /foo).
//   - ImplementationSpecific: here it means Prefix, exactly; an empty path means "/".
//
// Several Ingresses merge. When two define the same host and path (the same match:
// Prefix /foo, Prefix /foo/ and ImplementationSpecific /foo are one), the TLS secret of the
// same host, or a defaultBackend, the oldest Ingress wins (creation time, then
// namespace/name) and the others are reported in Status.
//
// # Backends
//
// A backend is a Service of the Ingress's namespace, by port number (the Service's port)
// or port name; requests go to its ready endpoints only (services.Endpoints: pods by
// readiness, or a selector-less Service's Endpoints), round-robin, skipping for a few
// seconds an endpoint that refused a connection. A request without a body whose method is
// idempotent is retried on another endpoint when the connection fails. No ready endpoint,
// a missing Service or a missing port gives 503. The backend sees the client's Host;
// X-Forwarded-For (the client address; incoming X-Forwarded-* headers are dropped, this is
// the edge), X-Forwarded-Host and X-Forwarded-Proto are set. Websockets (HTTP/1.1 Upgrade)
// pass through; responses of unknown length and event streams are flushed as they arrive.
//
// Requests are served by three front ends, all routing by the same table:
//
//   - HTTP/1.1 (front.go), on both listeners: the request that is nearly all traffic — GET
//     or HEAD without a body, routed to a backend with ready endpoints — is parsed in place,
//     its head copied to a kept-alive backend connection and the answer relayed as bytes on
//     the connection's goroutine. At the first request it does not take (bodies, upgrades,
//     Expect, escaped paths, HTTP/1.0, redirects, errors, malformed or large heads) it hands
//     the connection, with what it has read, to net/http's server. A fuzz test checks it
//     reads every head it takes as net/http does.
//   - HTTP/2 (h2.go): the HTTPS listener does the TLS handshake and serves h2 connections
//     with x/net/http2's Framer (frame limits, CONTINUATION, HPACK decoding) — 250 streams
//     per connection, flow control both ways, GOAWAY at Stop and after the idle timeout. A
//     bodiless GET or HEAD is proxied raw and answered with HEADERS and DATA in one write
//     (headers as HPACK literals without indexing, as nginx sends them); every other
//     stream runs ServeHTTP behind an http.ResponseWriter.
//   - net/http's server and ServeHTTP (ReverseProxy) for the rest.
//
// net/http's own HTTP/2 server was not used because it writes and flushes each
// response's HEADERS before its DATA (two TLS records and two writes per response) and
// hops goroutines and channels per frame: it spent twice nginx's CPU per request.
//
// Backends are spoken to over kept-alive HTTP/1.1. Bodiless idempotent requests — nearly
// all traffic — take a lean client that writes the request and reads the answer on the
// request's own goroutine (h1.go); requests with bodies, upgrades and Expect go through
// net/http's Transport. Both are RoundTrippers under the same ReverseProxy.
//
// # TLS
//
// HTTPS offers HTTP/2 and HTTP/1.1, TLS 1.2 (ECDHE with AES-GCM or ChaCha20-Poly1305 only)
// and 1.3. The certificate is chosen by SNI: a host listed in spec.tls with a secretName
// gets that kubernetes.io/tls Secret's chain and key (a wildcard host such as *.foo.com
// covers one label, as a wildcard certificate does); spec.tls without hosts applies to every
// host of that Ingress's rules. Every other host, and a host whose Secret is unusable
// (missing, malformed, mismatched key, expired, not covering the host), gets a certificate
// from the cluster CA (Config.Issue), kept in memory only and renewed before it expires, so
// a home lab works offline. Clients without SNI or naming an unknown host get the default
// certificate (DefaultCertName); a syntactically invalid SNI fails the handshake. Plain HTTP
// requests for hosts listed in spec.tls are redirected to HTTPS (308).
//
// # Limits
//
// Request headers must arrive within 10s (slowloris) and fit in 64 KiB (431 otherwise);
// idle keep-alive connections close after 2 minutes; a backend must accept a connection
// within 3s and start answering within 60s; bodies and upgraded connections are not timed.
package ingress
