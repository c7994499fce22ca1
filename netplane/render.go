package netplane

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// Table is the nftables table netplane owns: `table ip skiff`. Nothing else is touched,
// except one identity SNAT (see masquerading) that wins over netavark's masquerade.
const Table = "skiff"

// MarkMasq is the packet mark that asks the masquerading chain to masquerade a packet
// (kube-proxy's 0x4000; netavark uses 0x2000 for its port mappings).
const MarkMasq = 0x4000

// The named maps of the table: Service addresses and ports to their chains (or verdicts).
var maps = []string{"service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports"}

// Ruleset is a rendered data plane: the table definition, and the names of the chains and
// sets it defines (to delete those a later ruleset no longer has).
type Ruleset struct {
	Text   string
	Chains []string
	Sets   []string
	// Counts, for logs and benchmarks.
	Services, Endpoints int

	blocks []block           // the table's maps, sets and chains, in order
	index  map[string]string // chain name → text
}

// block is one map, set or chain definition of the table.
type block struct {
	kind, name, text string // text: the whole definition, "\tchain NAME {\n...\t}\n"
}

// RenderInput is what a node's data plane is rendered from.
type RenderInput struct {
	State       *state.State
	Node        string       // this node's name: endpoints on it are local
	ClusterCIDR netip.Prefix // the pod range: traffic from it is pod traffic
}

// svcPort is one port of one Service with its endpoints.
type svcPort struct {
	svc       *corev1.Service
	sp        corev1.ServicePort
	id        string // ns/name/proto/port-name-or-number
	proto     string // tcp, udp, sctp
	endpoints []endpoint
	local     []endpoint // those on this node
}

type endpoint struct {
	ip   netip.Addr
	port int32
	node string
	id   string // svcPort.id + "__" + ip/port
}

// Render renders the data plane of one node from a snapshot: the Services the leader
// allocated (services.Allocated) and their endpoints as services.EndpointsOf computes them
// (through services.AllEndpoints)
// (ready addresses, or all with publishNotReadyAddresses; named target ports resolved per
// pod). It is a pure function: the same snapshot gives the same text, so Plane reprograms
// only when the text changes.
func Render(in RenderInput) *Ruleset {
	var ports []*svcPort
	eps := services.AllEndpoints(in.State)
	for _, svc := range services.Allocated(in.State, "") {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if !services.HasClusterIP(svc) || err != nil || !ip.Is4() {
			continue // headless, ExternalName, pending, or IPv6 (this table is IPv4)
		}
		ep := eps[state.KeyOf(svc)]
		if ep == nil {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			ports = append(ports, newSvcPort(svc, sp, ep, in.Node))
		}
	}
	r := &renderer{in: in}
	return r.render(ports)
}

