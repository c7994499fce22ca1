package services

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// AllocConfig is what the leader allocates Service addresses and node pod subnets from.
type AllocConfig struct {
	ServiceCIDR, PodCIDR netip.Prefix
	NodePorts            [2]int // min, max (inclusive), as --node-port-range 30000-32767
	// NodeReady reports node liveness for LoadBalancer status (heartbeats are not in the
	// state). nil: every node with a Node object is ready.
	NodeReady func(node string) bool
}

// Event is something worth telling an operator about a Service or Node. It mirrors
// reconciler/controller.Event field for field.
type Event struct {
	Object  manifest.Object
	Type    string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason  string
	Message string
}

// Reasons of the allocation events.
const (
	ReasonClusterIPNotAllocated = "ClusterIPNotAllocated"
	ReasonNodePortNotAllocated  = "NodePortNotAllocated"
	ReasonPodCIDRNotAllocated   = "PodCIDRNotAllocated"
)

// Plan is the leader's Service allocator, a pure function of the snapshot. For every
// Service in git it keeps a Cluster copy (same namespace and name) with spec.clusterIP(s)
// from cfg.ServiceCIDR, nodePorts from cfg.NodePorts for NodePort and LoadBalancer ports,
// and, for LoadBalancer Services, status.loadBalancer.ingress set to the InternalIP of
// every ready node (bare metal: the nodes are the load balancer). It also gives every Node
// a spec.podCIDR from cfg.PodCIDR. It returns the copies and Nodes that changed, the copies
// whose Service left git, and Warning events for what it could not allocate.
//
// Allocations never move: an address or port already in a copy is kept for as long as the
// Service exists. A clusterIP or nodePort written in git is honoured when it is in range
// and free; otherwise the Service gets a Warning and no address (or port), and the copy
// shows it unallocated ("<pending>") until the user fixes git. New addresses are chosen
// from a hash of namespace/name (probing on), so the same Service gets the same address
// when it is re-created; like Kubernetes, dynamic choices prefer the upper part of each
// range and leave the lower band to addresses and ports written in git.
func Plan(s *state.State, cfg AllocConfig, now time.Time) (put []manifest.Object, del []state.Ref, events []Event) {
	_ = now // allocation depends on the state only; kept for the controller's signature
	a := &allocator{cfg: cfg, ips: map[netip.Addr]state.Key{}, ports: map[int32]state.Key{}}
	put, events = a.services(s)
	for _, c := range state.Typed[*corev1.Service](s.Cluster.List("Service", "")) {
		k := state.KeyOf(c)
		if _, inGit := s.Git.Get(k); !inGit {
			del = append(del, state.Ref{Key: k, UID: c.UID})
		}
	}
	nodes, nodeEvents := planPodCIDRs(s, cfg.PodCIDR)
	return append(put, nodes...), del, append(events, nodeEvents...)
}

// allocator holds one plan's bookkeeping of used addresses and node ports.
type allocator struct {
	cfg    AllocConfig
	ips    map[netip.Addr]state.Key
	ports  map[int32]state.Key
	events []Event
}

// svcPlan is one Service being allocated: the git object and the copy being built.
type svcPlan struct {
	key  state.Key
	git  *corev1.Service
	old  *corev1.Service // the current copy, nil when none
	want *corev1.Service
	kept netip.Addr // the copy's cluster IP, reserved for it while git asks for another
}

func (a *allocator) services(s *state.State) ([]manifest.Object, []Event) {
	gits := state.Typed[*corev1.Service](s.Git.List("Service", ""))
	lbIngress := loadBalancerIngress(s, a.cfg.NodeReady)
	plans := make([]*svcPlan, 0, len(gits))
	for _, g := range gits {
		k := state.KeyOf(g)
		var old *corev1.Service
		if o, ok := s.Cluster.Get(k); ok {
			old, _ = o.(*corev1.Service)
		}
		if a.settled(g, old, lbIngress) {
			continue
		}
		p := &svcPlan{key: k, git: g, old: old, want: g.DeepCopy()}
		p.want.Spec.ClusterIP, p.want.Spec.ClusterIPs = "", nil
		p.want.Status = corev1.ServiceStatus{}
		plans = append(plans, p)
	}
	// Three passes, so what exists wins over what git asks for, and what git asks for
	// wins over what is chosen for it: keep, then honour git, then choose.
	for _, p := range plans {
		a.keep(p)
	}
	for _, p := range plans {
		a.honour(p)
	}
	var put []manifest.Object
	for _, p := range plans {
		a.choose(p)
		if p.want.Spec.Type == corev1.ServiceTypeLoadBalancer {
			p.want.Status.LoadBalancer.Ingress = slices.Clone(lbIngress)
		}
		if p.old != nil {
			p.want.ResourceVersion = p.old.ResourceVersion
			if equality.Semantic.DeepEqual(p.old, p.want) {
				continue
			}
		}
		put = append(put, p.want)
	}
	return put, a.events
}

