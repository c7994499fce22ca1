package gitsync

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/skiffhq/skiff/manifest"
)

var (
	// ErrRefNotFound: the configured branch, tag or commit does not exist in the repository.
	ErrRefNotFound = errors.New("no branch, tag or commit by that name")
	// ErrPathNotFound: the configured path does not exist in the commit.
	ErrPathNotFound = errors.New("path not found in commit")
	// ErrRepositoryNotFound: the server says there is no such repository.
	ErrRepositoryNotFound = transport.ErrRepositoryNotFound
	// ErrNotRunning: Sync was called on a Syncer that is not started (or already stopped).
	ErrNotRunning = errors.New("gitsync is not running")
	// ErrDirInUse: another process holds the data directory.
	ErrDirInUse = errors.New("gitsync data directory is in use by another process")
)

// Config says what to sync and how. Secrets are only ever read from files, so they never
// show up in flags or `ps`.
type Config struct {
	Repo  string        // file://, a local path, git://, http(s)://, ssh:// or scp-like user@host:path
	Ref   string        // branch, tag, full or abbreviated commit SHA; "" or "HEAD": the remote's default branch
	Path  string        // directory (or file) of manifests inside the repository; "." for all
	Poll  time.Duration // time between fetches (plus up to 10% jitter)
	Depth int           // fetch at most this many commits of history; 0 fetches all
	Dir   string        // gitsync's own data directory (clone, worktrees, current symlink)
	// Timeout bounds one fetch (listing, download, export).
	Timeout time.Duration

	SSHKeyFile     string // private key for ssh URLs (unencrypted)
	KnownHostsFile string // known_hosts for ssh URLs; required unless InsecureIgnoreHostKey
	// InsecureIgnoreHostKey accepts any ssh host key (man-in-the-middle possible).
	InsecureIgnoreHostKey bool
	Username              string // http(s) user name (with PasswordFile or TokenFile)
	PasswordFile          string // http(s) basic-auth password
	TokenFile             string // http(s) token, sent as the basic-auth password

	MaxFileSize      int64  // largest manifest file read (manifest.DefaultMaxFileSize when 0)
	DefaultNamespace string // namespace of objects that name none ("default" when empty)
}

// DefaultConfig returns the defaults; Repo and Dir must still be set.
func DefaultConfig() Config {
	return Config{
		Ref:              "",
		Path:             ".",
		Poll:             15 * time.Second,
		Timeout:          2 * time.Minute,
		MaxFileSize:      manifest.DefaultMaxFileSize,
		DefaultNamespace: "default",
	}
}

// Validate reports the first thing wrong with the configuration, in words an operator can act on.
func (c Config) Validate() error {
	if c.Repo == "" {
		return errors.New("gitsync: repository URL is required")
	}
	ep, err := endpoint(c.Repo)
	if err != nil {
		return fmt.Errorf("gitsync: repository %q: %w", c.Repo, err)
	}
	if c.Dir == "" {
		return errors.New("gitsync: data directory is required")
	}
	if c.Poll <= 0 {
		return fmt.Errorf("gitsync: poll interval %v must be positive", c.Poll)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("gitsync: timeout %v must not be negative", c.Timeout)
	}
	if c.Depth < 0 {
		return fmt.Errorf("gitsync: depth %d must not be negative", c.Depth)
	}
	if c.MaxFileSize < 0 {
		return fmt.Errorf("gitsync: max file size %d must not be negative", c.MaxFileSize)
	}
	if _, err := cleanPath(c.Path); err != nil {
		return fmt.Errorf("gitsync: %w", err)
	}
	if err := validRef(c.Ref); err != nil {
		return fmt.Errorf("gitsync: %w", err)
	}
	return c.validateAuth(ep)
}

