package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/state"
)

// PathEvents serves this node's own events to peers (the public API merges all nodes').
const PathEvents = "/internal/v1/events"

// peers reaches other nodes' APIs: forwarding writes to the leader, proxying logs and
// exec to the node that runs a pod, gathering events.
type peers struct {
	a         *Agent
	client    *http.Client
	transport *http.Transport
}

func newPeers(a *Agent) *peers {
	return &peers{a: a, client: &http.Client{Timeout: 30 * time.Second}}
}

// useTLS makes every call to a peer present this node's certificate.
func (p *peers) useTLS(cfg *tls.Config) {
	p.transport = &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}
	p.client = &http.Client{Timeout: 30 * time.Second, Transport: p.transport}
}

// postJSON sends v to a peer and decodes the answer into out (when not nil).
func (p *peers) postJSON(ctx context.Context, base, path string, v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s", readAPIError(resp))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// apiURL returns a node's API URL from its Node object.
func (p *peers) apiURL(node string) (string, error) {
	o, ok := p.a.store.State().Cluster.Get(state.Key{Kind: "Node", Name: node})
	if !ok {
		return "", fmt.Errorf("node %q is not registered", node)
	}
	u := o.(*corev1.Node).Annotations[AnnotationAPI]
	if u == "" {
		return "", fmt.Errorf("node %q has no API address", node)
	}
	return u, nil
}

// Forward sends a command to the leader's API (Store uses it on followers).
func (p *peers) Forward(ctx context.Context, leaderID string, c *state.Command) error {
	base, err := p.apiURL(leaderID)
	if err != nil {
		return fmt.Errorf("forward to leader: %w", err)
	}
	if err := p.postJSON(ctx, base, PathApply, c, nil); err != nil {
		return fmt.Errorf("forward to leader %s: %w", leaderID, err)
	}
	return nil
}

func (p *peers) getJSON(ctx context.Context, base, path string, v any) error {
	if base == "" {
		return ErrNoLeader
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", readAPIError(resp))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func readAPIError(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
}

func (a *Agent) leaderAPI() string {
	id, _ := a.store.Leader()
	if id == "" {
		return ""
	}
	u, _ := a.peers.apiURL(id)
	return u
}

func (a *Agent) proxyToLeader(w http.ResponseWriter, r *http.Request) {
	id, _ := a.store.Leader()
	if id == "" {
		writeErr(w, http.StatusServiceUnavailable, "%v", ErrNoLeader)
		return
	}
	a.proxyToNode(w, r, id)
}

// proxyToNode passes a request on to another node's API, streaming (logs -f) and
// connection upgrades (exec) included.
func (a *Agent) proxyToNode(w http.ResponseWriter, r *http.Request, node string) {
	base, err := a.peers.apiURL(node)
	if err != nil {
		writeErr(w, http.StatusBadGateway, "%v", err)
		return
	}
	target, err := url.Parse(base)
	if err != nil {
		writeErr(w, http.StatusBadGateway, "node %s: %v", node, err)
		return
	}
	if r.Header.Get("X-Skiff-Forwarded") != "" {
		writeErr(w, http.StatusLoopDetected, "request already forwarded once; node %s is not the right one either", a.cfg.Name)
		return
	}
	rp := &httputil.ReverseProxy{
		Transport: a.peers.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("X-Skiff-Forwarded", a.cfg.Name)
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeErr(w, http.StatusBadGateway, "node %s unreachable: %v", node, err)
		},
	}
	rp.ServeHTTP(w, r)
}

// peerEvents gathers the events of every other node (best effort: a dead node's events
// are simply missing).
func (a *Agent) peerEvents(ctx context.Context, ns string) []corev1.Event {
	var out []corev1.Event
	for _, o := range a.store.State().Cluster.List("Node", "") {
		if o.GetName() == a.cfg.Name {
			continue
		}
		base, err := a.peers.apiURL(o.GetName())
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var evs []corev1.Event
		if err := a.peers.getJSON(cctx, base, PathEvents+"?namespace="+url.QueryEscape(ns), &evs); err == nil {
			out = append(out, evs...)
		}
		cancel()
	}
	return out
}

func (a *Agent) handleLocalEvents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.events.List(r.URL.Query().Get("namespace"), "", ""))
}

func (a *Agent) gitDir() string { return filepath.Join(a.cfg.DataDir, "git") }
