package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/pki"
	"github.com/skiffhq/skiff/state"
)

// Cluster-level paths of the API.
const (
	PathJoin      = "/join/v1"             // a new node asks to join (join token)
	PathMembers   = "/internal/v1/members" // the leader adds or removes a Raft member (node certificate)
	PathTokens    = "/api/v1/tokens"       // create a join token (admin)
	PathNodes     = "/api/v1/nodes"        // the members as `skiff nodes` shows them
	PathNodeOp    = "/api/v1/nodes/"       // + name/cordon|uncordon|drain|remove
	SystemNS      = "skiff-system"         // namespace of skiff's own objects in the state
	tokenPrefix   = "join-token-"          // Secret name prefix of join tokens
	adminTokenKey = "admin-token"          // file in the pki dir
	AdminConfig   = "admin.yaml"           // CLI config written to the data dir
	maxClockSkew  = time.Hour              // joins from a node whose clock is further off are refused
	warnClockSkew = 5 * time.Second
)

// ClientConfig is what the CLI needs to talk to a cluster: written by every agent to
// <data-dir>/admin.yaml (owner-only), read by the CLI from --config / SKIFF_CONFIG.
type ClientConfig struct {
	Server string `json:"server"`
	CA     string `json:"certificateAuthority"` // PEM
	Token  string `json:"token"`                // admin bearer token
}

// cluster holds this node's credentials. The node certificate is swapped atomically when
// renewed; every TLS config reads it through kp().
type cluster struct {
	dir        pki.Dir
	ca         *pki.CA
	mu         sync.RWMutex
	node       *pki.KeyPair
	adminToken string
	dataKey    []byte // seals the Raft log and snapshots
	cipher     *logCipher
	// firstToken is the join token made when this node bootstrapped the cluster; the
	// leader stores its hash in the state once it leads.
	firstToken *pki.JoinToken
}

func (c *cluster) kp() *pki.KeyPair {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.node
}

// joinRequest is what a joining node sends (the token goes in the Authorization header).
type joinRequest struct {
	Name    string    `json:"name"`
	CSR     string    `json:"csr"`
	Raft    string    `json:"raft"` // the Raft address the joining node will listen on
	API     string    `json:"api"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"` // its clock, to catch skew before it causes trouble
}

// joinResponse carries the cluster's credentials to a node whose token checked out.
type joinResponse struct {
	CACert     string   `json:"caCert"`
	CAKey      string   `json:"caKey"`
	NodeCert   string   `json:"nodeCert"`
	AdminToken string   `json:"adminToken"`
	DataKey    string   `json:"dataKey"`
	Leader     string   `json:"leader"`
	Warnings   []string `json:"warnings,omitempty"`
}

// memberRequest asks the leader to change Raft membership.
type memberRequest struct {
	Name   string `json:"name"`
	Raft   string `json:"raft"`
	Remove bool   `json:"remove,omitempty"`
}

