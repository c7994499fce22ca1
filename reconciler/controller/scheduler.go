package controller

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/state"
)

// Scheduler places pods on nodes like kube-scheduler's default profile, cut to what a small
// edge cluster needs. Filters, in Kubernetes' order: NodeUnschedulable (cordon),
// NodeName (spec.nodeName, kept in AnnotationNodeName while unplaced), TaintToleration
// (NoSchedule and NoExecute taints, a NotReady node being tainted
// node.kubernetes.io/unreachable), NodeAffinity (nodeSelector and required node affinity),
// NodePorts (hostPort), NodeResourcesFit (cpu, memory, pod count against allocatable minus
// what placed pods request; a resource the node does not report is not limited). Among the
// nodes that pass it picks the one with the fewest pods of the same controlling owner (so
// replicas spread), then the least requested (Kubernetes' LeastAllocated, counting 100m CPU
// and 200 MiB for containers that request nothing), then the first by name.
//
// A Scheduler is a plain value built from nodes and the pods placed on them; Assume and
// Forget keep it up to date while a caller places several pods.
type Scheduler struct {
	nodes  []*nodeInfo // by name
	byName map[string]*nodeInfo
}

type nodeInfo struct {
	node      *corev1.Node
	ready     bool
	alloc     resources
	requested resources // by the pods placed here (terminating ones included)
	nonzero   resources // the same with default requests, for scoring
	ports     map[hostPort]int
	owners    map[types.UID]int // non-terminating pods by controlling owner
}

// resources are amounts of what the scheduler counts; -1 in an allocatable: not reported.
type resources struct{ milliCPU, memory, pods int64 }

type hostPort struct {
	ip       string
	protocol corev1.Protocol
	port     int32
}

// Default requests for scoring containers that request nothing (Kubernetes' values).
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 * 1024 * 1024
)

// Reasons a node does not fit, worded as kube-scheduler's.
const (
	reasonUnschedulable = "node(s) were unschedulable"
	reasonNodeName      = "node(s) didn't match the requested node name"
	reasonNodeAffinity  = "node(s) didn't match Pod's node affinity/selector"
	reasonNodePorts     = "node(s) didn't have free ports for the requested pod ports"
	reasonTooManyPods   = "Too many pods"
	reasonNoNodes       = "no nodes available to schedule pods"
)

// FitError says why a pod fits on no node.
type FitError struct {
	NumNodes int
	Reasons  map[string]int // reason → number of nodes
}

// Error renders the message as kube-scheduler does: "0/3 nodes are available: 1 Insufficient
// memory, 2 node(s) didn't match Pod's node affinity/selector."
func (e *FitError) Error() string {
	if e.NumNodes == 0 {
		return reasonNoNodes
	}
	parts := make([]string, 0, len(e.Reasons))
	for r, n := range e.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", e.NumNodes, strings.Join(parts, ", "))
}

// NewScheduler returns a scheduler over nodes, with pods already placed on them (those
// with spec.nodeName; finished pods hold nothing). ready reports node liveness; nil: all
// ready.
func NewScheduler(nodes []*corev1.Node, placed []*corev1.Pod, ready func(string) bool) *Scheduler {
	s := &Scheduler{byName: make(map[string]*nodeInfo, len(nodes))}
	for _, n := range nodes {
		ni := &nodeInfo{
			node: n, ready: ready == nil || ready(n.Name),
			alloc: resources{
				milliCPU: quantity(n.Status.Allocatable, corev1.ResourceCPU, true),
				memory:   quantity(n.Status.Allocatable, corev1.ResourceMemory, false),
				pods:     quantity(n.Status.Allocatable, corev1.ResourcePods, false),
			},
			ports:  map[hostPort]int{},
			owners: map[types.UID]int{},
		}
		s.nodes = append(s.nodes, ni)
		s.byName[n.Name] = ni
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].node.Name < s.nodes[j].node.Name })
	for _, pod := range placed {
		s.Assume(pod)
	}
	return s
}

// Schedule builds a scheduler from a state (its Node objects and placed pods) and places
// one pod: the node's name, or a *FitError.
func Schedule(st *state.State, pod *corev1.Pod, ready func(string) bool) (string, error) {
	var placed []*corev1.Pod
	for _, p := range state.Typed[*corev1.Pod](st.Cluster.List("Pod", "")) {
		if p.Spec.NodeName != "" {
			placed = append(placed, p)
		}
	}
	return NewScheduler(state.Typed[*corev1.Node](st.Cluster.List("Node", "")), placed, ready).Schedule(pod)
}

// Schedule picks a node for pod, or returns a *FitError saying why none fits. It does not
// record the placement: call Assume with the placed pod.
func (s *Scheduler) Schedule(pod *corev1.Pod) (string, error) { return s.ScheduleWith(pod, nil) }

