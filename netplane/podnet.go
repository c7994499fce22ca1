package netplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containers/common/libnetwork/types"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	"github.com/containers/podman/v4/pkg/bindings/network"
	"github.com/containers/podman/v4/pkg/errorhandling"
)

// LabelManaged marks the Podman network netplane made (reconciler.LabelManaged's value).
const LabelManaged = "io.skiff.managed"

// Errors of the pod network.
var (
	// ErrNetworkInUse: the node's pod subnet changed but containers still use the old
	// network; it is made again once they are gone.
	ErrNetworkInUse = errors.New("pod network in use")
	// ErrNotOurs: a Podman network of that name exists that skiff did not make.
	ErrNotOurs = errors.New("not made by skiff")
)

// gateway is the first host address of a subnet: the bridge's address, pods' default route.
func gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// ensureNetwork makes the Podman network name a bridge with subnet and its .1 gateway,
// creating it when missing and recreating it when its subnet differs and no container
// uses it. Netavark creates the bridge itself, with its first container.
// It returns the name of the network's bridge.
func (p *Plane) ensureNetwork(ctx context.Context, subnet netip.Prefix) (string, error) {
	ctx, done := p.podmanCtx(ctx)
	defer done()
	name := p.cfg.Network
	cur, err := network.Inspect(ctx, name, nil)
	switch {
	case err == nil && cur.Labels[LabelManaged] != "true":
		return "", fmt.Errorf("podman network %s: %w (choose another name, or remove it)", name, ErrNotOurs)
	case err == nil && sameSubnet(cur, subnet):
		return cur.NetworkInterface, nil
	case err == nil:
		list, err := containers.List(ctx, new(containers.ListOptions).WithAll(true).WithFilters(map[string][]string{"network": {name}}))
		if err != nil {
			return "", fmt.Errorf("list containers on network %s: %w", name, err)
		}
		if len(list) > 0 {
			return "", fmt.Errorf("%w: network %s has subnet %v, this node's pod CIDR is now %s; %d containers still use it",
				ErrNetworkInUse, name, subnets(cur), subnet, len(list))
		}
		if _, err := network.Remove(ctx, name, nil); err != nil {
			return "", fmt.Errorf("remove network %s (subnet %v): %w", name, subnets(cur), err)
		}
		p.log.Info("removed the pod network of an old subnet", "network", name, "old", subnets(cur), "new", subnet)
	case httpCode(err) != 404:
		return "", fmt.Errorf("inspect network %s: %w", name, err)
	}
	gw := gateway(subnet)
	made, err := network.Create(ctx, &types.Network{
		Name:    name,
		Driver:  "bridge",
		Subnets: []types.Subnet{{Subnet: types.IPNet{IPNet: net.IPNet{IP: subnet.Masked().Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}, Gateway: gw.AsSlice()}},
		Labels:  map[string]string{LabelManaged: "true"},
		// Pods resolve through skiff's cluster DNS, not aardvark-dns.
		DNSEnabled: false,
	})
	if err != nil {
		return "", fmt.Errorf("create network %s with subnet %s: %w", name, subnet, err)
	}
	p.log.Info("created the pod network", "network", name, "subnet", subnet, "gateway", gw, "bridge", made.NetworkInterface)
	return made.NetworkInterface, nil
}

// removeNetwork removes the network when no container uses it and skiff made it
// (Teardown).
func (p *Plane) removeNetwork(ctx context.Context) error {
	ctx, done := p.podmanCtx(ctx)
	defer done()
	cur, err := network.Inspect(ctx, p.cfg.Network, nil)
	if err != nil || cur.Labels[LabelManaged] != "true" {
		return nil // gone, or not ours to remove
	}
	if _, err := network.Remove(ctx, p.cfg.Network, nil); err != nil && httpCode(err) != 404 {
		return fmt.Errorf("remove network %s: %w", p.cfg.Network, err)
	}
	return nil
}

func sameSubnet(n types.Network, want netip.Prefix) bool {
	if n.Driver != "bridge" || len(n.Subnets) != 1 {
		return false
	}
	s := n.Subnets[0]
	ones, _ := s.Subnet.Mask.Size()
	ip, ok := netip.AddrFromSlice(s.Subnet.IP)
	gw, gok := netip.AddrFromSlice(s.Gateway)
	return ok && gok && netip.PrefixFrom(ip.Unmap(), ones) == want.Masked() && gw.Unmap() == gateway(want)
}

func subnets(n types.Network) []string {
	var out []string
	for _, s := range n.Subnets {
		out = append(out, s.Subnet.String())
	}
	return out
}

// httpCode is the HTTP status of a failed Podman API call, 0 when the error is not one.
func httpCode(err error) int {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) {
		return em.ResponseCode
	}
	return 0
}
