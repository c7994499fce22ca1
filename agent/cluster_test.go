package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/fixtures/gitrepo"
	"github.com/skiffhq/skiff/fixtures/testenv"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/pki"
	"github.com/skiffhq/skiff/state"
)

// freeAddr returns a loopback address with a free port.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testCluster struct {
	t      *testing.T
	podman string
	repo   string
	agents map[string]*Agent
}

func newTestCluster(t *testing.T) *testCluster {
	if testing.Short() {
		t.Skip("starts agents on real Podman and git; run without -short (make test)")
	}
	r := gitrepo.New(t)
	r.Write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n")
	r.Commit("init")
	return &testCluster{t: t, podman: testenv.Podman(t), repo: r.URL(), agents: map[string]*Agent{}}
}

func (c *testCluster) config(name string, mutate ...func(*Config)) Config {
	c.t.Helper()
	ip := "127.0.0.1"
	cfg := Default()
	cfg.Name, cfg.DataDir, cfg.Repo, cfg.Podman = name, filepath.Join(c.t.TempDir(), name), c.repo, c.podman
	cfg.API, cfg.Raft = freeAddr(c.t, ip), freeAddr(c.t, ip)
	cfg.Poll = metav1.Duration{Duration: time.Second}
	cfg.DNS, cfg.HTTP, cfg.HTTPS = freeAddr(c.t, ip), "off", "off"
	// Several agents share this machine and its Podman: no host routes or nftables.
	cfg.NetPlane, cfg.Network = false, "podman"
	for _, m := range mutate {
		m(&cfg)
	}
	return cfg
}

func (c *testCluster) start(cfg Config) (*Agent, error) {
	c.t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.Name)
	}
	a, err := New(cfg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		return nil, err
	}
	c.agents[cfg.Name] = a
	c.t.Cleanup(func() { _ = a.Stop() })
	return a, nil
}

