// Package pki is skiff's cluster CA: it creates the CA on the first node, issues node
// certificates (used for mutual TLS on Raft and between agents' APIs), and makes and checks
// join tokens. Join tokens pin the CA by its fingerprint, so a joining node trusts the
// cluster it meant to join and nothing else. Only the standard library's crypto is used.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of issued certificates. NotBefore is backdated so a node whose clock is a bit
// behind still accepts a fresh certificate.
const (
	CAValidity    = 10 * 365 * 24 * time.Hour
	NodeValidity  = 365 * 24 * time.Hour
	ClockSkewSlop = 24 * time.Hour
	// NodeOrg is the organisation of every node certificate; peers require it.
	NodeOrg = "skiff:nodes"
	// AdminOrg is the organisation of admin client certificates (the CLI).
	AdminOrg = "skiff:admins"
)

// Errors; check with errors.Is.
var (
	ErrBadToken     = errors.New("invalid join token")
	ErrExpiredToken = errors.New("join token expired")
	ErrNoCA         = errors.New("no cluster CA in the data dir")
)

// Files in a node's pki directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// CA is the cluster certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte
}

// NewCA creates a CA for a cluster.
func NewCA(cluster string) (*CA, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "skiff cluster CA " + cluster, Organization: []string{"skiff"}},
		NotBefore:             now.Add(-ClockSkewSlop),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key, KeyPEM: keyPEM}, nil
}

// ParseCA reads a CA from PEM; keyPEM may be nil for a CA that can verify but not sign.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	ca := &CA{Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM}
	if keyPEM != nil {
		if ca.Key, err = parseKey(keyPEM); err != nil {
			return nil, fmt.Errorf("ca key: %w", err)
		}
	}
	return ca, nil
}

// Fingerprint is the SHA-256 of the CA certificate, hex, as join tokens carry it.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint of any certificate.
func Fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// Pool returns a cert pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// NewKeyAndCSR makes a private key and a certificate request for a node or admin.
func NewKeyAndCSR(name string) (keyPEM, csrPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, pemBlock("CERTIFICATE REQUEST", der), nil
}

// Sign issues a certificate for a CSR. The subject is set by the CA (never taken from the
// request): CommonName = name, Organization = org. ips and dns become SANs.
func (ca *CA) Sign(csrPEM []byte, name, org string, ips []net.IP, dns []string, validity time.Duration) ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("this node holds no CA key and cannot sign certificates")
	}
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("certificate request is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{org}},
		NotBefore:    now.Add(-ClockSkewSlop),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

// Verify checks that a certificate chain was issued by this CA (for any name: peers are
// identified by their subject, not by the address they were dialled at).
func (ca *CA) Verify(c *x509.Certificate, usage x509.ExtKeyUsage) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		var unk x509.UnknownAuthorityError
		if errors.As(err, &unk) {
			return fmt.Errorf("certificate %q was issued by another cluster's CA (%s), not this cluster's: %w", c.Subject.CommonName, c.Issuer.CommonName, err)
		}
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return fmt.Errorf("certificate %q is expired or not yet valid (valid %s to %s, this node's clock says %s): %w",
				c.Subject.CommonName, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), time.Now().Format(time.RFC3339), err)
		}
		return err
	}
	return nil
}

// Identity is the verified subject of a peer certificate.
type Identity struct {
	Name string
	Org  string
}

// PeerIdentity verifies a TLS peer's certificate against the CA and returns who it is.
func (ca *CA) PeerIdentity(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("no client certificate")
	}
	c := cs.PeerCertificates[0]
	if err := ca.Verify(c, x509.ExtKeyUsageClientAuth); err != nil {
		return Identity{}, err
	}
	id := Identity{Name: c.Subject.CommonName}
	if len(c.Subject.Organization) > 0 {
		id.Org = c.Subject.Organization[0]
	}
	return id, nil
}

// KeyPair is a certificate with its key, ready for TLS.
type KeyPair struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
	Leaf            *x509.Certificate
}

// ParseKeyPair loads a certificate and key.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	c.Leaf = leaf
	return &KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, TLS: c, Leaf: leaf}, nil
}

// ExpiresWithin reports whether the certificate expires within d.
func (kp *KeyPair) ExpiresWithin(d time.Duration) bool { return time.Until(kp.Leaf.NotAfter) < d }

// ServerTLS is the TLS config of a node's listeners. With requireClient every client must
// present a certificate from the CA (Raft); otherwise one is verified if given (the API,
// where the CLI may authenticate with a token instead).
func ServerTLS(ca *CA, kp func() *KeyPair, requireClient bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: auth,
		ClientCAs:  ca.Pool(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &kp().TLS, nil
		},
	}
}

