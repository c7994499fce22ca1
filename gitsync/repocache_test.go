package gitsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

func checkout(t *testing.T, c *RepoCache, repo, rev string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Checkout(ctx, repo, rev)
}

func TestRepoCacheRevisions(t *testing.T) {
	r := newHistory(t)
	tests := append(refCases(r), refCase{ref: "../x", wantErr: "is not a valid"})
	for tname, u := range map[string]string{"file": r.URL(), "daemon": r.ServeDaemon(t), "http": r.ServeHTTP(t)} {
		c := NewRepoCache(t.TempDir(), testLog(t))
		for _, tt := range tests {
			t.Run(tname+"/"+tt.ref, func(t *testing.T) {
				dir, err := checkout(t, c, u, tt.ref)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("Checkout(%q) = %q, %v; want error %q", tt.ref, dir, err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("Checkout(%q) = %v", tt.ref, err)
				}
				if !strings.HasSuffix(dir, "-"+tt.want) {
					t.Errorf("Checkout(%q) = %s; want the tree of %s", tt.ref, dir, tt.want)
				}
				if got, want := readFile(t, dir, "deploy/app.yaml"), r.Git("show", tt.want+":deploy/app.yaml"); strings.TrimSpace(got) != want {
					t.Errorf("Checkout(%q)/deploy/app.yaml = %q; want %q", tt.ref, got, want)
				}
				for _, p := range []string{dir, filepath.Join(dir, "deploy"), filepath.Join(dir, "deploy", "app.yaml")} {
					if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o222 != 0 {
						t.Errorf("Checkout(%q): %s is %v, %v; want read-only", tt.ref, p, fi.Mode(), err)
					}
				}
				if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
					t.Errorf("Checkout(%q) has a .git: %v", tt.ref, err)
				}
			})
		}
	}
}

// TestRepoCacheFollows: a branch follows the remote after MinInterval into a new directory,
// old directories stay as they were, a SHA never fetches again, and an unreachable remote
// serves what was fetched before.
func TestRepoCacheFollows(t *testing.T) {
	r := newRepo(t)
	first := r.Head()
	u := r.ServeHTTP(t)
	c := NewRepoCache(t.TempDir(), testLog(t))
	c.MinInterval = time.Hour

	d1, err := checkout(t, c, u, "main")
	if err != nil {
		t.Fatal(err)
	}
	r.Write("deploy/app.yaml", podYAML("next"))
	second := r.Commit("second")

	steps := []struct {
		name        string
		minInterval time.Duration
		before      func()
		rev         string
		want        string
		wantErr     string
	}{
		{name: "within MinInterval: the clone answers", minInterval: time.Hour, rev: "main", want: first},
		{name: "after MinInterval: fetched", minInterval: 0, rev: "main", want: second},
		{name: "SHA fetched before", minInterval: 0, rev: first, want: first},
		{name: "remote gone: SHA served without fetching", minInterval: 0, before: hide(r), rev: second, want: second},
		{name: "remote gone: branch served as fetched before", minInterval: 0, rev: "main", want: second},
		{name: "remote gone: never fetched", minInterval: 0, rev: "stable", wantErr: "repository not found"},
	}
	for _, s := range steps {
		c.MinInterval = s.minInterval
		if s.before != nil {
			s.before()
		}
		dir, err := checkout(t, c, u, s.rev)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Errorf("%s: Checkout(%q) = %q, %v; want error %q", s.name, s.rev, dir, err, s.wantErr)
			}
			continue
		}
		if err != nil || !strings.HasSuffix(dir, "-"+s.want) {
			t.Errorf("%s: Checkout(%q) = %q, %v; want the tree of %s", s.name, s.rev, dir, err, s.want)
		}
	}
	if got := readFile(t, d1, "deploy/app.yaml"); got != podYAML("app") {
		t.Errorf("the first directory changed: app.yaml = %q", got)
	}
}

// hide returns a step that hides the repository for the rest of the test.
func hide(r *gitrepo.Repo) func() {
	return func() { r.Hide() }
}

func TestRepoCachePrune(t *testing.T) {
	r := newRepo(t)
	first := r.Head()
	second := r.Commit("second")
	third := r.Commit("third")
	base := t.TempDir()
	c := NewRepoCache(base, testLog(t))
	dirs := map[string]string{}
	for _, sha := range []string{first, second, third} {
		d, err := checkout(t, c, r.URL(), sha)
		if err != nil {
			t.Fatal(err)
		}
		dirs[sha] = d
	}
	leftover := filepath.Join(base, "trees", ".tmp-123")
	if err := os.MkdirAll(leftover, 0o555); err != nil {
		t.Fatal(err)
	}

	if err := c.Prune(nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	for sha, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("Prune(unused for 1h) removed %s, used just now: %v", sha, err)
		}
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("Prune left the interrupted export %s", leftover)
	}
	if err := c.Prune([]string{dirs[second]}, 0); err != nil {
		t.Fatal(err)
	}
	for sha, d := range dirs {
		_, err := os.Stat(d)
		if kept := err == nil; kept != (sha == second) {
			t.Errorf("Prune(in use: second, unused for 0): %s kept = %v; want %v", sha, kept, sha == second)
		}
	}
	// A pruned tree is exported again when asked for.
	d, err := checkout(t, c, r.URL(), third)
	if err != nil || readFile(t, d, "deploy/app.yaml") != podYAML("app") {
		t.Errorf("Checkout after prune = %q, %v; want the tree again", d, err)
	}
}

func TestRepoCacheRestart(t *testing.T) {
	r := newRepo(t)
	base := t.TempDir()
	c := NewRepoCache(base, testLog(t))
	d, err := checkout(t, c, r.URL(), "main")
	if err != nil {
		t.Fatal(err)
	}
	// Another cache on the same directory in this process holds no lock of its own: the
	// flock is per open file, so it is refused.
	if _, err := checkout(t, NewRepoCache(base, testLog(t)), r.URL(), "main"); !errors.Is(err, ErrDirInUse) {
		t.Errorf("second cache on the same directory: %v; want ErrDirInUse", err)
	}
	// Simulate a restart: release the clone, damage the tree and the clone.
	for _, e := range c.repos {
		e.lock.Close()
	}
	if err := os.Chmod(filepath.Join(d, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(d, "deploy", "app.yaml"), 3); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(base, "repos", urlKey(r.URL()), "packed-refs.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := NewRepoCache(base, testLog(t))
	d2, err := checkout(t, c2, r.URL(), "main")
	if err != nil || d2 != d || readFile(t, d2, "deploy/app.yaml") != podYAML("app") {
		t.Errorf("Checkout after restart = %q, %v, app.yaml %q; want %s repaired", d2, err, readFile(t, d2, "deploy/app.yaml"), d)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("stale lock %s survived: %v", lock, err)
	}
}

func TestRepoCacheConcurrent(t *testing.T) {
	r := newRepo(t)
	c := NewRepoCache(t.TempDir(), testLog(t))
	c.MinInterval = 0
	u := r.ServeDaemon(t)
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev := []string{"main", "", r.Head(), "HEAD"}[i%4]
			dirs[i], errs[i] = checkout(t, c, u, rev)
			if i%2 == 0 {
				errs[i] = errors.Join(errs[i], c.Prune(nil, time.Hour))
			}
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("concurrent Checkout %d = %q, %v; want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
}
