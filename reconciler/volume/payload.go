package volume

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const defaultMode = 0o644 // kubelet's default for configMap, secret, downwardAPI and projected files

func fileMode(item, def *int32) os.FileMode {
	switch {
	case item != nil:
		return os.FileMode(*item) & os.ModePerm
	case def != nil:
		return os.FileMode(*def) & os.ModePerm
	}
	return defaultMode
}

func isTrue(b *bool) bool { return b != nil && *b }

// payload builds the files of a configMap, secret, downwardAPI or projected volume, and says
// whether they hold secrets (and so belong on a tmpfs).
func (m *Manager) payload(pod *corev1.Pod, v *corev1.Volume, lk Lookup) (payload, bool, error) {
	p := payload{}
	s := v.VolumeSource
	switch {
	case s.ConfigMap != nil:
		err := m.addConfigMap(p, pod, lk, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.DefaultMode, isTrue(s.ConfigMap.Optional))
		return p, false, err
	case s.Secret != nil:
		err := m.addSecret(p, pod, lk, s.Secret.SecretName, s.Secret.Items, s.Secret.DefaultMode, isTrue(s.Secret.Optional))
		return p, true, err
	case s.DownwardAPI != nil:
		err := m.addDownwardAPI(p, pod, s.DownwardAPI.Items, s.DownwardAPI.DefaultMode)
		return p, false, err
	}
	secret := false
	for i, src := range s.Projected.Sources {
		part := payload{}
		var err error
		switch {
		case src.ConfigMap != nil:
			err = m.addConfigMap(part, pod, lk, src.ConfigMap.Name, src.ConfigMap.Items, s.Projected.DefaultMode, isTrue(src.ConfigMap.Optional))
		case src.Secret != nil:
			secret = true
			err = m.addSecret(part, pod, lk, src.Secret.Name, src.Secret.Items, s.Projected.DefaultMode, isTrue(src.Secret.Optional))
		case src.DownwardAPI != nil:
			err = m.addDownwardAPI(part, pod, src.DownwardAPI.Items, s.Projected.DefaultMode)
		case src.ServiceAccountToken != nil:
			err = fmt.Errorf("projected serviceAccountToken sources are %w", ErrUnsupported)
		case src.ClusterTrustBundle != nil:
			err = fmt.Errorf("projected clusterTrustBundle sources are %w", ErrUnsupported)
		default:
			err = fmt.Errorf("projected source %d: this source type is %w", i, ErrUnsupported)
		}
		if err != nil {
			return nil, secret, err
		}
		for path, f := range part {
			if _, dup := p[path]; dup {
				return nil, secret, fmt.Errorf("projected sources %d and an earlier one both write %q: %w", i, path, ErrInvalid)
			}
			p[path] = f
		}
	}
	return p, secret, nil
}

func (m *Manager) addConfigMap(p payload, pod *corev1.Pod, lk Lookup, name string, items []corev1.KeyToPath, def *int32, optional bool) error {
	cm, ok := lk.ConfigMap(pod.Namespace, name)
	var data map[string][]byte
	if ok {
		data = make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		maps.Copy(data, cm.BinaryData)
	}
	return addKeys(p, "configmap", name, data, ok, items, def, optional)
}

func (m *Manager) addSecret(p payload, pod *corev1.Pod, lk Lookup, name string, items []corev1.KeyToPath, def *int32, optional bool) error {
	sec, ok := lk.Secret(pod.Namespace, name)
	var data map[string][]byte
	if ok {
		data = maps.Clone(sec.Data)
		if data == nil {
			data = map[string][]byte{}
		}
		for k, v := range sec.StringData { // as the API server merges it on write
			data[k] = []byte(v)
		}
	}
	return addKeys(p, "secret", name, data, ok, items, def, optional)
}

// addKeys projects the data of a ConfigMap or Secret into p: every key at its own name, or
// only items at their paths. A missing object (found false) or key is an error unless the
// volume is optional.
func addKeys(p payload, kind, name string, data map[string][]byte, found bool, items []corev1.KeyToPath, def *int32, optional bool) error {
	if !found {
		if optional {
			return nil
		}
		return fmt.Errorf("%s %q %w", kind, name, ErrNotFound)
	}
	if len(items) == 0 {
		for k, v := range data {
			p[k] = file{data: v, mode: fileMode(nil, def)}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s %q references non-existent key %q: %w", kind, name, it.Key, ErrNotFound)
		}
		p[it.Path] = file{data: v, mode: fileMode(it.Mode, def)}
	}
	return nil
}

func (m *Manager) addDownwardAPI(p payload, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32) error {
	for _, it := range items {
		var (
			val string
			err error
		)
		switch {
		case it.FieldRef != nil:
			val, err = podField(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = m.containerResource(pod, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("downwardAPI item %q has neither fieldRef nor resourceFieldRef: %w", it.Path, ErrInvalid)
		}
		if err != nil {
			return err
		}
		p[it.Path] = file{data: []byte(val), mode: fileMode(it.Mode, def)}
	}
	return nil
}

// podField extracts a downward API fieldRef as kubelet's ExtractFieldPathAsString does.
func podField(pod *corev1.Pod, path string) (string, error) {
	if base, key, ok := subscript(path); ok {
		switch base {
		case "metadata.labels":
			return pod.Labels[key], nil
		case "metadata.annotations":
			return pod.Annotations[key], nil
		}
		return "", fmt.Errorf("fieldPath %q does not support a subscript: %w", path, ErrUnsupported)
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	return "", fmt.Errorf("fieldPath %q is %w in downwardAPI volumes (metadata.name, namespace, uid, labels, annotations are)", path, ErrUnsupported)
}

// subscript splits "metadata.labels['app']" into "metadata.labels" and "app".
func subscript(path string) (string, string, bool) {
	if !strings.HasSuffix(path, "']") {
		return "", "", false
	}
	base, key, ok := strings.Cut(strings.TrimSuffix(path, "']"), "['")
	if !ok || base == "" {
		return "", "", false
	}
	return base, key, true
}

// formatMap writes labels or annotations as Kubernetes does: sorted `key="value"` lines,
// values quoted like Go's %q.
func formatMap(m map[string]string) string {
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lines = append(lines, k+"="+strconv.Quote(m[k]))
	}
	return strings.Join(lines, "\n")
}

// containerResource extracts a resourceFieldRef as kubelet's ExtractContainerResourceValue
// does: the value divided by the divisor, rounded up; an unset limit is the node's
// allocatable, an unset request defaults to the limit as the API server does.
func (m *Manager) containerResource(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == ref.ContainerName {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: no container named %q in the pod: %w", ref.ContainerName, ErrInvalid)
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") || (res != "cpu" && res != "memory") {
		return "", fmt.Errorf("resourceFieldRef resource %q is %w (limits.cpu, limits.memory, requests.cpu, requests.memory are)", ref.Resource, ErrUnsupported)
	}
	name := corev1.ResourceName(res)
	q, set := c.Resources.Limits[name]
	if kind == "requests" {
		if r, ok := c.Resources.Requests[name]; ok {
			q, set = r, true
		}
	}
	if !set && kind == "limits" {
		q = m.cfg.Allocatable[name]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}