func newSvcPort(svc *corev1.Service, sp corev1.ServicePort, ep *corev1.Endpoints, node string) *svcPort {
	proto := strings.ToLower(string(sp.Protocol))
	if proto == "" {
		proto = "tcp"
	}
	name := sp.Name
	if name == "" {
		name = fmt.Sprint(sp.Port)
	}
	p := &svcPort{svc: svc, sp: sp, proto: proto, id: svc.Namespace + "/" + svc.Name + "/" + proto + "/" + name}
	seen := map[string]bool{}
	for _, ss := range ep.Subsets {
		for _, epp := range ss.Ports {
			if epp.Name != sp.Name || !strings.EqualFold(string(orTCP(epp.Protocol)), proto) {
				continue
			}
			for _, a := range ss.Addresses {
				ip, err := netip.ParseAddr(a.IP)
				if err != nil || !ip.Is4() {
					continue
				}
				e := endpoint{ip: ip, port: epp.Port}
				if a.NodeName != nil {
					e.node = *a.NodeName
				}
				e.id = p.id + "__" + ip.String() + "/" + fmt.Sprint(epp.Port)
				if seen[e.id] {
					continue
				}
				seen[e.id] = true
				p.endpoints = append(p.endpoints, e)
			}
		}
	}
	slices.SortFunc(p.endpoints, func(a, b endpoint) int {
		if c := a.ip.Compare(b.ip); c != 0 {
			return c
		}
		return int(a.port - b.port)
	})
	for _, e := range p.endpoints {
		if node != "" && e.node == node {
			p.local = append(p.local, e)
		}
	}
	return p
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

type renderer struct {
	in     RenderInput
	b      strings.Builder
	rs     Ruleset
	elems  map[string][]string
	keys   map[string]bool // map keys already taken (first Service wins)
	sets   map[string]bool // affinity sets declared
	blocks []block         // the Services' sets and chains, in order
}

func (r *renderer) line(b *strings.Builder, indent int, format string, args ...any) {
	b.WriteString(strings.Repeat("\t", indent))
	fmt.Fprintf(b, format, args...)
	b.WriteByte('\n')
}

// chain adds a chain to the Services' blocks.
func (r *renderer) chain(name string, rules ...string) {
	r.blocks = append(r.blocks, chainBlock(name, rules))
}

func chainBlock(name string, rules []string) block {
	var b strings.Builder
	b.WriteString("\tchain " + name + " {\n")
	for _, rule := range rules {
		b.WriteString("\t\t" + rule + "\n")
	}
	b.WriteString("\t}\n")
	return block{kind: "chain", name: name, text: b.String()}
}

// element adds a map element unless its key is taken already (two LoadBalancer Services
// on one port of the same node addresses, say): the first Service in name order keeps it.
func (r *renderer) element(m, key, verdict string) {
	if r.keys[m+" "+key] {
		return
	}
	r.keys[m+" "+key] = true
	r.elems[m] = append(r.elems[m], key+" : "+verdict)
}

func (r *renderer) render(ports []*svcPort) *Ruleset {
	r.elems, r.keys, r.sets = map[string][]string{}, map[string]bool{}, map[string]bool{}
	cluster := r.in.ClusterCIDR.Masked().String()
	svcs := map[string]bool{}
	for _, p := range ports {
		svcs[p.svc.Namespace+"/"+p.svc.Name] = true
		r.rs.Endpoints += len(p.endpoints)
		r.servicePort(p, cluster)
	}
	r.rs.Services = len(svcs)

	var blocks []block
	mapTypes := map[string]string{
		"service-ips": "ipv4_addr . inet_proto . inet_service : verdict", "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
		"service-nodeports": "inet_proto . inet_service : verdict", "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
	}
	for _, m := range maps {
		var b strings.Builder
		r.line(&b, 1, "map %s {", m)
		r.line(&b, 2, "type %s", mapTypes[m])
		if el := r.elems[m]; len(el) > 0 {
			r.line(&b, 2, "elements = {")
			for i, e := range el {
				sep := ","
				if i == len(el)-1 {
					sep = ""
				}
				r.line(&b, 3, "%s%s", e, sep)
			}
			r.line(&b, 2, "}")
		}
		r.line(&b, 1, "}")
		blocks = append(blocks, block{kind: "map", name: m, text: b.String()})
	}
	fixed := []struct {
		name  string
		rules []string
	}{
		// Base chains run just before netavark's (dstnat/srcnat), so a Service decision is
		// made before netavark's port mappings and masquerade see the packet.
		{"nat-prerouting", []string{"type nat hook prerouting priority dstnat - 1; policy accept;", "jump services"}},
		{"nat-output", []string{"type nat hook output priority -101; policy accept;", "jump services"}},
		{"nat-postrouting", []string{"type nat hook postrouting priority srcnat - 1; policy accept;", "jump masquerading"}},
		// New connections to a Service without endpoints are refused here, before NAT.
		{"filter-prerouting", []string{"type filter hook prerouting priority dstnat - 10; policy accept;", "ct state new jump endpoints-check"}},
		{"filter-output", []string{"type filter hook output priority -110; policy accept;", "ct state new jump endpoints-check"}},
		{"services", []string{
			"ip daddr . meta l4proto . th dport vmap @service-ips",
			"ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports"}},
		{"endpoints-check", []string{
			"ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
			"ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports"}},
		{"reject-chain", []string{"meta l4proto tcp reject with tcp reset", "reject"}},
		{"mark-for-masquerade", []string{fmt.Sprintf("meta mark set meta mark | 0x%x", MarkMasq)}},
		{"masquerading", []string{
			fmt.Sprintf("meta mark & 0x%x == 0x%x meta mark set meta mark ^ 0x%x masquerade fully-random", MarkMasq, MarkMasq, MarkMasq),
			// Pod to pod across nodes keeps the pod's address. Netavark masquerades all
			// traffic leaving its subnet; NAT takes the first chain that binds an
			// address, so this identity SNAT (at srcnat - 1) keeps netavark's from running.
			fmt.Sprintf("ip saddr %s ip daddr %s snat ip to ip saddr", cluster, cluster)}},
	}
	for _, c := range fixed {
		blocks = append(blocks, chainBlock(c.name, c.rules))
	}
	r.rs.blocks = append(blocks, r.blocks...)
	r.rs.index = make(map[string]string, len(r.rs.blocks))
	b := &r.b
	r.line(b, 0, "table ip %s {", Table)
	r.line(b, 1, "comment %q", "skiff Service data plane, rendered by netplane; do not edit")
	for _, bl := range r.rs.blocks {
		b.WriteString(bl.text)
		switch bl.kind {
		case "chain":
			r.rs.Chains = append(r.rs.Chains, bl.name)
			r.rs.index[bl.name] = bl.text
		case "set":
			r.rs.Sets = append(r.rs.Sets, bl.name)
		}
	}
	r.line(b, 0, "}")
	r.rs.Text = b.String()
	return &r.rs
}

// servicePort renders one Service port: map elements for its cluster IP, external IPs,
// load-balancer IPs and node port, its service chain (all endpoints), its external chain
// (traffic from outside, with the external traffic policy), a local chain when that
// policy is Local, and one chain per endpoint.
func (r *renderer) servicePort(p *svcPort, cluster string) {
	svc, sp := p.svc, p.sp
	key := func(ip string) string { return fmt.Sprintf("%s . %s . %d", ip, p.proto, sp.Port) }
	svcChain := name("svc", p.id)
	extChain := name("ext", p.id)
	localChain := name("local", p.id)
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	externalLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal

	var extIPs []string
	for _, ip := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			extIPs = append(extIPs, a.String())
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				extIPs = append(extIPs, a.String())
			}
		}
	}
	nodePort := sp.NodePort != 0 && (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer)
	hasExternal := len(extIPs) > 0 || nodePort

	// Endpoint checks: no endpoint at all refuses (TCP reset, ICMP port unreachable);
	// Local policies with endpoints only elsewhere drop, as kube-proxy does.
	switch {
	case len(p.endpoints) == 0:
		r.element("no-endpoint-services", key(svc.Spec.ClusterIP), "goto reject-chain")
		for _, ip := range extIPs {
			r.element("no-endpoint-services", key(ip), "goto reject-chain")
		}
		if nodePort {
			r.element("no-endpoint-nodeports", fmt.Sprintf("%s . %d", p.proto, sp.NodePort), "goto reject-chain")
		}
		return
	case internalLocal && len(p.local) == 0:
		r.element("no-endpoint-services", key(svc.Spec.ClusterIP), "drop")
	}

	r.element("service-ips", key(svc.Spec.ClusterIP), "goto "+svcChain)
	for _, ip := range extIPs {
		r.element("service-ips", key(ip), "goto "+extChain)
	}
	if nodePort {
		r.element("service-nodeports", fmt.Sprintf("%s . %d", p.proto, sp.NodePort), "goto "+extChain)
	}

	affinity := affinityTimeout(svc)
	// The service chain: traffic to the cluster IP, spread over all endpoints, or over
	// this node's with internalTrafficPolicy Local. Traffic from outside the pod range
	// (host processes, the LAN) is masqueraded so replies come back through this node.
	clusterChain := svcChain // all endpoints
	rules := []string{fmt.Sprintf("ip saddr != %s jump mark-for-masquerade", cluster)}
	if internalLocal {
		clusterChain = name("cluster", p.id)
		rules = append(rules, r.spread(p.local, affinity)...)
	} else {
		rules = append(rules, r.spread(p.endpoints, affinity)...)
	}
	r.chain(svcChain, rules...)
	used := p.endpoints
	switch {
	case internalLocal && hasExternal:
		r.chain(clusterChain, r.spread(p.endpoints, affinity)...)
	case internalLocal:
		used = p.local
	}

	// The external chain: node ports, external IPs and load-balancer IPs. With the
	// Cluster policy any endpoint, masqueraded so the reply returns through this node.
	// With Local only this node's endpoints and the client's address kept, except for
	// traffic from pods and from this node itself, which may use any endpoint
	// (kube-proxy's short-circuit); no local endpoint drops.
	if hasExternal {
		var ext []string
		if externalLocal {
			ext = append(ext,
				fmt.Sprintf("ip saddr %s goto %s", cluster, clusterChain),
				"fib saddr type local jump mark-for-masquerade",
				"fib saddr type local goto "+clusterChain)
			if len(p.local) > 0 {
				ext = append(ext, "goto "+localChain)
			} else {
				ext = append(ext, "drop")
			}
		} else {
			ext = append(ext, "jump mark-for-masquerade", "goto "+clusterChain)
		}
		r.chain(extChain, ext...)
		if externalLocal && len(p.local) > 0 {
			r.chain(localChain, r.spread(p.local, affinity)...)
		}
	}
	// One chain per endpoint: a pod reaching its own Service (hairpin) is masqueraded,
	// or it would get its own packet back from itself and drop the reply.
	for _, e := range used {
		epRules := []string{fmt.Sprintf("ip saddr %s jump mark-for-masquerade", e.ip)}
		if affinity > 0 {
			epRules = append(epRules, fmt.Sprintf("update @%s { ip saddr }", affinitySet(e, affinity)))
		}
		epRules = append(epRules, fmt.Sprintf("meta l4proto %s dnat to %s:%d", p.proto, e.ip, e.port))
		r.chain(name("ep", e.id), epRules...)
	}
}

