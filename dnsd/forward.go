package dnsd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// upstreamTimeout bounds one exchange with one upstream; the next upstream is tried after.
const upstreamTimeout = 2 * time.Second

// forward sends a query to the upstream resolvers in order, over UDP and again over TCP when
// the answer is truncated, and writes the first answer. When every upstream fails the client
// gets SERVFAIL.
type forward struct {
	upstreams []string // "ip:port"
	log       *slog.Logger
	// exchange sends one query; tests replace it.
	exchange func(ctx context.Context, m *dns.Msg, network, addr string) (*dns.Msg, error)
}

func newForward(upstreams []string, log *slog.Logger) *forward {
	udp := &dns.Client{Net: "udp", Timeout: upstreamTimeout, UDPSize: advertisedUDPSize}
	tcp := &dns.Client{Net: "tcp", Timeout: upstreamTimeout}
	return &forward{upstreams: upstreams, log: log,
		exchange: func(ctx context.Context, m *dns.Msg, network, addr string) (*dns.Msg, error) {
			c := udp
			if network == "tcp" {
				c = tcp
			}
			resp, _, err := c.ExchangeContext(ctx, m, addr)
			return resp, err
		}}
}

func (f *forward) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	q := r.Copy()
	q.Id = dns.Id() // never the client's: an off-path answer must guess it
	q.Extra = nil   // the client's OPT is the client's: ours asks for what dnsd can carry
	q.SetEdns0(advertisedUDPSize, r.IsEdns0() != nil && r.IsEdns0().Do())
	var last error
	for _, up := range f.upstreams {
		resp, err := f.ask(ctx, q, up)
		if err != nil {
			last = err
			continue
		}
		resp.Id = r.Id
		resp.Question = []dns.Question{r.Question[0]}
		resp.RecursionAvailable = true
		_ = w.WriteMsg(resp)
		return
	}
	if last == nil {
		last = ErrNoUpstream
	}
	f.log.Debug("forward failed", "name", r.Question[0].Name, "type", dns.TypeToString[r.Question[0].Qtype], "err", last)
	fail(w, r, dns.RcodeServerFailure)
}

// ask queries one upstream: UDP, then TCP when the answer is truncated.
func (f *forward) ask(ctx context.Context, q *dns.Msg, up string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	resp, err := f.exchange(ctx, q, "udp", up)
	if err == nil && resp.Truncated {
		resp, err = f.exchange(ctx, q, "tcp", up)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype {
		return nil, fmt.Errorf("upstream %s: %w", up, ErrBadAnswer)
	}
	if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
		return nil, fmt.Errorf("upstream %s: %s", up, dns.RcodeToString[resp.Rcode])
	}
	return resp, nil
}
