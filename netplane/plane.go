package netplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containers/podman/v4/pkg/bindings"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/state"
)

// DefaultNetwork is the name of the Podman network pods join.
const DefaultNetwork = "skiff"

// Errors of the Plane's lifecycle and configuration.
var (
	ErrStarted    = errors.New("netplane already started")
	ErrNotStarted = errors.New("netplane not started")
	ErrConfig     = errors.New("netplane config")
)

// Timing of the sync loop.
const (
	// Resync is how often routes and the FORWARD policy are checked again without a state
	// change (someone may have flushed a route, or installed Docker).
	Resync = time.Minute
	// retryMin and retryMax bound the back-off after a failed sync.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// podmanTimeout bounds one Podman API call.
	podmanTimeout = 30 * time.Second
)

// Config configures a node's Plane.
type Config struct {
	Node        string       // this node's name (its Node object)
	NodeIP      netip.Addr   // this node's LAN address (its InternalIP)
	Podman      string       // Podman API socket URI; "" manages no pod network (data plane only)
	Network     string       // Podman network pods join (DefaultNetwork when "")
	ClusterCIDR netip.Prefix // the pod range of the whole cluster (--pod-cidr)
	ServiceCIDR netip.Prefix // cluster IPs (--service-cidr)
	Log         *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if !c.NodeIP.Is4() {
		errs = append(errs, fmt.Errorf("node IP %v is not an IPv4 address", c.NodeIP))
	}
	if !c.ClusterCIDR.IsValid() || !c.ClusterCIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("pod CIDR %v is not an IPv4 prefix", c.ClusterCIDR))
	}
	if !c.ServiceCIDR.IsValid() || !c.ServiceCIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("service CIDR %v is not an IPv4 prefix", c.ServiceCIDR))
	}
	if c.ClusterCIDR.IsValid() && c.ServiceCIDR.IsValid() && c.ClusterCIDR.Overlaps(c.ServiceCIDR) {
		errs = append(errs, fmt.Errorf("pod CIDR %s and service CIDR %s overlap", c.ClusterCIDR, c.ServiceCIDR))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Plane is one node's pod network and Service data plane. Update hands it every new
// snapshot; its own goroutine works on the latest one: the node's Podman network (once the
// leader gave the node a pod subnet), routes to the other nodes' pod subnets, and the
// nftables table of Services. Each is changed only when what it renders changed.
type Plane struct {
	cfg  Config
	log  *slog.Logger
	sys  sys
	conn context.Context // Podman bindings connection; nil without Podman

	latest atomic.Pointer[state.State]
	wake   chan struct{}
	ready  chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the run goroutine (and Teardown after Stop).
	readyOnce    sync.Once
	network      netip.Prefix // the subnet the Podman network was last made with
	dev          string       // the LAN device holding NodeIP
	routes       []route      // last synced; nil forces a sync
	applied      *Ruleset     // last applied; nil: unknown
	forwardAt    time.Time
	lastSync     atomic.Int64 // duration of the last rules update, ns (for Stats)
	appliedRules atomic.Pointer[Ruleset]
	bridge       atomic.Pointer[string] // the pod bridge, for hairpin mode
}

// New returns a Plane for cfg; Start starts it.
func New(cfg Config) (*Plane, error) {
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Plane{cfg: cfg, log: log.With("component", "netplane"), wake: make(chan struct{}, 1), ready: make(chan struct{})}, nil
}

// Start enables IP forwarding (and bridge netfilter, so Service replies between pods on
// one bridge are un-NATed), connects to Podman and starts working on snapshots.
func (p *Plane) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return ErrStarted
	}
	if _, err := p.sys.sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable IP forwarding: %w", err)
	}
	if ok, err := p.sys.sysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		return fmt.Errorf("enable bridge netfilter: %w", err)
	} else if !ok {
		p.log.Warn("br_netfilter is not loaded: a pod reaching a Service whose endpoint is on its own node gets no reply (modprobe br_netfilter)")
	}
	if p.cfg.Podman != "" {
		conn, err := connectPodman(ctx, p.cfg.Podman, 30*time.Second)
		if err != nil {
			return fmt.Errorf("connect to podman at %s: %w", p.cfg.Podman, err)
		}
		p.conn = context.WithoutCancel(conn)
	} else {
		p.readyOnce.Do(func() { close(p.ready) })
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.run(ctx)
	}()
	go func() {
		defer wg.Done()
		p.watchHairpin(ctx)
	}()
	go func() {
		wg.Wait()
		close(p.done)
	}()
	return nil
}

// connectPodman connects to Podman's API, retrying for a while: the agent may start before
// Podman's service answers (a boot, or a service restarting).
func connectPodman(ctx context.Context, uri string, patience time.Duration) (context.Context, error) {
	deadline := time.Now().Add(patience)
	for wait := 200 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		conn, err := bindings.NewConnection(ctx, uri)
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// setBridge records the pod bridge's name and turns hairpin mode on for its ports (netavark
// creates the bridge with the first container; the link monitor handles ports from then).
func (p *Plane) setBridge(ctx context.Context, name string) {
	if name == "" || name == p.bridgeName() {
		return
	}
	p.bridge.Store(&name)
	if err := p.hairpinPorts(ctx, name); err != nil {
		p.log.Debug("hairpin mode", "bridge", name, "err", err) // no bridge until the first pod
	}
}

// Stop stops the loop and waits for a sync in progress. The data plane stays: pods keep
// running and reaching Services while the agent restarts (as with kubelet and kube-proxy).
func (p *Plane) Stop() error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return ErrNotStarted
	}
	cancel()
	<-done
	return nil
}