// setupCluster loads this node's credentials, or creates them: by bootstrapping a new
// cluster, or by joining one with a token. It reports whether a new cluster was made.
func (a *Agent) setupCluster(ctx context.Context) (bootstrapped bool, err error) {
	dir := pki.Dir(filepath.Join(a.cfg.DataDir, "pki"))
	c := &cluster{dir: dir}
	a.cluster = c
	switch {
	case dir.Exists():
		if a.cfg.Join != "" {
			a.log.Info("already a member (credentials in the data dir); --join ignored", "dir", string(dir))
		}
		if c.ca, err = dir.LoadCA(); err != nil {
			return false, fmt.Errorf("cluster CA in %s: %w", dir, err)
		}
		if c.node, err = dir.LoadNode(); err != nil {
			return false, fmt.Errorf("node certificate in %s: %w", dir, err)
		}
		tok, err := dir.Read(adminTokenKey)
		if err != nil {
			return false, fmt.Errorf("admin token in %s: %w", dir, err)
		}
		c.adminToken = string(bytes.TrimSpace(tok))
		kb, err := dir.Read(dataKeyFile)
		if err != nil {
			return false, fmt.Errorf("cluster data key in %s: %w", dir, err)
		}
		if c.dataKey, err = decodeKey(string(kb)); err != nil {
			return false, fmt.Errorf("cluster data key in %s: %w", dir, err)
		}
		if err := a.renewIfExpiring(); err != nil {
			return false, err
		}
	case a.cfg.Join != "":
		if err := a.join(ctx); err != nil {
			return false, err
		}
	default:
		if c.ca, err = pki.NewCA(a.cfg.Name); err != nil {
			return false, err
		}
		if err := dir.Write(pki.CACertFile, c.ca.CertPEM); err != nil {
			return false, err
		}
		if err := dir.Write(pki.CAKeyFile, c.ca.KeyPEM); err != nil {
			return false, err
		}
		if err := a.issueOwnCert(); err != nil {
			return false, err
		}
		c.adminToken = pki.RandomToken(24)
		if err := dir.Write(adminTokenKey, []byte(c.adminToken+"\n")); err != nil {
			return false, err
		}
		c.dataKey = newDataKey()
		if err := dir.Write(dataKeyFile, []byte(encodeKey(c.dataKey)+"\n")); err != nil {
			return false, err
		}
		tok := pki.NewJoinToken(c.ca)
		c.firstToken = &tok
		bootstrapped = true
	}
	if c.cipher, err = newLogCipher(c.dataKey); err != nil {
		return false, err
	}
	return bootstrapped, a.writeClientConfig()
}

// issueOwnCert signs a fresh certificate for this node with the CA it holds.
func (a *Agent) issueOwnCert() error {
	c := a.cluster
	key, csr, err := pki.NewKeyAndCSR(a.cfg.Name)
	if err != nil {
		return err
	}
	ips, dns := a.certSANs(a.cfg.AdvertiseIP())
	cert, err := c.ca.Sign(csr, a.cfg.Name, pki.NodeOrg, ips, dns, pki.NodeValidity)
	if err != nil {
		return err
	}
	kp, err := pki.ParseKeyPair(cert, key)
	if err != nil {
		return err
	}
	if err := c.dir.Write(pki.NodeKeyFile, key); err != nil {
		return err
	}
	if err := c.dir.Write(pki.NodeCertFile, cert); err != nil {
		return err
	}
	c.mu.Lock()
	c.node = kp
	c.mu.Unlock()
	return nil
}

// renewIfExpiring renews the node certificate when a third of its life is left (every
// node holds the CA, so it can do so itself, even cut off from the others).
func (a *Agent) renewIfExpiring() error {
	if !a.cluster.kp().ExpiresWithin(pki.NodeValidity / 3) {
		return nil
	}
	a.log.Info("renewing this node's certificate", "expires", a.cluster.kp().Leaf.NotAfter)
	return a.issueOwnCert()
}

func (a *Agent) certSANs(advertise string) ([]net.IP, []string) {
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(advertise); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	return ips, []string{a.cfg.Name, "localhost"}
}

