package gitsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

// memTree stores a tree with the given entries (each a blob with content "x", or a
// submodule) in memory.
func memTree(t *testing.T, entries ...object.TreeEntry) (*memory.Storage, *object.Tree) {
	t.Helper()
	st := memory.NewStorage()
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, _ := blob.Writer()
	_, _ = w.Write([]byte("x"))
	_ = w.Close()
	bh, err := st.SetEncodedObject(blob)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if entries[i].Mode != filemode.Submodule {
			entries[i].Hash = bh
		}
	}
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		t.Fatal(err)
	}
	th, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.GetTree(st, th)
	if err != nil {
		t.Fatal(err)
	}
	return st, tree
}

// TestUnsafeTreeEntries: a crafted tree cannot make the export write outside its directory.
func TestUnsafeTreeEntries(t *testing.T) {
	tests := []struct {
		name    string
		mode    filemode.FileMode
		wantErr string
	}{
		{"..", filemode.Regular, `tree entry "..": unsafe file name`},
		{".", filemode.Regular, `tree entry ".": unsafe file name`},
		{".git", filemode.Regular, `tree entry ".git": unsafe file name`},
		{".GIT", filemode.Regular, `tree entry ".GIT": unsafe file name`},
		{"a/../../b", filemode.Regular, `tree entry "a/../../b": unsafe file name`},
		{"/etc/cron.d/x", filemode.Regular, `tree entry "/etc/cron.d/x": unsafe file name`},
		{"ok.yaml", filemode.Regular, ""},
		{"run.sh", filemode.Executable, ""},
		{"sub", filemode.Submodule, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, tree := memTree(t, object.TreeEntry{Name: tt.name, Mode: tt.mode})
			dir := filepath.Join(t.TempDir(), "wt")
			_, err := exportTree(st, tree, dir, false, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("exportTree(entry %q) = %v; want %q", tt.name, err, tt.wantErr)
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("exportTree(entry %q) left %s behind", tt.name, dir)
				}
				return
			}
			if err != nil {
				t.Fatalf("exportTree(entry %q) = %v", tt.name, err)
			}
			_, statErr := os.Stat(filepath.Join(dir, tt.name))
			if tt.mode == filemode.Submodule != os.IsNotExist(statErr) {
				t.Errorf("exportTree(entry %q, mode %v): stat = %v; submodules are skipped, files written", tt.name, tt.mode, statErr)
			}
		})
	}
}

