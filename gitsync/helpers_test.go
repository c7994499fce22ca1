package gitsync

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

// proposer records bundles; fail makes Propose return an error.
type proposer struct {
	mu      sync.Mutex
	bundles []Bundle
	fail    error
	block   chan struct{} // when set, Propose waits for it to close
	entered chan struct{} // receives once per Propose call, when set
}

func (p *proposer) Propose(ctx context.Context, b Bundle) error {
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	if p.block != nil {
		select {
		case <-p.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bundles = append(p.bundles, b)
	return p.fail
}

func (p *proposer) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

func (p *proposer) all() []Bundle {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Bundle(nil), p.bundles...)
}

func (p *proposer) count() int { return len(p.all()) }

func (p *proposer) last(t testing.TB) Bundle {
	t.Helper()
	bs := p.all()
	if len(bs) == 0 {
		t.Fatal("nothing proposed")
	}
	return bs[len(bs)-1]
}

// testLog writes the syncer's log into the test output.
func testLog(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

// testConfig is a test configuration for repo url with a long poll (tests call Sync).
func testConfig(t testing.TB, url string) Config {
	c := DefaultConfig()
	c.Repo = url
	c.Dir = filepath.Join(t.TempDir(), "gitsync")
	c.Poll = time.Hour
	c.Timeout = 30 * time.Second
	return c
}

// start creates and starts a syncer that stops when the test ends.
func start(t testing.TB, cfg Config, p Proposer) *Syncer {
	t.Helper()
	s, err := New(cfg, p, testLog(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// syncNow runs one sync with a deadline.
func syncNow(t testing.TB, s *Syncer) (Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Sync(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotRunning) {
		t.Fatalf("Sync: %v", err)
	}
	return st, err
}

// eventually waits for cond with a deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readFile reads a file of a worktree ("" when missing).
func readFile(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return string(b)
}

// newRepo makes a repository with two manifests on main.
func newRepo(t testing.TB) *gitrepo.Repo {
	r := gitrepo.New(t)
	r.Write("deploy/app.yaml", podYAML("app"))
	r.Write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n")
	r.Write("README.md", "# test\n")
	r.Commit("first")
	return r
}

// history is a repository with tags, a branch and commits after them.
type history struct {
	*gitrepo.Repo
	first  string // tagged v1 and v1-annotated; where branch stable starts
	second string // main
	stable string // stable
}

func newHistory(t testing.TB) history {
	h := history{Repo: newRepo(t)}
	h.first = h.Head()
	h.Tag("v1")
	h.AnnotatedTag("v1-annotated", "release 1")
	h.Branch("stable")
	h.Write("deploy/app.yaml", podYAML("main2"))
	h.second = h.Commit("second")
	h.Checkout("stable")
	h.Write("deploy/app.yaml", podYAML("stable2"))
	h.stable = h.Commit("stable second")
	h.Checkout("main")
	return h
}

// refCase is a ref and the commit it names ("" when an error is expected).
type refCase struct {
	ref, want, wantErr string
}

// refCases are the ways to name a commit of a history, for the syncer and the cache alike.
func refCases(h history) []refCase {
	unreachable := strings.Repeat("ab", 20)
	return []refCase{
		{ref: "", want: h.second},
		{ref: "HEAD", want: h.second},
		{ref: "main", want: h.second},
		{ref: "refs/heads/main", want: h.second},
		{ref: "stable", want: h.stable},
		{ref: "v1", want: h.first},
		{ref: "v1-annotated", want: h.first},
		{ref: "refs/tags/v1-annotated", want: h.first},
		{ref: h.first, want: h.first},
		{ref: h.first[:8], want: h.first},
		{ref: h.stable, want: h.stable},
		{ref: "nope", wantErr: "ref nope not found in "},
		{ref: "refs/heads/nope", wantErr: "ref refs/heads/nope not found in "},
		{ref: unreachable, wantErr: "ref " + unreachable + " not found in "},
	}
}

// syncWith starts a syncer of url with a configuration edit and syncs once.
func syncWith(t testing.TB, url string, edit func(c *Config)) (Status, *proposer, error) {
	t.Helper()
	cfg := testConfig(t, url)
	if edit != nil {
		edit(&cfg)
	}
	p := &proposer{}
	s := start(t, cfg, p)
	st, err := syncNow(t, s)
	return st, p, err
}

func podYAML(name string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name +
		"\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
}