// spread returns the rules that send a connection to one of targets: the endpoint a
// client already sticks to (ClientIP affinity), else one chosen at random (numgen random:
// each new connection independently, so load spreads evenly over ready endpoints, as
// kube-proxy's nftables mode does).
//
// ClientIP affinity is Kubernetes' own, not a hash: each endpoint has a set of the client
// addresses sent to it, with sessionAffinityConfig.clientIP.timeoutSeconds as the element
// timeout, refreshed by every new connection (kube-proxy's nftables mode does exactly this;
// its iptables mode uses the "recent" match). A client sticks to its endpoint while it
// keeps connecting within the timeout, and a new endpoint takes no existing client away. A
// jhash of the source address over the backends would need no state but would move most
// clients whenever an endpoint comes or goes, and could not time out. The sets survive
// reprogramming (updates flush chains and maps, never these sets) but not an agent restart,
// which starts from a fresh table: clients then stick anew.
func (r *renderer) spread(targets []endpoint, affinity int32) []string {
	var rules []string
	if affinity > 0 {
		for _, e := range targets {
			set := affinitySet(e, affinity)
			if !r.sets[set] {
				r.sets[set] = true
				var b strings.Builder
				r.line(&b, 1, "set %s {", set)
				r.line(&b, 2, "type ipv4_addr")
				r.line(&b, 2, "flags dynamic,timeout")
				r.line(&b, 2, "timeout %ds", affinity)
				r.line(&b, 1, "}")
				r.blocks = append(r.blocks, block{kind: "set", name: set, text: b.String()})
			}
			rules = append(rules, fmt.Sprintf("ip saddr @%s goto %s", set, name("ep", e.id)))
		}
	}
	switch len(targets) {
	case 0:
		rules = append(rules, "drop")
	case 1:
		rules = append(rules, "goto "+name("ep", targets[0].id))
	default:
		var vm []string
		for i, e := range targets {
			vm = append(vm, fmt.Sprintf("%d : goto %s", i, name("ep", e.id)))
		}
		rules = append(rules, fmt.Sprintf("numgen random mod %d vmap { %s }", len(targets), strings.Join(vm, ", ")))
	}
	return rules
}

func affinityTimeout(svc *corev1.Service) int32 {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return 0
	}
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
		return *c.ClientIP.TimeoutSeconds
	}
	return corev1.DefaultClientIPServiceAffinitySeconds
}

// affinitySet names an endpoint's affinity set; the timeout is part of the name, so a
// changed timeout makes a new set (a set's timeout cannot change in place).
func affinitySet(e endpoint, timeout int32) string {
	return name("aff", fmt.Sprintf("%s/%ds", e.id, timeout))
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// name is a chain or set name as kube-proxy's nftables mode makes them:
// prefix-HASH-ns/name/proto/port[__ip/port], readable yet unique (the hash covers the
// whole id) and within nftables' limits (letters, digits, / - _ . only; at most 256
// bytes: long ids are cut, the hash keeps them apart).
func name(prefix, id string) string {
	sum := sha256.Sum256([]byte(prefix + "|" + id))
	n := prefix + "-" + b32.EncodeToString(sum[:])[:8] + "-" + id
	n = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '/', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, n)
	if len(n) > 200 {
		n = n[:200]
	}
	return n
}
