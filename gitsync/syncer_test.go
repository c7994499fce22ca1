package gitsync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport/client"
	gitfile "github.com/go-git/go-git/v5/plumbing/transport/file"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// TestSyncFollowsRemote: initial sync, a new commit, a force push, and a no-change poll, over
// every transport.
func TestSyncFollowsRemote(t *testing.T) {
	secretDir := t.TempDir()
	writeSecret := func(name, v string) string {
		p := filepath.Join(secretDir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		url   func(r *gitrepo.Repo) string
		auth  func(c *Config)
		depth int
	}{
		{name: "file URL", url: (*gitrepo.Repo).URL},
		{name: "local path", url: (*gitrepo.Repo).Dir},
		{name: "git daemon", url: func(r *gitrepo.Repo) string { return r.ServeDaemon(t) }},
		{name: "http", url: func(r *gitrepo.Repo) string { return r.ServeHTTP(t) }},
		{name: "http basic auth", url: func(r *gitrepo.Repo) string { return r.ServeHTTP(t, gitrepo.BasicAuth("alice", "pw")) },
			auth: func(c *Config) { c.Username, c.PasswordFile = "alice", writeSecret("pw", "pw") }},
		{name: "http token", url: func(r *gitrepo.Repo) string { return r.ServeHTTP(t, gitrepo.BasicAuth("", "tok3n")) },
			auth: func(c *Config) { c.TokenFile = writeSecret("token", "tok3n") }},
		{name: "file shallow", url: (*gitrepo.Repo).URL, depth: 1},
		{name: "git daemon shallow", url: func(r *gitrepo.Repo) string { return r.ServeDaemon(t) }, depth: 2},
		{name: "http shallow", url: func(r *gitrepo.Repo) string { return r.ServeHTTP(t) }, depth: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t)
			first := r.Head()
			cfg := testConfig(t, tt.url(r))
			cfg.Depth = tt.depth
			if tt.auth != nil {
				tt.auth(&cfg)
			}
			p := &proposer{}
			s := start(t, cfg, p)

			st, err := syncNow(t, s)
			if err != nil {
				t.Fatalf("initial Sync: %v", err)
			}
			if st.Head.Hash != first || st.Head.Subject != "first" {
				t.Fatalf("initial Sync head = %+v; want %s first", st.Head, first)
			}
			b := p.last(t)
			if b.Commit.Hash != first || b.Err != nil || b.Dir != filepath.Join(cfg.Dir, "worktrees", first) {
				t.Fatalf("initial bundle = %+v; want commit %s in its worktree", b, first)
			}
			if got := readFile(t, filepath.Join(cfg.Dir, "current"), "deploy/app.yaml"); got != podYAML("app") {
				t.Errorf("current/deploy/app.yaml = %q; want the committed manifest", got)
			}

			// No change: nothing proposed again.
			n := p.count()
			if _, err := syncNow(t, s); err != nil {
				t.Fatalf("no-change Sync: %v", err)
			}
			if p.count() != n {
				t.Errorf("no-change Sync proposed %d bundles; want 0", p.count()-n)
			}

			r.Write("deploy/app.yaml", podYAML("app2"))
			second := r.Commit("second")
			if st, err = syncNow(t, s); err != nil || st.Head.Hash != second {
				t.Fatalf("Sync after commit = %s, %v; want %s", st.Head.Hash, err, second)
			}
			if got := readFile(t, filepath.Join(cfg.Dir, "current"), "deploy/app.yaml"); got != podYAML("app2") {
				t.Errorf("after commit current/deploy/app.yaml = %q; want app2", got)
			}

			// Force push: history rewritten to a new commit on top of the first.
			r.ResetHard(first)
			r.Write("deploy/app.yaml", podYAML("app3"))
			rewritten := r.Commit("rewritten")
			if st, err = syncNow(t, s); err != nil || st.Head.Hash != rewritten {
				t.Fatalf("Sync after force push = %s, %v; want %s", st.Head.Hash, err, rewritten)
			}
			// Force push back to an old commit: already in the clone, nothing downloaded.
			r.ResetHard(first)
			if st, err = syncNow(t, s); err != nil || st.Head.Hash != first {
				t.Fatalf("Sync after reset to first = %s, %v; want %s", st.Head.Hash, err, first)
			}
			if got := p.last(t).Commit.Hash; got != first {
				t.Errorf("last proposed = %s; want %s", got, first)
			}
			// Worktrees kept: current and previous only.
			entries, _ := os.ReadDir(filepath.Join(cfg.Dir, "worktrees"))
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if len(names) != 2 {
				t.Errorf("worktrees = %v; want the current (%s) and the previous (%s)", names, first, rewritten)
			}
		})
	}
}

