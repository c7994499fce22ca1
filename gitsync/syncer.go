// Package gitsync keeps skiff's own clone of the configured git repository up to date and
// hands every new commit, parsed, to a Proposer: git-sync's semantics with go-git. Each
// commit is exported into its own worktree and published by an atomic symlink swap; a
// crash at any point is recovered from on the next start. Nothing from the repository is
// ever executed.
package gitsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// Bundle is one fetched commit, parsed: what the agent proposes to Raft.
type Bundle struct {
	Commit   state.Commit      // Hash, Ref (as configured), Subject, Author, Time
	Objects  []manifest.Object // parsed from Path in the commit's worktree
	Problems manifest.Problems // parse and validation problems (errors mean: do not apply)
	Err      error             // fetch, checkout, ref or path failure; Commit may then be empty
	Dir      string            // the published worktree of this commit
}

// Proposer receives bundles; the agent implements it and decides between Sync and Reject.
type Proposer interface {
	Propose(ctx context.Context, b Bundle) error
}

// Metrics receives gitsync's measurements (the agent exports them to Prometheus).
type Metrics interface {
	// Fetched is called after every fetch attempt, err nil on success.
	Fetched(d time.Duration, err error)
	// Proposed is called for every good commit the Proposer accepted.
	Proposed(c state.Commit)
}

// Status is what gitsync knows about its repository now.
type Status struct {
	Remote        string        `json:"remote"` // repository URL, password redacted
	Ref           string        `json:"ref"`
	Path          string        `json:"path"`
	Head          state.Commit  `json:"head"`                // commit of the last successful fetch
	Worktree      string        `json:"worktree,omitempty"`  // published worktree of Head
	LastFetch     time.Time     `json:"lastFetch,omitempty"` // when the last fetch started
	FetchDuration time.Duration `json:"fetchDuration"`       // how long it took
	LastError     error         `json:"-"`                   // its error, nil when it succeeded
	Fetches       uint64        `json:"fetches"`
	FetchErrors   uint64        `json:"fetchErrors"`
	Proposed      uint64        `json:"proposed"` // good commits the Proposer accepted
}

// Syncer is the fetch loop: a component with Start and Stop.
type Syncer struct {
	cfg      Config
	path     string // cleaned cfg.Path
	proposer Proposer
	log      *slog.Logger
	metrics  Metrics
	mirror   *mirror
	trees    *worktrees

	kick chan struct{} // one slot: "fetch now"

	mu        sync.Mutex
	status    Status
	lastErr   error
	running   bool
	cancel    context.CancelFunc
	done      chan struct{} // closed when the loop exits
	requested uint64        // Sync calls so far
	completed uint64        // requests covered by a finished run
	ran       chan struct{} // closed and replaced after every run
	lockFile  *os.File

	// Owned by the loop goroutine.
	proposed   string // hash of the last good commit the Proposer accepted
	proposeBad bool   // the last proposal failed or carried an error
}

// New checks the configuration and prepares a Syncer; nothing touches the disk or the
// network before Start.
func New(cfg Config, p Proposer, log *slog.Logger) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("gitsync: no proposer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "gitsync")
	ep, err := endpoint(cfg.Repo)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultConfig().Timeout
	}
	m, err := newMirror(cfg.Repo, filepath.Join(cfg.Dir, "repo"), cfg.Depth,
		func() (transport.AuthMethod, error) { return cfg.auth(ep) }, log)
	if err != nil {
		return nil, err
	}
	p2, _ := cleanPath(cfg.Path)
	s := &Syncer{
		cfg: cfg, path: p2, proposer: p, log: log, mirror: m,
		trees: &worktrees{dir: cfg.Dir},
		kick:  make(chan struct{}, 1),
		ran:   make(chan struct{}),
	}
	s.status = Status{Remote: redact(m.url), Ref: cfg.Ref, Path: p2}
	return s, nil
}

// SetMetrics installs a metrics receiver; call it before Start.
func (s *Syncer) SetMetrics(m Metrics) { s.metrics = m }

// Start locks the data directory, recovers from whatever a crash left there, and starts
// the loop: a first sync at once, then one every Poll (with jitter) or on Trigger. It does
// not wait for the first sync; Sync does.
func (s *Syncer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("gitsync: already started")
	}
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("gitsync: %w", err)
	}
	lf, err := lockDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	if err := s.mirror.open(); err != nil {
		lf.Close()
		return fmt.Errorf("gitsync: open clone: %w", err)
	}
	if err := s.trees.recover(); err != nil {
		lf.Close()
		return fmt.Errorf("gitsync: %w", err)
	}
	s.lockFile = lf
	s.proposed, s.proposeBad = "", false       // after a restart, propose again; the agent de-duplicates
	loopCtx, cancel := context.WithCancel(ctx) // Stop or the caller's context end the loop
	s.cancel, s.done, s.running = cancel, make(chan struct{}), true
	go s.loop(loopCtx, s.done)
	return nil
}

// lockDir takes an exclusive lock on the data directory that the kernel releases when the
// process dies, so it never goes stale.
func lockDir(dir string) (*os.File, error) { return lockFile(filepath.Join(dir, ".lock")) }

func lockFile(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("gitsync: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("gitsync: %s: %w", filepath.Dir(p), ErrDirInUse)
	}
	return f, nil
}

// Stop ends the loop, waits for a sync under way to finish, and releases the directory.
func (s *Syncer) Stop() error {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return nil
	}
	s.running = false
	cancel, done, lf := s.cancel, s.done, s.lockFile
	s.mu.Unlock()
	cancel()
	<-done
	return lf.Close()
}