// writeClientConfig writes <data-dir>/admin.yaml for the CLI on this machine.
func (a *Agent) writeClientConfig() error {
	host, port, _ := net.SplitHostPort(a.cfg.API)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	b, err := yaml.Marshal(ClientConfig{
		Server: "https://" + net.JoinHostPort(host, port),
		CA:     string(a.cluster.ca.CertPEM), Token: a.cluster.adminToken,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(a.cfg.DataDir, AdminConfig)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (a *Agent) joinToken() (string, error) {
	if a.cfg.Token != "" {
		return a.cfg.Token, nil
	}
	if a.cfg.TokenFile == "" {
		return "", errors.New("joining needs a token: --token-file FILE (or --token); `skiff token create` on a member prints one")
	}
	b, err := os.ReadFile(a.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// join asks a member for credentials with the join token. The connection trusts exactly
// the CA the token names.
func (a *Agent) join(ctx context.Context) error {
	raw, err := a.joinToken()
	if err != nil {
		return err
	}
	tok, err := pki.ParseJoinToken(raw)
	if err != nil {
		return err
	}
	key, csr, err := pki.NewKeyAndCSR(a.cfg.Name)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(joinRequest{Name: a.cfg.Name, CSR: string(csr), Raft: a.cfg.RaftAdvertise(),
		API: a.cfg.APIAdvertise(), Version: a.version, Time: time.Now()})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedTLS(tok.CAFingerprint)}}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.cfg.Join, "/")+PathJoin, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+raw)
		req.Header.Set("Content-Type", "application/json")
		resp, err = client.Do(req)
		if err == nil && resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
		if err == nil {
			msg := readAPIError(resp)
			resp.Body.Close()
			err = errors.New(msg)
		}
		// The member may be starting or electing a leader: retry a while, then give up.
		if attempt >= 30 || strings.Contains(err.Error(), "does not match the join token") {
			return fmt.Errorf("join %s: %w", a.cfg.Join, err)
		}
		a.log.Warn("join: retrying", "member", a.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("join %s refused: %s", a.cfg.Join, readAPIError(resp))
	}
	var jr joinResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&jr); err != nil {
		return fmt.Errorf("join %s: %w", a.cfg.Join, err)
	}
	for _, w := range jr.Warnings {
		a.log.Warn("join: " + w)
	}
	c := a.cluster
	if c.ca, err = pki.ParseCA([]byte(jr.CACert), []byte(jr.CAKey)); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if c.ca.Fingerprint() != tok.CAFingerprint {
		return fmt.Errorf("join: the member sent a CA that does not match the token")
	}
	if c.node, err = pki.ParseKeyPair([]byte(jr.NodeCert), key); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	c.adminToken = jr.AdminToken
	if c.dataKey, err = decodeKey(jr.DataKey); err != nil || len(c.dataKey) != 32 {
		return fmt.Errorf("join: the member sent no valid cluster data key")
	}
	for name, data := range map[string][]byte{pki.CACertFile: c.ca.CertPEM, pki.CAKeyFile: c.ca.KeyPEM,
		pki.NodeKeyFile: key, pki.NodeCertFile: []byte(jr.NodeCert), adminTokenKey: []byte(jr.AdminToken + "\n"),
		dataKeyFile: []byte(jr.DataKey + "\n")} {
		if err := c.dir.Write(name, data); err != nil {
			return err
		}
	}
	a.log.Info("joined the cluster", "via", a.cfg.Join, "leader", jr.Leader)
	return nil
}

// handleJoin admits a new node: it checks the join token once, issues the node's
// certificate and asks the leader to add it to Raft.
func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok, err := pki.ParseJoinToken(raw)
	if err != nil {
		writeErr(w, http.StatusUnauthorized, "%v", err)
		return
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "join request: %v", err)
		return
	}
	s := a.store.State()
	if err := checkJoinToken(s, tok, time.Now()); err != nil {
		a.log.Warn("join refused", "node", req.Name, "from", r.RemoteAddr, "err", err)
		writeErr(w, http.StatusUnauthorized, "%v", err)
		return
	}
	if msgs := validation.IsDNS1123Subdomain(req.Name); len(msgs) > 0 {
		writeErr(w, http.StatusBadRequest, "node name %q: %s", req.Name, strings.Join(msgs, "; "))
		return
	}
	host, _, err := net.SplitHostPort(req.Raft)
	if err != nil || net.ParseIP(host) == nil {
		writeErr(w, http.StatusBadRequest, "raft address %q is not ip:port", req.Raft)
		return
	}
	if msg := a.nameClash(req.Name, req.Raft); msg != "" {
		writeErr(w, http.StatusConflict, "%s", msg)
		return
	}
	var warnings []string
	if skew := time.Since(req.Time); skew > maxClockSkew || skew < -maxClockSkew {
		writeErr(w, http.StatusBadRequest, "node %s's clock is %s off from %s's: fix the clock (NTP) before joining", req.Name, skew.Round(time.Second), a.cfg.Name)
		return
	} else if skew > warnClockSkew || skew < -warnClockSkew {
		warnings = append(warnings, fmt.Sprintf("this node's clock is %s off from %s's; keep clocks in sync (NTP)", skew.Round(time.Second), a.cfg.Name))
	}
	ips, dns := a.certSANs(host)
	dns[0] = req.Name
	cert, err := a.cluster.ca.Sign([]byte(req.CSR), req.Name, pki.NodeOrg, ips, dns, pki.NodeValidity)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "sign certificate: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if err := a.changeMember(ctx, memberRequest{Name: req.Name, Raft: req.Raft}); err != nil {
		writeErr(w, http.StatusServiceUnavailable, "add %s to the cluster: %v", req.Name, err)
		return
	}
	leader, _ := a.store.Leader()
	a.log.Info("node joined", "node", req.Name, "raft", req.Raft, "version", req.Version)
	writeJSON(w, http.StatusOK, joinResponse{
		CACert: string(a.cluster.ca.CertPEM), CAKey: string(a.cluster.ca.KeyPEM), NodeCert: string(cert),
		AdminToken: a.cluster.adminToken, DataKey: encodeKey(a.cluster.dataKey), Leader: leader, Warnings: warnings,
	})
}