// Teardown removes what the Plane made: its nftables table, its routes and FORWARD rules,
// and the Podman network when no container uses it. For a node leaving the cluster and
// for tests; call it after Stop.
func (p *Plane) Teardown(ctx context.Context) error {
	var errs []error
	if err := p.deleteTable(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := p.syncRoutes(ctx, nil); err != nil {
		errs = append(errs, err)
	}
	p.removeForward(ctx)
	if p.conn != nil {
		if err := p.removeNetwork(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	p.applied, p.routes, p.network = nil, nil, netip.Prefix{}
	return errors.Join(errs...)
}

// Update hands the Plane a new snapshot. It never blocks: the Plane works on the latest
// snapshot in its own goroutine.
func (p *Plane) Update(s *state.State) {
	p.latest.Store(s)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Ready is closed once this node's pod network exists (at Start without Podman). The node
// loop must not start pods before: they would land on Podman's default network.
func (p *Plane) Ready() <-chan struct{} { return p.ready }

// Stats is what the last rules update took.
type Stats struct {
	Services, Endpoints int
	Rules               time.Duration // rendering and applying the last changed ruleset
}

// Stats reports the last applied ruleset's size and how long applying it took.
func (p *Plane) Stats() Stats {
	st := Stats{Rules: time.Duration(p.lastSync.Load())}
	if rs := p.appliedRules.Load(); rs != nil {
		st.Services, st.Endpoints = rs.Services, rs.Endpoints
	}
	return st
}

func (p *Plane) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retry := retryMin
	var synced *state.State // the snapshot last synced without error
	due := true             // a resync or a retry is due
	for {
		wait := Resync
		// Snapshots come often (every pod status report); one that is the snapshot
		// already synced needs nothing, others cost a render (milliseconds).
		if s := p.latest.Load(); s != nil && (s != synced || due) {
			if err := p.sync(ctx, s); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.log.Warn("network sync failed; retrying", "err", err, "in", retry)
				wait, retry, synced = retry, min(retry*2, retryMax), nil
			} else {
				retry, synced = retryMin, s
			}
		}
		due = false
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
			p.routes = nil // look at the kernel's routes again
			due = true
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sync brings the node's network in line with s; each part is attempted even when an
// earlier one failed.
func (p *Plane) sync(ctx context.Context, s *state.State) error {
	var errs []error
	if p.conn != nil {
		if err := p.syncNetwork(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if time.Since(p.forwardAt) >= Resync {
		if added, err := p.ensureForward(ctx); err != nil {
			errs = append(errs, fmt.Errorf("FORWARD rules: %w", err))
		} else {
			if added {
				p.log.Debug("FORWARD policy is DROP: pod traffic accepted explicitly")
			}
			p.forwardAt = time.Now()
		}
	}
	if p.dev == "" {
		dev, err := p.deviceOf(ctx, p.cfg.NodeIP)
		if err != nil {
			errs = append(errs, err)
		}
		p.dev = dev
	}
	want := wantRoutes(s, p.cfg.Node, p.cfg.ServiceCIDR, p.dev)
	if p.routes == nil || !slices.Equal(p.routes, want) {
		if err := p.syncRoutes(ctx, want); err != nil {
			errs = append(errs, err)
			p.routes = nil
		} else {
			p.routes = want
		}
	}
	start := time.Now()
	rs := Render(RenderInput{State: s, Node: p.cfg.Node, ClusterCIDR: p.cfg.ClusterCIDR})
	if p.applied == nil || rs.Text != p.applied.Text {
		if err := p.applyRules(ctx, rs); err != nil {
			errs = append(errs, fmt.Errorf("nftables: %w", err))
		} else {
			d := time.Since(start)
			p.lastSync.Store(int64(d))
			p.appliedRules.Store(rs)
			p.log.Debug("services programmed", "services", rs.Services, "endpoints", rs.Endpoints, "took", d)
		}
	}
	return errors.Join(errs...)
}

// syncNetwork makes the Podman network once this node has a pod subnet.
func (p *Plane) syncNetwork(ctx context.Context, s *state.State) error {
	o, ok := s.Cluster.Get(state.Key{Kind: "Node", Name: p.cfg.Node})
	if !ok {
		return nil // not registered yet
	}
	cidr, err := netip.ParsePrefix(o.(*corev1.Node).Spec.PodCIDR)
	if err != nil || !cidr.Addr().Is4() {
		return nil // not allocated yet: the leader will
	}
	cidr = cidr.Masked()
	if cidr == p.network {
		return nil
	}
	bridge, err := p.ensureNetwork(ctx, cidr)
	if err != nil {
		return err
	}
	p.setBridge(ctx, bridge)
	p.network = cidr
	p.readyOnce.Do(func() { close(p.ready) })
	return nil
}

// podmanCtx returns a context for one Podman call: the bindings connection, cancelled
// with ctx or after podmanTimeout.
func (p *Plane) podmanCtx(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithTimeout(p.conn, podmanTimeout)
	stop := context.AfterFunc(ctx, cancel)
	return c, func() { stop(); cancel() }
}
