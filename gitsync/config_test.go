package gitsync

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string
	}{
		{"defaults", func(c *Config) {}, ""},
		{"local path", func(c *Config) { c.Repo = "./relative/repo" }, ""},
		{"git daemon", func(c *Config) { c.Repo = "git://host/repo.git" }, ""},
		{"https token", func(c *Config) { c.Repo = "https://host/r.git"; c.TokenFile = file }, ""},
		{"https basic", func(c *Config) { c.Repo = "https://host/r.git"; c.Username = "u"; c.PasswordFile = file }, ""},
		{"ssh", func(c *Config) { c.Repo = "ssh://git@host:2222/r.git"; c.SSHKeyFile = file; c.KnownHostsFile = file }, ""},
		{"scp-like", func(c *Config) { c.Repo = "git@host:team/r.git"; c.SSHKeyFile = file; c.KnownHostsFile = file }, ""},
		{"ssh insecure", func(c *Config) { c.Repo = "ssh://host/r"; c.SSHKeyFile = file; c.InsecureIgnoreHostKey = true }, ""},
		{"sha ref", func(c *Config) { c.Ref = "0123abcd" }, ""},
		{"nested path", func(c *Config) { c.Path = "clusters/edge/" }, ""},

		{"no repo", func(c *Config) { c.Repo = "" }, "repository URL is required"},
		{"bad scheme", func(c *Config) { c.Repo = "ftp://host/r" }, `unsupported protocol "ftp"`},
		{"no host", func(c *Config) { c.Repo = "http:///r" }, "no host"},
		{"no dir", func(c *Config) { c.Dir = "" }, "data directory is required"},
		{"zero poll", func(c *Config) { c.Poll = 0 }, "poll interval 0s must be positive"},
		{"negative depth", func(c *Config) { c.Depth = -1 }, "depth -1 must not be negative"},
		{"absolute path", func(c *Config) { c.Path = "/etc" }, `path "/etc" must be relative`},
		{"path escapes", func(c *Config) { c.Path = "a/../../x" }, `path "a/../../x" leaves the repository`},
		{"bad ref", func(c *Config) { c.Ref = "main..x" }, `ref "main..x" is not a valid`},
		{"refspec injection", func(c *Config) { c.Ref = "main:refs/heads/x" }, "is not a valid"},
		{"missing secret", func(c *Config) { c.Repo = "https://h/r"; c.TokenFile = filepath.Join(dir, "nope") }, "token file: stat"},
		{"password and token", func(c *Config) { c.Repo = "https://h/r"; c.Username = "u"; c.PasswordFile = file; c.TokenFile = file }, "not both"},
		{"password without user", func(c *Config) { c.Repo = "https://h/r"; c.PasswordFile = file }, "needs a user name"},
		{"token over git://", func(c *Config) { c.Repo = "git://h/r"; c.TokenFile = file }, "work with http(s) URLs, not git"},
		{"ssh key over https", func(c *Config) { c.Repo = "https://h/r"; c.SSHKeyFile = file }, "work with ssh URLs, not https"},
		{"ssh without key", func(c *Config) { c.Repo = "ssh://h/r"; c.KnownHostsFile = file }, "needs an ssh key file"},
		{"ssh without known hosts", func(c *Config) { c.Repo = "git@h:r"; c.SSHKeyFile = file }, "needs a known hosts file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Repo, c.Dir = "file:///srv/git/repo", dir
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHTTPAuthFailures(t *testing.T) {
	r := newRepo(t)
	u := r.ServeHTTP(t, gitrepo.BasicAuth("alice", "right"))
	wrong := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(wrong, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"no credentials", func(c *Config) {}},
		{"wrong password", func(c *Config) { c.Username, c.PasswordFile = "alice", wrong }},
		{"wrong token", func(c *Config) { c.TokenFile = wrong }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := syncWith(t, u, tt.edit)
			if err == nil || !strings.HasPrefix(err.Error(), "fetch "+u+": authentication required") {
				t.Fatalf("Sync with %s = %v; want authentication required", tt.name, err)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

// sshServer serves git-upload-pack over ssh on loopback for one authorized client key.
func sshServer(t *testing.T, authorized ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(signer)
	addr = gitrepo.ServeTCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				return
			}
			serveSession(ch, creqs)
		}
	})
	return addr, signer.PublicKey()
}

// serveSession runs `git-upload-pack '<path>'`, the only command it accepts.
func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" || len(req.Payload) < 4 {
			_ = req.Reply(req.Type == "env", nil)
			continue
		}
		cmdline := string(req.Payload[4:])
		path, ok := strings.CutPrefix(cmdline, "git-upload-pack '")
		if !ok || !strings.HasSuffix(path, "'") {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		cmd := exec.Command("git-upload-pack", strings.TrimSuffix(path, "'"))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		code := uint32(0)
		if err := cmd.Run(); err != nil {
			code = 1
		}
		_ = ch.CloseWrite()
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, code)
		_, _ = ch.SendRequest("exit-status", false, status)
		return
	}
}

func TestSSH(t *testing.T) {
	dir := t.TempDir()
	newKey := func(name string) (string, ssh.PublicKey) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return p, sp
	}
	clientKey, clientPub := newKey("id_ed25519")
	otherKey, otherPub := newKey("other")
	addr, hostKey := sshServer(t, clientPub)
	knownHosts := func(name string, k ssh.PublicKey) string {
		p := filepath.Join(dir, name)
		line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, k) + "\n"
		if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := knownHosts("known_hosts", hostKey), knownHosts("known_hosts_wrong", otherPub)

	r := newRepo(t)
	u := "ssh://git@" + addr + r.Dir()
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string
	}{
		{"key and known host", func(c *Config) { c.SSHKeyFile, c.KnownHostsFile = clientKey, good }, ""},
		{"insecure host key", func(c *Config) { c.SSHKeyFile, c.InsecureIgnoreHostKey = clientKey, true }, ""},
		{"host key mismatch", func(c *Config) { c.SSHKeyFile, c.KnownHostsFile = clientKey, bad }, "key mismatch"},
		{"unauthorized key", func(c *Config) { c.SSHKeyFile, c.KnownHostsFile = otherKey, good }, "unable to authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, err := syncWith(t, u, tt.edit)
			if tt.wantErr == "" {
				if err != nil || st.Head.Hash != r.Head() {
					t.Fatalf("Sync over ssh = %s, %v; want %s", st.Head.Hash, err, r.Head())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Sync over ssh = %v; want %q", err, tt.wantErr)
			}
		})
	}
}