// ClientTLS is the TLS config a node uses to dial peers: it presents its node certificate
// and accepts any server certificate issued by the CA to a node.
func ClientTLS(ca *CA, kp func() *KeyPair) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &kp().TLS, nil
		},
		// Peers are dialled by address and identified by subject: verify the chain, not
		// the host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer sent no certificate")
			}
			return ca.Verify(cs.PeerCertificates[0], x509.ExtKeyUsageServerAuth)
		},
	}
}

// PinnedTLS trusts exactly the CA whose fingerprint a join token carries: a joining node
// has no CA yet, and must not trust anything else.
func PinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			chain := cs.PeerCertificates
			if len(chain) < 2 {
				return errors.New("server sent no CA certificate to check the join token's pin against")
			}
			root := chain[len(chain)-1]
			if subtle.ConstantTimeCompare([]byte(Fingerprint(root)), []byte(fingerprint)) != 1 {
				return fmt.Errorf("server's cluster CA %s does not match the join token (%s...): wrong cluster or tampered connection", Fingerprint(root)[:16], fingerprint[:min(16, len(fingerprint))])
			}
			pool := x509.NewCertPool()
			pool.AddCert(root)
			_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}

// ChainWithCA makes a TLS certificate that also sends the CA, so joining nodes can check
// the token's pin.
func ChainWithCA(kp *KeyPair, ca *CA) tls.Certificate {
	c := kp.TLS
	c.Certificate = append(append([][]byte(nil), c.Certificate...), ca.Cert.Raw)
	return c
}

// --- join tokens ---

// TokenPrefix starts every join token: skiff1.<ca fingerprint>.<id>.<secret>.
const TokenPrefix = "skiff1"

// JoinToken is a parsed join token.
type JoinToken struct {
	CAFingerprint string
	ID            string // public part, names the token in the cluster state
	Secret        string
}

// String renders the token for users.
func (t JoinToken) String() string {
	return strings.Join([]string{TokenPrefix, t.CAFingerprint, t.ID, t.Secret}, ".")
}

// NewJoinToken makes a token for a CA.
func NewJoinToken(ca *CA) JoinToken {
	return JoinToken{CAFingerprint: ca.Fingerprint(), ID: randHex(4), Secret: randHex(16)}
}

// ParseJoinToken reads a token.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix || len(parts[1]) != 64 || parts[2] == "" || len(parts[3]) != 32 {
		return JoinToken{}, fmt.Errorf("%w: expected %s.<ca-sha256>.<id>.<secret> as printed by the first node or `skiff token create`", ErrBadToken, TokenPrefix)
	}
	return JoinToken{CAFingerprint: parts[1], ID: parts[2], Secret: parts[3]}, nil
}

// SecretHash is what the cluster stores of a token's secret.
func SecretHash(secret string) string {
	h := sha256.Sum256([]byte("skiff-join-token:" + secret))
	return hex.EncodeToString(h[:])
}

// CheckSecret compares a presented secret with a stored hash in constant time.
func CheckSecret(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(SecretHash(secret)), []byte(hash)) == 1
}

// RandomToken returns a random hex string of n bytes (admin tokens).
func RandomToken(n int) string { return randHex(n) }

// --- files ---

// Dir holds a node's PKI files.
type Dir string

func (d Dir) path(f string) string { return filepath.Join(string(d), f) }

// Exists reports whether the node has its certificates (it joined or bootstrapped before).
func (d Dir) Exists() bool {
	_, err := os.Stat(d.path(NodeCertFile))
	return err == nil
}

// Write stores PEM data with owner-only permissions, atomically.
func (d Dir) Write(name string, data []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	tmp := d.path("." + name + ".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.path(name))
}

// Read reads one file.
func (d Dir) Read(name string) ([]byte, error) { return os.ReadFile(d.path(name)) }

// LoadCA reads the CA (with its key when present).
func (d Dir) LoadCA() (*CA, error) {
	certPEM, err := d.Read(CACertFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoCA
	}
	if err != nil {
		return nil, err
	}
	keyPEM, err := d.Read(CAKeyFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return ParseCA(certPEM, keyPEM)
}

// LoadNode reads the node's key pair.
func (d Dir) LoadNode() (*KeyPair, error) {
	c, err := d.Read(NodeCertFile)
	if err != nil {
		return nil, err
	}
	k, err := d.Read(NodeKeyFile)
	if err != nil {
		return nil, err
	}
	return ParseKeyPair(c, k)
}

// --- helpers ---

func newKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pemBlock("PRIVATE KEY", der), nil
}

func parseKey(p []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}
	return x509.ParseCertificate(b.Bytes)
}

func pemBlock(t string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: t, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
