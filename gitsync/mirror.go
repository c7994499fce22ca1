package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// mirror is skiff's own bare clone of one remote repository. It holds only what was asked
// for: the commits the configured refs named, to the configured depth. Nothing from the
// repository is ever executed (go-git runs no hooks).
type mirror struct {
	url   string // normalized: local paths become file:// URLs
	dir   string
	depth int
	auth  func() (transport.AuthMethod, error)
	log   *slog.Logger

	repo   *git.Repository
	remote *git.Remote
}

const remoteName = "origin"

// objectCache bounds the memory go-git keeps of decoded objects (its default is 96 MiB).
const objectCache = 8 * cache.MiByte

// damagedError marks a failure to read the clone itself: the cure is a fresh clone.
type damagedError struct{ err error }

func (e *damagedError) Error() string { return e.err.Error() }
func (e *damagedError) Unwrap() error { return e.err }

func damaged(err error) error {
	if err == nil {
		return nil
	}
	return &damagedError{err}
}

func isDamaged(err error) bool {
	var d *damagedError
	return errors.As(err, &d)
}

var (
	fileTransportOnce sync.Once
	// builtinFile: file:// goes through go-git's in-process server, which cannot make
	// shallow packs; a local repository is fetched in full then.
	builtinFile atomic.Bool
)

// ensureFileTransport makes file:// URLs work on a node without the git CLI: go-git's file
// transport runs git-upload-pack, and where there is none, go-git's own server reads the
// repository in-process instead.
func ensureFileTransport(log *slog.Logger) {
	fileTransportOnce.Do(func() {
		if _, err := exec.LookPath("git-upload-pack"); err == nil {
			return
		}
		if _, err := exec.LookPath("git"); err == nil {
			return // go-git finds git-upload-pack in `git --exec-path`
		}
		log.Info("git CLI not found; serving file:// repositories in-process")
		client.InstallProtocol("file", server.NewServer(localLoader{}))
		builtinFile.Store(true)
	})
}

// localLoader opens bare and non-bare repositories for go-git's in-process server (its
// DefaultLoader reads a non-bare repository's working tree as if it were the .git).
type localLoader struct{}

func (localLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	dir := ep.Path
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
		dir = filepath.Join(dir, ".git")
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		return nil, transport.ErrRepositoryNotFound
	}
	return filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(objectCache)), nil
}

func newMirror(repoURL, dir string, depth int, auth func() (transport.AuthMethod, error), log *slog.Logger) (*mirror, error) {
	u, err := normalizeURL(repoURL)
	if err != nil {
		return nil, err
	}
	if auth == nil {
		auth = func() (transport.AuthMethod, error) { return nil, nil }
	}
	if strings.HasPrefix(u, "file://") {
		ensureFileTransport(log)
	}
	return &mirror{url: u, dir: dir, depth: depth, auth: auth, log: log}, nil
}

// open opens the clone, creating it when missing. It recovers from a crash: stale lock and
// temporary files are removed, and a clone that does not open or whose references cannot be
// read is deleted and started afresh. The caller must hold the data directory's lock.
func (m *mirror) open() error {
	if err := removeStale(m.dir); err != nil {
		return err
	}
	if err := m.openExisting(); err == nil {
		return nil
	} else if !errors.Is(err, git.ErrRepositoryNotExists) {
		m.log.Warn("git clone cannot be used; cloning again", "dir", m.dir, "err", err)
	}
	return m.reset()
}

func (m *mirror) openExisting() error {
	st := filesystem.NewStorageWithOptions(osfs.New(m.dir), cache.NewObjectLRU(objectCache),
		filesystem.Options{ExclusiveAccess: true})
	repo, err := git.Open(st, nil)
	if err != nil {
		return err
	}
	remote, err := repo.Remote(remoteName)
	if err != nil {
		return err
	}
	if urls := remote.Config().URLs; len(urls) != 1 || urls[0] != m.url {
		return fmt.Errorf("clone is of %v, not %s", urls, redact(m.url))
	}
	if err := checkRefs(repo); err != nil {
		return err
	}
	m.repo, m.remote = repo, remote
	return nil
}

