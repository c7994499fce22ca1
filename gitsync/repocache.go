package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// DefaultMinInterval is how often RepoCache fetches a branch or tag revision again.
const DefaultMinInterval = 10 * time.Second

// RepoCache serves gitRepo volumes from skiff's own clones: one bare go-git clone per
// repository URL under dir/repos, and one read-only exported tree per commit under
// dir/trees. A returned directory never changes; a new commit gets a new directory. No
// repository hook or other repository content is ever run.
type RepoCache struct {
	dir string
	log *slog.Logger
	// MinInterval: a branch, tag or HEAD revision is fetched again when Checkout is called
	// at least this long after its last fetch, so it follows the remote like the git-sync
	// sidecar; in between, Checkout answers from the clone. A commit SHA that is in the
	// clone is never fetched again. Set it before the first Checkout.
	MinInterval time.Duration

	// mu guards the fields below; a cachedRepo's mu may be held when taking it, never the
	// other way round.
	mu        sync.Mutex
	repos     map[string]*cachedRepo // by urlKey
	used      map[string]time.Time   // tree directory → when Checkout last asked for it
	exporting int                    // exports under way (their temporary directories are kept)
}

type cachedRepo struct {
	mu       sync.Mutex
	mirror   *mirror
	lock     *os.File // flock on the clone, held (and kept reachable) while the process lives
	resolved map[string]resolution
	verified map[string]bool // trees known complete
	last     *exported       // the tree exported or checked last, to hard-link from
}

type resolution struct {
	commit *object.Commit
	at     time.Time
}

// NewRepoCache returns a cache keeping its clones and trees under dir.
func NewRepoCache(dir string, log *slog.Logger) *RepoCache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RepoCache{
		dir: dir, log: log.With("component", "gitrepo-volumes"), MinInterval: DefaultMinInterval,
		repos: map[string]*cachedRepo{}, used: map[string]time.Time{},
	}
}

// urlKey names a repository's clone and trees on disk.
func urlKey(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:8])
}

// Checkout returns a read-only directory holding the tree of repo at revision: "" for the
// remote's HEAD, a branch, a tag, or a full or abbreviated commit SHA. When the remote
// cannot be reached, a revision fetched before is served from the clone (with a warning).
func (c *RepoCache) Checkout(ctx context.Context, repo, revision string) (string, error) {
	if _, err := endpoint(repo); err != nil {
		return "", fmt.Errorf("gitRepo %q: %w", repo, err)
	}
	if err := validRef(revision); err != nil {
		return "", fmt.Errorf("gitRepo %s: %w", redact(repo), err)
	}
	u, err := normalizeURL(repo)
	if err != nil {
		return "", err
	}
	key := urlKey(u)
	e, err := c.repo(key, u)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	var dir string
	err = e.mirror.withRepair(func() error {
		commit, err := e.resolve(ctx, revision, c.MinInterval, c.log)
		if err != nil {
			return err
		}
		dir, err = c.tree(e, key, commit)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("gitRepo %s at %q: %w", redact(u), revision, err)
	}
	return dir, nil
}

// repo returns the cache entry of a URL, opening (and locking) its clone the first time.
func (c *RepoCache) repo(key, u string) (*cachedRepo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.repos[key]; ok {
		return e, nil
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "repos"), 0o755); err != nil {
		return nil, err
	}
	lf, err := lockFile(filepath.Join(c.dir, "repos", key+".lock"))
	if err != nil {
		return nil, err
	}
	m, err := newMirror(u, filepath.Join(c.dir, "repos", key), 0, nil, c.log.With("repo", redact(u)))
	if err != nil {
		lf.Close()
		return nil, err
	}
	if err := m.open(); err != nil {
		lf.Close()
		return nil, err
	}
	e := &cachedRepo{mirror: m, lock: lf, resolved: map[string]resolution{}, verified: map[string]bool{}}
	c.repos[key] = e
	return e, nil
}

// resolve finds the commit of a revision, fetching when the last fetch is older than
// minInterval (a SHA in the clone is never fetched).
func (e *cachedRepo) resolve(ctx context.Context, revision string, minInterval time.Duration, log *slog.Logger) (*object.Commit, error) {
	if r, ok := e.resolved[revision]; ok && time.Since(r.at) < minInterval {
		return r.commit, nil
	}
	commit, err := e.mirror.update(ctx, revision)
	if err != nil {
		r, ok := e.resolved[revision]
		if !ok || isDamaged(err) || errors.Is(err, ErrRefNotFound) {
			return nil, err
		}
		log.Warn("fetch failed; serving the revision fetched before", "revision", revision,
			"commit", short(r.commit.Hash.String()), "err", err)
		return r.commit, nil
	}
	e.resolved[revision] = resolution{commit: commit, at: time.Now()}
	return commit, nil
}

// tree returns the exported tree of a commit, exporting it when needed. It marks the
// directory used before looking at it, so Prune never removes it under our feet.
func (c *RepoCache) tree(e *cachedRepo, key string, commit *object.Commit) (string, error) {
	sha := commit.Hash.String()
	dir := filepath.Join(c.dir, "trees", key+"-"+sha)
	c.mu.Lock()
	c.used[dir] = time.Now()
	c.mu.Unlock()
	if _, err := os.Lstat(dir); err == nil && e.verified[sha] {
		return dir, nil
	}
	tree, err := commit.Tree()
	if err != nil {
		return "", damaged(fmt.Errorf("read tree of %s: %w", short(sha), err))
	}
	if _, err := os.Lstat(dir); err == nil {
		if ex, err := verifyTree(e.mirror.repo.Storer, tree, dir, true); err == nil {
			e.verified[sha], e.last = true, ex
			return dir, nil
		}
	}
	c.mu.Lock()
	c.exporting++
	base := e.last
	if base != nil && c.used[base.dir].IsZero() {
		base = nil // pruned meanwhile
	}
	c.mu.Unlock()
	ex, err := exportTree(e.mirror.repo.Storer, tree, dir, true, base)
	c.mu.Lock()
	c.exporting--
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	e.verified[sha], e.last = true, ex
	return dir, nil
}

// Prune removes exported trees that are not in inUse and that Checkout has not returned
// for unusedFor (trees from before a restart count from when they were written), and the
// leftovers of interrupted exports. Clones are kept.
func (c *RepoCache) Prune(inUse []string, unusedFor time.Duration) error {
	keep := map[string]bool{}
	for _, d := range inUse {
		keep[filepath.Clean(d)] = true
	}
	treesDir := filepath.Join(c.dir, "trees")
	entries, err := os.ReadDir(treesDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ent := range entries {
		p := filepath.Join(treesDir, ent.Name())
		if strings.HasPrefix(ent.Name(), ".tmp-") || strings.HasSuffix(ent.Name(), ".old") {
			if c.exporting == 0 {
				removeTree(p)
			}
			continue
		}
		if keep[p] {
			continue
		}
		last, ok := c.used[p]
		if !ok {
			fi, err := ent.Info()
			if err != nil {
				continue
			}
			last = fi.ModTime()
		}
		if time.Since(last) < unusedFor {
			continue
		}
		c.log.Info("removing unused gitRepo tree", "dir", p)
		removeTree(p)
		delete(c.used, p)
	}
	return nil
}
