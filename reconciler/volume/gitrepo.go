package volume

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// setupGitRepo serves the checkout of a gitRepo volume through the atomic writer, so a
// revision that moves (a branch) updates the files in place.
func (m *Manager) setupGitRepo(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (bool, error) {
	g := v.GitRepo
	if m.cfg.GitRepos == nil {
		return false, ErrNoGitRepos
	}
	if g.Repository == "" {
		return false, fmt.Errorf("gitRepo repository is empty: %w", ErrInvalid)
	}
	prefix, err := gitRepoPrefix(g)
	if err != nil {
		return false, err
	}
	src, err := m.cfg.GitRepos.Checkout(ctx, g.Repository, g.Revision)
	if err != nil {
		return false, fmt.Errorf("gitRepo %s at %q: %w", g.Repository, g.Revision, err)
	}
	dir := m.volumeDir(pod.UID, typeGitRepo, v.Name)
	key := string(pod.UID) + "/" + v.Name
	m.mu.Lock()
	seen := m.gitSeen[key]
	m.mu.Unlock()
	if seen == src {
		if _, err := os.Readlink(filepath.Join(dir, dataDirName)); err == nil {
			return false, nil // the same immutable checkout is already served
		}
	}
	p, err := treePayload(src, prefix)
	if err != nil {
		return false, fmt.Errorf("gitRepo %s: %w", g.Repository, err)
	}
	if err := m.makeDir(dir, 0o755); err != nil {
		return false, err
	}
	changed, err := writeAtomic(dir, p, m.cfg.Now())
	if err != nil {
		return changed, err
	}
	m.mu.Lock()
	m.gitSeen[key] = src
	m.mu.Unlock()
	return changed, nil
}

// gitRepoPrefix is where the tree goes inside the volume, with Kubernetes' semantics:
// directory "" → a subdirectory named after the repository (as `git clone` names it),
// "." → the volume itself, anything else → that subdirectory.
func gitRepoPrefix(g *corev1.GitRepoVolumeSource) (string, error) {
	switch d := g.Directory; {
	case d == ".":
		return "", nil
	case d == "":
		name := humanishName(g.Repository)
		if name == "" || strings.HasPrefix(name, "..") {
			return "", fmt.Errorf("gitRepo repository %q gives no directory name; set directory: %w", g.Repository, ErrInvalid)
		}
		return name, nil
	default:
		clean := filepath.Clean(d)
		if err := validatePath(clean); err != nil {
			return "", fmt.Errorf("gitRepo directory %q: %w", d, err)
		}
		return clean, nil
	}
}

// humanishName is the directory `git clone URL` would create: the last path element without
// a trailing "/", "/.git" or ".git".
func humanishName(repo string) string {
	s := strings.TrimRight(repo, "/")
	s = strings.TrimSuffix(s, "/.git")
	if i := strings.LastIndexAny(s, "/:"); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSuffix(s, ".git")
}

// treePayload lists the checkout src as a payload under prefix: regular files by source (to
// be hard-linked, not rewritten) and symlinks as they are. The repository's .git is left out.
func treePayload(src, prefix string) (payload, error) {
	p := payload{}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		dst := filepath.Join(prefix, rel)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			p[dst] = file{link: target}
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			p[dst] = file{source: path, mode: info.Mode().Perm()}
		}
		return nil
	})
	return p, err
}