// nameClash explains why a name cannot join, or returns "".
func (a *Agent) nameClash(name, raftAddr string) string {
	cfg := a.raft.GetConfiguration()
	if cfg.Error() != nil {
		return ""
	}
	for _, srv := range cfg.Configuration().Servers {
		if string(srv.ID) == name {
			return fmt.Sprintf("a member named %q already exists (at %s): give the new node another --name, or remove the old one first with `skiff node remove %s`", name, srv.Address, name)
		}
		if string(srv.Address) == raftAddr {
			return fmt.Sprintf("member %q already uses Raft address %s", srv.ID, raftAddr)
		}
	}
	return ""
}

// checkJoinToken finds the token in the state and checks its secret and expiry.
func checkJoinToken(s *state.State, tok pki.JoinToken, now time.Time) error {
	o, ok := s.Cluster.Get(state.Key{Kind: "Secret", Namespace: SystemNS, Name: tokenPrefix + tok.ID})
	if !ok {
		return fmt.Errorf("%w: unknown token (create one with `skiff token create`)", pki.ErrBadToken)
	}
	sec := o.(*corev1.Secret)
	if !pki.CheckSecret(tok.Secret, string(sec.Data["hash"])) {
		return fmt.Errorf("%w: wrong secret", pki.ErrBadToken)
	}
	if exp := string(sec.Data["expiration"]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || now.After(t) {
			return fmt.Errorf("%w (at %s): create a new one with `skiff token create`", pki.ErrExpiredToken, exp)
		}
	}
	return nil
}

// tokenSecret is how a join token lives in the state: only its hash, never the secret.
func tokenSecret(tok pki.JoinToken, ttl time.Duration, now time.Time) *corev1.Secret {
	data := map[string][]byte{"hash": []byte(pki.SecretHash(tok.Secret))}
	if ttl > 0 {
		data["expiration"] = []byte(now.Add(ttl).UTC().Format(time.RFC3339))
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: SystemNS, Name: tokenPrefix + tok.ID, Labels: map[string]string{"skiff.io/join-token": "true"}},
		Type:       "skiff.io/join-token",
		Data:       data,
	}
}

// createToken stores a new join token (its hash) in the state and returns it.
func (a *Agent) createToken(ctx context.Context, ttl time.Duration) (pki.JoinToken, error) {
	tok := pki.NewJoinToken(a.cluster.ca)
	err := a.store.Apply(ctx, &state.Command{Put: state.Wrap[manifest.Object](tokenSecret(tok, ttl, time.Now()))})
	return tok, err
}

