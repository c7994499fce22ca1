package dnsd

import (
	"container/list"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache bounds: a forwarded answer is kept for its TTL, at most maxCacheTTL; an answer
// without a usable TTL (no SOA on a negative answer, TTL 0) is not kept.
const maxCacheTTL = time.Hour

// cache keeps forwarded answers, positive and negative (RFC 2308), for their TTL, in an
// LRU of a fixed number of entries. A hit is a copy with the TTLs counted down.
type cache struct {
	size int
	now  func() time.Time
	Next Handler

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	name          string // lowercase
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	key    cacheKey
	msg    *dns.Msg
	stored time.Time
	expire time.Time
}

func newCache(size int, next Handler) *cache {
	return &cache{size: size, now: time.Now, Next: next, lru: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *cache) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: r.CheckingDisabled}
	if opt := r.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	if m := c.get(k, r); m != nil {
		_ = w.WriteMsg(m)
		return
	}
	rec := &capture{ResponseWriter: w}
	c.Next.ServeDNS(ctx, rec, r)
	if rec.msg == nil {
		return
	}
	if ttl, ok := cacheTTL(rec.msg); ok {
		c.put(k, rec.msg.Copy(), ttl)
	}
	_ = w.WriteMsg(rec.msg)
}

// get returns a copy of a live entry for r, TTLs lowered by the time it spent in the cache.
func (c *cache) get(k cacheKey, r *dns.Msg) *dns.Msg {
	now := c.now()
	c.mu.Lock()
	el, ok := c.items[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expire) {
		c.lru.Remove(el)
		delete(c.items, k)
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(el)
	c.mu.Unlock()

	m := e.msg.Copy()
	m.Id = r.Id
	m.Question = []dns.Question{r.Question[0]}
	m.RecursionDesired = r.RecursionDesired
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			h.Ttl = max(h.Ttl, age) - age
			if strings.EqualFold(h.Name, r.Question[0].Name) {
				h.Name = r.Question[0].Name // the asker's case, not the first asker's
			}
		}
	}
	return m
}

func (c *cache) put(k cacheKey, m *dns.Msg, ttl time.Duration) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.lru.Remove(el)
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, msg: m, stored: now, expire: now.Add(ttl)})
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// Len returns the number of cached answers.
func (c *cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheTTL is how long an answer may be kept: the smallest TTL of its answer records, or
// for NXDOMAIN and NODATA the SOA's negative TTL (RFC 2308: min of its TTL and MINIMUM).
// Truncated answers and server failures are not kept. A negative answer's SOA gets that TTL.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated {
		return 0, false
	}
	var ttl uint32
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl = m.Answer[0].Header().Ttl
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(soa.Hdr.Ttl, soa.Minttl)
				soa.Hdr.Ttl = ttl // what the client may keep it for, counted down on hits
				break
			}
		}
	}
	d := min(time.Duration(ttl)*time.Second, maxCacheTTL)
	return d, d > 0
}
