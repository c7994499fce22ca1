package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ParseFS parses every *.yaml, *.yml and *.json file under root in fsys (recursively, in
// lexical order of their paths) and reports objects defined more than once across them.
//
// File names in problems and in SourceAnnotation are relative to root (when root is a file:
// its base name). Hidden files and directories (.git, .github) are skipped, other
// extensions ignored, files larger than Options.MaxFileSize refused without being read.
// Symlinks are followed when they resolve inside root (root itself may be a symlink, as a
// git-sync style worktree link is) and refused with an Error otherwise; a file reached both
// directly and through a symlink is read once. Detecting symlinks needs an fs.ReadLinkFS
// (os.DirFS and fstest.MapFS are).
func ParseFS(fsys fs.FS, root string, opts Options) Result {
	t := &tree{fsys: fsys, visited: map[string]bool{}}
	t.find(root)
	var objs []parsed
	names := make([]string, 0, len(t.files))
	for _, f := range t.files {
		names = append(names, f.display)
		data, prob := readFile(fsys, f, opts.maxFileSize())
		if prob != nil {
			t.problems = append(t.problems, *prob)
			continue
		}
		o, ps := parseFile(f.display, data, opts)
		objs = append(objs, o...)
		t.problems = append(t.problems, ps...)
	}
	t.problems = append(t.problems, duplicates(objs)...)
	return result(names, objs, t.problems)
}

// file is a manifest to read: its name for problems, and its symlink-free path in fsys.
type file struct {
	display, real string
}

// tree finds the manifest files under a root.
type tree struct {
	fsys     fs.FS
	rootReal string
	files    []file
	links    []file          // directories reached through symlinks, walked after the tree
	visited  map[string]bool // real directories walked
	problems Problems
}

func (t *tree) fail(display, format string, args ...any) {
	t.problems = append(t.problems, Problem{File: display, Severity: Error, Message: fmt.Sprintf(format, args...)})
}

func (t *tree) find(root string) {
	root = path.Clean(root)
	real, err := resolve(t.fsys, root)
	if errors.Is(err, fs.ErrNotExist) {
		t.fail(root, "no such file or directory")
		return
	}
	if err != nil {
		t.fail(root, "cannot read: %v", err)
		return
	}
	fi, err := fs.Stat(t.fsys, real)
	if err != nil {
		t.fail(root, "cannot read: %v", err)
		return
	}
	if !fi.IsDir() {
		t.files = []file{{display: path.Base(root), real: real}}
		return
	}
	t.rootReal = real
	t.walk(real, "")
	for len(t.links) > 0 {
		l := t.links[0]
		t.links = t.links[1:]
		t.walk(l.real, l.display)
	}
	t.dedupe()
}

// walk lists one real directory, shown as display; subdirectories first-hand, symlinked
// ones later (so a directory reached both ways is shown under its own name).
func (t *tree) walk(real, display string) {
	if t.visited[real] {
		return
	}
	t.visited[real] = true
	entries, err := fs.ReadDir(t.fsys, real)
	if err != nil {
		t.fail(orDot(display), "cannot read directory: %v", err)
		return
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // .git, .github, editor files
		}
		r, d := path.Join(real, name), path.Join(display, name)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			t.link(r, d)
		case e.IsDir():
			t.walk(r, d)
		case isManifest(name):
			t.files = append(t.files, file{display: d, real: r})
		}
	}
}

func orDot(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// link follows a symlink found in the tree.
func (t *tree) link(real, display string) {
	// Symlinks named like manifests, or with no extension (they may be directories), are
	// checked; README.md -> ../README.md is none of skiff's business.
	relevant := isManifest(display) || path.Ext(display) == ""
	target, err := resolve(t.fsys, real)
	switch {
	case errors.Is(err, errOutside) || err == nil && !within(target, t.rootReal):
		if relevant {
			dest, _ := fs.ReadLink(t.fsys, real)
			t.fail(display, "symlink points outside the manifest directory (to %s); not read", dest)
		}
		return
	case err != nil:
		if relevant {
			t.fail(display, "cannot follow symlink: %v", err)
		}
		return
	}
	fi, err := fs.Stat(t.fsys, target)
	switch {
	case err != nil:
		if relevant {
			t.fail(display, "cannot follow symlink: %v", err)
		}
	case fi.IsDir():
		t.links = append(t.links, file{display: display, real: target})
	case isManifest(display):
		t.files = append(t.files, file{display: display, real: target})
	}
}

// dedupe keeps one name per real file (its own, when the tree has it directly) and sorts.
func (t *tree) dedupe() {
	best := map[string]file{}
	for _, f := range t.files {
		direct := f.real == path.Join(t.rootReal, f.display)
		cur, seen := best[f.real]
		if !seen || direct || cur.real != path.Join(t.rootReal, cur.display) && f.display < cur.display {
			best[f.real] = f
		}
	}
	t.files = t.files[:0]
	for _, f := range best {
		t.files = append(t.files, f)
	}
	sort.Slice(t.files, func(i, j int) bool { return t.files[i].display < t.files[j].display })
}

func within(p, root string) bool {
	return root == "." || p == root || strings.HasPrefix(p, root+"/")
}

var errOutside = errors.New("symlink points outside the file system")

// resolve returns the symlink-free path of name in fsys, following symlinks component by
// component (at most 40, as Linux does). A link that is absolute, or climbs above the root
// of fsys, is errOutside.
func resolve(fsys fs.FS, name string) (string, error) {
	done := "."
	rest := strings.Split(name, "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if done == "." {
				return "", errOutside
			}
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, c)
		fi, err := fs.Lstat(fsys, next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := fs.ReadLink(fsys, next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			return "", errOutside
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return done, nil
}

// readFile reads a manifest, refusing one larger than max without reading it.
func readFile(fsys fs.FS, f file, max int64) ([]byte, *Problem) {
	tooLarge := func(size int64) *Problem {
		return &Problem{File: f.display, Severity: Error, Message: fmt.Sprintf(
			"file is %s, larger than the %s limit for one manifest file; not read", humanSize(size), humanSize(max))}
	}
	fi, err := fs.Stat(fsys, f.real)
	if err != nil {
		return nil, &Problem{File: f.display, Severity: Error, Message: fmt.Sprintf("cannot read: %v", err)}
	}
	if !fi.Mode().IsRegular() {
		return nil, &Problem{File: f.display, Severity: Error, Message: "not a regular file; not read"}
	}
	if fi.Size() > max {
		return nil, tooLarge(fi.Size())
	}
	fh, err := fsys.Open(f.real)
	if err != nil {
		return nil, &Problem{File: f.display, Severity: Error, Message: fmt.Sprintf("cannot read: %v", err)}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, &Problem{File: f.display, Severity: Error, Message: fmt.Sprintf("cannot read: %v", err)}
	}
	if int64(len(data)) > max { // it grew since Stat
		return nil, tooLarge(int64(len(data)))
	}
	return data, nil
}