// ScheduleWith is Schedule with one more filter, run on the nodes that pass the others (as
// kube-scheduler runs VolumeBinding after them): it returns why a node does not fit, "" when
// it does. nil: none.
func (s *Scheduler) ScheduleWith(pod *corev1.Pod, filter func(*corev1.Node) string) (string, error) {
	fe := &FitError{NumNodes: len(s.nodes), Reasons: map[string]int{}}
	if len(s.nodes) == 0 {
		return "", fe
	}
	req := podRequests(pod, false)
	score := podRequests(pod, true)
	owner := controllerUID(pod)
	var best *nodeInfo
	var bestOwn int
	var bestUse float64
	for _, n := range s.nodes {
		if reasons := n.fit(pod, req); len(reasons) > 0 {
			for _, r := range reasons {
				fe.Reasons[r]++
			}
			continue
		}
		if filter != nil {
			if r := filter(n.node); r != "" {
				fe.Reasons[r]++
				continue
			}
		}
		own := 0
		if owner != "" {
			own = n.owners[owner]
		}
		use := n.use(score)
		if best == nil || own < bestOwn || (own == bestOwn && use < bestUse) {
			best, bestOwn, bestUse = n, own, use
		}
	}
	if best == nil {
		return "", fe
	}
	return best.node.Name, nil
}

// Assume counts a placed pod (spec.nodeName set) on its node.
func (s *Scheduler) Assume(pod *corev1.Pod) { s.account(pod, 1) }

// Forget stops counting a pod Assume counted.
func (s *Scheduler) Forget(pod *corev1.Pod) { s.account(pod, -1) }

func (s *Scheduler) account(pod *corev1.Pod, sign int64) {
	n := s.byName[pod.Spec.NodeName]
	if n == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	r, nz := podRequests(pod, false), podRequests(pod, true)
	n.requested.add(r, sign)
	n.nonzero.add(nz, sign)
	for _, hp := range podHostPorts(pod) {
		n.ports[hp] += int(sign)
		if n.ports[hp] <= 0 {
			delete(n.ports, hp)
		}
	}
	if owner := controllerUID(pod); owner != "" && pod.DeletionTimestamp == nil {
		n.owners[owner] += int(sign)
		if n.owners[owner] <= 0 {
			delete(n.owners, owner)
		}
	}
}

func (r *resources) add(o resources, sign int64) {
	r.milliCPU += sign * o.milliCPU
	r.memory += sign * o.memory
	r.pods += sign * o.pods
}

// fit runs the filters and returns why the pod does not fit (nil: it fits). Like
// kube-scheduler it stops at the first filter that fails; resources can give several.
func (n *nodeInfo) fit(pod *corev1.Pod, req resources) []string {
	if n.node.Spec.Unschedulable && !tolerates(pod.Spec.Tolerations, &corev1.Taint{
		Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return []string{reasonUnschedulable}
	}
	if want := pod.Annotations[AnnotationNodeName]; want != "" && want != n.node.Name {
		return []string{reasonNodeName}
	}
	if t := n.untoleratedTaint(pod); t != nil {
		return []string{fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)}
	}
	if !matchesNode(pod, n.node) {
		return []string{reasonNodeAffinity}
	}
	for _, hp := range podHostPorts(pod) {
		if n.portTaken(hp) {
			return []string{reasonNodePorts}
		}
	}
	var out []string
	if n.alloc.pods >= 0 && n.requested.pods+1 > n.alloc.pods {
		out = append(out, reasonTooManyPods)
	}
	if req.milliCPU > 0 && n.alloc.milliCPU >= 0 && req.milliCPU > n.alloc.milliCPU-n.requested.milliCPU {
		out = append(out, "Insufficient cpu")
	}
	if req.memory > 0 && n.alloc.memory >= 0 && req.memory > n.alloc.memory-n.requested.memory {
		out = append(out, "Insufficient memory")
	}
	return out
}

// untoleratedTaint returns the first NoSchedule or NoExecute taint the pod does not
// tolerate: node.kubernetes.io/unreachable when the node is not ready, then the node's own.
func (n *nodeInfo) untoleratedTaint(pod *corev1.Pod) *corev1.Taint {
	taints := n.node.Spec.Taints
	if !n.ready {
		taints = append([]corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}}, taints...)
	}
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerates(pod.Spec.Tolerations, t) {
			return t
		}
	}
	return nil
}

func (n *nodeInfo) portTaken(hp hostPort) bool {
	for used := range n.ports {
		if used.port == hp.port && used.protocol == hp.protocol &&
			(used.ip == hp.ip || used.ip == "0.0.0.0" || hp.ip == "0.0.0.0") {
			return true
		}
	}
	return false
}

