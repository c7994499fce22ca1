package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/dnsd"
	"github.com/skiffhq/skiff/ingress"
	"github.com/skiffhq/skiff/netplane"
	"github.com/skiffhq/skiff/pki"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// follow calls update with every new snapshot (the latest only, never a backlog) until ctx
// ends. Each reader gets its own goroutine, so a slow one never delays another.
func (a *Agent) follow(ctx context.Context, update func(*state.State)) {
	ch, unsub := a.feed.Subscribe()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer unsub()
		update(a.feed.State())
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				update(a.feed.State())
			}
		}
	}()
}

// podmanDefaultNet is Podman's default bridge, used when no --network is set.
var podmanDefaultNet = netip.MustParsePrefix("10.88.0.0/16")

// startDNS runs cluster DNS on this node (unless --dns off), fed from every snapshot.
func (a *Agent) startDNS(ctx context.Context) error {
	if a.cfg.DNS == "off" {
		return nil
	}
	svcNet, podNet := netip.MustParsePrefix(a.cfg.ServiceCIDR), netip.MustParsePrefix(a.cfg.PodCIDR)
	allow := []netip.Prefix{podNet, svcNet, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if !a.cfg.NetPlane {
		allow = append(allow, podmanDefaultNet) // pods on an existing network: Podman's default, most likely
	}
	srv, err := dnsd.New(dnsd.Config{
		Addr: a.cfg.DNSAddr(), Domain: a.cfg.ClusterDomain, Upstreams: a.cfg.DNSUpstream,
		Allow: allow, Networks: []netip.Prefix{svcNet, podNet}, Log: a.log.With("component", "dnsd"),
	})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	srv.Update(a.feed.State())
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("dns on %s: %w (use --dns HOST:PORT, or --dns off)", a.cfg.DNSAddr(), err)
	}
	a.dns = srv
	a.follow(ctx, srv.Update)
	return nil
}

// clusterDNS gives ClusterFirst pods the cluster resolver, when pods can use it: resolv.conf
// has no port, so only a DNS server on port 53 works for them.
func (a *Agent) clusterDNS() func(*corev1.Pod) reconciler.DNSConfig {
	if a.dns == nil {
		return nil
	}
	host, port, _ := net.SplitHostPort(a.cfg.DNSAddr())
	if port != "53" {
		a.log.Warn("cluster DNS is not on port 53: pods keep the node's resolver", "dns", a.cfg.DNSAddr())
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = a.cfg.AdvertiseIP()
	}
	return func(pod *corev1.Pod) reconciler.DNSConfig {
		servers, searches, options := dnsd.ResolvConf(pod.Namespace, a.cfg.ClusterDomain, host)
		return reconciler.DNSConfig{Servers: servers, Searches: searches, Options: options}
	}
}

// startIngress runs the TLS ingress on this node (unless both listeners are off). Hosts
// without a certificate get one from the cluster CA, kept in memory only.
func (a *Agent) startIngress(ctx context.Context) error {
	off := func(s string) string {
		if s == "off" {
			return ""
		}
		return s
	}
	if off(a.cfg.HTTP) == "" && off(a.cfg.HTTPS) == "" {
		return nil
	}
	srv, err := ingress.New(ingress.Config{
		HTTP: off(a.cfg.HTTP), HTTPS: off(a.cfg.HTTPS),
		Class: a.cfg.IngressClass, DefaultClass: true,
		Issue: a.issueIngressCert, Log: a.log,
	})
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	srv.Update(a.feed.State())
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("ingress: %w (use --http/--https HOST:PORT, or off)", err)
	}
	a.ingress = srv
	a.follow(ctx, srv.Update)
	return nil
}

// issueIngressCert signs a certificate for hosts that have none in a Secret, so a home lab
// gets HTTPS offline with no certificate handling at all.
func (a *Agent) issueIngressCert(hosts []string) (*tls.Certificate, error) {
	key, csr, err := pki.NewKeyAndCSR(hosts[0])
	if err != nil {
		return nil, err
	}
	crt, err := a.cluster.ca.Sign(csr, hosts[0], "skiff:ingress", nil, hosts, 90*24*time.Hour)
	if err != nil {
		return nil, err
	}
	kp, err := pki.ParseKeyPair(append(crt, a.cluster.ca.CertPEM...), key)
	if err != nil {
		return nil, err
	}
	return &kp.TLS, nil
}

// startNetPlane runs this node's pod network and Service data plane, fed from every
// snapshot, and waits until the node's pod network exists (the leader must have given it
// a subnet): pods must not start on a network that is not there.
func (a *Agent) startNetPlane(ctx context.Context) error {
	if !a.cfg.NetPlane {
		return nil
	}
	ip, err := netip.ParseAddr(a.nodeIP())
	if err != nil {
		return fmt.Errorf("netplane: node address %q: %w", a.nodeIP(), err)
	}
	p, err := netplane.New(netplane.Config{
		Node: a.cfg.Name, NodeIP: ip, Podman: a.cfg.Podman, Network: a.cfg.Network,
		ClusterCIDR: netip.MustParsePrefix(a.cfg.PodCIDR), ServiceCIDR: netip.MustParsePrefix(a.cfg.ServiceCIDR),
		Log: a.log.With("component", "netplane"),
	})
	if err != nil {
		return fmt.Errorf("netplane: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return fmt.Errorf("netplane: %w", err)
	}
	a.plane = p
	a.follow(ctx, p.Update)
	a.setNotReady("waiting for this node's pod network (the leader allocates its subnet)")
	select {
	case <-p.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allocConfig is what the leader's Service allocator needs from the flags.
func (a *Agent) allocConfig() *services.AllocConfig {
	lo, hi := 30000, 32767
	fmt.Sscanf(a.cfg.NodePortRange, "%d-%d", &lo, &hi)
	return &services.AllocConfig{
		ServiceCIDR: netip.MustParsePrefix(a.cfg.ServiceCIDR), PodCIDR: netip.MustParsePrefix(a.cfg.PodCIDR),
		NodePorts: [2]int{lo, hi}, NodeReady: a.health.ready,
	}
}