// TestExport: modes, symlinks, nested directories, read-only trees, and verification.
func TestExport(t *testing.T) {
	r := gitrepo.New(t)
	r.Write("a/b/c.yaml", "c: 1\n")
	r.WriteMode("bin/run.sh", "#!/bin/sh\necho hi\n", 0o755)
	r.Symlink("a/link.yaml", "b/c.yaml")
	r.Symlink("abs", "/etc/passwd")
	r.Symlink("a/b/up", "../..")
	r.Write("empty", "")
	sha := r.Commit("files")

	m, err := newMirror(r.URL(), filepath.Join(t.TempDir(), "clone"), 0, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.open(); err != nil {
		t.Fatal(err)
	}
	c, err := m.update(t.Context(), "main")
	if err != nil || c.Hash.String() != sha {
		t.Fatalf("update(main) = %v, %v; want %s", c, err, sha)
	}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		mode    os.FileMode // permission bits, or os.ModeSymlink
		content string      // file content or link target
	}
	for _, readOnly := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "wt")
		if _, err := exportTree(m.repo.Storer, tree, dir, readOnly, nil); err != nil {
			t.Fatalf("exportTree(readOnly %v) = %v", readOnly, err)
		}
		files := map[string]want{
			"a/b/c.yaml":  {0o644, "c: 1\n"},
			"bin/run.sh":  {0o755, "#!/bin/sh\necho hi\n"},
			"a/link.yaml": {os.ModeSymlink, "b/c.yaml"},
			"abs":         {os.ModeSymlink, "/etc/passwd"},
			"a/b/up":      {os.ModeSymlink, "../.."},
			"empty":       {0o644, ""},
		}
		for name, w := range files {
			p := filepath.Join(dir, name)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Errorf("readOnly %v: %s: %v", readOnly, name, err)
				continue
			}
			if w.mode == os.ModeSymlink {
				got, _ := os.Readlink(p)
				if fi.Mode()&os.ModeSymlink == 0 || got != w.content {
					t.Errorf("readOnly %v: %s = %v -> %q; want symlink -> %q", readOnly, name, fi.Mode(), got, w.content)
				}
				continue
			}
			wantPerm := w.mode
			if readOnly {
				wantPerm &^= 0o222
			}
			b, _ := os.ReadFile(p)
			if fi.Mode().Perm() != wantPerm || string(b) != w.content {
				t.Errorf("readOnly %v: %s = %v %q; want %v %q", readOnly, name, fi.Mode().Perm(), b, wantPerm, w.content)
			}
		}
		if fi, err := os.Stat(filepath.Join(dir, "a")); readOnly && (err != nil || fi.Mode().Perm() != 0o555) {
			t.Errorf("read-only export: directory a is %v, %v; want 0555", fi.Mode(), err)
		}
		if _, err := verifyTree(m.repo.Storer, tree, dir, readOnly); err != nil {
			t.Errorf("verifyTree of a fresh export (readOnly %v) = %v", readOnly, err)
		}
		// Exporting again over an existing tree replaces it.
		if _, err := exportTree(m.repo.Storer, tree, dir, readOnly, nil); err != nil {
			t.Fatalf("exportTree over an existing tree (readOnly %v) = %v", readOnly, err)
		}
		removeTree(dir)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("removeTree(readOnly %v) left %s: %v", readOnly, dir, err)
		}
	}

	// verifyTree catches what a crash or a hand can do to a worktree.
	damage := map[string]func(dir string) error{
		"truncated file":   func(d string) error { return os.Truncate(filepath.Join(d, "a/b/c.yaml"), 1) },
		"missing file":     func(d string) error { return os.Remove(filepath.Join(d, "bin/run.sh")) },
		"lost exec bit":    func(d string) error { return os.Chmod(filepath.Join(d, "bin/run.sh"), 0o644) },
		"extra file":       func(d string) error { return os.WriteFile(filepath.Join(d, "a/x.yaml"), nil, 0o644) },
		"symlink replaced": func(d string) error { return replaceWithFile(filepath.Join(d, "abs")) },
		"symlink retarget": func(d string) error {
			p := filepath.Join(d, "a/link.yaml")
			_ = os.Remove(p)
			return os.Symlink("b/c.yml", p)
		},
	}
	for name, f := range damage {
		dir := filepath.Join(t.TempDir(), "wt")
		if _, err := exportTree(m.repo.Storer, tree, dir, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := f(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyTree(m.repo.Storer, tree, dir, false); err == nil {
			t.Errorf("verifyTree after %s = nil; want an error", name)
		}
	}
}

func replaceWithFile(p string) error {
	if err := os.Remove(p); err != nil {
		return err
	}
	return os.WriteFile(p, []byte("/etc/passwd"), 0o644)
}

// TestExportLinksUnchangedFiles: a new commit's worktree hard-links the files it shares with
// the previous one and writes only what changed.
func TestExportLinksUnchangedFiles(t *testing.T) {
	r := newRepo(t)
	r.WriteMode("bin/run.sh", "#!/bin/sh\n", 0o755)
	first := r.Commit("exec")
	cfg := testConfig(t, r.URL())
	s := start(t, cfg, &proposer{})
	if _, err := syncNow(t, s); err != nil {
		t.Fatal(err)
	}
	r.Write("deploy/app.yaml", podYAML("changed"))
	r.WriteMode("bin/run.sh", "#!/bin/sh\n", 0o644) // same content, other mode
	second := r.Commit("change")
	if _, err := syncNow(t, s); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file   string
		linked bool
	}{
		{"deploy/cm.yaml", true},
		{"README.md", true},
		{"deploy/app.yaml", false},
		{"bin/run.sh", false},
	}
	for _, tt := range tests {
		a, err1 := os.Stat(filepath.Join(cfg.Dir, "worktrees", first, tt.file))
		b, err2 := os.Stat(filepath.Join(cfg.Dir, "worktrees", second, tt.file))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", tt.file, err1, err2)
		}
		if got := os.SameFile(a, b); got != tt.linked {
			t.Errorf("%s shared between the worktrees = %v; want %v", tt.file, got, tt.linked)
		}
	}
	if got := readFile(t, filepath.Join(cfg.Dir, "current"), "deploy/app.yaml"); got != podYAML("changed") {
		t.Errorf("current/deploy/app.yaml = %q; want the new content", got)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Dir, "current", "bin/run.sh")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("current/bin/run.sh = %v, %v; want 0644", fi.Mode(), err)
	}
}