// reset deletes the clone and creates an empty one.
func (m *mirror) reset() error {
	m.repo, m.remote = nil, nil
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("remove clone: %w", err)
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return fmt.Errorf("create clone: %w", err)
	}
	st := filesystem.NewStorageWithOptions(osfs.New(m.dir), cache.NewObjectLRU(objectCache),
		filesystem.Options{ExclusiveAccess: true})
	repo, err := git.Init(st, nil)
	if err != nil {
		return fmt.Errorf("create clone: %w", err)
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{m.url}})
	if err != nil {
		return fmt.Errorf("create clone: %w", err)
	}
	m.repo, m.remote = repo, remote
	return nil
}

// withRepair runs op; when it fails because the clone is damaged, the clone is deleted
// and made again, and op runs once more.
func (m *mirror) withRepair(op func() error) error {
	err := op()
	if !isDamaged(err) {
		return err
	}
	m.log.Warn("git clone is damaged; cloning again", "dir", m.dir, "err", err)
	if rerr := m.reset(); rerr != nil {
		return fmt.Errorf("%w (cloning again failed: %v)", err, rerr)
	}
	return op()
}

// checkRefs reads every local reference and the shallow list: what a fetch reads first.
func checkRefs(repo *git.Repository) error {
	iter, err := repo.References()
	if err != nil {
		return err
	}
	if err := iter.ForEach(func(*plumbing.Reference) error { return nil }); err != nil {
		return err
	}
	_, err = repo.Storer.Shallow()
	return err
}

// check reads the whole clone: references, then every object. It tells a damaged clone
// from a failed download.
func (m *mirror) check() error {
	if err := checkRefs(m.repo); err != nil {
		return err
	}
	iter, err := m.repo.Storer.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return err
	}
	return iter.ForEach(func(o plumbing.EncodedObject) error {
		r, err := o.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	})
}

// removeStale deletes what a crashed git process leaves behind in a clone: *.lock files
// (which make the git CLI refuse to work, git-sync#914) and half-written packs.
func removeStale(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if strings.HasPrefix(name, "incoming-") || name == "tmp_objdir" {
				return os.RemoveAll(p) // git's quarantine directories
			}
			return nil
		}
		if strings.HasSuffix(name, ".lock") || strings.HasPrefix(name, "tmp_") {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove stale files: %w", err)
	}
	return nil
}

// advert is what the remote advertises: reference name → hash, and for annotated tags the
// commit they point to.
type advert struct {
	refs   map[plumbing.ReferenceName]plumbing.Hash
	peeled map[plumbing.ReferenceName]plumbing.Hash
	head   plumbing.ReferenceName // what HEAD points to, when the server says
}

// commit returns the commit hash a reference names (peeling annotated tags).
func (a *advert) commit(name plumbing.ReferenceName) plumbing.Hash {
	if h, ok := a.peeled[name]; ok {
		return h
	}
	return a.refs[name]
}

// list asks the remote for its references: one round trip, nothing downloaded.
func (m *mirror) list(ctx context.Context) (*advert, error) {
	auth, err := m.auth()
	if err != nil {
		return nil, err
	}
	refs, err := m.remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return nil, m.fetchError(err)
	}
	a := &advert{refs: map[plumbing.ReferenceName]plumbing.Hash{}, peeled: map[plumbing.ReferenceName]plumbing.Hash{}}
	var symbolic []*plumbing.Reference
	for _, r := range refs {
		switch {
		case r.Type() == plumbing.SymbolicReference:
			symbolic = append(symbolic, r)
		case strings.HasSuffix(r.Name().String(), "^{}"):
			a.peeled[plumbing.ReferenceName(strings.TrimSuffix(r.Name().String(), "^{}"))] = r.Hash()
		default:
			a.refs[r.Name()] = r.Hash()
		}
	}
	for _, r := range symbolic {
		if h, ok := a.refs[r.Target()]; ok {
			a.refs[r.Name()] = h
			if r.Name() == plumbing.HEAD {
				a.head = r.Target()
			}
		}
	}
	return a, nil
}

// fetchError words a transport failure: "fetch <url>: repository not found".
func (m *mirror) fetchError(err error) error {
	switch {
	case errors.Is(err, transport.ErrRepositoryNotFound):
		err = ErrRepositoryNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		err = transport.ErrEmptyRemoteRepository
	}
	return fmt.Errorf("fetch %s: %w", redact(m.url), trimmed{err})
}

// trimmed drops the newline servers end their messages with.
type trimmed struct{ err error }

