package netplane

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lab is a simulated cluster of network namespaces, made for one test and removed with
// it: a LAN namespace holding a bridge, node namespaces on it (192.168.77.0/24), and pod
// namespaces on each node's own bridge (the node's pod subnet, gateway .1), as netavark
// would wire them. Pods run a TCP server on 8080 answering "<pod> <client address>".
type lab struct {
	t      *testing.T
	id     string
	lan    string // LAN namespace name
	nodes  map[string]*labNode
	mu     sync.Mutex
	closed []func()
}

type labNode struct {
	name   string
	ns     string // namespace name
	ip     netip.Addr
	subnet netip.Prefix
	pods   int
}

type labPod struct {
	name string
	ns   string
	ip   netip.Addr
}

func nsPath(name string) string { return "/run/netns/" + name }

// newLab needs root and the ip command; it registers its own cleanup.
func newLab(t *testing.T) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespaces: not in -short mode")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &lab{t: t, id: "sk" + hex.EncodeToString(b), nodes: map[string]*labNode{}}
	l.lan = l.id + "-lan"
	t.Cleanup(l.close)
	l.netns(l.lan)
	l.ip(l.lan, "link", "add", "br0", "type", "bridge")
	l.ip(l.lan, "link", "set", "br0", "up")
	return l
}

func (l *lab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ip runs an ip command in namespace ns ("" = here).
func (l *lab) ip(ns string, args ...string) string {
	l.t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return l.run("ip", args...)
}

// in runs a command in namespace ns.
func (l *lab) in(ns string, name string, args ...string) string {
	l.t.Helper()
	return l.run("nsenter", append([]string{"--net=" + nsPath(ns), name}, args...)...)
}

func (l *lab) netns(name string) {
	l.t.Helper()
	l.run("ip", "netns", "add", name)
	l.onClose(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	l.ip(name, "link", "set", "lo", "up")
}

func (l *lab) onClose(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = append(l.closed, f)
}

// close undoes everything in reverse (deleting a namespace removes its links, routes
// and nftables tables with it).
func (l *lab) close() {
	l.mu.Lock()
	fs := l.closed
	l.closed = nil
	l.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// lanHost adds a namespace on the LAN with address ip (a node, or an outside client).
func (l *lab) lanHost(ns string, ip netip.Addr) {
	l.t.Helper()
	l.netns(ns)
	peer := l.uniqueLink()
	l.ip("", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", l.lan)
	l.ip(l.lan, "link", "set", peer, "master", "br0", "up")
	l.ip(ns, "addr", "add", ip.String()+"/24", "dev", "eth0")
	l.ip(ns, "link", "set", "eth0", "up")
}

var linkSeq struct {
	sync.Mutex
	n int
}

// uniqueLink returns a link name no other lab in this process uses.
func (l *lab) uniqueLink() string {
	linkSeq.Lock()
	defer linkSeq.Unlock()
	linkSeq.n++
	return fmt.Sprintf("%s%d", l.id, linkSeq.n)
}

// node adds a node with its pod bridge "cni0" at the subnet's .1.
func (l *lab) node(name, ip, subnet string) *labNode {
	l.t.Helper()
	n := &labNode{name: name, ns: l.id + "-" + name, ip: netip.MustParseAddr(ip), subnet: netip.MustParsePrefix(subnet)}
	l.lanHost(n.ns, n.ip)
	l.ip(n.ns, "link", "add", "cni0", "type", "bridge")
	l.ip(n.ns, "addr", "add", gateway(n.subnet).String()+"/"+fmt.Sprint(n.subnet.Bits()), "dev", "cni0")
	l.ip(n.ns, "link", "set", "cni0", "up")
	l.nodes[name] = n
	return n
}

// client adds a host outside the cluster on the LAN.
func (l *lab) client(name, ip string) *labPod {
	l.t.Helper()
	p := &labPod{name: name, ns: l.id + "-" + name, ip: netip.MustParseAddr(ip)}
	l.lanHost(p.ns, p.ip)
	return p
}

// pod adds a pod namespace on node n with address ip, serving TCP 8080 unless serve is
// false.
func (l *lab) pod(n *labNode, name, ip string, serve bool) *labPod {
	l.t.Helper()
	p := &labPod{name: name, ns: l.id + "-" + name, ip: netip.MustParseAddr(ip)}
	l.netns(p.ns)
	n.pods++
	peer := l.uniqueLink()
	l.ip("", "link", "add", "eth0", "netns", p.ns, "type", "veth", "peer", "name", peer, "netns", n.ns)
	l.ip(n.ns, "link", "set", peer, "master", "cni0", "up")
	l.ip(p.ns, "addr", "add", ip+"/"+fmt.Sprint(n.subnet.Bits()), "dev", "eth0")
	l.ip(p.ns, "link", "set", "eth0", "up")
	l.ip(p.ns, "route", "add", "default", "via", gateway(n.subnet).String())
	if serve {
		l.serve(p, 8080)
	}
	return p
}

// serve answers every TCP connection on port with "<pod name> <client address>\n".
func (l *lab) serve(p *labPod, port int) {
	l.t.Helper()
	var ln net.Listener
	if err := inNetNS(nsPath(p.ns), func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	l.onClose(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ra := c.RemoteAddr().(*net.TCPAddr)
				fmt.Fprintf(c, "%s %s\n", p.name, ra.IP)
			}()
		}
	}()
}

// reply is what one connection got.
type reply struct {
	backend string // the pod that answered
	source  string // the client address that pod saw
	err     error
}

// dial connects from namespace ns to addr and reads the answer.
func dial(ns, addr string, timeout time.Duration) reply {
	var c net.Conn
	err := inNetNS(nsPath(ns), func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return reply{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return reply{err: err}
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return reply{err: fmt.Errorf("bad answer %q", line)}
	}
	return reply{backend: f[0], source: f[1]}
}

// dialMany makes n connections and counts the answers by backend.
func dialMany(ns, addr string, n int) (map[string]int, []string, error) {
	count := map[string]int{}
	var sources []string
	for range n {
		r := dial(ns, addr, 2*time.Second)
		if r.err != nil {
			return count, sources, r.err
		}
		count[r.backend]++
		sources = append(sources, r.source)
	}
	return count, sources, nil
}

// refused reports whether a connection is refused at once (TCP reset or ICMP
// unreachable), as opposed to answered or timing out.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, d, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
