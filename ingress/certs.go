package ingress

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultCertName is the name on the certificate served to clients that send no SNI or
// name a host no Ingress serves.
const DefaultCertName = "skiff-ingress-default.invalid"

// Certificate sources, as Status reports them.
const (
	SourceClusterCA = "cluster CA"
	sourceSecret    = "secret "
)

// cert is a certificate ready to serve, with its leaf parsed.
type cert struct {
	tls    *tls.Certificate
	leaf   *x509.Certificate
	source string // "secret ns/name" or SourceClusterCA
}

// certs selects a certificate by SNI; immutable once published.
type certs struct {
	exact map[string]*cert
	wild  map[string]*cert // "foo.com" for *.foo.com
	def   *cert
}

func (c *certs) lookup(name string) (*cert, bool) {
	if e := c.exact[name]; e != nil {
		return e, true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if e := c.wild[name[i+1:]]; e != nil {
			return e, true
		}
	}
	return c.def, false
}

// modern TLS 1.2 suites: forward secret AEADs only (TLS 1.3 suites are not configurable).
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// getCertificate serves the certificate of the current table for the client's SNI.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := s.tab.Load()
	if t == nil || t.certs.def == nil && len(t.certs.exact) == 0 && len(t.certs.wild) == 0 {
		return nil, errors.New("no certificate: this node has not synced the cluster state yet")
	}
	name := hello.ServerName
	if name == "" {
		if t.certs.def == nil {
			return nil, errNoDefaultCert
		}
		return t.certs.def.tls, nil
	}
	name = normalHost(name)
	if c, ok := t.certs.lookup(name); ok {
		return c.tls, nil
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		s.stats.invalidSNI.note(name)
		return nil, fmt.Errorf("invalid SNI %q: %s", name, msgs[0])
	}
	s.stats.unknownSNI.note(name)
	if t.certs.def == nil {
		return nil, errNoDefaultCert
	}
	return t.certs.def.tls, nil
}

var errNoDefaultCert = errors.New("no default certificate (the cluster CA could not issue one)")

// secretCert parses a kubernetes.io/tls Secret, with messages that say what to fix.
func secretCert(sec *corev1.Secret) (*cert, error) {
	crt, ok := sec.Data[corev1.TLSCertKey]
	if !ok || len(crt) == 0 {
		return nil, fmt.Errorf("has no %s", corev1.TLSCertKey)
	}
	key, ok := sec.Data[corev1.TLSPrivateKeyKey]
	if !ok || len(key) == 0 {
		return nil, fmt.Errorf("has no %s", corev1.TLSPrivateKeyKey)
	}
	b, _ := pem.Decode(crt)
	if b == nil {
		return nil, fmt.Errorf("%s is not PEM", corev1.TLSCertKey)
	}
	if b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s starts with a PEM %q block, want CERTIFICATE", corev1.TLSCertKey, b.Type)
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed certificate: %v", corev1.TLSCertKey, err)
	}
	if kb, _ := pem.Decode(key); kb == nil {
		return nil, fmt.Errorf("%s is not PEM", corev1.TLSPrivateKeyKey)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("%s does not match the certificate in %s", corev1.TLSPrivateKeyKey, corev1.TLSCertKey)
		}
		return nil, fmt.Errorf("%s/%s: %v", corev1.TLSCertKey, corev1.TLSPrivateKeyKey, strings.TrimPrefix(err.Error(), "tls: "))
	}
	pair.Leaf = leaf
	return &cert{tls: &pair, leaf: leaf}, nil
}

// validAt checks a certificate's validity period.
func validAt(leaf *x509.Certificate, now time.Time) error {
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// parsedSecret is a cached secretCert result.
type parsedSecret struct {
	c   *cert
	err error
}

// covers reports whether a certificate is valid for a rule host (a wildcard host needs a
// matching wildcard name).
func covers(leaf *x509.Certificate, host string) bool {
	if strings.HasPrefix(host, "*.") {
		return leaf.VerifyHostname("wildcard-check"+host[1:]) == nil
	}
	return leaf.VerifyHostname(host) == nil
}

// secretDigest identifies a Secret's certificate material, to reuse a parsed one.
func secretDigest(sec *corev1.Secret) [32]byte {
	h := sha256.New()
	h.Write(sec.Data[corev1.TLSCertKey])
	h.Write([]byte{0})
	h.Write(sec.Data[corev1.TLSPrivateKeyKey])
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// issued is a certificate from the cluster CA, cached across tables.
type issued struct {
	c   *cert
	err error
	at  time.Time
}

// fresh reports whether an issued certificate can still be served without renewal: more
// than a third of its life is left.
func (i *issued) fresh(now time.Time) bool {
	if i.err != nil {
		return now.Sub(i.at) < time.Minute // retry a failed issue after a minute
	}
	l := i.c.leaf
	return l.NotAfter.Sub(now) > l.NotAfter.Sub(l.NotBefore)/3
}

// issue returns the cluster CA certificate for a host, from the cache or Config.Issue.
// Called with s.mu held.
func (s *Server) issue(host string, now time.Time) (*cert, error) {
	if i, ok := s.issued[host]; ok && i.fresh(now) {
		return i.c, i.err
	}
	if s.cfg.Issue == nil {
		return nil, errors.New("no certificate: the cluster CA is not available on this node")
	}
	i := &issued{at: now}
	tc, err := s.cfg.Issue([]string{host})
	if err == nil && (tc == nil || len(tc.Certificate) == 0) {
		err = errors.New("issued an empty certificate")
	}
	if err == nil && tc.Leaf == nil {
		tc.Leaf, err = x509.ParseCertificate(tc.Certificate[0])
	}
	if err != nil {
		i.err = fmt.Errorf("cluster CA could not issue a certificate: %w", err)
	} else {
		i.c = &cert{tls: tc, leaf: tc.Leaf, source: SourceClusterCA}
	}
	s.issued[host] = i
	return i.c, i.err
}
