package volume

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Mounts turns c's volumeMounts into host bind mounts. subPath and subPathExpr are resolved
// here, on the host, and must stay inside their volume; a missing sub directory is created in
// an emptyDir, hostPath or persistentVolumeClaim volume, as kubelet does. configMap, secret,
// downwardAPI, projected and gitRepo volumes are always read-only, a persistentVolumeClaim
// volume when the pod says readOnly. Setup must have prepared the volumes.
func (m *Manager) Mounts(pod *corev1.Pod, c *corev1.Container) ([]Mount, error) {
	vols := make(map[string]*corev1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var mounts []Mount
	for _, vm := range c.VolumeMounts {
		mt, err := m.mount(pod, c, vols, vm)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s: container %q: volumeMount %q at %s: %w", pod.Namespace, pod.Name, c.Name, vm.Name, vm.MountPath, err)
		}
		mounts = append(mounts, mt)
	}
	return mounts, nil
}

func (m *Manager) mount(pod *corev1.Pod, c *corev1.Container, vols map[string]*corev1.Volume, vm corev1.VolumeMount) (Mount, error) {
	v, ok := vols[vm.Name]
	if !ok {
		return Mount{}, fmt.Errorf("the pod has no volume named %q: %w", vm.Name, ErrInvalid)
	}
	if !path.IsAbs(vm.MountPath) {
		return Mount{}, fmt.Errorf("mountPath must be absolute: %w", ErrInvalid)
	}
	kind, err := kindOf(v)
	if err != nil {
		return Mount{}, err
	}
	var root string
	switch kind {
	case typeHostPath:
		if root, err = m.hostPath(v.HostPath, false); err != nil {
			return Mount{}, err
		}
	case typePVC:
		if root, err = m.claimRoot(pod, v); err != nil {
			return Mount{}, err
		}
	default:
		root = m.volumeDir(pod.UID, kind, v.Name)
		if _, err := os.Stat(root); err != nil {
			return Mount{}, fmt.Errorf("%w: %v", ErrNotSetUp, err)
		}
	}
	sub := vm.SubPath
	if vm.SubPathExpr != "" {
		if sub, err = expandSubPath(vm.SubPathExpr, pod, c); err != nil {
			return Mount{}, err
		}
	}
	src := root
	if sub != "" {
		create := kind == typeEmptyDir || kind == typeHostPath || kind == typePVC
		if src, err = resolveSubPath(root, sub, create); err != nil {
			return Mount{}, err
		}
	}
	readOnly := vm.ReadOnly || managedContent(kind) || (kind == typePVC && v.PersistentVolumeClaim.ReadOnly)
	return Mount{Source: src, Destination: vm.MountPath, ReadOnly: readOnly}, nil
}

// resolveSubPath returns the host path of sub inside the volume at root, following symlinks
// on the host and refusing anything that lands outside the volume.
func resolveSubPath(root, sub string, create bool) (string, error) {
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("subPath %q must be a relative path: %w", sub, ErrInvalid)
	}
	for _, part := range strings.Split(filepath.ToSlash(sub), "/") {
		if part == ".." {
			return "", fmt.Errorf("subPath %q must not contain '..': %w", sub, ErrInvalid)
		}
	}
	base, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	p, err := resolveExisting(filepath.Join(base, sub))
	if err != nil {
		return "", fmt.Errorf("subPath %q: %w", sub, err)
	}
	if !within(p, base) {
		return "", fmt.Errorf("subPath %q resolves to %s, outside the volume: %w", sub, p, ErrInvalid)
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		if !create {
			return "", fmt.Errorf("subPath %q does not exist in the volume: %w", sub, ErrNotFound)
		}
		fi, err := os.Stat(base)
		if err != nil {
			return "", err
		}
		if err := mkdirAllMode(base, p, fi.Mode().Perm()); err != nil {
			return "", fmt.Errorf("subPath %q: %w", sub, err)
		}
	}
	return p, nil
}

// mkdirAllMode creates the directories from base down to p with mode (past the umask), the
// mode of the volume itself as kubelet uses. It refuses to go through a symlink made between
// resolving and creating.
func mkdirAllMode(base, p string, mode os.FileMode) error {
	rel, err := filepath.Rel(base, p)
	if err != nil {
		return err
	}
	cur := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, mode)
		if err == nil {
			if err := os.Chmod(cur, mode); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		if fi, err := os.Lstat(cur); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s changed while it was created: %w", cur, ErrInvalid)
		}
	}
	return nil
}

// expandSubPath expands $(VAR) references in a subPathExpr from the container's env as
// kubelet does; the variables must be plain values or downward API fieldRefs known here.
func expandSubPath(expr string, pod *corev1.Pod, c *corev1.Container) (string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		case e.ValueFrom.FieldRef != nil:
			if v, err := envField(pod, e.ValueFrom.FieldRef.FieldPath); err == nil {
				env[e.Name] = v
			}
		}
	}
	missing := map[string]bool{}
	out := expand(expr, func(k string) (string, bool) {
		v, ok := env[k]
		if !ok || v == "" {
			missing[k] = true
		}
		return v, true
	})
	if len(missing) > 0 {
		names := slices.Sorted(maps.Keys(missing))
		return "", fmt.Errorf("subPathExpr %q: missing value for %s: %w", expr, strings.Join(names, ", "), ErrInvalid)
	}
	return out, nil
}

// envField is a fieldRef as env sees it: the volume's fields and the pod's placement.
func envField(pod *corev1.Pod, fieldPath string) (string, error) {
	switch fieldPath {
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	}
	return podField(pod, fieldPath)
}

// expand is Kubernetes' $(VAR) expansion: $$ is a literal $, a reference lookup cannot
// resolve stays as written.
func expand(s string, lookup func(string) (string, bool)) string {
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
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += end + 2
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
