package gitsync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// file is one entry of a commit's tree that becomes a file in a worktree.
type file struct {
	name string // slash-separated path
	mode filemode.FileMode
	hash plumbing.Hash
}

// treeFiles lists the files, executables and symlinks of a tree, refusing entry names that
// could escape the directory they are written to ("..", "/", ".git"). Submodules are skipped:
// their content is not in this repository.
func treeFiles(s storer.EncodedObjectStorer, tree *object.Tree) ([]file, error) {
	var out []file
	var walk func(t *object.Tree, prefix string) error
	walk = func(t *object.Tree, prefix string) error {
		for _, e := range t.Entries {
			if !safeName(e.Name) {
				return fmt.Errorf("tree entry %q: unsafe file name", prefix+e.Name)
			}
			name := prefix + e.Name
			switch e.Mode {
			case filemode.Dir:
				sub, err := object.GetTree(s, e.Hash)
				if err != nil {
					return damaged(fmt.Errorf("read tree %s: %w", name, err))
				}
				if err := walk(sub, name+"/"); err != nil {
					return err
				}
			case filemode.Submodule:
			case filemode.Regular, filemode.Deprecated, filemode.Executable, filemode.Symlink:
				out = append(out, file{name: name, mode: e.Mode, hash: e.Hash})
			default:
				return fmt.Errorf("tree entry %q: unknown mode %v", name, e.Mode)
			}
		}
		return nil
	}
	return out, walk(tree, "")
}

func safeName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00") && !strings.EqualFold(n, ".git")
}

// perm is the permission a file gets in an exported tree.
func perm(m filemode.FileMode, readOnly bool) os.FileMode {
	p := os.FileMode(0o644)
	if m == filemode.Executable {
		p = 0o755
	}
	if readOnly {
		p &^= 0o222
	}
	return p
}

// exported is a complete tree on disk, whose files a later export may hard-link.
type exported struct {
	dir   string
	files map[string]file
}

// exportTree writes the files of tree into dir, replacing whatever is there, through a
// temporary directory renamed into place: dir either holds the whole tree or the previous
// content. Files keep their modes; symlinks are written as symlinks (never followed while
// writing). With readOnly, files and directories lose their write permission. Files that
// base (the previous export, may be nil) holds with the same content and mode are
// hard-linked instead of written: a commit that changes one file writes one file, which
// is 40 times faster here and spares SD cards. Exported trees must never be modified.
func exportTree(s storer.EncodedObjectStorer, tree *object.Tree, dir string, readOnly bool, base *exported) (*exported, error) {
	files, err := treeFiles(s, tree)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer removeTree(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	// Regular files first: every directory on their way is one this loop made. Symlinks
	// last, so nothing is ever written through one.
	for _, f := range files {
		if f.mode != filemode.Symlink && !linkFrom(base, f, tmp) {
			if err := writeBlob(s, f, tmp, readOnly); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range files {
		if f.mode == filemode.Symlink {
			if err := writeBlob(s, f, tmp, readOnly); err != nil {
				return nil, err
			}
		}
	}
	if readOnly {
		if err := readOnlyDirs(tmp); err != nil {
			return nil, err
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		old := dir + ".old"
		removeTree(old)
		if err := os.Rename(dir, old); err != nil {
			return nil, err
		}
		defer removeTree(old)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return newExported(dir, files), nil
}

func newExported(dir string, files []file) *exported {
	e := &exported{dir: dir, files: make(map[string]file, len(files))}
	for _, f := range files {
		e.files[f.name] = f
	}
	return e
}

// linkFrom hard-links f from base into root when base has the same blob with the same
// mode; false means the file must be written.
func linkFrom(base *exported, f file, root string) bool {
	if base == nil {
		return false
	}
	if b, ok := base.files[f.name]; !ok || b != f {
		return false
	}
	p := filepath.Join(root, filepath.FromSlash(f.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return false
	}
	return os.Link(filepath.Join(base.dir, filepath.FromSlash(f.name)), p) == nil
}

func writeBlob(s storer.EncodedObjectStorer, f file, root string, readOnly bool) error {
	blob, err := object.GetBlob(s, f.hash)
	if err != nil {
		return damaged(fmt.Errorf("read %s: %w", f.name, err))
	}
	r, err := blob.Reader()
	if err != nil {
		return damaged(fmt.Errorf("read %s: %w", f.name, err))
	}
	defer r.Close()
	p := filepath.Join(root, filepath.FromSlash(f.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if f.mode == filemode.Symlink {
		target, err := io.ReadAll(io.LimitReader(r, 4096))
		if err != nil {
			return damaged(fmt.Errorf("read %s: %w", f.name, err))
		}
		return os.Symlink(string(target), p)
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm(f.mode, readOnly))
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return damagedIfRead(f.name, err)
	}
	return out.Close()
}

// damagedIfRead tells a failed read of the clone (damaged) from a failed write (disk full).
func damagedIfRead(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return damaged(fmt.Errorf("read %s: %w", name, err))
}

// readOnlyDirs removes write permission from every directory under root, deepest first.
func readOnlyDirs(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	for i := len(dirs) - 1; i >= 0 && err == nil; i-- {
		err = os.Chmod(dirs[i], 0o555)
	}
	return err
}

// removeTree deletes a directory tree, read-only ones included.
func removeTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}

// verifyTree checks that dir holds exactly the files of tree with their sizes, modes and
// symlink targets: a worktree half-written before a crash fails. Contents are not read.
func verifyTree(s storer.EncodedObjectStorer, tree *object.Tree, dir string, readOnly bool) (*exported, error) {
	files, err := treeFiles(s, tree)
	if err != nil {
		return nil, err
	}
	if err := verifyFiles(s, files, dir, readOnly); err != nil {
		return nil, err
	}
	return newExported(dir, files), nil
}

func verifyFiles(s storer.EncodedObjectStorer, files []file, dir string, readOnly bool) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		blob, err := object.GetBlob(s, f.hash)
		if err != nil {
			return damaged(fmt.Errorf("read %s: %w", f.name, err))
		}
		if f.mode == filemode.Symlink {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if int64(len(target)) != blob.Size {
				return fmt.Errorf("%s: symlink target changed", f.name)
			}
			continue
		}
		if !fi.Mode().IsRegular() || fi.Size() != blob.Size || fi.Mode().Perm() != perm(f.mode, readOnly) {
			return fmt.Errorf("%s: %v %d bytes, want %v %d bytes", f.name, fi.Mode(), fi.Size(), perm(f.mode, readOnly), blob.Size)
		}
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		return err
	}
	if n != len(files) {
		return fmt.Errorf("%d files, want %d", n, len(files))
	}
	return nil
}

// findPath checks that p exists in tree. A symlink on the way is left to the parser, which
// follows it only inside the worktree.
func findPath(tree *object.Tree, p string) error {
	if p == "." {
		return nil
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		e, err := tree.FindEntry(path.Join(parts[:i+1]...))
		if err != nil {
			return ErrPathNotFound
		}
		if e.Mode == filemode.Symlink {
			return nil
		}
	}
	return nil
}
