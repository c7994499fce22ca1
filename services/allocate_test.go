package services

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

var allocCfg = AllocConfig{
	ServiceCIDR: netip.MustParsePrefix("10.43.0.0/16"),
	PodCIDR:     netip.MustParsePrefix("10.42.0.0/16"),
	NodePorts:   [2]int{30000, 32767},
}

func node(name, ip string, mutate ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	for _, m := range mutate {
		m(n)
	}
	return n
}

// allocCluster is a MemStore the allocator plans over, as the leader's controller would:
// every plan's puts and deletes applied as one command.
type allocCluster struct {
	t      testing.TB
	m      *state.MemStore
	cfg    AllocConfig
	events []Event
}

func newAllocCluster(t testing.TB, cfg AllocConfig, nodes ...*corev1.Node) *allocCluster {
	c := &allocCluster{t: t, m: state.NewMemStore(), cfg: cfg}
	c.m.Now = func() time.Time { return time.Unix(0, 0) }
	if len(nodes) > 0 {
		c.apply(&state.Command{Put: state.Wrap(nodes...)})
	}
	return c
}

func (c *allocCluster) apply(cmd *state.Command) {
	c.t.Helper()
	if err := c.m.Apply(c.t.Context(), cmd); err != nil {
		c.t.Fatal(err)
	}
}

// sync makes objs the live commit and plans until nothing changes (at most 3 plans: the
// allocator must converge in one).
func (c *allocCluster) sync(objs ...manifest.Object) {
	c.t.Helper()
	c.apply(&state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c"}, Objects: state.Wrap(objs...)}})
	c.plan()
}

func (c *allocCluster) plan() {
	c.t.Helper()
	c.events = nil
	for i := range 3 {
		put, del, ev := Plan(c.m.State(), c.cfg, time.Unix(0, 0))
		if i == 0 {
			c.events = ev
		}
		if len(put) == 0 && len(del) == 0 {
			if i > 1 {
				c.t.Errorf("allocation took %d plans to converge; want 1", i)
			}
			return
		}
		c.apply(&state.Command{Put: state.Wrap(put...), Delete: del})
	}
	c.t.Fatal("allocation does not converge")
}

// render prints the allocated copies: "ns/name clusterIP port:nodePort/proto... lb=[ips]".
func (c *allocCluster) render() []string {
	var out []string
	for _, s := range state.Typed[*corev1.Service](c.m.State().Cluster.List("Service", "")) {
		line := s.Namespace + "/" + s.Name + " " + orDash(s.Spec.ClusterIP)
		if len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIPs[0] != s.Spec.ClusterIP {
			line += " clusterIPs-mismatch"
		}
		for _, p := range s.Spec.Ports {
			line += fmt.Sprintf(" %d:%d/%s", p.Port, p.NodePort, p.Protocol)
		}
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			var ips []string
			for _, i := range s.Status.LoadBalancer.Ingress {
				ips = append(ips, i.IP)
			}
			line += " lb=" + strings.Join(ips, ",")
		}
		out = append(out, line)
	}
	return out
}

func (c *allocCluster) renderEvents() []string {
	var out []string
	for _, e := range c.events {
		out = append(out, fmt.Sprintf("%s %s/%s %s: %s", e.Type, e.Object.GetNamespace(), e.Object.GetName(), e.Reason, e.Message))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// matchAll checks got against glob patterns (path.Match), one per line.
func matchAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		m, err := path.Match(want[i], got[i])
		if err != nil {
			t.Fatalf("bad pattern %q: %v", want[i], err)
		}
		ok = m
	}
	if !ok {
		t.Errorf("%s =\n\t%s\nwant\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func typed(typ corev1.ServiceType) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = typ
		if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
}

func clusterIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.ClusterIP = ip }
}

func nodePort(i int, np int32) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports[i].NodePort = np }
}

func ports(ps ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports = ps }
}