func (c *testCluster) mustStart(cfg Config) *Agent {
	c.t.Helper()
	a, err := c.start(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return a
}

// joinCfg makes a config that joins via first with a token file.
func (c *testCluster) joinCfg(name string, first *Agent, token string) Config {
	tf := filepath.Join(c.t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return c.config(name, func(cfg *Config) {
		cfg.Join = "https://" + first.cfg.API
		cfg.TokenFile = tf
	})
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func firstToken(t *testing.T, a *Agent) string {
	t.Helper()
	var b []byte
	waitUntil(t, "first join token", 20*time.Second, func() error {
		var err error
		b, err = os.ReadFile(filepath.Join(a.cfg.DataDir, "pki", "join-token"))
		return err
	})
	return strings.TrimSpace(string(b))
}

func voters(t *testing.T, a *Agent) map[string]raft.ServerSuffrage {
	t.Helper()
	cf := a.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	out := map[string]raft.ServerSuffrage{}
	for _, s := range cf.Configuration().Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

func TestClusterJoinAndMembership(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.mustStart(c.config("n1", func(cfg *Config) { cfg.MaxVoters = 3 }))
	tok := firstToken(t, n1)
	n2 := c.mustStart(c.joinCfg("n2", n1, tok))
	n3 := c.mustStart(c.joinCfg("n3", n1, tok))
	n4 := c.mustStart(c.joinCfg("n4", n1, tok))

	waitUntil(t, "3 voters and a non-voter", 20*time.Second, func() error {
		got := voters(t, n1)
		want := map[string]raft.ServerSuffrage{"n1": raft.Voter, "n2": raft.Voter, "n3": raft.Voter, "n4": raft.Nonvoter}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("members = %v; want %v", got, want)
		}
		return nil
	})
	// Every node sees the same commit; a follower's write is forwarded to the leader.
	waitUntil(t, "same live commit everywhere", 20*time.Second, func() error {
		want := n1.State().Live.Hash
		for _, a := range []*Agent{n2, n3, n4} {
			if got := a.State().Live.Hash; got == "" || got != want {
				return fmt.Errorf("%s live = %q; want %q", a.cfg.Name, got, want)
			}
		}
		return nil
	})
	ctx := context.Background()
	if _, err := n4.createToken(ctx, time.Hour); err != nil {
		t.Fatalf("write through a non-voter: %v", err)
	}
	// Removing a voter promotes the non-voter.
	if err := n2.removeNode(ctx, "n3", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "non-voter promoted", 20*time.Second, func() error {
		got := voters(t, n1)
		if _, still := got["n3"]; still || got["n4"] != raft.Voter {
			return fmt.Errorf("members = %v; want n3 gone and n4 a voter", got)
		}
		return nil
	})
	if _, ok := n1.State().Cluster.Get(state.Key{Kind: "Node", Name: "n3"}); ok {
		t.Error("removed node n3 still has a Node object")
	}
}

func TestJoinRefused(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.mustStart(c.config("n1"))
	good := firstToken(t, n1)
	parsed, _ := pki.ParseJoinToken(good)
	other, _ := pki.NewCA("elsewhere")
	expired := pki.NewJoinToken(n1.cluster.ca)
	if err := n1.store.Apply(context.Background(), &state.Command{Put: state.Wrap[manifest.Object](tokenSecret(expired, time.Second, time.Now().Add(-time.Hour)))}); err != nil {
		t.Fatal(err)
	}
	wrongSecret := parsed
	wrongSecret.Secret = strings.Repeat("0", 32)
	unknown := pki.NewJoinToken(n1.cluster.ca)
	tests := []struct {
		name, node, token, want string
	}{
		{"wrong secret", "x1", wrongSecret.String(), "wrong secret"},
		{"unknown token", "x2", unknown.String(), "unknown token"},
		{"expired token", "x3", expired.String(), "join token expired"},
		{"token of another cluster", "x4", pki.NewJoinToken(other).String(), "does not match the join token"},
		{"malformed token", "x5", "hunter2", "invalid join token"},
		{"clashing name", "n1", good, `a member named "n1" already exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.start(c.joinCfg(tt.node, n1, tt.token))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("join(%s) = %v; want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
	if got := voters(t, n1); len(got) != 1 {
		t.Errorf("members after refused joins = %v; want only n1 (nothing applied half-way)", got)
	}
}

func TestRaftRefusesAnotherClustersCertificate(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.mustStart(c.config("n1"))
	firstToken(t, n1)
	other, _ := pki.NewCA("elsewhere")
	key, csr, _ := pki.NewKeyAndCSR("intruder")
	cert, _ := other.Sign(csr, "intruder", pki.NodeOrg, nil, nil, time.Hour)
	kp, _ := pki.ParseKeyPair(cert, key)
	conn, err := tls.Dial("tcp", n1.cfg.Raft, pki.ClientTLS(other, func() *pki.KeyPair { return kp }))
	if err == nil {
		// TLS 1.3 reports the server's refusal of our certificate on first read.
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a certificate from another cluster was accepted on the Raft port")
	}
}

func TestRaftLogHoldsNoPlaintextSecrets(t *testing.T) {
	c := newTestCluster(t)
	r := gitrepo.New(t)
	const secret = "tls-key-material-7f3a9c"
	r.Write("s.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  key: "+secret+"\n")
	r.Commit("secret")
	c.repo = r.URL()
	n1 := c.mustStart(c.config("n1", func(cfg *Config) { cfg.SnapshotThreshold = 2 }))
	waitUntil(t, "secret synced", 20*time.Second, func() error {
		if _, ok := n1.State().Git.Get(state.Key{Kind: "Secret", Namespace: "default", Name: "s"}); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Force a snapshot too, so both the log and a snapshot are on disk.
	if err := n1.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	_ = n1.Stop()
	err := filepath.WalkDir(filepath.Join(n1.cfg.DataDir, "raft"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "dGxzLWtleS1tYXRlcmlhbC03ZjNhOWM") {
			t.Errorf("%s holds the secret in plaintext (or plain base64)", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptRaftDatabaseIsRefusedClearly(t *testing.T) {
	c := newTestCluster(t)
	cfg := c.config("n1")
	n1 := c.mustStart(cfg)
	firstToken(t, n1)
	if err := n1.Stop(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(cfg.DataDir, "raft", "raft.db")
	if err := os.WriteFile(db, []byte(strings.Repeat("not a bolt database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.start(cfg)
	if err == nil || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("start on a corrupt raft.db = %v; want an error naming %s and what to do", err, db)
	}
}

func TestFullDiskRefusesWritesWithoutHalfApplying(t *testing.T) {
	c := newTestCluster(t)
	dir := t.TempDir()
	if err := mountTmpfs(dir, "4m"); err != nil {
		t.Fatalf("mount a small tmpfs for the data dir: %v", err)
	}
	t.Cleanup(func() { _ = unmount(dir) })
	n1 := c.mustStart(c.config("n1", func(cfg *Config) { cfg.DataDir = filepath.Join(dir, "data") }))
	waitUntil(t, "synced", 20*time.Second, func() error {
		if !n1.State().Synced() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Fill the disk, then try to write a command.
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	before := n1.State().Index
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := &state.Command{Put: state.Wrap[manifest.Object](tokenSecret(pki.NewJoinToken(n1.cluster.ca), time.Hour, time.Now()))}
	for i := 0; i < 200; i++ { // enough log writes to hit the full disk
		if err = n1.store.Apply(ctx, big); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("writes kept succeeding on a full disk")
	}
	t.Logf("write on a full disk: %v", err)
	if got := n1.State().Index; got < before {
		t.Errorf("state went back from index %d to %d", before, got)
	}
	// Space comes back: writes work again.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "writes work again after space is freed", 30*time.Second, func() error {
		wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer wcancel()
		return n1.store.Apply(wctx, big)
	})
}

func TestAgentServesClusterDNS(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.mustStart(c.config("n1"))
	waitUntil(t, "synced", 20*time.Second, func() error {
		if !n1.State().Synced() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	var cl dns.Client
	m := new(dns.Msg).SetQuestion("dns-version.cluster.local.", dns.TypeTXT)
	waitUntil(t, "dns-version answered", 10*time.Second, func() error {
		r, _, err := cl.Exchange(m, n1.cfg.DNS)
		if err != nil {
			return err
		}
		if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "1.1.0") {
			return fmt.Errorf("answer %v", r.Answer)
		}
		return nil
	})
}

func TestAgentServesIngressWithClusterCACertificate(t *testing.T) {
	c := newTestCluster(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend saw %s%s", r.Host, r.URL.Path)
	}))
	defer backend.Close()
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	r := gitrepo.New(t)
	r.Write("ing.yaml", `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80, targetPort: `+port+`}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets: [{addresses: [{ip: 127.0.0.1}], ports: [{name: http, port: `+port+`}]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: shop.home.lan
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]
`)
	r.Commit("ingress")
	c.repo = r.URL()
	httpsAddr := freeAddr(t, "127.0.0.1")
	n1 := c.mustStart(c.config("n1", func(cfg *Config) { cfg.HTTPS = httpsAddr }))
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: n1.cluster.ca.Pool(), ServerName: "shop.home.lan"},
	}}
	waitUntil(t, "routed over HTTPS with a cluster-CA certificate for the host", 20*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, "https://"+httpsAddr+"/cart", nil)
		req.Host = "shop.home.lan" // as curl --resolve shop.home.lan:443:<node> does
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "backend saw shop.home.lan/cart") {
			return fmt.Errorf("%s: %s (ingress status %+v)", resp.Status, b, n1.status(context.Background()).Ingress)
		}
		if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) == 0 || got[0] != "shop.home.lan" {
			return fmt.Errorf("certificate names %v", got)
		}
		return nil
	})
	var found bool
	for _, h := range n1.status(context.Background()).Ingress {
		found = found || h.Host == "shop.home.lan" && h.Certificate == "cluster CA"
	}
	if !found {
		t.Errorf("status does not say shop.home.lan uses a cluster CA certificate: %+v", n1.status(context.Background()).Ingress)
	}
}
