package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kubernetes' AtomicWriter layout: the payload sits in a timestamped hidden directory,
// ..data points at it, and every user-visible top-level entry is a symlink through ..data.
// A swap is one rename of a symlink, so a reader sees the old payload or the new one, never
// a mix.
const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	tsLayout       = "..2006_01_02_15_04_05.000000000"
)

// file is one entry of a payload.
type file struct {
	data   []byte
	source string // a host file to hard-link (or copy) instead of data
	link   string // a symlink with this target instead of a file
	mode   os.FileMode
}

// payload maps relative paths ("key", "dir/key") to their contents.
type payload map[string]file

// validatePath checks a payload path as kubelet's AtomicWriter does.
func validatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path: %w", ErrInvalid)
	case len(p) > 4096:
		return fmt.Errorf("path %.40q...: longer than 4096: %w", p, ErrInvalid)
	case filepath.IsAbs(p):
		return fmt.Errorf("path %q must be relative: %w", p, ErrInvalid)
	}
	parts := strings.Split(p, "/")
	for _, part := range parts {
		switch {
		case part == "..":
			return fmt.Errorf("path %q must not contain '..': %w", p, ErrInvalid)
		case part == "" || part == ".":
			return fmt.Errorf("path %q has an empty or '.' element: %w", p, ErrInvalid)
		case len(part) > 255:
			return fmt.Errorf("path %q has an element longer than 255: %w", p, ErrInvalid)
		}
	}
	if strings.HasPrefix(parts[0], "..") {
		return fmt.Errorf("path %q must not start with '..': %w", p, ErrInvalid)
	}
	return nil
}

// writeAtomic makes dir hold exactly p, swapping in a new payload directory only when the
// content or modes differ. It keeps the previous payload directory until the next call, so a
// reader that resolved ..data just before a swap still finds every file it opens; older ones
// are removed. It reports whether it swapped.
func writeAtomic(dir string, p payload, now time.Time) (bool, error) {
	for path := range p {
		if err := validatePath(path); err != nil {
			return false, err
		}
	}
	old, err := os.Readlink(filepath.Join(dir, dataDirName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if old != "" {
		same, err := holds(filepath.Join(dir, old), p)
		if err != nil {
			return false, err
		}
		if same {
			if err := linkVisible(dir, p); err != nil {
				return false, err
			}
			return false, removePayloadDirs(dir, old, "")
		}
	}

	ts, err := newPayloadDir(dir, now)
	if err != nil {
		return false, err
	}
	if err := writePayload(filepath.Join(dir, ts), p); err != nil {
		_ = os.RemoveAll(filepath.Join(dir, ts))
		return false, err
	}
	tmp := filepath.Join(dir, newDataDirName)
	if err := ignoreNotExist(os.Remove(tmp)); err != nil {
		return false, err
	}
	if err := os.Symlink(ts, tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDirName)); err != nil {
		return false, err
	}
	if err := linkVisible(dir, p); err != nil {
		return true, err
	}
	return true, removePayloadDirs(dir, ts, old)
}

func newPayloadDir(dir string, now time.Time) (string, error) {
	name := now.UTC().Format(tsLayout)
	err := os.Mkdir(filepath.Join(dir, name), 0o755)
	if errors.Is(err, os.ErrExist) {
		// Two writes within the clock's resolution (or a frozen test clock).
		var tmp string
		tmp, err = os.MkdirTemp(dir, name+".")
		name = filepath.Base(tmp)
	}
	if err != nil {
		return "", err
	}
	return name, os.Chmod(filepath.Join(dir, name), 0o755)
}

func writePayload(root string, p payload) error {
	for path, f := range p {
		dst := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch {
		case f.link != "":
			if err := os.Symlink(f.link, dst); err != nil {
				return err
			}
		case f.source != "":
			if err := linkOrCopy(f.source, dst, f.mode); err != nil {
				return err
			}
		default:
			if err := os.WriteFile(dst, f.data, f.mode); err != nil {
				return err
			}
			if err := os.Chmod(dst, f.mode); err != nil { // past the umask
				return err
			}
		}
	}
	return nil
}

// linkOrCopy hard-links src to dst (no bytes written: the SD card is spared), copying when
// they are on different filesystems.
func linkOrCopy(src, dst string, mode os.FileMode) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// holds reports whether the payload directory root contains exactly p.
func holds(root string, p payload) (bool, error) {
	n := 0
	same := true
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if path == root || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, ok := p[rel]
		n++
		if !ok || !sameFile(path, info, f) {
			same = false
			return filepath.SkipAll
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // a payload directory removed under us: rewrite
	}
	return same && err == nil && n == len(p), err
}

func sameFile(path string, info os.FileInfo, f file) bool {
	if f.link != "" {
		target, err := os.Readlink(path)
		return err == nil && info.Mode()&os.ModeSymlink != 0 && target == f.link
	}
	if !info.Mode().IsRegular() || info.Mode().Perm() != f.mode.Perm() {
		return false
	}
	if f.source != "" {
		src, err := os.Stat(f.source)
		if err != nil || src.Size() != info.Size() {
			return false
		}
		if os.SameFile(src, info) {
			return true
		}
		a, err1 := os.ReadFile(f.source)
		b, err2 := os.ReadFile(path)
		return err1 == nil && err2 == nil && bytes.Equal(a, b)
	}
	if int64(len(f.data)) != info.Size() {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, f.data)
}

// visible returns the user-visible top-level names of p ("a" for "a/b/c").
func visible(p payload) map[string]bool {
	names := map[string]bool{}
	for path := range p {
		top, _, _ := strings.Cut(path, "/")
		names[top] = true
	}
	return names
}

// linkVisible makes dir's top-level entries exactly the symlinks name → ..data/name for p,
// removing those of keys that are gone. Entries skiff did not make (a subPath directory, say)
// are left alone.
func linkVisible(dir string, p payload) error {
	want := visible(p)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") || e.Type()&os.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, name))
		if err != nil || target != filepath.Join(dataDirName, name) {
			continue
		}
		if want[name] {
			have[name] = true
		} else if err := ignoreNotExist(os.Remove(filepath.Join(dir, name))); err != nil {
			return err
		}
	}
	for name := range want {
		if have[name] {
			continue
		}
		if err := os.Symlink(filepath.Join(dataDirName, name), filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// removePayloadDirs removes every timestamped payload directory of dir but keep1 and keep2
// (left-overs of a crash mid-write included).
func removePayloadDirs(dir, keep1, keep2 string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "..") || name == keep1 || name == keep2 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