func (c Config) validateAuth(ep *transport.Endpoint) error {
	files := map[string]string{
		"ssh key file": c.SSHKeyFile, "known hosts file": c.KnownHostsFile,
		"password file": c.PasswordFile, "token file": c.TokenFile,
	}
	for what, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("gitsync: %s: %w", what, err)
		}
	}
	httpish := ep.Protocol == "http" || ep.Protocol == "https"
	switch {
	case c.PasswordFile != "" && c.TokenFile != "":
		return errors.New("gitsync: set a password file or a token file, not both")
	case c.PasswordFile != "" && c.Username == "":
		return errors.New("gitsync: a password file needs a user name")
	case (c.PasswordFile != "" || c.TokenFile != "") && !httpish:
		return fmt.Errorf("gitsync: password and token files work with http(s) URLs, not %s", ep.Protocol)
	case ep.Protocol != "ssh" && (c.SSHKeyFile != "" || c.KnownHostsFile != ""):
		return fmt.Errorf("gitsync: ssh key and known hosts files work with ssh URLs, not %s", ep.Protocol)
	case ep.Protocol == "ssh" && c.SSHKeyFile == "":
		return errors.New("gitsync: an ssh URL needs an ssh key file")
	case ep.Protocol == "ssh" && c.KnownHostsFile == "" && !c.InsecureIgnoreHostKey:
		return errors.New("gitsync: an ssh URL needs a known hosts file to check the server's key " +
			"(or explicitly accept any host key with the insecure option)")
	}
	return nil
}

// auth builds the transport credentials, reading the secret files now so rotated
// secrets are picked up on the next fetch.
func (c Config) auth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	switch {
	case ep.Protocol == "ssh" && c.SSHKeyFile != "":
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, c.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key file %s: %w", c.SSHKeyFile, err)
		}
		if c.KnownHostsFile != "" {
			cb, err := gitssh.NewKnownHostsCallback(c.KnownHostsFile)
			if err != nil {
				return nil, fmt.Errorf("known hosts file %s: %w", c.KnownHostsFile, err)
			}
			keys.HostKeyCallback = cb
		} else if c.InsecureIgnoreHostKey {
			keys.HostKeyCallback = ssh.InsecureIgnoreHostKey()
		} else {
			return nil, errors.New("ssh: no known hosts file")
		}
		return keys, nil
	case c.PasswordFile != "":
		pw, err := readSecret(c.PasswordFile)
		if err != nil {
			return nil, err
		}
		return &githttp.BasicAuth{Username: c.Username, Password: pw}, nil
	case c.TokenFile != "":
		tok, err := readSecret(c.TokenFile)
		if err != nil {
			return nil, err
		}
		user := c.Username
		if user == "" {
			user = "git" // GitHub, Gitea and GitLab accept any user name with a token
		}
		return &githttp.BasicAuth{Username: user, Password: tok}, nil
	}
	return nil, nil
}

func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", file)
	}
	return s, nil
}

var scpLike = regexp.MustCompile(`^(?:[^@/]+@)?[^@/:]+:[^/]`)

// normalizeURL turns a local path into an absolute file:// URL and leaves other forms as given.
func normalizeURL(raw string) (string, error) {
	if strings.Contains(raw, "://") || scpLike.MatchString(raw) {
		return raw, nil
	}
	abs, err := filepath.Abs(raw)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

// endpoint parses any accepted repository URL form.
func endpoint(raw string) (*transport.Endpoint, error) {
	u, err := normalizeURL(raw)
	if err != nil {
		return nil, err
	}
	ep, err := transport.NewEndpoint(u)
	if err != nil {
		return nil, err
	}
	switch ep.Protocol {
	case "file", "git", "http", "https", "ssh":
	default:
		return nil, fmt.Errorf("unsupported protocol %q (use file, git, http, https or ssh)", ep.Protocol)
	}
	if ep.Protocol != "file" && ep.Host == "" {
		return nil, errors.New("no host")
	}
	return ep, nil
}

// redact hides a password written into a URL, for logs and errors.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}

// cleanPath checks and normalizes the manifest path: slash-separated, inside the repository.
func cleanPath(p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q must be relative to the repository root", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q leaves the repository", p)
	}
	return c, nil
}

var badRef = regexp.MustCompile(`(^|/)\.|\.\.|[\x00-\x20~^:?*\[\\\x7f]|@\{|\.lock$|/$|//`)

// validRef refuses ref names git itself refuses (and that could be abused in refspecs).
func validRef(ref string) error {
	if ref == "" || ref == "HEAD" {
		return nil
	}
	if badRef.MatchString(ref) {
		return fmt.Errorf("ref %q is not a valid branch, tag or commit name", ref)
	}
	return nil
}
