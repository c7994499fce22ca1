package netplane

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// RouteProto marks the routes netplane installs (ip route ... proto 77), so it finds and
// removes exactly its own after a restart and never touches another.
const RouteProto = "77"

// route is one kernel route netplane keeps: dst via a gateway, or dst on a device.
type route struct {
	dst netip.Prefix
	via netip.Addr // zero for a device route
	dev string
}

func (r route) String() string {
	if r.via.IsValid() {
		return r.dst.String() + " via " + r.via.String()
	}
	return r.dst.String() + " dev " + r.dev
}

// wantRoutes is the routing table netplane keeps: every other node's pod subnet via that
// node's InternalIP (host-gw), and the Service range on the node's own LAN device (dev),
// so host processes can reach cluster IPs on a LAN without a default route (nat-output
// then DNATs them to an endpoint and the kernel routes again).
func wantRoutes(s *state.State, self string, serviceCIDR netip.Prefix, dev string) []route {
	var out []route
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		if n.Name == self {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		ip, ierr := netip.ParseAddr(services.NodeInternalIP(n))
		if err != nil || ierr != nil || !cidr.Addr().Is4() || !ip.Is4() {
			continue
		}
		out = append(out, route{dst: cidr.Masked(), via: ip})
	}
	if serviceCIDR.IsValid() && serviceCIDR.Addr().Is4() && dev != "" {
		out = append(out, route{dst: serviceCIDR.Masked(), dev: dev})
	}
	slices.SortFunc(out, func(a, b route) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// installedRoutes lists the routes carrying RouteProto.
func (p *Plane) installedRoutes(ctx context.Context) ([]route, error) {
	out, err := p.sys.ip(ctx, "-4", "-o", "route", "show", "proto", RouteProto)
	if err != nil {
		return nil, err
	}
	return parseRoutes(string(out)), nil
}

// parseRoutes reads `ip -o route show` lines: "10.42.1.0/24 via 192.168.1.12 dev eth0 ...".
func parseRoutes(out string) []route {
	var rs []route
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst, err := netip.ParsePrefix(f[0])
		if err != nil {
			a, aerr := netip.ParseAddr(f[0])
			if aerr != nil {
				continue
			}
			dst = netip.PrefixFrom(a, a.BitLen())
		}
		r := route{dst: dst}
		for i := 1; i+1 < len(f); i++ {
			switch f[i] {
			case "via":
				r.via, _ = netip.ParseAddr(f[i+1])
			case "dev":
				r.dev = f[i+1]
			}
		}
		if r.via.IsValid() {
			r.dev = ""
		}
		rs = append(rs, r)
	}
	return rs
}

// syncRoutes makes the routes carrying RouteProto exactly want.
func (p *Plane) syncRoutes(ctx context.Context, want []route) error {
	have, err := p.installedRoutes(ctx)
	if err != nil {
		return err
	}
	var errs []string
	for _, r := range want {
		if slices.Contains(have, r) {
			continue
		}
		args := []string{"route", "replace", r.dst.String()}
		if r.via.IsValid() {
			args = append(args, "via", r.via.String())
		} else {
			args = append(args, "dev", r.dev, "scope", "link")
		}
		if _, err := p.sys.ip(ctx, append(args, "proto", RouteProto)...); err != nil {
			errs = append(errs, err.Error())
		} else {
			p.log.Info("route added", "route", r.String())
		}
	}
	for _, r := range have {
		if slices.ContainsFunc(want, func(w route) bool { return w.dst == r.dst }) {
			continue
		}
		if _, err := p.sys.ip(ctx, "route", "del", r.dst.String(), "proto", RouteProto); err != nil {
			errs = append(errs, err.Error())
		} else {
			p.log.Info("route removed", "route", r.String())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("routes: %s", strings.Join(errs, "; "))
	}
	return nil
}

// deviceOf returns the device holding addr (the node's LAN interface).
func (p *Plane) deviceOf(ctx context.Context, addr netip.Addr) (string, error) {
	out, err := p.sys.ip(ctx, "-o", "addr", "show", "to", netip.PrefixFrom(addr, addr.BitLen()).String())
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", fmt.Errorf("no interface has address %s", addr)
	}
	return strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"), nil
}
