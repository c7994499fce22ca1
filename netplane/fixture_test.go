package netplane

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// The fixture cluster: two nodes on 192.168.77.0/24, pods on 10.42.0.0/16, Services on
// 10.43.0.0/16, every pod serving TCP 8080 (named "http").
var (
	clusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	allocCfg    = services.AllocConfig{ServiceCIDR: serviceCIDR, PodCIDR: clusterCIDR, NodePorts: [2]int{30000, 32767}}
)

type fixNode struct {
	name, ip, podCIDR string
}

type fixPod struct {
	name, node, ip string
	ready          bool
	labels         map[string]string
}

func fnode(name, ip, cidr string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
}

func fpod(name, node, ip string, ready bool, labels ...string) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name), Labels: l},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func fsvc(name, ip string, sel map[string]string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func nodePortSvc(port int32, policy corev1.ServiceExternalTrafficPolicy) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = policy
		s.Spec.Ports[0].NodePort = port
	}
}

func affinity(s *corev1.Service) {
	t := int32(600)
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
}

func app(v string) map[string]string { return map[string]string{"app": v} }

// fixture is a cluster state as the leader makes it: git objects synced, pods and nodes
// put, then the allocator's plan applied.
type fixture struct {
	t *testing.T
	m *state.MemStore
}

func newFixture(t *testing.T, git []manifest.Object, cluster ...manifest.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, m: state.NewMemStore()}
	f.m.Now = func() time.Time { return time.Unix(1_700_000_000, 0) }
	f.apply(&state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c1"}, Objects: state.Wrap(git...)}})
	if len(cluster) > 0 {
		f.apply(&state.Command{Put: state.Wrap(cluster...)})
	}
	f.allocate()
	return f
}

func (f *fixture) apply(c *state.Command) {
	f.t.Helper()
	if err := f.m.Apply(f.t.Context(), c); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) allocate() {
	f.t.Helper()
	put, del, events := services.Plan(f.m.State(), allocCfg, time.Unix(1_700_000_000, 0))
	for _, e := range events {
		f.t.Logf("allocation event: %s %s: %s", e.Reason, e.Object.GetName(), e.Message)
	}
	if len(put) > 0 || len(del) > 0 {
		f.apply(&state.Command{Put: state.Wrap(put...), Delete: del})
	}
}

// sync makes git the live commit and allocates.
func (f *fixture) sync(git ...manifest.Object) {
	f.t.Helper()
	f.apply(&state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c2"}, Objects: state.Wrap(git...)}})
	f.allocate()
}

// put puts cluster objects (pods, nodes) and allocates.
func (f *fixture) put(objs ...manifest.Object) {
	f.t.Helper()
	f.apply(&state.Command{Put: state.Wrap(objs...)})
	f.allocate()
}

func (f *fixture) state() *state.State { return f.m.State() }

// standard is the fixture most tests use: web (3 ready endpoints over two nodes, one not
// ready), sticky (ClientIP affinity), np and nplocal (NodePort, Cluster and Local),
// nplocal1 (Local, endpoints on n1 only), empty (no endpoints, with a node port), lb
// (LoadBalancer on the node addresses), multi (two ports, one UDP), and headless and
// ExternalName Services that render nothing.
func standardGit() []manifest.Object {
	return []manifest.Object{
		fsvc("web", "10.43.0.10", app("web")),
		fsvc("sticky", "10.43.0.11", app("web"), affinity),
		fsvc("np", "10.43.0.12", app("web"), nodePortSvc(30080, corev1.ServiceExternalTrafficPolicyCluster)),
		fsvc("nplocal", "10.43.0.13", app("web"), nodePortSvc(30081, corev1.ServiceExternalTrafficPolicyLocal)),
		fsvc("nplocal1", "10.43.0.15", app("one"), nodePortSvc(30082, corev1.ServiceExternalTrafficPolicyLocal)),
		fsvc("empty", "10.43.0.14", app("nothing"), nodePortSvc(30083, corev1.ServiceExternalTrafficPolicyCluster)),
		fsvc("lb", "10.43.0.16", app("web"), func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.Ports[0].Port = 8088
			s.Spec.Ports[0].NodePort = 30088
		}),
		fsvc("multi", "10.43.0.17", app("web"), func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP}}
		}),
		fsvc("headless", "None", app("web")),
		fsvc("ext", "", nil, func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Ports = corev1.ServiceTypeExternalName, "db.example.com", nil
		}),
	}
}

func standardCluster() []manifest.Object {
	return []manifest.Object{
		fnode("n1", "192.168.77.11", "10.42.1.0/24"), fnode("n2", "192.168.77.12", "10.42.2.0/24"),
		fpod("web-a", "n1", "10.42.1.2", true, "app", "web"),
		fpod("web-b", "n1", "10.42.1.3", true, "app", "web"),
		fpod("web-c", "n2", "10.42.2.2", true, "app", "web"),
		fpod("web-d", "n1", "10.42.1.4", false, "app", "web"),
		fpod("one-a", "n1", "10.42.1.5", true, "app", "one"),
	}
}