func TestPlanServices(t *testing.T) {
	small := allocCfg
	small.ServiceCIDR = netip.MustParsePrefix("10.43.0.0/29") // 5 usable addresses: .2 to .6
	small.NodePorts = [2]int{30000, 30001}
	tests := []struct {
		name   string
		cfg    AllocConfig
		nodes  []*corev1.Node
		steps  [][]manifest.Object // successive commits
		want   []string            // after the last commit
		events []string            // of the last commit's plan
	}{
		{name: "dynamic cluster IP above the static band",
			steps: [][]manifest.Object{{svc("web")}},
			want:  []string{"default/web 10.43.[1-9]*.* 80:0/TCP"}},
		{name: "clusterIP written in git",
			steps: [][]manifest.Object{{svc("web", clusterIP("10.43.0.10"))}},
			want:  []string{"default/web 10.43.0.10 80:0/TCP"}},
		{name: "clusterIP outside the range is refused, not replaced",
			steps:  [][]manifest.Object{{svc("web", clusterIP("10.99.0.10"))}},
			want:   []string{"default/web - 80:0/TCP"},
			events: []string{"Warning default/web ClusterIPNotAllocated: spec.clusterIP 10.99.0.10 is outside the service range 10.43.0.0/16"}},
		{name: "network and first address are reserved",
			steps: [][]manifest.Object{{svc("a", clusterIP("10.43.0.1")), svc("b", clusterIP("10.43.0.0"))}},
			want:  []string{"default/a - 80:0/TCP", "default/b - 80:0/TCP"},
			events: []string{"Warning default/a ClusterIPNotAllocated: spec.clusterIP 10.43.0.1 is outside the service range 10.43.0.0/16",
				"Warning default/b ClusterIPNotAllocated: spec.clusterIP 10.43.0.0 is outside the service range 10.43.0.0/16"}},
		{name: "clusterIP of another Service is refused",
			steps: [][]manifest.Object{{svc("a", clusterIP("10.43.0.10"))},
				{svc("a", clusterIP("10.43.0.10")), svc("b", clusterIP("10.43.0.10"))}},
			want:   []string{"default/a 10.43.0.10 80:0/TCP", "default/b - 80:0/TCP"},
			events: []string{"Warning default/b ClusterIPNotAllocated: spec.clusterIP 10.43.0.10 is already allocated to Service default/a"}},
		{name: "an allocation never moves, even when another Service asks for it later",
			steps:  [][]manifest.Object{{svc("a", clusterIP("10.43.0.10"))}, {svc("a"), svc("b", clusterIP("10.43.0.10"))}},
			want:   []string{"default/a 10.43.0.10 80:0/TCP", "default/b - 80:0/TCP"},
			events: []string{"Warning default/b ClusterIPNotAllocated: spec.clusterIP 10.43.0.10 is already allocated to Service default/a"}},
		{name: "git moves a clusterIP to a free address",
			steps: [][]manifest.Object{{svc("a", clusterIP("10.43.0.10"))}, {svc("a", clusterIP("10.43.0.11"))}},
			want:  []string{"default/a 10.43.0.11 80:0/TCP"}},
		{name: "git moves a clusterIP to a taken address: the old one stays",
			steps: [][]manifest.Object{{svc("a", clusterIP("10.43.0.10")), svc("b", clusterIP("10.43.0.11"))},
				{svc("a", clusterIP("10.43.0.11")), svc("b", clusterIP("10.43.0.11"))}},
			want:   []string{"default/a 10.43.0.10 80:0/TCP", "default/b 10.43.0.11 80:0/TCP"},
			events: []string{"Warning default/a ClusterIPNotAllocated: spec.clusterIP 10.43.0.11 is already allocated to Service default/b; keeping 10.43.0.10"}},
		{name: "headless and ExternalName get no address",
			steps: [][]manifest.Object{{svc("h", clusterIP("None")), svc("x", typed(corev1.ServiceTypeExternalName), func(s *corev1.Service) {
				s.Spec.ExternalName, s.Spec.Ports, s.Spec.Selector = "db.example.com", nil, nil
			})}},
			want: []string{"default/h None 80:0/TCP", "default/x -"}},
		{name: "becoming headless frees the address",
			steps: [][]manifest.Object{{svc("a", clusterIP("10.43.0.10"))}, {svc("a", clusterIP("None")), svc("b", clusterIP("10.43.0.10"))}},
			want:  []string{"default/a None 80:0/TCP", "default/b 10.43.0.10 80:0/TCP"}},
		{name: "NodePort: dynamic above the static band, git's honoured",
			steps: [][]manifest.Object{{svc("a", typed(corev1.ServiceTypeNodePort)),
				svc("b", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080))}},
			want: []string{"default/a 10.43.*.* 80:3[0-2][0-9][0-9][0-9]/TCP", "default/b 10.43.*.* 80:30080/TCP"}},
		{name: "node port clash and out of range are reported",
			steps: [][]manifest.Object{{svc("a", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080))},
				{svc("a", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080)),
					svc("b", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080)),
					svc("c", typed(corev1.ServiceTypeNodePort), nodePort(0, 8080))}},
			want: []string{"default/a 10.43.*.* 80:30080/TCP", "default/b 10.43.*.* 80:0/TCP", "default/c 10.43.*.* 80:0/TCP"},
			events: []string{"Warning default/b NodePortNotAllocated: spec.ports[0].nodePort 30080 is already allocated to Service default/a",
				"Warning default/c NodePortNotAllocated: spec.ports[0].nodePort 8080 is outside the node port range 30000-32767"}},
		{name: "a node port is kept by port name when the port number changes",
			steps: [][]manifest.Object{{svc("a", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080))},
				{svc("a", typed(corev1.ServiceTypeNodePort), ports(corev1.ServicePort{Name: "http", Port: 8000, Protocol: corev1.ProtocolTCP}))}},
			want: []string{"default/a 10.43.*.* 8000:30080/TCP"}},
		{name: "one port number over TCP and UDP shares its node port",
			steps: [][]manifest.Object{{svc("dns", typed(corev1.ServiceTypeNodePort), ports(
				corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP}))}},
			want: []string{"default/dns 10.43.*.* 53:3????/UDP 53:3????/TCP"}},
		{name: "NodePort back to ClusterIP drops its node ports",
			steps: [][]manifest.Object{{svc("a", typed(corev1.ServiceTypeNodePort), nodePort(0, 30080))}, {svc("a")}},
			want:  []string{"default/a 10.43.*.* 80:0/TCP"}},
		{name: "LoadBalancer: every ready node's address, in node order",
			cfg:   func() AllocConfig { c := allocCfg; c.NodeReady = func(n string) bool { return n != "n2" }; return c }(),
			nodes: []*corev1.Node{node("n3", "192.168.1.13"), node("n1", "192.168.1.11"), node("n2", "192.168.1.12")},
			steps: [][]manifest.Object{{svc("lb", typed(corev1.ServiceTypeLoadBalancer))}},
			want:  []string{"default/lb 10.43.*.* 80:3????/TCP lb=192.168.1.11,192.168.1.13"}},
		{name: "LoadBalancer without node ports",
			nodes: []*corev1.Node{node("n1", "192.168.1.11")},
			steps: [][]manifest.Object{{svc("lb", typed(corev1.ServiceTypeLoadBalancer), func(s *corev1.Service) {
				no := false
				s.Spec.AllocateLoadBalancerNodePorts = &no
			})}},
			want: []string{"default/lb 10.43.*.* 80:0/TCP lb=192.168.1.11"}},
		{name: "a full service range: the rest stay pending with a clear event",
			cfg:   small,
			steps: [][]manifest.Object{{svc("a"), svc("b"), svc("c"), svc("d"), svc("e"), svc("f")}},
			want: []string{"default/a 10.43.0.[2-6] 80:0/TCP", "default/b 10.43.0.[2-6] 80:0/TCP", "default/c 10.43.0.[2-6] 80:0/TCP",
				"default/d 10.43.0.[2-6] 80:0/TCP", "default/e 10.43.0.[2-6] 80:0/TCP", "default/f - 80:0/TCP"},
			events: []string{"Warning default/f ClusterIPNotAllocated: no free cluster IP: the service range 10.43.0.0/29 is full"}},
		{name: "a full node port range",
			cfg: small,
			steps: [][]manifest.Object{{svc("a", typed(corev1.ServiceTypeNodePort)), svc("b", typed(corev1.ServiceTypeNodePort)),
				svc("c", typed(corev1.ServiceTypeNodePort))}},
			want:   []string{"default/a 10.43.0.* 80:3000[01]/TCP", "default/b 10.43.0.* 80:3000[01]/TCP", "default/c 10.43.0.* 80:0/TCP"},
			events: []string{"Warning default/c NodePortNotAllocated: no free node port for spec.ports[0]: the range 30000-30001 is full"}},
		{name: "a Service gone from git loses its copy and its address",
			cfg:   small,
			steps: [][]manifest.Object{{svc("a"), svc("b"), svc("c"), svc("d"), svc("e")}, {svc("a"), svc("b"), svc("c"), svc("d"), svc("f")}},
			want: []string{"default/a 10.43.0.[2-6] 80:0/TCP", "default/b 10.43.0.[2-6] 80:0/TCP", "default/c 10.43.0.[2-6] 80:0/TCP",
				"default/d 10.43.0.[2-6] 80:0/TCP", "default/f 10.43.0.[2-6] 80:0/TCP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if !cfg.ServiceCIDR.IsValid() {
				cfg = allocCfg
			}
			c := newAllocCluster(t, cfg, tt.nodes...)
			var before []string
			for i, objs := range tt.steps {
				c.sync(objs...)
				got := c.render()
				if i > 0 {
					checkNoMove(t, before, got)
				}
				before = got
			}
			matchAll(t, "Plan copies", c.render(), tt.want)
			if got := c.renderEvents(); !slices.Equal(got, tt.events) {
				t.Errorf("Plan events =\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.events, "\n\t"))
			}
			checkUnique(t, c.m.State())
		})
	}
}