func (e trimmed) Error() string { return strings.TrimSpace(e.err.Error()) }
func (e trimmed) Unwrap() error { return e.err }

func (m *mirror) refNotFound(ref string) error {
	if ref == "" {
		ref = "HEAD"
	}
	return fmt.Errorf("ref %s not found in %s: %w", ref, redact(m.url), ErrRefNotFound)
}

var (
	fullSHA  = regexp.MustCompile(`^[0-9a-f]{40}$`)
	shortSHA = regexp.MustCompile(`^[0-9a-f]{4,39}$`)
)

// update makes sure the commit ref names on the remote is in the clone and returns it.
// It downloads only when that commit is missing, so an unchanged remote costs one listing
// of references. A full commit SHA already in the clone costs nothing at all.
func (m *mirror) update(ctx context.Context, ref string) (*object.Commit, error) {
	c, _, err := m.updateNamed(ctx, ref)
	return c, err
}

// updateNamed is update that also says which ref it followed: the branch the remote's HEAD
// points to when ref is empty or HEAD (so status can name it), else ref as given.
func (m *mirror) updateNamed(ctx context.Context, ref string) (*object.Commit, string, error) {
	c, name, err := m.updateRef(ctx, ref)
	if ref == "" || ref == "HEAD" {
		if short := name.Short(); name != "" && name != plumbing.HEAD && short != "" {
			return c, short, err
		}
	}
	return c, ref, err
}

func (m *mirror) updateRef(ctx context.Context, ref string) (*object.Commit, plumbing.ReferenceName, error) {
	if fullSHA.MatchString(ref) {
		if c, err := m.repo.CommitObject(plumbing.NewHash(ref)); err == nil {
			return c, "", nil
		}
	}
	adv, err := m.list(ctx)
	if err != nil {
		return nil, "", err
	}
	if ref != "" && ref != "HEAD" && (fullSHA.MatchString(ref) || shortSHA.MatchString(ref) && !adv.hasName(ref)) {
		c, err := m.updateSHA(ctx, adv, ref)
		return c, "", err
	}
	name, ok := adv.resolveName(ref)
	if !ok {
		return nil, "", m.refNotFound(ref)
	}
	if m.has(adv.commit(name)) {
		c, err := m.peel(adv.commit(name), ref)
		return c, name, err
	}
	if err := m.fetch(ctx, config.RefSpec("+"+name.String()+":"+localName(name).String())); err != nil {
		return nil, "", err
	}
	c, err := m.peel(adv.refs[name], ref)
	return c, name, err
}

// has reports whether the clone holds an object (a commit, or a tag when the server does
// not advertise what tags point to).
func (m *mirror) has(h plumbing.Hash) bool {
	return m.repo.Storer.HasEncodedObject(h) == nil
}

// hasName reports whether a branch or tag is called ref.
func (a *advert) hasName(ref string) bool {
	_, branch := a.refs[plumbing.NewBranchReferenceName(ref)]
	_, tag := a.refs[plumbing.NewTagReferenceName(ref)]
	return branch || tag
}

// resolveName finds the advertised reference a configured ref means: HEAD, a full
// reference name, a branch, then a tag (git's order).
func (a *advert) resolveName(ref string) (plumbing.ReferenceName, bool) {
	var candidates []plumbing.ReferenceName
	switch {
	case ref == "" || ref == "HEAD":
		candidates = []plumbing.ReferenceName{plumbing.HEAD}
	case strings.HasPrefix(ref, "refs/"):
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	default:
		candidates = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	}
	for _, c := range candidates {
		if _, ok := a.refs[c]; ok {
			if c == plumbing.HEAD && a.head != "" {
				return a.head, true // fetch the branch HEAD points to, under its own name
			}
			return c, true
		}
	}
	return "", false
}

// localName is where a fetched remote reference is kept in the clone.
func localName(n plumbing.ReferenceName) plumbing.ReferenceName {
	switch {
	case n.IsBranch():
		return plumbing.NewRemoteReferenceName(remoteName, n.Short())
	case n.IsTag():
		return n
	case n == plumbing.HEAD:
		return plumbing.NewRemoteHEADReferenceName(remoteName)
	}
	return plumbing.ReferenceName("refs/skiff/" + strings.TrimPrefix(n.String(), "refs/"))
}