// use is the share of the node's cpu and memory requested once pod is placed (lower is
// better; a resource the node does not report counts as free).
func (n *nodeInfo) use(pod resources) float64 {
	frac := func(req, alloc int64) float64 {
		if alloc <= 0 {
			return 0
		}
		return float64(req) / float64(alloc)
	}
	return (frac(n.nonzero.milliCPU+pod.milliCPU, n.alloc.milliCPU) +
		frac(n.nonzero.memory+pod.memory, n.alloc.memory)) / 2
}

// tolerates reports whether any toleration tolerates the taint (Kubernetes' ToleratesTaint).
func tolerates(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		if toleratesTaint(&tols[i], t) {
			return true
		}
	}
	return false
}

func toleratesTaint(tol *corev1.Toleration, t *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case "", corev1.TolerationOpEqual:
		return tol.Value == t.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}

// matchesNode reports whether the node satisfies the pod's nodeSelector and required node
// affinity.
func matchesNode(pod *corev1.Pod, node *corev1.Node) bool {
	if len(pod.Spec.NodeSelector) > 0 &&
		!labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue // an empty term matches no node
		}
		if matchRequirements(term.MatchExpressions, labels.Set(node.Labels)) &&
			matchRequirements(term.MatchFields, labels.Set{"metadata.name": node.Name}) {
			return true
		}
	}
	return false
}

var nodeSelectorOps = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
	corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
}

func matchRequirements(reqs []corev1.NodeSelectorRequirement, set labels.Set) bool {
	for _, r := range reqs {
		op, ok := nodeSelectorOps[r.Operator]
		if !ok {
			return false
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil || !req.Matches(set) {
			return false
		}
	}
	return true
}

// podRequests returns what a pod requests, as Kubernetes' PodRequests: the sum over its
// containers and sidecars (restartable init containers), at least the largest init
// container (plus the sidecars started before it), plus the pod overhead; pod-level
// resources win when set. A container that only sets a limit requests its limit (the API
// server's default). nonzero counts defaults for containers that request nothing (scoring).
func podRequests(pod *corev1.Pod, nonzero bool) resources {
	reqs := func(c *corev1.Container) resources {
		cpu := quantity(c.Resources.Requests, corev1.ResourceCPU, true)
		if cpu < 0 {
			cpu = max(quantity(c.Resources.Limits, corev1.ResourceCPU, true), 0)
		}
		mem := quantity(c.Resources.Requests, corev1.ResourceMemory, false)
		if mem < 0 {
			mem = max(quantity(c.Resources.Limits, corev1.ResourceMemory, false), 0)
		}
		if nonzero && cpu == 0 {
			cpu = defaultMilliCPURequest
		}
		if nonzero && mem == 0 {
			mem = defaultMemoryRequest
		}
		return resources{milliCPU: cpu, memory: mem}
	}
	var sum, sidecars, init resources
	for i := range pod.Spec.Containers {
		sum.add(reqs(&pod.Spec.Containers[i]), 1)
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := reqs(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum.add(r, 1)
			sidecars.add(r, 1)
			r = sidecars
		} else {
			r.add(sidecars, 1)
		}
		init.milliCPU, init.memory = max(init.milliCPU, r.milliCPU), max(init.memory, r.memory)
	}
	sum.milliCPU, sum.memory = max(sum.milliCPU, init.milliCPU), max(sum.memory, init.memory)
	if pr := pod.Spec.Resources; pr != nil {
		if cpu := quantity(pr.Requests, corev1.ResourceCPU, true); cpu >= 0 {
			sum.milliCPU = cpu
		}
		if mem := quantity(pr.Requests, corev1.ResourceMemory, false); mem >= 0 {
			sum.memory = mem
		}
	}
	sum.milliCPU += max(quantity(pod.Spec.Overhead, corev1.ResourceCPU, true), 0)
	sum.memory += max(quantity(pod.Spec.Overhead, corev1.ResourceMemory, false), 0)
	sum.pods = 1
	return sum
}

// quantity returns a resource amount (millis for cpu), -1 when absent.
func quantity(l corev1.ResourceList, name corev1.ResourceName, milli bool) int64 {
	q, ok := l[name]
	if !ok {
		return -1
	}
	if milli {
		return q.MilliValue()
	}
	return q.Value()
}

// podHostPorts returns the host ports a pod's containers publish.
func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			hp := hostPort{ip: p.HostIP, protocol: p.Protocol, port: p.HostPort}
			if hp.ip == "" {
				hp.ip = "0.0.0.0"
			}
			if hp.protocol == "" {
				hp.protocol = corev1.ProtocolTCP
			}
			out = append(out, hp)
		}
	}
	return out
}
