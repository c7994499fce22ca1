package volume

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// setupEmptyDir makes the pod's emptyDir: a directory every container can write (0777, as
// kubelet makes it), or for medium Memory a tmpfs mounted on it. It outlives container
// restarts and goes with the pod in Teardown.
func (m *Manager) setupEmptyDir(pod *corev1.Pod, v *corev1.Volume) error {
	dir := m.volumeDir(pod.UID, typeEmptyDir, v.Name)
	if err := m.makeDir(dir, 0o777); err != nil {
		return err
	}
	switch v.EmptyDir.Medium {
	case corev1.StorageMediumDefault:
		return nil
	case corev1.StorageMediumMemory:
		return mountTmpfs(dir, m.memorySize(pod, v.EmptyDir), 0o777)
	}
	return fmt.Errorf("emptyDir medium %q is %w (\"\" and Memory are)", v.EmptyDir.Medium, ErrUnsupported)
}

// memorySize bounds a memory emptyDir as kubelet does: the node's allocatable memory, or
// the pod's memory limit when every container has one, or sizeLimit — the smallest.
func (m *Manager) memorySize(pod *corev1.Pod, ed *corev1.EmptyDirVolumeSource) int64 {
	size := m.cfg.Allocatable.Memory().Value()
	var podLimit int64
	for _, c := range pod.Spec.Containers {
		l, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			podLimit = 0
			break
		}
		podLimit += l.Value()
	}
	if podLimit > 0 && (size <= 0 || podLimit < size) {
		size = podLimit
	}
	if ed.SizeLimit != nil {
		if l := ed.SizeLimit.Value(); l > 0 && (size <= 0 || l < size) {
			size = l
		}
	}
	return size
}
