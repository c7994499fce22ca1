package gitsync

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// worktrees manages Dir/worktrees/<sha> (one directory per commit) and Dir/current, the
// symlink that publishes one of them. Only the loop goroutine uses it.
type worktrees struct {
	dir      string
	last     *exported // the worktree exported or checked last in this process
	previous string    // sha published before the current one
}

const currentLink = "current"

func (w *worktrees) path(sha string) string { return filepath.Join(w.dir, "worktrees", sha) }

// current returns the sha the current link points to, "" when none.
func (w *worktrees) current() string {
	target, err := os.Readlink(filepath.Join(w.dir, currentLink))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

// recover removes what a crash can leave: temporary directories and links. Worktrees
// themselves are checked (verifyTree) before they are used again.
func (w *worktrees) recover() error {
	if err := os.MkdirAll(filepath.Join(w.dir, "worktrees"), 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(w.dir, currentLink+".tmp"))
	entries, err := os.ReadDir(filepath.Join(w.dir, "worktrees"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".old") {
			removeTree(filepath.Join(w.dir, "worktrees", e.Name()))
		}
	}
	return nil
}

// ensure returns the worktree of a commit, exporting it unless a complete one exists.
func (w *worktrees) ensure(s storer.EncodedObjectStorer, tree *object.Tree, sha string) (string, error) {
	dir := w.path(sha)
	if w.last != nil && w.last.dir == dir {
		return dir, nil
	}
	if _, err := os.Lstat(dir); err == nil {
		e, err := verifyTree(s, tree, dir, false)
		if err == nil {
			w.last = e
			return dir, nil
		} else if isDamaged(err) {
			return "", err
		}
	}
	e, err := exportTree(s, tree, dir, false, w.last)
	if err != nil {
		return "", err
	}
	w.last = e
	return dir, nil
}

// publish points Dir/current at the commit's worktree atomically (a new symlink renamed
// over the old one) and removes every worktree but the current and the previous one.
func (w *worktrees) publish(sha string) error {
	cur := w.current()
	if cur != sha {
		link := filepath.Join(w.dir, currentLink)
		tmp := link + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Join("worktrees", sha), tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, link); err != nil {
			return err
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
		if cur != "" {
			w.previous = cur
		}
	}
	return w.cleanup(sha, w.previous)
}

func (w *worktrees) cleanup(keep ...string) error {
	entries, err := os.ReadDir(filepath.Join(w.dir, "worktrees"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		kept := false
		for _, k := range keep {
			kept = kept || (k != "" && e.Name() == k)
		}
		if !kept {
			removeTree(filepath.Join(w.dir, "worktrees", e.Name()))
			if w.last != nil && filepath.Base(w.last.dir) == e.Name() {
				w.last = nil
			}
		}
	}
	return nil
}

// syncDir makes a rename in dir durable: one fsync per published commit.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