// settled reports whether a Service's copy is complete and made from the git object as it
// is now (same UID and generation: git content changes bump the generation), asks for
// nothing it lacks and shows the current load-balancer addresses. Such a copy cannot change
// in this plan, so only its address and ports are recorded as used: a converged cluster
// costs no deep copy or comparison per Service (the leader plans on every state change).
func (a *allocator) settled(g, old *corev1.Service, lbIngress []corev1.LoadBalancerIngress) bool {
	if old == nil || old.UID != g.UID || old.Generation != g.Generation || len(old.Spec.Ports) != len(g.Spec.Ports) {
		return false
	}
	if needsClusterIP(g) && (old.Spec.ClusterIP == "" || (g.Spec.ClusterIP != "" && g.Spec.ClusterIP != old.Spec.ClusterIP)) {
		return false
	}
	if needsNodePorts(g) {
		for i, sp := range old.Spec.Ports {
			if sp.NodePort == 0 || (g.Spec.Ports[i].NodePort != 0 && g.Spec.Ports[i].NodePort != sp.NodePort) {
				return false
			}
		}
	}
	if g.Spec.Type == corev1.ServiceTypeLoadBalancer && !sameIngress(old.Status.LoadBalancer.Ingress, lbIngress) {
		return false
	}
	var ip netip.Addr
	if needsClusterIP(g) {
		var err error
		if ip, err = netip.ParseAddr(old.Spec.ClusterIP); err != nil || a.ips[ip] != (state.Key{}) {
			return false
		}
	}
	k := state.KeyOf(g)
	if needsNodePorts(g) {
		for _, sp := range old.Spec.Ports {
			if owner, used := a.ports[sp.NodePort]; used && owner != k {
				return false
			}
		}
		for _, sp := range old.Spec.Ports {
			a.ports[sp.NodePort] = k
		}
	}
	if ip.IsValid() {
		a.ips[ip] = k
	}
	return true
}

// sameIngress compares load-balancer addresses as loadBalancerIngress makes them (IP only).
func sameIngress(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == "" && y.Hostname == "" && x.IPMode == nil && y.IPMode == nil && len(x.Ports) == 0 && len(y.Ports) == 0
	})
}

