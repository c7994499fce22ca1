package netplane

import (
	"context"
	"os/exec"
	"strings"
)

// forwardRules are the iptables rules netplane adds when the host's FORWARD chain drops by
// default (Docker and ufw set that policy; Debian's default and netavark leave it at
// ACCEPT). Netavark itself only accepts traffic leaving its subnet and replies coming
// back, so without them a pod on another node, or a NodePort client, could not open a
// connection to a pod here. nftables cannot override another table's drop, so these go
// into the iptables chain that drops (through the iptables command netavark needs anyway).
func forwardRules(cluster string) [][]string {
	c := []string{"-m", "comment", "--comment", "skiff pod network", "-j", "ACCEPT"}
	return [][]string{append([]string{"-s", cluster}, c...), append([]string{"-d", cluster}, c...)}
}

// ensureForward adds forwardRules when the FORWARD policy is DROP; it reports whether it
// had to.
func (p *Plane) ensureForward(ctx context.Context) (bool, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return false, nil // no iptables, no netavark firewall rules either
	}
	out, err := p.sys.run(ctx, "", "iptables", "-w", "-S", "FORWARD")
	if err != nil {
		return false, err
	}
	if !strings.Contains(string(out), "-P FORWARD DROP") {
		return false, nil
	}
	for _, r := range forwardRules(p.cfg.ClusterCIDR.Masked().String()) {
		if _, err := p.sys.run(ctx, "", "iptables", append([]string{"-w", "-C", "FORWARD"}, r...)...); err == nil {
			continue
		}
		if _, err := p.sys.run(ctx, "", "iptables", append([]string{"-w", "-I", "FORWARD", "1"}, r...)...); err != nil {
			return true, err
		}
	}
	return true, nil
}

// removeForward deletes forwardRules where present (Teardown).
func (p *Plane) removeForward(ctx context.Context) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return
	}
	for _, r := range forwardRules(p.cfg.ClusterCIDR.Masked().String()) {
		for {
			if _, err := p.sys.run(ctx, "", "iptables", append([]string{"-w", "-D", "FORWARD"}, r...)...); err != nil {
				break
			}
		}
	}
}