// checkNoMove fails when a Service that had an address has another one now: allocations
// only move when git asks (no case in the table does so without saying in its name).
func checkNoMove(t *testing.T, before, after []string) {
	t.Helper()
	ips := map[string]string{}
	for _, l := range before {
		f := strings.Fields(l)
		ips[f[0]] = f[1]
	}
	for _, l := range after {
		f := strings.Fields(l)
		if old, ok := ips[f[0]]; ok && old != "-" && old != "None" && f[1] != "-" && f[1] != "None" && f[1] != old &&
			!strings.Contains(t.Name(), "moves") {
			t.Errorf("%s moved from %s to %s", f[0], old, f[1])
		}
	}
}

// checkUnique fails when two copies share an address or a node port.
func checkUnique(t *testing.T, s *state.State) {
	t.Helper()
	ips, nps := map[string]string{}, map[string]string{}
	for _, svc := range state.Typed[*corev1.Service](s.Cluster.List("Service", "")) {
		if ip := svc.Spec.ClusterIP; ip != "" && ip != "None" {
			if other, dup := ips[ip]; dup {
				t.Errorf("%s and %s share cluster IP %s", other, svc.Name, ip)
			}
			ips[ip] = svc.Name
		}
		for _, p := range svc.Spec.Ports {
			k := fmt.Sprintf("%d/%s", p.NodePort, p.Protocol)
			if other, dup := nps[k]; p.NodePort != 0 && dup && other != svc.Name {
				t.Errorf("%s and %s share node port %s", other, svc.Name, k)
			}
			nps[k] = svc.Name
		}
	}
}

