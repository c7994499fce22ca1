package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ClaimLookup finds the PersistentVolumeClaims and PersistentVolumes persistentVolumeClaim
// volumes refer to, as the leader's binder keeps them (a claim's spec.volumeName and phase,
// a volume's claimRef). It is the optional part of a Lookup: Setup checks for it with a type
// assertion, so a Lookup without it still serves every other volume type.
type ClaimLookup interface {
	PersistentVolumeClaim(ns, name string) (*corev1.PersistentVolumeClaim, bool)
	PersistentVolume(name string) (*corev1.PersistentVolume, bool)
}

// ErrNotBound is returned (wrapped) for a claim the binder has not bound yet: the caller
// reports it and tries again.
var ErrNotBound = errors.New("waiting for volume")

// The leader's provisioner marks the volumes it makes so (reconciler/controller's
// AnnotationProvisionedBy and Provisioner).
const (
	annotationProvisionedBy = "pv.kubernetes.io/provisioned-by"
	annotationGitUID        = "skiff.io/git-uid" // on the copy of a volume from git: never skiff's own
	provisioner             = "skiff.io/local-path"
)

// provisioned reports whether skiff's provisioner made the volume: its directory is
// <VolumesDir>/<name> on this node, whatever path the leader recorded.
func provisioned(pv *corev1.PersistentVolume) bool {
	return pv.Annotations[annotationProvisionedBy] == provisioner && pv.Annotations[annotationGitUID] == ""
}

// setupClaim links the pod's persistentVolumeClaim volume to the directory of the volume its
// claim is bound to: <Dir>/<uid>/volumes/pvc/<name> → the volume's path on this node, which
// Mounts binds into the containers. The volume's data stays where it is when the pod goes.
func (m *Manager) setupClaim(pod *corev1.Pod, v *corev1.Volume, lk Lookup) error {
	src, err := m.claimSource(pod, v.PersistentVolumeClaim.ClaimName, lk)
	if err != nil {
		return err
	}
	link := m.volumeDir(pod.UID, typePVC, v.Name)
	if cur, err := os.Readlink(link); err == nil && cur == src {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o750); err != nil {
		return err
	}
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// claimSource finds the claim's volume and prepares its directory on this node.
func (m *Manager) claimSource(pod *corev1.Pod, claim string, lk Lookup) (string, error) {
	cl, ok := lk.(ClaimLookup)
	if !ok {
		return "", fmt.Errorf("persistentVolumeClaim volumes need the cluster's claims and volumes, which this agent's lookup does not give: %w", ErrUnsupported)
	}
	c, ok := cl.PersistentVolumeClaim(pod.Namespace, claim)
	if !ok {
		return "", fmt.Errorf("persistentVolumeClaim %q: %w", claim, ErrNotFound)
	}
	if c.Spec.VolumeName == "" || c.Status.Phase != corev1.ClaimBound {
		phase := c.Status.Phase
		if phase == "" {
			phase = corev1.ClaimPending
		}
		return "", fmt.Errorf("%w: persistentVolumeClaim %q is not bound yet (%s)", ErrNotBound, claim, phase)
	}
	pv, ok := cl.PersistentVolume(c.Spec.VolumeName)
	if !ok {
		return "", fmt.Errorf("%w: volume %q of persistentVolumeClaim %q does not exist", ErrNotBound, c.Spec.VolumeName, claim)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != c.Namespace || ref.Name != c.Name || (ref.UID != "" && ref.UID != c.UID) {
		return "", fmt.Errorf("%w: volume %q is not bound to persistentVolumeClaim %q", ErrNotBound, pv.Name, claim)
	}
	return m.volumeSource(pv)
}

// volumeSource returns the directory of a PersistentVolume on this node, making it when it
// may be made: a provisioned volume's directory under VolumesDir, a hostPath volume's
// directory (its type unset means DirectoryOrCreate, as a provisioner-less hostPath volume is
// used). A local volume's directory must exist. hostPath and local paths are checked against
// the operator's allow-list as a pod's hostPath volumes are.
func (m *Manager) volumeSource(pv *corev1.PersistentVolume) (string, error) {
	switch s := pv.Spec.PersistentVolumeSource; {
	case provisioned(pv):
		if m.cfg.VolumesDir == "" {
			return "", fmt.Errorf("volume %q was provisioned by skiff, but this agent has no volumes directory: %w", pv.Name, ErrUnsupported)
		}
		if pv.Name == "" || strings.ContainsAny(pv.Name, `/\`) || pv.Name == "." || pv.Name == ".." {
			return "", fmt.Errorf("volume name %q: %w", pv.Name, ErrInvalid)
		}
		if err := os.MkdirAll(m.cfg.VolumesDir, 0o755); err != nil {
			return "", fmt.Errorf("volume %q: %w", pv.Name, err)
		}
		dir := filepath.Join(m.cfg.VolumesDir, pv.Name)
		if err := os.Mkdir(dir, 0o777); err == nil {
			if err := os.Chmod(dir, 0o777); err != nil { // past the umask: every container user may write, as local-path makes it
				return "", fmt.Errorf("volume %q: %w", pv.Name, err)
			}
		} else if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("volume %q: %w", pv.Name, err)
		}
		return dir, nil
	case s.HostPath != nil:
		hp := *s.HostPath
		if hp.Type == nil || *hp.Type == corev1.HostPathUnset {
			hp.Type = ptrType(corev1.HostPathDirectoryOrCreate)
		}
		p, err := m.hostPath(&hp, true)
		if err != nil {
			return "", fmt.Errorf("volume %q: %w", pv.Name, err)
		}
		return p, nil
	case s.Local != nil:
		p, err := m.hostPath(&corev1.HostPathVolumeSource{Path: s.Local.Path, Type: ptrType(corev1.HostPathDirectory)}, false)
		if err != nil {
			return "", fmt.Errorf("local volume %q: %w", pv.Name, err)
		}
		return p, nil
	}
	return "", fmt.Errorf("volume %q has no hostPath or local source: %w", pv.Name, ErrUnsupported)
}

func ptrType(t corev1.HostPathType) *corev1.HostPathType { return &t }

// claimRoot returns the directory a pod's persistentVolumeClaim volume was linked to by Setup.
func (m *Manager) claimRoot(pod *corev1.Pod, v *corev1.Volume) (string, error) {
	link := m.volumeDir(pod.UID, typePVC, v.Name)
	src, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotSetUp, err)
	}
	if !filepath.IsAbs(src) {
		return "", fmt.Errorf("%s links to %q, not an absolute path: %w", link, src, ErrInvalid)
	}
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("volume directory: %w", err)
	}
	return src, nil
}

// CleanupVolumes removes the directories of volumes skiff provisioned on this node
// (<VolumesDir>/<name>) for which keep returns false: the leader deletes a provisioned
// PersistentVolume once its claim is gone and no pod uses it, and the node then removes its
// data. keep must answer from a synced state (a volume missing from a state that was never
// loaded is not gone). Nothing mounted inside a directory is ever removed.
func (m *Manager) CleanupVolumes(ctx context.Context, keep func(pvName string) bool) (removed []string, err error) {
	if m.cfg.VolumesDir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(m.cfg.VolumesDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cleanup volumes: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "pvc-") || keep(e.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if err := removeAllOneFilesystem(filepath.Join(m.cfg.VolumesDir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", e.Name(), err))
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
