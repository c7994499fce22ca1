package services

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/state"
)

// Allocated returns the Services of namespace ns ("" = all) that the leader has
// allocated: the Cluster copies of Services still in git, sorted. Unlike List it leaves
// out a Service the leader has not seen yet, whose clusterIP (if git wrote one) may still
// be refused. The data plane and the environment variables use it.
func Allocated(s *state.State, ns string) []*corev1.Service {
	var out []*corev1.Service
	for _, svc := range state.Typed[*corev1.Service](s.Cluster.List("Service", ns)) {
		if _, inGit := s.Git.Get(state.KeyOf(svc)); inGit {
			out = append(out, svc)
		}
	}
	return out
}

// HasClusterIP reports whether a Service has a virtual address (not headless,
// ExternalName or still pending).
func HasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

// EnvVars returns the Service discovery variables for a pod, as the kubelet sets them
// (pkg/kubelet/envvars): for every Service of the pod's namespace that has a cluster IP,
// FOO_SERVICE_HOST, FOO_SERVICE_PORT (the first port), FOO_SERVICE_PORT_<NAME> for each
// named port, and the Docker link variables FOO_PORT, FOO_PORT_<port>_<PROTO> with _PROTO,
// _PORT and _ADDR. FOO is the Service name upper-cased with dashes as underscores.
// Services come in name order, each one's variables in the kubelet's order. A pod with
// enableServiceLinks: false gets none (skiff has no "kubernetes" master Service to add
// regardless). Only Services existing when the container is created appear, as in
// Kubernetes: the caller calls this at container creation.
func EnvVars(s *state.State, pod *corev1.Pod) []corev1.EnvVar {
	if pod.Spec.EnableServiceLinks != nil && !*pod.Spec.EnableServiceLinks {
		return nil
	}
	var out []corev1.EnvVar
	for _, svc := range Allocated(s, pod.Namespace) {
		if !HasClusterIP(svc) || len(svc.Spec.Ports) == 0 {
			continue
		}
		out = append(out, serviceEnv(svc)...)
	}
	return out
}

func serviceEnv(svc *corev1.Service) []corev1.EnvVar {
	prefix := envName(svc.Name)
	ip := svc.Spec.ClusterIP
	portName := prefix + "_SERVICE_PORT"
	out := []corev1.EnvVar{
		{Name: prefix + "_SERVICE_HOST", Value: ip},
		{Name: portName, Value: strconv.Itoa(int(svc.Spec.Ports[0].Port))},
	}
	for _, sp := range svc.Spec.Ports {
		if sp.Name != "" {
			out = append(out, corev1.EnvVar{Name: portName + "_" + envName(sp.Name), Value: strconv.Itoa(int(sp.Port))})
		}
	}
	for i, sp := range svc.Spec.Ports {
		proto := string(protocolOf(sp.Protocol))
		lower := strings.ToLower(proto)
		url := fmt.Sprintf("%s://%s", lower, net.JoinHostPort(ip, strconv.Itoa(int(sp.Port))))
		if i == 0 {
			out = append(out, corev1.EnvVar{Name: prefix + "_PORT", Value: url}) // Docker special-cases the first port
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, sp.Port, strings.ToUpper(proto))
		out = append(out,
			corev1.EnvVar{Name: pp, Value: url},
			corev1.EnvVar{Name: pp + "_PROTO", Value: lower},
			corev1.EnvVar{Name: pp + "_PORT", Value: strconv.Itoa(int(sp.Port))},
			corev1.EnvVar{Name: pp + "_ADDR", Value: ip},
		)
	}
	return out
}

// envName is the kubelet's makeEnvVariableName.
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