// Trigger asks for a fetch now without waiting (a webhook). Triggers that arrive while a
// fetch is under way or queued are coalesced into one more fetch.
func (s *Syncer) Trigger() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Sync fetches now and waits for the result: the status after a fetch that started after
// the call, and that fetch's error (fetch, ref, path or propose failure).
func (s *Syncer) Sync(ctx context.Context) (Status, error) {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return s.Status(), ErrNotRunning
	}
	s.requested++
	want := s.requested
	done := s.done
	s.mu.Unlock()
	s.Trigger()
	for {
		s.mu.Lock()
		if s.completed >= want {
			st, err := s.status, s.lastErr
			s.mu.Unlock()
			return st, err
		}
		ran := s.ran
		s.mu.Unlock()
		select {
		case <-ran:
		case <-done:
			return s.Status(), ErrNotRunning
		case <-ctx.Done():
			return s.Status(), ctx.Err()
		}
	}
}

// Status returns a copy of the current status.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Syncer) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		s.mu.Lock()
		covers := s.requested
		s.mu.Unlock()
		s.runOnce(ctx)
		s.mu.Lock()
		s.completed = covers
		close(s.ran)
		s.ran = make(chan struct{})
		s.mu.Unlock()
		timer.Reset(s.nextPoll())
	}
}

// nextPoll is Poll plus up to 10% jitter, so a fleet does not fetch in lockstep.
func (s *Syncer) nextPoll() time.Duration {
	return s.cfg.Poll + time.Duration(rand.Int64N(int64(s.cfg.Poll)/10+1))
}

// runOnce fetches, exports, parses and proposes when there is something to propose.
func (s *Syncer) runOnce(ctx context.Context) {
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	b, tree := s.fetch(fctx)
	cancel()
	dur := time.Since(start)
	if ctx.Err() != nil {
		return // stopping: neither a result nor an error
	}
	if s.metrics != nil {
		s.metrics.Fetched(dur, b.Err)
	}
	s.mu.Lock()
	s.status.LastFetch, s.status.FetchDuration = start, dur
	s.status.Fetches++
	if b.Err != nil {
		s.status.FetchErrors++
		s.status.LastError = b.Err
	} else {
		s.status.LastError = nil
		s.status.Head, s.status.Worktree = b.Commit, b.Dir
	}
	s.mu.Unlock()

	if b.Err != nil {
		s.log.Warn("sync failed", "err", b.Err)
	} else if b.Commit.Hash == s.proposed && !s.proposeBad {
		s.setErr(nil)
		return // nothing new
	} else {
		s.parse(&b, tree)
	}
	err := s.proposer.Propose(ctx, b)
	switch {
	case err != nil:
		s.log.Warn("propose failed", "commit", b.Commit.Hash, "err", err)
		s.proposeBad = true
		if b.Err == nil {
			err = fmt.Errorf("propose %s: %w", short(b.Commit.Hash), err)
		} else {
			err = b.Err
		}
	case b.Err != nil:
		s.proposeBad, err = true, b.Err
	default:
		s.proposed, s.proposeBad = b.Commit.Hash, false
		s.log.Info("proposed commit", "commit", short(b.Commit.Hash), "subject", b.Commit.Subject,
			"objects", len(b.Objects), "problems", len(b.Problems))
		s.mu.Lock()
		s.status.Proposed++
		s.mu.Unlock()
		if s.metrics != nil {
			s.metrics.Proposed(b.Commit)
		}
	}
	s.setErr(err)
}

func (s *Syncer) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// fetch brings the configured ref's commit into the clone and publishes its worktree. A
// damaged clone is deleted and cloned again, once.
func (s *Syncer) fetch(ctx context.Context) (b Bundle, tree *object.Tree) {
	err := s.mirror.withRepair(func() error {
		b, tree = s.fetchOnce(ctx)
		return b.Err
	})
	b.Err = err
	return b, tree
}

func (s *Syncer) fetchOnce(ctx context.Context) (Bundle, *object.Tree) {
	b := Bundle{Commit: state.Commit{Ref: s.cfg.Ref}}
	c, ref, err := s.mirror.updateNamed(ctx, s.cfg.Ref)
	if err != nil {
		b.Err = err
		return b, nil
	}
	b.Commit = commitInfo(c, ref)
	tree, err := c.Tree()
	if err != nil {
		b.Err = damaged(fmt.Errorf("read tree of %s: %w", short(c.Hash.String()), err))
		return b, nil
	}
	dir, err := s.trees.ensure(s.mirror.repo.Storer, tree, c.Hash.String())
	if err != nil {
		b.Err = fmt.Errorf("check out %s: %w", short(c.Hash.String()), err)
		if isDamaged(err) {
			b.Err = damaged(b.Err)
		}
		return b, nil
	}
	b.Dir = dir
	if err := s.trees.publish(c.Hash.String()); err != nil {
		b.Err = fmt.Errorf("publish %s: %w", short(c.Hash.String()), err)
		return b, nil
	}
	return b, tree
}

// parse fills the bundle's objects and problems from its worktree.
func (s *Syncer) parse(b *Bundle, tree *object.Tree) {
	if err := findPath(tree, s.path); err != nil {
		b.Err = fmt.Errorf("path %s not found in commit %s of %s: %w", s.path, short(b.Commit.Hash), redact(s.mirror.url), err)
		return
	}
	res := manifest.ParseFS(os.DirFS(b.Dir), s.path, manifest.Options{
		DefaultNamespace: s.cfg.DefaultNamespace, MaxFileSize: s.cfg.MaxFileSize,
	})
	b.Objects, b.Problems = res.Objects, res.Problems
}

// commitInfo describes a commit for the state.
func commitInfo(c *object.Commit, ref string) state.Commit {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return state.Commit{
		Hash:    c.Hash.String(),
		Ref:     ref,
		Subject: strings.TrimSpace(subject),
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Time:    c.Committer.When.UTC(),
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