func (a *allocator) warn(o manifest.Object, reason, format string, args ...any) {
	a.events = append(a.events, Event{Object: o, Type: corev1.EventTypeWarning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// needsClusterIP: every Service but ExternalName and headless ones gets an address.
func needsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

// needsNodePorts: NodePort Services, and LoadBalancer ones unless they opted out.
func needsNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// keep carries over the copy's allocations the git Service still agrees with.
func (a *allocator) keep(p *svcPlan) {
	w := p.want
	switch {
	case w.Spec.Type == corev1.ServiceTypeExternalName:
	case p.git.Spec.ClusterIP == corev1.ClusterIPNone:
		w.Spec.ClusterIP, w.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	case p.old != nil && p.old.Spec.ClusterIP != "" && p.old.Spec.ClusterIP != corev1.ClusterIPNone:
		if ip, err := netip.ParseAddr(p.old.Spec.ClusterIP); err == nil && a.ips[ip] == (state.Key{}) {
			a.ips[ip] = p.key
			p.kept = ip
			if p.git.Spec.ClusterIP == "" || p.git.Spec.ClusterIP == ip.String() {
				w.Spec.ClusterIP, w.Spec.ClusterIPs = ip.String(), []string{ip.String()}
			}
		}
	}
	if needsClusterIP(w) || w.Spec.ClusterIP == corev1.ClusterIPNone {
		fam := corev1.IPv4Protocol
		if a.cfg.ServiceCIDR.Addr().Is6() {
			fam = corev1.IPv6Protocol
		}
		single := corev1.IPFamilyPolicySingleStack
		w.Spec.IPFamilies, w.Spec.IPFamilyPolicy = []corev1.IPFamily{fam}, &single
	}
	if !needsNodePorts(w) {
		for i := range w.Spec.Ports {
			w.Spec.Ports[i].NodePort = 0
		}
		return
	}
	if p.old == nil || !needsNodePorts(p.old) {
		return
	}
	// As the API server does on update: a port without a nodePort keeps the one of the
	// old port of the same name.
	oldByName := map[string]int32{}
	for _, op := range p.old.Spec.Ports {
		oldByName[op.Name] = op.NodePort
	}
	for i := range w.Spec.Ports {
		sp := &w.Spec.Ports[i]
		old := oldByName[sp.Name]
		if old == 0 || (sp.NodePort != 0 && sp.NodePort != old) {
			sp.NodePort = p.git.Spec.Ports[i].NodePort
			continue
		}
		if owner, used := a.ports[old]; used && owner != p.key {
			sp.NodePort = 0
			continue
		}
		a.ports[old] = p.key
		sp.NodePort = old
	}
}

// honour takes the clusterIP and nodePorts written in git that keep did not settle.
func (a *allocator) honour(p *svcPlan) {
	w := p.want
	if needsClusterIP(w) && w.Spec.ClusterIP == "" && p.git.Spec.ClusterIP != "" {
		// A copy that has an address keeps it when git asks for one it cannot have (the
		// Service keeps working, as Kubernetes refuses such an update); one without stays
		// without ("<pending>"), never with an address the user did not ask for.
		keeping := ""
		if p.kept.IsValid() {
			keeping = "; keeping " + p.kept.String()
		}
		ip, err := netip.ParseAddr(p.git.Spec.ClusterIP)
		switch {
		case err != nil:
			a.warn(p.git, ReasonClusterIPNotAllocated, "spec.clusterIP %q is not an IP address%s", p.git.Spec.ClusterIP, keeping)
		case !inRange(a.cfg.ServiceCIDR, ip):
			a.warn(p.git, ReasonClusterIPNotAllocated, "spec.clusterIP %s is outside the service range %s%s", ip, a.cfg.ServiceCIDR, keeping)
		case a.ips[ip] != (state.Key{}):
			a.warn(p.git, ReasonClusterIPNotAllocated, "spec.clusterIP %s is already allocated to Service %s/%s%s", ip, a.ips[ip].Namespace, a.ips[ip].Name, keeping)
		default:
			if p.kept.IsValid() {
				delete(a.ips, p.kept)
			}
			a.ips[ip] = p.key
			w.Spec.ClusterIP, w.Spec.ClusterIPs = ip.String(), []string{ip.String()}
		}
		switch {
		case w.Spec.ClusterIP != "":
		case p.kept.IsValid():
			w.Spec.ClusterIP, w.Spec.ClusterIPs = p.kept.String(), []string{p.kept.String()}
		default:
			w.Spec.ClusterIP = "-" // asked for and refused: choose must not pick another
		}
	}
	if !needsNodePorts(w) {
		return
	}
	for i := range w.Spec.Ports {
		sp := &w.Spec.Ports[i]
		asked := p.git.Spec.Ports[i].NodePort
		if asked == 0 || (p.old != nil && a.ports[sp.NodePort] == p.key && sp.NodePort == asked) {
			continue
		}
		owner, used := a.ports[asked]
		switch {
		case int(asked) < a.cfg.NodePorts[0] || int(asked) > a.cfg.NodePorts[1]:
			a.warn(p.git, ReasonNodePortNotAllocated, "spec.ports[%d].nodePort %d is outside the node port range %d-%d", i, asked, a.cfg.NodePorts[0], a.cfg.NodePorts[1])
			sp.NodePort = -1
		case used && owner != p.key:
			a.warn(p.git, ReasonNodePortNotAllocated, "spec.ports[%d].nodePort %d is already allocated to Service %s/%s", i, asked, owner.Namespace, owner.Name)
			sp.NodePort = -1
		case used && samePortTwice(w.Spec.Ports[:i], asked, sp.Protocol):
			a.warn(p.git, ReasonNodePortNotAllocated, "spec.ports[%d].nodePort %d/%s is used twice", i, asked, protocolOf(sp.Protocol))
			sp.NodePort = -1
		default:
			a.ports[asked] = p.key
			sp.NodePort = asked
		}
	}
}

func samePortTwice(before []corev1.ServicePort, port int32, proto corev1.Protocol) bool {
	for _, b := range before {
		if b.NodePort == port && protocolOf(b.Protocol) == protocolOf(proto) {
			return true
		}
	}
	return false
}

// choose allocates what is still missing.
func (a *allocator) choose(p *svcPlan) {
	w := p.want
	switch {
	case w.Spec.ClusterIP == "-":
		w.Spec.ClusterIP = ""
	case needsClusterIP(w) && w.Spec.ClusterIP == "":
		if ip, ok := a.freeIP(p.key); ok {
			a.ips[ip] = p.key
			w.Spec.ClusterIP, w.Spec.ClusterIPs = ip.String(), []string{ip.String()}
		} else {
			a.warn(p.git, ReasonClusterIPNotAllocated, "no free cluster IP: the service range %s is full", a.cfg.ServiceCIDR)
		}
	}
	if !needsNodePorts(w) {
		return
	}
	for i := range w.Spec.Ports {
		sp := &w.Spec.Ports[i]
		switch {
		case sp.NodePort == -1:
			sp.NodePort = 0
		case sp.NodePort == 0:
			// A port number served over two protocols shares one node port, as in Kubernetes.
			if np := sameServicePort(w.Spec.Ports[:i], sp); np != 0 {
				sp.NodePort = np
				continue
			}
			np, ok := a.freePort(p.key, sp.Name)
			if !ok {
				a.warn(p.git, ReasonNodePortNotAllocated, "no free node port for spec.ports[%d]: the range %d-%d is full", i, a.cfg.NodePorts[0], a.cfg.NodePorts[1])
				continue
			}
			a.ports[np] = p.key
			sp.NodePort = np
		}
	}
}

func sameServicePort(before []corev1.ServicePort, sp *corev1.ServicePort) int32 {
	for _, b := range before {
		if b.Port == sp.Port && protocolOf(b.Protocol) != protocolOf(sp.Protocol) && b.NodePort > 0 {
			return b.NodePort
		}
	}
	return 0
}

// inRange reports whether ip is an allocatable address of prefix: inside it and neither
// its network address, its first host address (kept for the cluster's own use, as
// Kubernetes keeps it for the API Service) nor its broadcast address.
func inRange(prefix netip.Prefix, ip netip.Addr) bool {
	if !prefix.IsValid() || !prefix.Contains(ip) {
		return false
	}
	off := offsetOf(prefix, ip)
	size := rangeSize(prefix)
	return off.Cmp(big.NewInt(1)) > 0 && (!ip.Is4() || off.Cmp(new(big.Int).Sub(size, big.NewInt(1))) < 0)
}

func rangeSize(p netip.Prefix) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}

func offsetOf(p netip.Prefix, ip netip.Addr) *big.Int {
	a, b := p.Masked().Addr().AsSlice(), ip.AsSlice()
	return new(big.Int).Sub(new(big.Int).SetBytes(b), new(big.Int).SetBytes(a))
}

func addrAt(p netip.Prefix, off uint64) netip.Addr {
	base := new(big.Int).SetBytes(p.Masked().Addr().AsSlice())
	base.Add(base, new(big.Int).SetUint64(off))
	b := base.FillBytes(make([]byte, p.Addr().BitLen()/8))
	ip, _ := netip.AddrFromSlice(b)
	return ip
}

// maxProbe bounds the addresses considered in a huge (IPv6) range.
const maxProbe = 1 << 20

// freeIP picks an address for a Service: from a hash of its key, probing upwards through
// the dynamic (upper) band and then the static (lower) band.
func (a *allocator) freeIP(k state.Key) (netip.Addr, bool) {
	p := a.cfg.ServiceCIDR
	if !p.IsValid() {
		return netip.Addr{}, false
	}
	size := uint64(maxProbe)
	if rs := rangeSize(p); rs.IsUint64() && rs.Uint64() < size {
		size = rs.Uint64()
	}
	ok := func(off uint64) bool {
		ip := addrAt(p, off)
		return inRange(p, ip) && a.ips[ip] == (state.Key{})
	}
	off, found := probe(size, staticBand(size, 16, 256), hashOf(k.Namespace+"/"+k.Name), ok)
	if !found {
		return netip.Addr{}, false
	}
	return addrAt(p, off), true
}

// freePort picks a node port for one port of a Service, the same way.
func (a *allocator) freePort(k state.Key, portName string) (int32, bool) {
	lo, hi := a.cfg.NodePorts[0], a.cfg.NodePorts[1]
	if lo <= 0 || hi < lo {
		return 0, false
	}
	size := uint64(hi - lo + 1)
	ok := func(off uint64) bool {
		_, used := a.ports[int32(lo)+int32(off)]
		return !used
	}
	off, found := probe(size, staticBand(size, 16, 128), hashOf(k.Namespace+"/"+k.Name+"/"+portName), ok)
	return int32(lo) + int32(off), found
}

// staticBand is the size of the lower band Kubernetes leaves to values users write:
// min(max(lowest, size/16), highest) (its allocators use size/16 for IPs, /32 for ports;
// one rule is enough here).
func staticBand(size, lowest, highest uint64) uint64 {
	band := min(max(lowest, size/16), highest)
	if band >= size {
		return 0
	}
	return band
}

// probe returns the first offset in [0,size) for which ok holds, starting at h within the
// dynamic band [band,size), then trying the static band [0,band).
func probe(size, band, h uint64, ok func(uint64) bool) (uint64, bool) {
	dyn := size - band
	for i := range dyn {
		if off := band + (h+i)%dyn; ok(off) {
			return off, true
		}
	}
	for off := range band {
		if ok(off) {
			return off, true
		}
	}
	return 0, false
}

func hashOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// loadBalancerIngress is the status of every LoadBalancer Service: the InternalIP of each
// ready node, sorted by node name.
func loadBalancerIngress(s *state.State, ready func(string) bool) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		if ready != nil && !ready(n.Name) {
			continue
		}
		if ip := NodeInternalIP(n); ip != "" {
			out = append(out, corev1.LoadBalancerIngress{IP: ip})
		}
	}
	return out
}