func TestRefs(t *testing.T) {
	r := newHistory(t)
	tests := refCases(r)
	transports := map[string]string{"file": r.URL(), "daemon": r.ServeDaemon(t), "http": r.ServeHTTP(t)}
	for tname, u := range transports {
		for _, tt := range tests {
			t.Run(tname+"/"+tt.ref, func(t *testing.T) {
				st, p, err := syncWith(t, u, func(c *Config) { c.Ref = tt.ref })
				b := p.last(t)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrRefNotFound) {
						t.Fatalf("Sync(ref %q) error = %v; want %q", tt.ref, err, tt.wantErr)
					}
					if b.Err == nil || b.Err.Error() != err.Error() {
						t.Errorf("bundle error = %v; want %v", b.Err, err)
					}
					if st.LastError == nil || st.LastError.Error() != err.Error() {
						t.Errorf("status LastError = %v; want %v", st.LastError, err)
					}
					return
				}
				if err != nil || st.Head.Hash != tt.want {
					t.Fatalf("Sync(ref %q) = %s, %v; want %s", tt.ref, st.Head.Hash, err, tt.want)
				}
				wantRef := tt.ref
				if wantRef == "" || wantRef == "HEAD" {
					wantRef = "main" // the branch the remote's HEAD points to, named for status
				}
				if b.Commit.Ref != wantRef {
					t.Errorf("bundle ref = %q; want %q", b.Commit.Ref, wantRef)
				}
			})
		}
	}
}

func TestPath(t *testing.T) {
	r := newRepo(t)
	r.Symlink("linked", "deploy")
	r.Symlink("outside", "/etc")
	r.Commit("links")
	tests := []struct {
		path        string
		wantErr     string
		wantObjects int
		wantProblem string // an error problem that ParseFS must report
	}{
		{path: "nothere", wantErr: "path nothere not found in commit "},
		{path: "deploy/nothere", wantErr: "path deploy/nothere not found in commit "},
		{path: "README.md/x", wantErr: "path README.md/x not found in commit "},
		{path: "deploy", wantObjects: 2},
		{path: "./deploy/", wantObjects: 2},
		{path: "deploy/app.yaml", wantObjects: 1},
		{path: ".", wantObjects: 2, wantProblem: "outside:"}, // linked/ is read once
		{path: "linked", wantObjects: 2},
		{path: "outside", wantProblem: "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, p, err := syncWith(t, r.URL(), func(c *Config) { c.Path = tt.path })
			b := p.last(t)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrPathNotFound) {
					t.Fatalf("Sync(path %q) error = %v; want %q", tt.path, err, tt.wantErr)
				}
				if b.Commit.Hash != r.Head() || b.Err == nil || len(b.Objects) != 0 {
					t.Errorf("bundle = %+v; want commit %s with the path error and no objects", b, r.Head())
				}
				return
			}
			if err != nil || b.Err != nil {
				t.Fatalf("Sync(path %q) = %v, bundle %v; want no error", tt.path, err, b.Err)
			}
			if len(b.Objects) != tt.wantObjects {
				t.Errorf("Sync(path %q) parsed %d objects; want %d (problems %v)", tt.path, len(b.Objects), tt.wantObjects, b.Problems)
			}
			if tt.wantProblem != "" && !hasProblem(b.Problems, tt.wantProblem) {
				t.Errorf("Sync(path %q) problems = %v; want an error mentioning %q", tt.path, b.Problems, tt.wantProblem)
			}
			if tt.wantProblem == "" && b.Problems.HasErrors() {
				t.Errorf("Sync(path %q) problems = %v; want none", tt.path, b.Problems)
			}
		})
	}
}

func hasProblem(ps manifest.Problems, substr string) bool {
	for _, p := range ps.Errors() {
		if strings.Contains(p.String(), substr) {
			return true
		}
	}
	return false
}

