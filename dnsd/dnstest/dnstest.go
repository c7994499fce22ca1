// Package dnstest builds state snapshots for dnsd's tests and benchmarks: Services as git
// declares them plus their allocated copies (cluster IPs), and pods placed with a status, in
// a state.MemStore, so every record dnsd serves comes from a real snapshot.
package dnstest

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// Store returns a MemStore synced to a commit holding git (Services are declared without
// their cluster IP, as in a manifest) with the Services' allocated copies and the pods in
// its cluster objects, as the leader's controllers would have put them.
func Store(ctx context.Context, git []manifest.Object, pods ...*corev1.Pod) (*state.MemStore, error) {
	m := state.NewMemStore()
	m.Now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	declared := make([]manifest.Object, 0, len(git))
	var allocated []manifest.Object
	for _, o := range git {
		svc, ok := o.(*corev1.Service)
		if !ok || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			declared = append(declared, o)
			continue
		}
		d := svc.DeepCopy()
		d.Spec.ClusterIP, d.Spec.ClusterIPs = "", nil
		declared = append(declared, d)
		allocated = append(allocated, svc)
	}
	if err := m.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c0ffee"}, Objects: state.Wrap(declared...)}}); err != nil {
		return nil, err
	}
	for _, p := range pods {
		allocated = append(allocated, p)
	}
	if len(allocated) > 0 {
		if err := m.Apply(ctx, &state.Command{Put: state.Wrap(allocated...)}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetReady reports a pod's Ready condition, as its node does, and returns the new snapshot.
func SetReady(ctx context.Context, m *state.MemStore, ns, name string, ready bool) (*state.State, error) {
	k := state.Key{Kind: "Pod", Namespace: ns, Name: name}
	o, ok := m.State().Cluster.Get(k)
	if !ok {
		return nil, fmt.Errorf("pod %s not found", k)
	}
	pod := o.(*corev1.Pod)
	st := *pod.Status.DeepCopy()
	st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: condition(ready)}}
	if err := m.Apply(ctx, &state.Command{Status: []state.PodStatus{{Key: k, UID: pod.UID, Status: st}}}); err != nil {
		return nil, err
	}
	return m.State(), nil
}

func condition(ok bool) corev1.ConditionStatus {
	if ok {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// Service returns a Service of namespace ns selecting app=<name>, with clusterIP ("None"
// for headless, "" for not yet allocated) and ports given as name/port pairs (TCP).
func Service(ns, name, clusterIP string, ports ...any) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, ClusterIP: clusterIP},
	}
	if clusterIP != "" {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	for i := 0; i+1 < len(ports); i += 2 {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: ports[i].(string), Port: int32(ports[i+1].(int)),
			Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(ports[i+1].(int)))})
	}
	return s
}

// Pod returns a running pod of namespace ns labelled app=<app>, placed on node n1, with ip
// and the Ready condition; hostname and subdomain are set when subdomain is not empty.
func Pod(ns, name, app, ip string, ready bool, subdomain string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: condition(ready)}}},
	}
	if subdomain != "" {
		p.Spec.Hostname, p.Spec.Subdomain = name, subdomain
	}
	return p
}

// Synthetic builds a cluster of services Services over 10 namespaces (named svc-<i> in
// ns-<i%10>) and pods pods spread over them: of every four Services three have a cluster IP
// (ports http 80 and grpc 9090) and one is headless with StatefulSet-style pods (hostname
// and subdomain, port peer 7000).
func Synthetic(ctx context.Context, services, pods int) (*state.MemStore, error) {
	var git []manifest.Object
	for i := range services {
		ns, name := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
		if i%4 == 3 {
			git = append(git, Service(ns, name, corev1.ClusterIPNone, "peer", 7000))
		} else {
			git = append(git, Service(ns, name, fmt.Sprintf("10.43.%d.%d", i/250, i%250+1), "http", 80, "grpc", 9090))
		}
	}
	var ps []*corev1.Pod
	for j := range pods {
		i := j % services
		ns, app := fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i)
		sub := ""
		if i%4 == 3 {
			sub = app
		}
		ps = append(ps, Pod(ns, fmt.Sprintf("%s-%d", app, j/services), app, fmt.Sprintf("10.42.%d.%d", j/250, j%250+1), true, sub))
	}
	return Store(ctx, git, ps...)
}
