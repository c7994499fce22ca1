// Package services is the Service model every node reads from the state snapshot: the
// Services with their allocated addresses, and their endpoints computed from the pods the
// nodes reported. It is a pure function of the state — every node computes the same
// endpoints from the same snapshot, so readiness changes reach every node's DNS, data
// plane and ingress through the pod status already in the Raft log, with no extra writes.
package services

import (
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/state"
)

// Annotations and labels skiff uses on Services and Endpoints.
const (
	// AnnotationTolerateUnready is the legacy form of publishNotReadyAddresses.
	AnnotationTolerateUnready = "service.alpha.kubernetes.io/tolerate-unready-endpoints"
)

// List returns the Services of namespace ns ("" = all), sorted. The leader's service
// controller stores each git Service, with its cluster IP, node ports and load-balancer
// status allocated, as a Cluster object of the same name; a Service not yet allocated is
// returned as written in git but without a cluster IP (one written in git is a request,
// not yet an address anyone may use).
func List(s *state.State, ns string) []*corev1.Service {
	byKey := map[state.Key]*corev1.Service{}
	for _, svc := range state.Typed[*corev1.Service](s.Git.List("Service", ns)) {
		if !Headless(svc) && (svc.Spec.ClusterIP != "" || len(svc.Spec.ClusterIPs) > 0) {
			// An address written in git is only a request until the leader allocates it.
			svc = svc.DeepCopy()
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		}
		byKey[state.KeyOf(svc)] = svc
	}
	for _, svc := range state.Typed[*corev1.Service](s.Cluster.List("Service", ns)) {
		k := state.KeyOf(svc)
		if _, inGit := byKey[k]; inGit {
			byKey[k] = svc // the allocated copy
		}
	}
	out := make([]*corev1.Service, 0, len(byKey))
	for _, svc := range byKey {
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Get returns one Service (allocated when possible).
func Get(s *state.State, ns, name string) (*corev1.Service, bool) {
	k := state.Key{Kind: "Service", Namespace: ns, Name: name}
	if _, inGit := s.Git.Get(k); !inGit {
		return nil, false
	}
	if o, ok := s.Cluster.Get(k); ok {
		return o.(*corev1.Service), true
	}
	o, _ := s.Git.Get(k)
	return o.(*corev1.Service), true
}

// Headless reports whether a Service has no cluster IP (clusterIP: None).
func Headless(svc *corev1.Service) bool { return svc.Spec.ClusterIP == corev1.ClusterIPNone }

// Endpoints computes the endpoints of every Service in namespace ns ("" = all), as the
// Kubernetes endpoints controller would: for a Service with a selector, every pod of its
// namespace matching it that has an IP and is not terminating, ready ones as Addresses and
// the others as NotReadyAddresses (all as Addresses with publishNotReadyAddresses), ports
// resolved per pod (named targetPorts), hostname from spec.hostname when spec.subdomain
// names the Service. A Service without a selector uses the Endpoints object of the same
// name from git. ExternalName Services have none.
func Endpoints(s *state.State, ns string) []*corev1.Endpoints {
	pods := state.Typed[*corev1.Pod](s.Cluster.List("Pod", ns))
	var out []*corev1.Endpoints
	for _, svc := range List(s, ns) {
		if ep := endpointsOf(s, svc, pods); ep != nil {
			out = append(out, ep)
		}
	}
	return out
}

// EndpointsOf computes one Service's endpoints.
func EndpointsOf(s *state.State, svc *corev1.Service) *corev1.Endpoints {
	return endpointsOf(s, svc, state.Typed[*corev1.Pod](s.Cluster.List("Pod", svc.Namespace)))
}

func endpointsOf(s *state.State, svc *corev1.Service, pods []*corev1.Pod) *corev1.Endpoints {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if svc.Spec.Selector == nil {
		if o, ok := s.Git.Get(state.Key{Kind: "Endpoints", Namespace: svc.Namespace, Name: svc.Name}); ok {
			return o.(*corev1.Endpoints)
		}
		return newEndpoints(svc)
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	tolerate := svc.Spec.PublishNotReadyAddresses || svc.Annotations[AnnotationTolerateUnready] == "true"
	type subsetKey string
	subsets := map[subsetKey]*corev1.EndpointSubset{}
	var order []subsetKey
	for _, pod := range pods {
		if pod.Namespace != svc.Namespace || !sel.Matches(labels.Set(pod.Labels)) || pod.Status.PodIP == "" ||
			pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		addr := corev1.EndpointAddress{
			IP: pod.Status.PodIP, NodeName: &pod.Spec.NodeName,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
			addr.Hostname = pod.Spec.Hostname
		}
		var ports []corev1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			port, ok := TargetPort(pod, sp)
			if !ok {
				continue
			}
			ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue // none of the Service's ports exist on this pod
		}
		k := subsetKey(portsKey(ports))
		ss, ok := subsets[k]
		if !ok {
			ss = &corev1.EndpointSubset{Ports: ports}
			subsets[k] = ss
			order = append(order, k)
		}
		if tolerate || PodReady(pod) {
			ss.Addresses = append(ss.Addresses, addr)
		} else {
			ss.NotReadyAddresses = append(ss.NotReadyAddresses, addr)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	ep := newEndpoints(svc)
	for _, k := range order {
		ss := subsets[k]
		sortAddresses(ss.Addresses)
		sortAddresses(ss.NotReadyAddresses)
		ep.Subsets = append(ep.Subsets, *ss)
	}
	return ep
}

func newEndpoints(svc *corev1.Service) *corev1.Endpoints {
	ep := &corev1.Endpoints{}
	ep.APIVersion, ep.Kind = "v1", "Endpoints"
	ep.Namespace, ep.Name, ep.Labels = svc.Namespace, svc.Name, svc.Labels
	ep.CreationTimestamp = svc.CreationTimestamp
	return ep
}

// TargetPort resolves a Service port's targetPort for one pod: a number as is (the port
// itself when unset), a name through the pod's container ports.
func TargetPort(pod *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && protocolOf(p.Protocol) == protocolOf(sp.Protocol) {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	}
	return sp.Port, true
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// PodReady reports the pod's Ready condition.
func PodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func portsKey(ps []corev1.EndpointPort) string {
	k := ""
	for _, p := range ps {
		k += p.Name + "/" + string(p.Protocol) + "/" + strconv.Itoa(int(p.Port)) + ";"
	}
	return k
}

func sortAddresses(a []corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].IP != a[j].IP {
			return a[i].IP < a[j].IP
		}
		return a[i].Hostname < a[j].Hostname
	})
}