// TestPlanManyServices fills most of a /22 and checks the allocations are unique, in range,
// stable when unrelated Services come and go, and deterministic (two clusters given the
// same commits allocate the same).
func TestPlanManyServices(t *testing.T) {
	cfg := allocCfg
	cfg.ServiceCIDR = netip.MustParsePrefix("10.43.4.0/22") // 1021 usable
	var objs []manifest.Object
	for i := range 900 {
		objs = append(objs, svc(fmt.Sprintf("s%03d", i), typed(corev1.ServiceTypeNodePort)))
	}
	a, b := newAllocCluster(t, cfg), newAllocCluster(t, cfg)
	a.sync(objs...)
	b.sync(objs...)
	if ra, rb := a.render(), b.render(); !slices.Equal(ra, rb) {
		t.Fatal("two clusters allocated differently from the same commits")
	}
	checkUnique(t, a.m.State())
	first := a.render()
	for _, l := range first {
		ip := netip.MustParseAddr(strings.Fields(l)[1])
		if !inRange(cfg.ServiceCIDR, ip) {
			t.Errorf("%s: address outside the range", l)
		}
	}
	// Drop every third Service, add others: the survivors keep their addresses and ports.
	var next []manifest.Object
	for i, o := range objs {
		if i%3 != 0 {
			next = append(next, o)
		}
	}
	for i := range 200 {
		next = append(next, svc(fmt.Sprintf("t%03d", i), typed(corev1.ServiceTypeNodePort)))
	}
	a.sync(next...)
	checkUnique(t, a.m.State())
	kept := map[string]string{}
	for _, l := range a.render() {
		kept[strings.Fields(l)[0]] = l
	}
	for i, l := range first {
		name := strings.Fields(l)[0]
		if i%3 != 0 && kept[name] != l {
			t.Errorf("%s changed to %s", l, kept[name])
		}
	}
	if len(a.events) != 0 {
		t.Errorf("events: %v", a.renderEvents())
	}
}