// updateSHA fetches a commit named by its (possibly abbreviated) SHA: through a reference
// that points at it, else by asking for the SHA itself when the server allows it, else by
// fetching every branch and tag and looking for it there.
func (m *mirror) updateSHA(ctx context.Context, adv *advert, sha string) (*object.Commit, error) {
	if c, err := m.lookupSHA(sha); err == nil {
		return c, nil
	}
	for name := range adv.refs {
		if h := adv.commit(name); strings.HasPrefix(h.String(), sha) && name != plumbing.HEAD {
			if err := m.fetch(ctx, config.RefSpec("+"+name.String()+":"+localName(name).String())); err != nil {
				return nil, err
			}
			return m.peel(adv.refs[name], sha)
		}
	}
	if fullSHA.MatchString(sha) {
		err := m.fetch(ctx, config.RefSpec(sha+":refs/skiff/commits/"+sha))
		if err == nil {
			return m.peel(plumbing.NewHash(sha), sha)
		}
		if !errors.Is(err, git.ErrExactSHA1NotSupported) {
			m.log.Debug("fetch by commit SHA failed; fetching all branches and tags", "sha", sha, "err", err)
		}
	}
	if err := m.fetch(ctx, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"); err != nil {
		return nil, err
	}
	c, err := m.lookupSHA(sha)
	if err != nil {
		if m.depth > 0 {
			return nil, fmt.Errorf("%w (only the last %d commits of each branch are fetched)", m.refNotFound(sha), m.depth)
		}
		return nil, m.refNotFound(sha)
	}
	return c, nil
}

// lookupSHA finds a commit in the clone by full or abbreviated SHA.
func (m *mirror) lookupSHA(sha string) (*object.Commit, error) {
	if fullSHA.MatchString(sha) {
		return m.repo.CommitObject(plumbing.NewHash(sha))
	}
	h, err := m.repo.ResolveRevision(plumbing.Revision(sha))
	if err != nil {
		return nil, err
	}
	return m.repo.CommitObject(*h)
}

// maxPacks bounds the packs a clone collects (one per fetch): every object lookup visits
// each pack index, and go-git cannot repack a shallow clone. Past it, the next fetch starts
// from an empty clone, which also drops what force pushes left unreachable.
var maxPacks = 100

// fetch downloads what specs name, forcing local references to follow force pushes. A fetch
// that fails although the remote answered may mean a damaged clone: check tells.
func (m *mirror) fetch(ctx context.Context, specs ...config.RefSpec) error {
	auth, err := m.auth()
	if err != nil {
		return err
	}
	if packs, _ := filepath.Glob(filepath.Join(m.dir, "objects", "pack", "*.pack")); len(packs) >= maxPacks {
		m.log.Info("compacting the clone: fetching into an empty one", "packs", len(packs))
		if err := m.reset(); err != nil {
			return err
		}
	}
	depth := m.depth
	if builtinFile.Load() && strings.HasPrefix(m.url, "file://") {
		depth = 0
	}
	err = m.remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: specs, Depth: depth, Auth: auth, Tags: git.NoTags, Force: true,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if ctx.Err() != nil {
		return m.fetchError(ctx.Err())
	}
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		return err
	}
	if cerr := m.check(); cerr != nil {
		return damaged(fmt.Errorf("fetch %s: %w (clone damaged: %v)", redact(m.url), err, cerr))
	}
	return m.fetchError(err)
}

// peel follows annotated tags from h to the commit they name; the objects must now be in
// the clone, so failing to read them means the clone is damaged.
func (m *mirror) peel(h plumbing.Hash, ref string) (*object.Commit, error) {
	for range 10 {
		obj, err := m.repo.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, damaged(fmt.Errorf("read %s after fetch: %w", h, err))
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(m.repo.Storer, obj)
			if err != nil {
				return nil, damaged(fmt.Errorf("read commit %s: %w", h, err))
			}
			return c, nil
		case plumbing.TagObject:
			t, err := object.DecodeTag(m.repo.Storer, obj)
			if err != nil {
				return nil, damaged(fmt.Errorf("read tag %s: %w", h, err))
			}
			h = t.Target
		default:
			return nil, fmt.Errorf("ref %s names a %s, not a commit", ref, obj.Type())
		}
	}
	return nil, fmt.Errorf("ref %s: too many nested tags", ref)
}
