package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// resolveExisting resolves the symlinks of the longest existing prefix of the clean absolute
// path p and appends the rest, so the result names where p really is (or would be created).
// A dangling symlink is an error: what it points at could appear later, anywhere.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if fi, lerr := os.Lstat(cur); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("%s is a dangling symlink: %w", cur, ErrInvalid)
		}
		if cur == filepath.Dir(cur) {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// within reports whether p is base or below it.
func within(p, base string) bool {
	return p == base || base == "/" || strings.HasPrefix(p, base+"/")
}

// hostPath checks a hostPath volume against the allow-list and its type, creating it for the
// *OrCreate types when create is set, and returns the resolved host path to mount.
func (m *Manager) hostPath(hp *corev1.HostPathVolumeSource, create bool) (string, error) {
	if !filepath.IsAbs(hp.Path) {
		return "", fmt.Errorf("hostPath %q must be an absolute path: %w", hp.Path, ErrInvalid)
	}
	p, err := resolveExisting(filepath.Clean(hp.Path))
	if err != nil {
		return "", fmt.Errorf("hostPath %s: %w", hp.Path, err)
	}
	if !m.hostPathAllowed(p) {
		resolved := ""
		if p != filepath.Clean(hp.Path) {
			resolved = " (resolving to " + p + ")"
		}
		allowed := "none"
		if len(m.cfg.HostPathAllow) > 0 {
			allowed = strings.Join(m.cfg.HostPathAllow, ", ")
		}
		return "", fmt.Errorf("%w: %s%s is outside the prefixes the operator allows (%s); allow it by starting the agent with %s=%s",
			ErrHostPathNotAllowed, hp.Path, resolved, allowed, HostPathAllowFlag, p)
	}
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	if err := checkHostPathType(p, typ, create); err != nil {
		return "", err
	}
	return p, nil
}

func (m *Manager) hostPathAllowed(p string) bool {
	for _, a := range m.cfg.HostPathAllow {
		if !filepath.IsAbs(a) {
			continue
		}
		base, err := resolveExisting(filepath.Clean(a))
		if err != nil {
			continue
		}
		if within(p, base) {
			return true
		}
	}
	return false
}

// checkHostPathType applies a hostPath's type as kubelet does, with its messages.
func checkHostPathType(p string, typ corev1.HostPathType, create bool) error {
	fi, err := os.Stat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hostPath %s: %w", p, err)
	}
	fail := func(what string) error { return fmt.Errorf("%w: %s is not %s", ErrHostPathType, p, what) }
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists && create {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("hostPath %s: create directory: %w", p, err)
			}
			return nil
		}
		fallthrough
	case corev1.HostPathDirectory:
		if !exists || !fi.IsDir() {
			return fail("a directory")
		}
	case corev1.HostPathFileOrCreate:
		if !exists && create {
			// Like kubelet, the parent must already exist.
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath %s: create file: %w", p, err)
			}
			return f.Close()
		}
		fallthrough
	case corev1.HostPathFile:
		if !exists || !fi.Mode().IsRegular() {
			return fail("a file")
		}
	case corev1.HostPathSocket:
		if !exists || fi.Mode()&os.ModeSocket == 0 {
			return fail("a socket file")
		}
	case corev1.HostPathCharDev:
		if !exists || fi.Mode()&os.ModeCharDevice == 0 {
			return fail("a character device")
		}
	case corev1.HostPathBlockDev:
		if !exists || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
			return fail("a block device")
		}
	default:
		return fmt.Errorf("hostPath type %q: %w", typ, ErrInvalid)
	}
	return nil
}