// TestRepositoryDisappears: each poll reports "repository not found", the last worktree
// stays, and syncing resumes when the repository is back.
func TestRepositoryDisappears(t *testing.T) {
	for _, tr := range []string{"file", "daemon", "http"} {
		t.Run(tr, func(t *testing.T) {
			r := newRepo(t)
			u := map[string]func() string{"file": r.URL, "daemon": func() string { return r.ServeDaemon(t) },
				"http": func() string { return r.ServeHTTP(t) }}[tr]()
			cfg := testConfig(t, u)
			p := &proposer{}
			s := start(t, cfg, p)
			if _, err := syncNow(t, s); err != nil {
				t.Fatalf("initial Sync: %v", err)
			}
			restore := r.Hide()
			for i := range 2 {
				_, err := syncNow(t, s)
				want := "fetch " + u + ": repository not found"
				if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrRepositoryNotFound) {
					t.Fatalf("poll %d with the repository gone: %v; want %q", i, err, want)
				}
				if b := p.last(t); b.Err == nil || b.Commit.Hash != "" {
					t.Errorf("poll %d bundle = %+v; want an error bundle without commit", i, b)
				}
			}
			if got := readFile(t, filepath.Join(cfg.Dir, "current"), "deploy/app.yaml"); got != podYAML("app") {
				t.Errorf("worktree while the repository is gone: app.yaml = %q; want it kept", got)
			}
			restore()
			st, err := syncNow(t, s)
			if err != nil || st.Head.Hash != r.Head() || st.LastError != nil {
				t.Fatalf("Sync after restore = %+v, %v; want head %s", st, err, r.Head())
			}
			if b := p.last(t); b.Err != nil || b.Commit.Hash != r.Head() {
				t.Errorf("after restore proposed %+v; want the commit again (the previous proposal failed)", b)
			}
		})
	}
}