func TestPlanPodCIDRs(t *testing.T) {
	tests := []struct {
		name   string
		cidr   string
		steps  [][]*corev1.Node // node sets, in turn
		want   string
		events int
	}{
		{"lowest free /24 in name order", "10.42.0.0/16",
			[][]*corev1.Node{{node("b", "192.168.1.2"), node("a", "192.168.1.1")}}, "a=10.42.0.0/24 b=10.42.1.0/24", 0},
		{"a node keeps its subnet; a new one gets the lowest free", "10.42.0.0/16",
			[][]*corev1.Node{{node("b", "192.168.1.2")}, {node("b", "192.168.1.2"), node("a", "192.168.1.1")}},
			"a=10.42.1.0/24 b=10.42.0.0/24", 0},
		{"a removed node's subnet is reused", "10.42.0.0/16",
			[][]*corev1.Node{{node("a", "1.1.1.1"), node("b", "1.1.1.2"), node("c", "1.1.1.3")}, {node("a", "1.1.1.1"), node("c", "1.1.1.3")},
				{node("a", "1.1.1.1"), node("c", "1.1.1.3"), node("d", "1.1.1.4")}},
			"a=10.42.0.0/24 c=10.42.2.0/24 d=10.42.1.0/24", 0},
		{"a subnet outside the range or duplicated is replaced", "10.42.0.0/16",
			[][]*corev1.Node{{node("a", "1.1.1.1", func(n *corev1.Node) { n.Spec.PodCIDR = "10.9.0.0/24" }),
				node("b", "1.1.1.2", func(n *corev1.Node) { n.Spec.PodCIDR = "10.42.5.0/24" }),
				node("c", "1.1.1.3", func(n *corev1.Node) { n.Spec.PodCIDR = "10.42.5.0/24" })}},
			"a=10.42.0.0/24 b=10.42.5.0/24 c=10.42.1.0/24", 0},
		{"a full pod range", "10.42.0.0/23",
			[][]*corev1.Node{{node("a", "1.1.1.1"), node("b", "1.1.1.2"), node("c", "1.1.1.3")}},
			"a=10.42.0.0/24 b=10.42.1.0/24 c=", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := allocCfg
			cfg.PodCIDR = netip.MustParsePrefix(tt.cidr)
			c := newAllocCluster(t, cfg)
			for _, nodes := range tt.steps {
				cur := map[string]bool{}
				for _, n := range nodes {
					cur[n.Name] = true
					if _, ok := c.m.State().Cluster.Get(state.KeyOf(n)); !ok {
						c.apply(&state.Command{Put: state.Wrap(n)})
					}
				}
				var gone []state.Ref
				for _, n := range state.Typed[*corev1.Node](c.m.State().Cluster.List("Node", "")) {
					if !cur[n.Name] {
						gone = append(gone, state.Ref{Key: state.KeyOf(n)})
					}
				}
				if len(gone) > 0 {
					c.apply(&state.Command{Delete: gone})
				}
				c.plan()
			}
			var got []string
			for _, n := range state.Typed[*corev1.Node](c.m.State().Cluster.List("Node", "")) {
				got = append(got, n.Name+"="+n.Spec.PodCIDR)
				if n.Spec.PodCIDR != "" && (len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR) {
					t.Errorf("node %s: podCIDRs %v do not match podCIDR %s", n.Name, n.Spec.PodCIDRs, n.Spec.PodCIDR)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("pod CIDRs = %s; want %s", g, tt.want)
			}
			if len(c.events) != tt.events {
				t.Errorf("events = %v; want %d", c.renderEvents(), tt.events)
			}
		})
	}
}
