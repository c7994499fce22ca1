package netplane

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"time"
)

// Hairpin: a pod reaching its own Service is DNATed back to itself. With bridge netfilter
// (needed so replies between two pods of one bridge are un-NATed) the kernel then bridges
// the packet straight back out of the port it came in on, which a bridge port only does in
// hairpin mode. Kubernetes' kubelet turns hairpin mode on for every pod's veth; netavark
// (1.4, Debian bookworm) does not, so netplane does: for the ports already on the pod
// bridge when it learns the bridge's name, and for each new one as `ip monitor link`
// reports it, within milliseconds of the pod's start.

// hairpinPorts turns hairpin mode on for every port of bridge where it is off.
func (p *Plane) hairpinPorts(ctx context.Context, bridge string) error {
	out, err := p.sys.ip(ctx, "-o", "-d", "link", "show", "master", bridge)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := linkName(line); ok && strings.Contains(line, "hairpin off") {
			if err := p.setHairpin(ctx, name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Plane) setHairpin(ctx context.Context, port string) error {
	_, err := p.sys.ip(ctx, "link", "set", "dev", port, "type", "bridge_slave", "hairpin", "on")
	return err
}

// linkName reads the name from an `ip -o link` line: "7: veth1@if6: <...> ...".
func linkName(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] == "Deleted" || !strings.HasSuffix(f[0], ":") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
	return name, name != ""
}

// watchHairpin follows `ip monitor link` until ctx ends (restarting it if it dies) and
// turns hairpin mode on for every link that joins the pod bridge.
func (p *Plane) watchHairpin(ctx context.Context) {
	for ctx.Err() == nil {
		if err := p.monitorLinks(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("link monitor stopped; restarting", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (p *Plane) monitorLinks(ctx context.Context) error {
	name, args := "ip", []string{"-o", "monitor", "link"}
	if p.sys.netns != "" {
		name, args = "nsenter", append([]string{"--net=" + p.sys.netns, "ip"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Wait() }()
	// The ports already there when the monitor started.
	if br := p.bridgeName(); br != "" {
		if err := p.hairpinPorts(ctx, br); err != nil {
			p.log.Warn("hairpin mode", "bridge", br, "err", err)
		}
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		br := p.bridgeName()
		// Setting hairpin mode is itself reported; "hairpin" only shows with -d, so
		// check the port again rather than loop.
		if br == "" || !strings.Contains(line, " master "+br+" ") {
			continue
		}
		if _, ok := linkName(line); ok {
			if err := p.hairpinPorts(ctx, br); err != nil && ctx.Err() == nil {
				p.log.Warn("hairpin mode", "bridge", br, "err", err)
			}
		}
	}
	return sc.Err()
}

func (p *Plane) bridgeName() string {
	if v := p.bridge.Load(); v != nil {
		return *v
	}
	return ""
}
