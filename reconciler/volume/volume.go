// Package volume prepares a pod's volumes on the host, as kubelet's volume plugins do:
// emptyDir (on disk or a tmpfs), hostPath behind an operator allow-list, configMap, secret,
// downwardAPI and projected volumes written with Kubernetes' atomic ..data swap (secrets on
// tmpfs), gitRepo volumes served from the agent's own checkout, and persistentVolumeClaim
// volumes: the directory of the PersistentVolume the claim is bound to (a provisioned one
// under Config.VolumesDir, a hostPath or local one from git behind the allow-list).
//
// Everything for a pod lives under <Dir>/<uid>/volumes/<type>/<name> (a claim's volume as a
// symlink to its directory, which outlives the pod); Mounts turns a container's volumeMounts
// into host bind mounts, and Teardown removes it all again.
package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Errors the Manager returns, wrapped with the pod, volume and object; check with errors.Is.
var (
	ErrNotFound           = errors.New("not found")            // a referenced ConfigMap, Secret or key is missing
	ErrHostPathNotAllowed = errors.New("hostPath not allowed") // outside Config.HostPathAllow
	ErrHostPathType       = errors.New("hostPath type check failed")
	ErrUnsupported        = errors.New("not supported")        // a volume type or field skiff does not implement
	ErrInvalid            = errors.New("invalid")              // a path or field the volume cannot use
	ErrNotSetUp           = errors.New("volume is not set up") // Mounts before Setup
	ErrNoGitRepos         = errors.New("gitRepo volumes are not available: the agent has no git source for them")
)

// HostPathAllowFlag is the agent flag that fills Config.HostPathAllow; errors name it so the
// operator knows how to allow a refused path.
const HostPathAllowFlag = "--host-path-allow"

// Directory names under <Dir>/<uid>/volumes/.
const (
	typeEmptyDir    = "empty-dir"
	typeConfigMap   = "configmap"
	typeSecret      = "secret"
	typeDownwardAPI = "downward-api"
	typeProjected   = "projected"
	typeGitRepo     = "git-repo"
	typeHostPath    = "host-path" // never a directory of ours: the host's own path is mounted
	typePVC         = "pvc"       // a symlink to the bound volume's directory
)

// Config configures a Manager.
type Config struct {
	Dir           string   // e.g. <data-dir>/pods
	HostPathAllow []string // operator allow-list of hostPath prefixes; empty = no hostPath allowed
	GitRepos      GitRepoSource
	Now           func() time.Time
	// Allocatable is the node's cpu and memory for pods. kubelet uses it for resourceFieldRef
	// limits a container does not set and to bound a memory emptyDir; nil = the host's CPUs
	// and RAM.
	Allocatable corev1.ResourceList
	// VolumesDir holds the volumes skiff's provisioner made on this node, one directory per
	// PersistentVolume (<VolumesDir>/<pv-name>; the agent's <data-dir>/volumes). Empty: a
	// claim bound to a provisioned volume cannot be mounted.
	VolumesDir string
}

// GitRepoSource checks out git repositories for gitRepo volumes.
type GitRepoSource interface {
	// Checkout returns an immutable directory with the tree of repo at revision ("" for the
	// remote's default branch). A moving revision (a branch) gives a new directory when the
	// branch moves.
	Checkout(ctx context.Context, repo, revision string) (dir string, err error)
}

// Lookup finds the ConfigMaps and Secrets volumes refer to. persistentVolumeClaim volumes
// also need it to be a ClaimLookup.
type Lookup interface {
	ConfigMap(ns, name string) (*corev1.ConfigMap, bool)
	Secret(ns, name string) (*corev1.Secret, bool)
}

// Mount is one host path to bind into a container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// Manager prepares and removes pod volumes. It is safe for concurrent use; calls for the
// same pod are serialised.
type Manager struct {
	cfg Config

	mu      sync.Mutex
	pods    map[types.UID]*sync.Mutex // one lock per pod
	gitSeen map[string]string         // "<uid>/<volume>" → checkout dir last written
}

// NewManager returns a Manager for cfg.
func NewManager(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Allocatable == nil {
		cfg.Allocatable = hostAllocatable()
	}
	return &Manager{cfg: cfg, pods: map[types.UID]*sync.Mutex{}, gitSeen: map[string]string{}}
}

