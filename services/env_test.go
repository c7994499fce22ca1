package services

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// redisEnv is the example of the Kubernetes documentation ("Discovering services"), with
// skiff's service range.
const redisEnv = `
REDIS_MASTER_SERVICE_HOST=10.43.0.11
REDIS_MASTER_SERVICE_PORT=6379
REDIS_MASTER_PORT=tcp://10.43.0.11:6379
REDIS_MASTER_PORT_6379_TCP=tcp://10.43.0.11:6379
REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
REDIS_MASTER_PORT_6379_TCP_PORT=6379
REDIS_MASTER_PORT_6379_TCP_ADDR=10.43.0.11`

func TestEnvVars(t *testing.T) {
	redis := svc("redis-master", clusterIP("10.43.0.11"), ports(corev1.ServicePort{Port: 6379, Protocol: corev1.ProtocolTCP}))
	no := false
	tests := []struct {
		name     string
		git      []manifest.Object
		unsynced []manifest.Object // in git but not yet allocated by the leader
		pod      func(*corev1.Pod)
		want     string
	}{
		{name: "the Kubernetes documentation's example", git: []manifest.Object{redis}, want: redisEnv},
		{name: "named ports and UDP", git: []manifest.Object{svc("kube-dns", clusterIP("10.43.0.10"), ports(
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP}))}, want: `
KUBE_DNS_SERVICE_HOST=10.43.0.10
KUBE_DNS_SERVICE_PORT=53
KUBE_DNS_SERVICE_PORT_DNS=53
KUBE_DNS_SERVICE_PORT_DNS_TCP=53
KUBE_DNS_PORT=udp://10.43.0.10:53
KUBE_DNS_PORT_53_UDP=udp://10.43.0.10:53
KUBE_DNS_PORT_53_UDP_PROTO=udp
KUBE_DNS_PORT_53_UDP_PORT=53
KUBE_DNS_PORT_53_UDP_ADDR=10.43.0.10
KUBE_DNS_PORT_53_TCP=tcp://10.43.0.10:53
KUBE_DNS_PORT_53_TCP_PROTO=tcp
KUBE_DNS_PORT_53_TCP_PORT=53
KUBE_DNS_PORT_53_TCP_ADDR=10.43.0.10`},
		{name: "Services in name order; headless, ExternalName, pending and other namespaces left out",
			git: []manifest.Object{
				svc("zz", clusterIP("10.43.0.13"), ports(corev1.ServicePort{Port: 1, Protocol: corev1.ProtocolTCP})),
				svc("aa", clusterIP("10.43.0.12"), ports(corev1.ServicePort{Port: 2, Protocol: corev1.ProtocolTCP})),
				svc("headless", clusterIP("None")),
				svc("refused", clusterIP("10.99.0.1")),
				svc("ext", typed(corev1.ServiceTypeExternalName), func(s *corev1.Service) {
					s.Spec.ExternalName, s.Spec.Ports, s.Spec.Selector = "db.example.com", nil, nil
				}),
				svc("other", clusterIP("10.43.0.14"), func(s *corev1.Service) { s.Namespace = "other" }),
			},
			want: `
AA_SERVICE_HOST=10.43.0.12
AA_SERVICE_PORT=2
AA_PORT=tcp://10.43.0.12:2
AA_PORT_2_TCP=tcp://10.43.0.12:2
AA_PORT_2_TCP_PROTO=tcp
AA_PORT_2_TCP_PORT=2
AA_PORT_2_TCP_ADDR=10.43.0.12
ZZ_SERVICE_HOST=10.43.0.13
ZZ_SERVICE_PORT=1
ZZ_PORT=tcp://10.43.0.13:1
ZZ_PORT_1_TCP=tcp://10.43.0.13:1
ZZ_PORT_1_TCP_PROTO=tcp
ZZ_PORT_1_TCP_PORT=1
ZZ_PORT_1_TCP_ADDR=10.43.0.13`},
		{name: "a Service the leader has not allocated yet is left out", git: []manifest.Object{redis},
			unsynced: []manifest.Object{svc("new", clusterIP("10.43.0.20"))}, want: redisEnv},
		{name: "enableServiceLinks: false", git: []manifest.Object{redis},
			pod: func(p *corev1.Pod) { p.Spec.EnableServiceLinks = &no }, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newAllocCluster(t, allocCfg)
			c.sync(tt.git...)
			if len(tt.unsynced) > 0 {
				c.apply(&state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "d"}, Objects: state.Wrap(append(tt.git, tt.unsynced...)...)}})
			}
			p := pod("client", "10.42.0.5", true)
			if tt.pod != nil {
				tt.pod(p)
			}
			var lines []string
			for _, e := range EnvVars(c.m.State(), p) {
				lines = append(lines, e.Name+"="+e.Value)
			}
			if got, want := strings.Join(lines, "\n"), strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("EnvVars =\n%s\nwant\n%s", got, want)
			}
		})
	}
}
