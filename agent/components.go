package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/dnsd"
	"github.com/skiffhq/skiff/reconciler"
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
	if a.cfg.Network == "" {
		allow = append(allow, podmanDefaultNet)
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