func (m *Manager) lock(uid types.UID) func() {
	m.mu.Lock()
	l, ok := m.pods[uid]
	if !ok {
		l = &sync.Mutex{}
		m.pods[uid] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (m *Manager) podDir(uid types.UID) string { return filepath.Join(m.cfg.Dir, string(uid)) }

func (m *Manager) volumeDir(uid types.UID, typ, name string) string {
	return filepath.Join(m.podDir(uid), "volumes", typ, name)
}

// kindOf names a volume's type, or says why skiff cannot provide it.
func kindOf(v *corev1.Volume) (string, error) {
	s := v.VolumeSource
	switch {
	case s.EmptyDir != nil:
		return typeEmptyDir, nil
	case s.HostPath != nil:
		return typeHostPath, nil
	case s.ConfigMap != nil:
		return typeConfigMap, nil
	case s.Secret != nil:
		return typeSecret, nil
	case s.DownwardAPI != nil:
		return typeDownwardAPI, nil
	case s.Projected != nil:
		return typeProjected, nil
	case s.GitRepo != nil:
		return typeGitRepo, nil
	case s.PersistentVolumeClaim != nil:
		return typePVC, nil
	}
	// Name the source the manifest used, from its JSON field name.
	rv, rt := reflect.ValueOf(s), reflect.TypeOf(s)
	for i := range rt.NumField() {
		if !rv.Field(i).IsNil() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			return "", fmt.Errorf("%s volumes are %w", name, ErrUnsupported)
		}
	}
	return "", fmt.Errorf("volume has no source: %w", ErrInvalid)
}

func podErr(pod *corev1.Pod, v string, err error) error {
	return fmt.Errorf("pod %s/%s: volume %q: %w", pod.Namespace, pod.Name, v, err)
}

// Setup prepares every volume of pod. It is idempotent: a prepared volume is left as it is,
// apart from configMap, secret, downwardAPI, projected and gitRepo contents, which are brought
// up to date as Update does. It tries every volume and returns all failures joined; a missing
// ConfigMap or Secret gives an error wrapping ErrNotFound, for the caller to report and retry.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod, lk Lookup) error {
	defer m.lock(pod.UID)()
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if _, err := m.setup(ctx, pod, v, lk); err != nil {
			errs = append(errs, podErr(pod, v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Update refreshes the contents of pod's configMap, secret, downwardAPI, projected and gitRepo
// volumes in place, so running containers see the change without a restart. It writes only
// what changed and returns the names of the volumes it rewrote.
func (m *Manager) Update(ctx context.Context, pod *corev1.Pod, lk Lookup) (changed []string, err error) {
	defer m.lock(pod.UID)()
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if k, _ := kindOf(v); !managedContent(k) {
			continue
		}
		c, err := m.setup(ctx, pod, v, lk)
		if err != nil {
			errs = append(errs, podErr(pod, v.Name, err))
		}
		if c {
			changed = append(changed, v.Name)
		}
	}
	return changed, errors.Join(errs...)
}

// managedContent reports whether skiff writes a volume type's files (and so mounts it
// read-only and refreshes it in Update).
func managedContent(kind string) bool {
	switch kind {
	case typeConfigMap, typeSecret, typeDownwardAPI, typeProjected, typeGitRepo:
		return true
	}
	return false
}

func (m *Manager) setup(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, lk Lookup) (bool, error) {
	kind, err := kindOf(v)
	if err != nil {
		return false, err
	}
	switch kind {
	case typeEmptyDir:
		return false, m.setupEmptyDir(pod, v)
	case typeHostPath:
		_, err := m.hostPath(v.HostPath, true)
		return false, err
	case typeGitRepo:
		return m.setupGitRepo(ctx, pod, v)
	case typePVC:
		return false, m.setupClaim(pod, v, lk)
	}
	p, tmpfs, err := m.payload(pod, v, lk)
	if err != nil {
		return false, err
	}
	dir := m.volumeDir(pod.UID, kind, v.Name)
	if err := m.makeDir(dir, 0o755); err != nil {
		return false, err
	}
	if tmpfs {
		// Secrets live in memory only: never on the SD card.
		if err := mountTmpfs(dir, 0, 0o755); err != nil {
			return false, err
		}
	}
	return writeAtomic(dir, p, m.cfg.Now())
}

// makeDir creates dir and its parents; the pod's own directory is not readable by others,
// since it holds secrets.
func (m *Manager) makeDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, mode) // past the umask
}

// Teardown unmounts the pod's tmpfs volumes and removes all its volume directories. A pod
// with nothing on the host is not an error.
func (m *Manager) Teardown(ctx context.Context, podUID types.UID) error {
	unlock := m.lock(podUID)
	err := m.teardown(podUID)
	unlock()
	m.mu.Lock()
	delete(m.pods, podUID)
	for k := range m.gitSeen {
		if strings.HasPrefix(k, string(podUID)+"/") {
			delete(m.gitSeen, k)
		}
	}
	m.mu.Unlock()
	return err
}

func (m *Manager) teardown(uid types.UID) error {
	if uid == "" || strings.ContainsAny(string(uid), `/\`) || uid == "." || uid == ".." {
		return fmt.Errorf("teardown: pod UID %q: %w", uid, ErrInvalid)
	}
	dir := m.podDir(uid)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("teardown pod %s: %w", uid, err)
	}
	if err := removeAllOneFilesystem(dir); err != nil {
		return fmt.Errorf("teardown pod %s: %w", uid, err)
	}
	return nil
}

// Cleanup tears down the volumes of every pod under Dir for which keep returns false: what
// pods removed while the agent was down left behind.
func (m *Manager) Cleanup(ctx context.Context, keep func(uid types.UID) bool) error {
	entries, err := os.ReadDir(m.cfg.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var errs []error
	for _, e := range entries {
		uid := types.UID(e.Name())
		if !e.IsDir() || keep(uid) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.Teardown(ctx, uid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DiskUsage returns the bytes an emptyDir volume uses (like du), for the caller's sizeLimit
// eviction.
func (m *Manager) DiskUsage(podUID types.UID, volume string) (int64, error) {
	dir := m.volumeDir(podUID, typeEmptyDir, volume)
	n, err := diskUsage(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("disk usage of pod %s volume %q: emptyDir %w", podUID, volume, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("disk usage of pod %s volume %q: %w", podUID, volume, err)
	}
	return n, nil
}