// NodeInternalIP returns a Node's InternalIP address ("" when it has none).
func NodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// NodeSubnetBits is the size of each node's pod subnet: a /24 of an IPv4 pod range (254
// pods, more than a Raspberry Pi runs), a /64 of an IPv6 one.
func NodeSubnetBits(cluster netip.Prefix) int {
	want := 24
	if cluster.Addr().Is6() {
		want = 64
	}
	return max(want, cluster.Bits())
}

// planPodCIDRs gives every Node a pod subnet of the pod range: a node keeps the one it
// has; others get the lowest free one, in name order. A removed node's subnet is free
// again at once (its Node object is gone, and with it the subnet).
func planPodCIDRs(s *state.State, cluster netip.Prefix) ([]manifest.Object, []Event) {
	if !cluster.IsValid() {
		return nil, nil
	}
	cluster = cluster.Masked()
	bits := NodeSubnetBits(cluster)
	n := uint64(1) << min(uint(bits-cluster.Bits()), 32)
	nodes := state.Typed[*corev1.Node](s.Cluster.List("Node", ""))
	used := map[netip.Prefix]string{}
	var put []manifest.Object
	var need []*corev1.Node
	for _, node := range nodes {
		p, err := netip.ParsePrefix(node.Spec.PodCIDR)
		if err != nil || p.Bits() != bits || !cluster.Contains(p.Addr()) || p != p.Masked() || used[p] != "" {
			need = append(need, node)
			continue
		}
		used[p] = node.Name
		if len(node.Spec.PodCIDRs) != 1 || node.Spec.PodCIDRs[0] != node.Spec.PodCIDR {
			fixed := node.DeepCopy()
			fixed.Spec.PodCIDRs = []string{node.Spec.PodCIDR}
			put = append(put, fixed)
		}
	}
	var events []Event
	next := uint64(0)
	for _, node := range need {
		for ; next < n; next++ {
			p := subnetAt(cluster, bits, next)
			if used[p] == "" {
				break
			}
		}
		c := node.DeepCopy()
		if next == n {
			if node.Spec.PodCIDR != "" {
				c.Spec.PodCIDR, c.Spec.PodCIDRs = "", nil
				put = append(put, c)
			}
			events = append(events, Event{Object: node, Type: corev1.EventTypeWarning, Reason: ReasonPodCIDRNotAllocated,
				Message: fmt.Sprintf("no free /%d left in the pod range %s for node %s", bits, cluster, node.Name)})
			continue
		}
		p := subnetAt(cluster, bits, next)
		used[p] = node.Name
		c.Spec.PodCIDR, c.Spec.PodCIDRs = p.String(), []string{p.String()}
		put = append(put, c)
	}
	slices.SortFunc(put, func(a, b manifest.Object) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return put, events
}

// subnetAt is the i-th subnet of size bits in cluster.
func subnetAt(cluster netip.Prefix, bits int, i uint64) netip.Prefix {
	step := new(big.Int).Lsh(new(big.Int).SetUint64(i), uint(cluster.Addr().BitLen()-bits))
	base := new(big.Int).SetBytes(cluster.Addr().AsSlice())
	base.Add(base, step)
	ip, _ := netip.AddrFromSlice(base.FillBytes(make([]byte, cluster.Addr().BitLen()/8)))
	return netip.PrefixFrom(ip, bits)
}
