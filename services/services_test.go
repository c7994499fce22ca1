package services

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

func pod(name, ip string, ready bool, mutate ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: "u-" + "x", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func svc(name string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// render prints endpoints compactly: "ready=[ip:port...] notready=[...]".
func render(ep *corev1.Endpoints) string {
	if ep == nil {
		return "<nil>"
	}
	var ready, notReady []string
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				ready = append(ready, fmt.Sprintf("%s%s:%d", hn(a), a.IP, p.Port))
			}
			for _, a := range ss.NotReadyAddresses {
				notReady = append(notReady, fmt.Sprintf("%s:%d", a.IP, p.Port))
			}
		}
	}
	return fmt.Sprintf("ready=%v notready=%v", ready, notReady)
}

func hn(a corev1.EndpointAddress) string {
	if a.Hostname == "" {
		return ""
	}
	return a.Hostname + "@"
}

func build(t *testing.T, git []manifest.Object, pods ...*corev1.Pod) *state.State {
	t.Helper()
	m := state.NewMemStore()
	m.Now = func() time.Time { return time.Unix(0, 0) }
	ctx := t.Context()
	if err := m.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c"}, Objects: state.Wrap(git...)}}); err != nil {
		t.Fatal(err)
	}
	if len(pods) > 0 {
		objs := make([]manifest.Object, len(pods))
		for i, p := range pods {
			objs[i] = p
		}
		if err := m.Apply(ctx, &state.Command{Put: state.Wrap(objs...)}); err != nil {
			t.Fatal(err)
		}
	}
	return m.State()
}

func TestEndpoints(t *testing.T) {
	now := metav1.Now()
	tests := []struct {
		name string
		svc  *corev1.Service
		git  []manifest.Object
		pods []*corev1.Pod
		want string
	}{
		{"ready and not ready, named target port", svc("web"), nil,
			[]*corev1.Pod{pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)},
			"ready=[10.0.0.1:8080] notready=[10.0.0.2:8080]"},
		{"numeric target port and several ports", svc("web", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80, TargetPort: intstr.FromInt32(9000)}, {Name: "b", Port: 81}}
		}), nil, []*corev1.Pod{pod("a", "10.0.0.1", true)}, "ready=[10.0.0.1:9000 10.0.0.1:81] notready=[]"},
		{"publishNotReadyAddresses", svc("web", func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }), nil,
			[]*corev1.Pod{pod("b", "10.0.0.2", false)}, "ready=[10.0.0.2:8080] notready=[]"},
		{"terminating, unplaced, finished and IP-less pods are out", svc("web"), nil, []*corev1.Pod{
			pod("t", "10.0.0.3", true, func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
			pod("f", "10.0.0.4", true, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
			pod("n", "", true)}, "ready=[] notready=[]"},
		{"other labels and namespaces are out", svc("web"), nil, []*corev1.Pod{
			pod("x", "10.0.0.5", true, func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }),
			pod("y", "10.0.0.6", true, func(p *corev1.Pod) { p.Namespace = "other" })}, "ready=[] notready=[]"},
		{"hostname when the subdomain names the service", svc("web"), nil, []*corev1.Pod{
			pod("web-0", "10.0.0.7", true, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "web-0", "web" })},
			"ready=[web-0@10.0.0.7:8080] notready=[]"},
		{"selector-less uses the git Endpoints", svc("ext", func(s *corev1.Service) { s.Spec.Selector = nil }),
			[]manifest.Object{&corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
				Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.9"}}, Ports: []corev1.EndpointPort{{Port: 5432}}}}}},
			nil, "ready=[192.0.2.9:5432] notready=[]"},
		{"ExternalName has none", svc("ext", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }), nil, nil, "<nil>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, p := range tt.pods {
				p.UID = types.UID("uid-" + p.Name)
				tt.pods[i] = p
			}
			s := build(t, append(tt.git, tt.svc), tt.pods...)
			got, ok := Get(s, tt.svc.Namespace, tt.svc.Name)
			if !ok {
				t.Fatal("service not found")
			}
			if r := render(EndpointsOf(s, got)); r != tt.want {
				t.Errorf("EndpointsOf(%s) = %s; want %s", tt.name, r, tt.want)
			}
		})
	}
}

func TestListPrefersAllocatedCopy(t *testing.T) {
	git := svc("web")
	s := build(t, []manifest.Object{git, svc("db")})
	alloc := git.DeepCopy()
	alloc.Spec.ClusterIP = "10.43.0.10"
	m := state.NewMemStore()
	m.Publish(s)
	if err := m.Apply(t.Context(), &state.Command{Put: state.Wrap[manifest.Object](alloc)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range List(m.State(), "") {
		got = append(got, x.Name+"="+x.Spec.ClusterIP)
	}
	if strings.Join(got, ",") != "db=,web=10.43.0.10" {
		t.Errorf("List = %v; want db unallocated and web with its cluster IP", got)
	}
}