// TestSymlinkOutOfRepo: symlinks are exported as symlinks (never followed while writing),
// and what the parser says about them reaches the bundle.
func TestSymlinkOutOfRepo(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(outside, []byte(podYAML("stolen")), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	r.Symlink("deploy/escape.yaml", outside)
	r.Symlink("deploy/up.yaml", "../../../../../../../../etc/passwd")
	r.Symlink("deploy/inside.yaml", "app.yaml")
	r.Commit("symlinks")

	cfg := testConfig(t, r.URL())
	cfg.Path = "deploy"
	p := &proposer{}
	s := start(t, cfg, p)
	if _, err := syncNow(t, s); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	b := p.last(t)
	for name, target := range map[string]string{"escape.yaml": outside, "up.yaml": "../../../../../../../../etc/passwd", "inside.yaml": "app.yaml"} {
		got, err := os.Readlink(filepath.Join(b.Dir, "deploy", name))
		if err != nil || got != target {
			t.Errorf("worktree deploy/%s = symlink %q, %v; want symlink to %q", name, got, err, target)
		}
	}
	for _, f := range []string{"escape.yaml", "up.yaml"} {
		if !hasProblem(b.Problems, f+":") {
			t.Errorf("problems = %v; want an error for %s, a symlink out of the repository", b.Problems, f)
		}
	}
	if !b.Problems.HasErrors() {
		t.Errorf("problems = %v; want errors, so the commit is not applied", b.Problems)
	}
	for _, o := range b.Objects {
		if o.GetName() == "stolen" {
			t.Errorf("object %q parsed from a file outside the repository", o.GetName())
		}
	}
}

// TestCrashRecovery: whatever a crash leaves in the data directory, the next start syncs.
func TestCrashRecovery(t *testing.T) {
	write := func(t *testing.T, p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	packs := func(t *testing.T, dir string) []string {
		t.Helper()
		ps, err := filepath.Glob(filepath.Join(dir, "repo", "objects", "pack", "*.pack"))
		if err != nil || len(ps) == 0 {
			t.Fatalf("no packs in the clone: %v", err)
		}
		return ps
	}
	tests := []struct {
		name      string
		newCommit bool // commit on the remote while skiff is down
		damage    func(t *testing.T, dir, head string)
		gone      []string // paths (relative to dir) that must not exist after the sync
		keepClone bool     // recovered without cloning again
	}{
		{name: "stale lock files", newCommit: true, keepClone: true, damage: func(t *testing.T, dir, _ string) {
			for _, f := range []string{"refs/remotes/origin/main.lock", "packed-refs.lock", "shallow.lock",
				"config.lock", "HEAD.lock", "index.lock", "objects/pack/tmp_pack_123"} {
				write(t, filepath.Join(dir, "repo", f), "")
			}
		}, gone: []string{"repo/refs/remotes/origin/main.lock", "repo/packed-refs.lock", "repo/shallow.lock",
			"repo/config.lock", "repo/HEAD.lock", "repo/index.lock", "repo/objects/pack/tmp_pack_123"}},
		{name: "truncated worktree", keepClone: true, damage: func(t *testing.T, dir, head string) {
			wt := filepath.Join(dir, "worktrees", head)
			if err := os.Truncate(filepath.Join(wt, "deploy", "app.yaml"), 10); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(wt, "README.md")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "worktree with a stray file", damage: func(t *testing.T, dir, head string) {
			write(t, filepath.Join(dir, "worktrees", head, "deploy", "half-written.yaml"), "kind: Po")
		}, gone: []string{"current/deploy/half-written.yaml"}},
		{name: "half-written export and link", newCommit: true, keepClone: true, damage: func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "worktrees", ".tmp-123", "deploy", "app.yaml"), "kind: Po")
			if err := os.Symlink("worktrees/nothing", filepath.Join(dir, "current.tmp")); err != nil {
				t.Fatal(err)
			}
		}, gone: []string{"worktrees/.tmp-123", "current.tmp"}},
		{name: "current link dangling", damage: func(t *testing.T, dir, head string) {
			if err := os.RemoveAll(filepath.Join(dir, "worktrees", head)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "empty ref file", newCommit: true, damage: func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "repo", "refs", "remotes", "origin", "main"), "")
		}},
		{name: "corrupt config", newCommit: true, damage: func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "repo", "config"), "[remote \"origin\"\n\x00garbage")
		}},
		{name: "truncated pack", newCommit: true, damage: func(t *testing.T, dir, _ string) {
			for _, p := range packs(t, dir) {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{name: "truncated pack, same commit, worktree gone", damage: func(t *testing.T, dir, head string) {
			for _, p := range packs(t, dir) {
				if err := os.Truncate(p, 40); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.RemoveAll(filepath.Join(dir, "worktrees", head)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "pack index missing", newCommit: true, damage: func(t *testing.T, dir, _ string) {
			for _, p := range packs(t, dir) {
				if err := os.Remove(strings.TrimSuffix(p, ".pack") + ".idx"); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t)
			cfg := testConfig(t, r.URL())
			p := &proposer{}
			s := start(t, cfg, p)
			st, err := syncNow(t, s)
			if err != nil {
				t.Fatalf("first Sync: %v", err)
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			before := packs(t, cfg.Dir)
			tt.damage(t, cfg.Dir, st.Head.Hash)
			want := r.Head()
			if tt.newCommit {
				r.Write("deploy/app.yaml", podYAML("after-crash"))
				want = r.Commit("after crash")
			}

			s = start(t, cfg, p)
			st, err = syncNow(t, s)
			if err != nil || st.Head.Hash != want {
				t.Fatalf("Sync after %s = %s, %v; want %s", tt.name, st.Head.Hash, err, want)
			}
			wt := filepath.Join(cfg.Dir, "current")
			for _, f := range []string{"deploy/app.yaml", "deploy/cm.yaml", "README.md"} {
				if got, want := readFile(t, wt, f), r.Git("show", want+":"+f); strings.TrimSpace(got) != want {
					t.Errorf("after %s current/%s = %q; want %q", tt.name, f, got, want)
				}
			}
			if tt.keepClone {
				for _, p := range before {
					if _, err := os.Stat(p); err != nil {
						t.Errorf("after %s the clone was made again (%v); want it kept", tt.name, err)
					}
				}
			}
			for _, g := range tt.gone {
				if _, err := os.Lstat(filepath.Join(cfg.Dir, g)); !os.IsNotExist(err) {
					t.Errorf("after %s %s still exists (%v)", tt.name, g, err)
				}
			}
		})
	}
}

// TestProposals: when gitsync proposes and what.
func TestProposals(t *testing.T) {
	r := newRepo(t)
	cfg := testConfig(t, r.URL())
	p := &proposer{}
	s := start(t, cfg, p)
	if _, err := syncNow(t, s); err != nil {
		t.Fatal(err)
	}
	first := p.last(t)
	if first.Commit.Subject != "first" || first.Commit.Author != "Skiff Test <test@skiff.invalid>" || first.Commit.Time.IsZero() {
		t.Errorf("bundle commit = %+v; want subject, author and time", first.Commit)
	}

	// A failed proposal is retried on the next poll although nothing changed.
	p.setFail(errors.New("not leader"))
	r.Write("x.yaml", podYAML("x"))
	head := r.Commit("second\n\nbody")
	if _, err := syncNow(t, s); err == nil || !strings.Contains(err.Error(), "not leader") {
		t.Fatalf("Sync with a failing proposer: %v; want the proposer's error", err)
	}
	p.setFail(nil)
	n := p.count()
	if st, err := syncNow(t, s); err != nil || st.Proposed != 2 {
		t.Fatalf("Sync after the proposer recovered: %+v, %v; want 2 accepted proposals", st, err)
	}
	if b := p.last(t); p.count() != n+1 || b.Commit.Hash != head || b.Commit.Subject != "second" {
		t.Fatalf("retried proposal = %+v (%d new); want %s once, subject \"second\"", b.Commit, p.count()-n, head)
	}

	// A restart proposes the same commit again: the agent de-duplicates.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Sync on a stopped syncer: %v; want ErrNotRunning", err)
	}
	n = p.count()
	s = start(t, cfg, p)
	if _, err := syncNow(t, s); err != nil {
		t.Fatal(err)
	}
	if p.count() != n+1 || p.last(t).Commit.Hash != head {
		t.Errorf("after restart proposed %d bundles, last %s; want %s once", p.count()-n, p.last(t).Commit.Hash, head)
	}

	// Switching the ref between restarts.
	r.Tag("v2")
	r.Write("y.yaml", podYAML("y"))
	r.Commit("third")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg.Ref = "v2"
	s = start(t, cfg, p)
	if st, err := syncNow(t, s); err != nil || st.Head.Hash != head || st.Ref != "v2" {
		t.Errorf("after switching to tag v2: %+v, %v; want %s", st, err, head)
	}

	// Switching the repository URL between restarts starts a new clone.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	r2 := newRepo(t)
	r2.Write("z.yaml", podYAML("z"))
	otherHead := r2.Commit("other repository")
	cfg.Repo, cfg.Ref = r2.ServeHTTP(t), ""
	s = start(t, cfg, p)
	if st, err := syncNow(t, s); err != nil || st.Head.Hash != otherHead {
		t.Errorf("after switching the repository: %+v, %v; want %s", st, err, otherHead)
	}

	// A second syncer on the same directory is refused.
	other, err := New(cfg, p, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(t.Context()); !errors.Is(err, ErrDirInUse) {
		t.Errorf("second Start on the same directory: %v; want ErrDirInUse", err)
		_ = other.Stop()
	}
}

// TestTriggerCoalesces: a burst of triggers during a fetch gives one more fetch, not many.
func TestTriggerCoalesces(t *testing.T) {
	r := newRepo(t)
	cfg := testConfig(t, r.URL())
	p := &proposer{block: make(chan struct{}), entered: make(chan struct{}, 10)}
	s := start(t, cfg, p)
	select {
	case <-p.entered: // the first sync is proposing, and waits
	case <-t.Context().Done():
		t.Fatal("first sync did not propose")
	}
	for range 100 {
		s.Trigger()
	}
	close(p.block)
	eventually(t, "two fetches", func() bool { return s.Status().Fetches == 2 })
	st, err := syncNow(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetches != 3 {
		t.Errorf("fetches after 100 triggers during one fetch and a Sync = %d; want 3", st.Fetches)
	}
}

// TestPoll: without triggers the loop fetches every Poll.
func TestPoll(t *testing.T) {
	r := newRepo(t)
	cfg := testConfig(t, r.URL())
	cfg.Poll = 20 * time.Millisecond
	p := &proposer{}
	s := start(t, cfg, p)
	eventually(t, "first proposal", func() bool { return p.count() == 1 })
	second := r.Commit("second")
	eventually(t, "the new commit proposed by polling", func() bool { return p.last(t).Commit.Hash == second })
	if st := s.Status(); st.Fetches < 2 || st.LastFetch.IsZero() || st.Worktree == "" {
		t.Errorf("status after polling = %+v", st)
	}
}

// TestWithoutGitCLI: on a node without git, file:// repositories are read in-process (in
// full: go-git's server makes no shallow packs, nor does it say what annotated tags point to).
func TestWithoutGitCLI(t *testing.T) {
	r := newHistory(t)
	t.Setenv("PATH", t.TempDir())
	fileTransportOnce = sync.Once{}
	ensureFileTransport(testLog(t))
	t.Cleanup(func() {
		client.InstallProtocol("file", gitfile.DefaultClient)
		fileTransportOnce = sync.Once{}
		builtinFile.Store(false)
	})
	tests := []struct {
		ref   string
		depth int
		want  string
	}{
		{"", 0, r.second},
		{"main", 1, r.second},
		{"v1-annotated", 0, r.first},
		{r.stable[:10], 0, r.stable},
	}
	for _, tt := range tests {
		cfg := testConfig(t, r.URL())
		cfg.Ref, cfg.Depth = tt.ref, tt.depth
		s := start(t, cfg, &proposer{})
		if st, err := syncNow(t, s); err != nil || st.Head.Hash != tt.want {
			t.Fatalf("ref %q depth %d: Sync without git = %s, %v; want %s", tt.ref, tt.depth, st.Head.Hash, err, tt.want)
		}
		packs, _ := filepath.Glob(filepath.Join(cfg.Dir, "repo", "objects", "pack", "*.pack"))
		if st, err := syncNow(t, s); err != nil || st.Head.Hash != tt.want {
			t.Fatalf("ref %q: second Sync without git = %s, %v; want %s", tt.ref, st.Head.Hash, err, tt.want)
		}
		if again, _ := filepath.Glob(filepath.Join(cfg.Dir, "repo", "objects", "pack", "*.pack")); len(again) != len(packs) {
			t.Errorf("ref %q: a no-change Sync downloaded a pack (%d, then %d)", tt.ref, len(packs), len(again))
		}
	}
	r.Write("deploy/app.yaml", podYAML("third"))
	third := r.Commit("third")
	cfg := testConfig(t, r.URL())
	cfg.Depth = 1
	s := start(t, cfg, &proposer{})
	if st, err := syncNow(t, s); err != nil || st.Head.Hash != third {
		t.Fatalf("Sync of a new commit without git = %s, %v; want %s", st.Head.Hash, err, third)
	}
}

// metrics records what the syncer reports.
type metrics struct {
	mu                        sync.Mutex
	fetches, errors, proposed int
	durations                 []time.Duration
}

func (m *metrics) Fetched(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetches++
	m.durations = append(m.durations, d)
	if err != nil {
		m.errors++
	}
}

func (m *metrics) Proposed(state.Commit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proposed++
}

func TestMetrics(t *testing.T) {
	r := newRepo(t)
	s, err := New(testConfig(t, r.URL()), &proposer{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	m := &metrics{}
	s.SetMetrics(m)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	eventually(t, "the first fetch", func() bool { return s.Status().Fetches == 1 })
	steps := []struct {
		name    string
		do      func()
		wantErr bool
	}{
		{name: "no change"},
		{name: "new commit", do: func() { r.Commit("second") }},
		{name: "repository gone", do: func() { t.Cleanup(r.Hide()) }, wantErr: true},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if _, err := syncNow(t, s); (err != nil) != st.wantErr {
			t.Fatalf("%s: Sync = %v; want error %v", st.name, err, st.wantErr)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := s.Status()
	if m.fetches != 4 || m.errors != 1 || m.proposed != 2 {
		t.Errorf("metrics: %d fetches, %d errors, %d proposed; want 4, 1, 2", m.fetches, m.errors, m.proposed)
	}
	if st.Fetches != 4 || st.FetchErrors != 1 || st.Proposed != 2 || st.FetchDuration <= 0 {
		t.Errorf("status counters = %+v; want 4 fetches, 1 error, 2 proposed, a duration", st)
	}
	for i, d := range m.durations {
		if d <= 0 {
			t.Errorf("fetch %d duration %v; want > 0", i, d)
		}
	}
}

// TestCompaction: the clone does not collect one pack per fetch forever.
func TestCompaction(t *testing.T) {
	old := maxPacks
	maxPacks = 3
	t.Cleanup(func() { maxPacks = old })
	r := newRepo(t)
	cfg := testConfig(t, r.ServeDaemon(t))
	cfg.Depth = 1
	s := start(t, cfg, &proposer{})
	for i := range 8 {
		head := r.Commit(fmt.Sprintf("commit %d", i))
		if st, err := syncNow(t, s); err != nil || st.Head.Hash != head {
			t.Fatalf("Sync %d = %s, %v; want %s", i, st.Head.Hash, err, head)
		}
		packs, err := filepath.Glob(filepath.Join(cfg.Dir, "repo", "objects", "pack", "*.pack"))
		if err != nil || len(packs) > maxPacks {
			t.Fatalf("after %d fetches the clone has %d packs; want at most %d", i+2, len(packs), maxPacks)
		}
	}
}