// storeFirstToken records the token made at bootstrap once this node leads, and prints it.
func (a *Agent) storeFirstToken(ctx context.Context) {
	tok := a.cluster.firstToken
	if tok == nil {
		return
	}
	if _, ok := a.store.State().Cluster.Get(state.Key{Kind: "Secret", Namespace: SystemNS, Name: tokenPrefix + tok.ID}); !ok {
		if err := a.store.Apply(ctx, &state.Command{Put: state.Wrap[manifest.Object](tokenSecret(*tok, 0, time.Now()))}); err != nil {
			a.log.Error("store the first join token", "err", err)
			return
		}
	}
	path := filepath.Join(a.cfg.DataDir, "pki", "join-token")
	_ = a.cluster.dir.Write("join-token", []byte(tok.String()+"\n"))
	a.cluster.firstToken = nil
	a.log.Info("new cluster created; join other nodes with --join "+a.cfg.APIAdvertise()+" --token-file FILE holding the token in "+path, "token", tok.String())
}

// changeMember adds or removes a Raft member, on the leader (forwarded there when needed).
func (a *Agent) changeMember(ctx context.Context, m memberRequest) error {
	if !a.store.IsLeader() {
		id, _ := a.store.Leader()
		if id == "" {
			return ErrNoLeader
		}
		base, err := a.peers.apiURL(id)
		if err != nil {
			return err
		}
		return a.peers.postJSON(ctx, base, PathMembers, m, nil)
	}
	return a.changeMemberLocal(m)
}

// changeMemberLocal changes membership on the leader. Up to MaxVoters members vote; the
// rest replicate as non-voters, so Raft stays fast on big fleets.
func (a *Agent) changeMemberLocal(m memberRequest) error {
	cf := a.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	if m.Remove {
		return a.raft.RemoveServer(raft.ServerID(m.Name), 0, 10*time.Second).Error()
	}
	voters := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < a.cfg.MaxVoters {
		return a.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.Raft), 0, 10*time.Second).Error()
	}
	return a.raft.AddNonvoter(raft.ServerID(m.Name), raft.ServerAddress(m.Raft), 0, 10*time.Second).Error()
}

// handleMembers is the leader's end of changeMember (node certificates only).
func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	var m memberRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !a.store.IsLeader() {
		writeErr(w, http.StatusMisdirectedRequest, "%v", ErrNotLeader)
		return
	}
	if err := a.changeMemberLocal(m); err != nil {
		writeErr(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// promoteVoters keeps MaxVoters voters when members leave: the leader promotes reachable
// non-voters (the oldest first).
func (a *Agent) promoteVoters() {
	cf := a.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	voters := 0
	var candidates []raft.Server
	for _, s := range cf.Configuration().Servers {
		switch s.Suffrage {
		case raft.Voter:
			voters++
		case raft.Nonvoter:
			if a.health.ready(string(s.ID)) {
				candidates = append(candidates, s)
			}
		}
	}
	for _, s := range candidates {
		if voters >= a.cfg.MaxVoters {
			return
		}
		if err := a.raft.AddVoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
			a.log.Warn("promote to voter", "node", s.ID, "err", err)
			return
		}
		a.log.Info("promoted to voter", "node", s.ID)
		voters++
	}
}

// checkAdmin authenticates API callers: an admin bearer token, or a certificate issued by
// the cluster CA (nodes forwarding, or admin client certificates).
func (a *Agent) checkAdmin(r *http.Request) error {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(a.cluster.adminToken)) == 1 {
			return nil
		}
		return errors.New("wrong admin token")
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := a.cluster.ca.PeerIdentity(r.TLS)
		if err != nil {
			return err
		}
		if id.Org == pki.NodeOrg || id.Org == pki.AdminOrg {
			return nil
		}
		return fmt.Errorf("certificate %q is not a node's or an admin's", id.Name)
	}
	return errors.New("authentication required: use the token in <data-dir>/admin.yaml (skiff --config) or a cluster certificate")
}

// checkPeer authenticates another node (node certificate only).
func (a *Agent) checkPeer(r *http.Request) (string, error) {
	id, err := a.cluster.ca.PeerIdentity(r.TLS)
	if err != nil {
		return "", fmt.Errorf("only cluster members may call this: %w", err)
	}
	if id.Org != pki.NodeOrg {
		return "", fmt.Errorf("certificate %q is not a node's", id.Name)
	}
	return id.Name, nil
}

func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 24 * time.Hour, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n == 0 {
		return 0, nil
	}
	return time.ParseDuration(s)
}
