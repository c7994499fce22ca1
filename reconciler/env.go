package reconciler

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Lookup finds the ConfigMaps and Secrets a pod refers to (from the live commit).
type Lookup interface {
	ConfigMap(ns, name string) (*corev1.ConfigMap, bool)
	Secret(ns, name string) (*corev1.Secret, bool)
}

// ConfigError is a problem with a container's configuration that the user must fix in git
// (a missing ConfigMap key, say); the container waits with reason CreateContainerConfigError.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{Msg: fmt.Sprintf(format, args...)}
}

// containerEnv resolves a container's environment as the kubelet does: envFrom first (in
// order, later sources win), then env (which wins over envFrom), with $(VAR) references
// expanded against variables defined before them. extra (Service variables) come first
// and lose to everything the user wrote.
func containerEnv(pod *corev1.Pod, c *corev1.Container, lk Lookup, extra []corev1.EnvVar) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, e := range extra {
		set(e.Name, e.Value)
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := lk.ConfigMap(pod.Namespace, from.ConfigMapRef.Name)
			if !ok {
				if isOptional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, configErrorf("configmap %q not found", from.ConfigMapRef.Name)
			}
			for _, k := range sortedKeys(cm.Data) {
				if name := from.Prefix + k; validEnvName(name) {
					set(name, cm.Data[k])
				}
			}
		case from.SecretRef != nil:
			s, ok := lk.Secret(pod.Namespace, from.SecretRef.Name)
			if !ok {
				if isOptional(from.SecretRef.Optional) {
					continue
				}
				return nil, configErrorf("secret %q not found", from.SecretRef.Name)
			}
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if name := from.Prefix + k; validEnvName(name) {
					set(name, string(s.Data[k]))
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		v, skip, err := envValueFrom(pod, c, e, lk)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func envValueFrom(pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, lk Lookup) (value string, skip bool, err error) {
	src := e.ValueFrom
	switch {
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, ok := lk.ConfigMap(pod.Namespace, ref.Name)
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, configErrorf("env %s: configmap %q not found", e.Name, ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, configErrorf("env %s: key %q not found in configmap %q", e.Name, ref.Key, ref.Name)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, ok := lk.Secret(pod.Namespace, ref.Name)
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, configErrorf("env %s: secret %q not found", e.Name, ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if isOptional(ref.Optional) {
				return "", true, nil
			}
			return "", false, configErrorf("env %s: key %q not found in secret %q", e.Name, ref.Key, ref.Name)
		}
		return string(v), false, nil
	case src.FieldRef != nil:
		v, err := fieldValue(pod, src.FieldRef.FieldPath)
		if err != nil {
			return "", false, configErrorf("env %s: %v", e.Name, err)
		}
		return v, false, nil
	case src.ResourceFieldRef != nil:
		v, err := ResourceValue(c, src.ResourceFieldRef)
		if err != nil {
			return "", false, configErrorf("env %s: %v", e.Name, err)
		}
		return v, false, nil
	}
	return "", true, nil
}

// fieldValue implements the downward API's fieldRef paths.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		return joinIPs(pod.Status.HostIPs), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		ips := make([]string, len(pod.Status.PodIPs))
		for i, ip := range pod.Status.PodIPs {
			ips[i] = ip.IP
		}
		return strings.Join(ips, ","), nil
	}
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels", pod.Labels}, {"metadata.annotations", pod.Annotations}} {
		if path == m.prefix {
			return formatMap(m.values), nil
		}
		if strings.HasPrefix(path, m.prefix+"['") && strings.HasSuffix(path, "']") {
			return m.values[path[len(m.prefix)+2:len(path)-2]], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func joinIPs(ips []corev1.HostIP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.IP
	}
	return strings.Join(s, ",")
}

// formatMap renders labels or annotations in the downward API's `key="value"` lines.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// ResourceValue implements resourceFieldRef: a container's limit or request, divided by
// the divisor and rounded up, as the kubelet does. An unset limit reports the node's
// capacity in Kubernetes; skiff reports 0 for "unlimited" memory and the CPU count for cpu.
func ResourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	var q resource.Quantity
	var ok bool
	switch ref.Resource {
	case "limits.cpu":
		q, ok = c.Resources.Limits[corev1.ResourceCPU]
	case "limits.memory":
		q, ok = c.Resources.Limits[corev1.ResourceMemory]
	case "limits.ephemeral-storage":
		q, ok = c.Resources.Limits[corev1.ResourceEphemeralStorage]
	case "requests.cpu":
		q, ok = c.Resources.Requests[corev1.ResourceCPU]
	case "requests.memory":
		q, ok = c.Resources.Requests[corev1.ResourceMemory]
	case "requests.ephemeral-storage":
		q, ok = c.Resources.Requests[corev1.ResourceEphemeralStorage]
	default:
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	if !ok {
		return "0", nil
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if strings.HasSuffix(ref.Resource, "cpu") {
		v := math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
		return strconv.FormatInt(int64(v), 10), nil
	}
	v := math.Ceil(float64(q.Value()) / float64(divisor.Value()))
	return strconv.FormatInt(int64(v), 10), nil
}

// expand replaces $(VAR) with the value of VAR when defined; $$ escapes a dollar; an
// undefined reference is left as written — Kubernetes' expansion rules.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// expandAll expands $(VAR) in a command or args list against the container's environment.
func expandAll(list []string, env []string) []string {
	if len(list) == 0 {
		return list
	}
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = expand(s, vars)
	}
	return out
}

func isOptional(b *bool) bool { return b != nil && *b }

func validEnvName(s string) bool { return len(validation.IsEnvVarName(s)) == 0 }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
