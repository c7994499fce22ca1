package ingress

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
)

// handshake connects with SNI sni (none when ""), returning the served chain.
func handshake(addr, sni string, cfg *tls.Config) (tls.ConnectionState, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.ServerName = sni
	cfg.InsecureSkipVerify = true // verified by the test, per case
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func TestTLSCertificateBySNI(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	year := now.Add(365 * 24 * time.Hour)
	shopCrt, shopKey := selfSigned(t, "shop", []string{"shop.example.com"}, now.Add(-time.Hour), year)
	wildCrt, wildKey := selfSigned(t, "wild", []string{"*.example.com"}, now.Add(-time.Hour), year)
	otherCrt, _ := selfSigned(t, "other", []string{"mismatch.example.org"}, now.Add(-time.Hour), year)
	_, otherKey := selfSigned(t, "other", []string{"mismatch.example.org"}, now.Add(-time.Hour), year)
	oldCrt, oldKey := selfSigned(t, "old", []string{"expired.example.org"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	wrongCrt, wrongKey := selfSigned(t, "wrong", []string{"other.org"}, now.Add(-time.Hour), year)
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "opaque"}, Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"password": []byte("x")}}

	w := newWorld(t)
	st := w.sync(
		tlsSecret("shop-tls", shopCrt, shopKey),
		tlsSecret("wild-tls", wildCrt, wildKey),
		tlsSecret("mismatch-tls", otherCrt, otherKey),
		tlsSecret("expired-tls", oldCrt, oldKey),
		tlsSecret("malformed-tls", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), shopKey),
		tlsSecret("notpem-tls", []byte("hello"), shopKey),
		tlsSecret("wrongname-tls", wrongCrt, wrongKey),
		opaque, service("web"), endpoints("web", "127.0.0.1:9"),
		ingress("web",
			rule("shop.example.com", "Prefix / web:80"),
			rule("*.example.com", "Prefix / web:80"),
			rule("plain.example.net", "Prefix / web:80"),
			rule("*.apps.example.net", "Prefix / web:80"),
			tlsFor("shop-tls", "shop.example.com"),
			tlsFor("wild-tls", "*.example.com"),
			tlsFor("", "plain.example.net")),
		ingress("bad",
			rule("mismatch.example.org", "Prefix / web:80"),
			rule("expired.example.org", "Prefix / web:80"),
			rule("malformed.example.org", "Prefix / web:80"),
			rule("notpem.example.org", "Prefix / web:80"),
			rule("wrongname.example.org", "Prefix / web:80"),
			rule("missing.example.org", "Prefix / web:80"),
			rule("opaque.example.org", "Prefix / web:80"),
			tlsFor("mismatch-tls", "mismatch.example.org"),
			tlsFor("expired-tls", "expired.example.org"),
			tlsFor("malformed-tls", "malformed.example.org"),
			tlsFor("notpem-tls", "notpem.example.org"),
			tlsFor("wrongname-tls", "wrongname.example.org"),
			tlsFor("nope", "missing.example.org"),
			tlsFor("opaque", "opaque.example.org")),
	)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(st)
	addr := s.HTTPSAddr()

	secretRoots := x509.NewCertPool()
	for _, p := range [][]byte{shopCrt, wildCrt} {
		secretRoots.AppendCertsFromPEM(p)
	}
	fromCA := func(cs tls.ConnectionState, name string) error {
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: ca.ca.Pool(), DNSName: name})
		return err
	}
	for _, tc := range []struct {
		sni       string
		wantNames []string // DNS names on the served leaf
		verify    string   // "secret" or "ca": the chain verifies for the SNI against that root
	}{
		{"shop.example.com", []string{"shop.example.com"}, "secret"},
		{"SHOP.example.com", []string{"shop.example.com"}, "secret"},
		{"bar.example.com", []string{"*.example.com"}, "secret"}, // wildcard certificate
		{"plain.example.net", []string{"plain.example.net"}, "ca"},
		{"x.apps.example.net", []string{"*.apps.example.net"}, "ca"},
		// Unusable secrets: the host still gets HTTPS, from the cluster CA.
		{"mismatch.example.org", []string{"mismatch.example.org"}, "ca"},
		{"expired.example.org", []string{"expired.example.org"}, "ca"},
		{"malformed.example.org", []string{"malformed.example.org"}, "ca"},
		{"notpem.example.org", []string{"notpem.example.org"}, "ca"},
		{"wrongname.example.org", []string{"wrongname.example.org"}, "ca"},
		{"missing.example.org", []string{"missing.example.org"}, "ca"},
		{"opaque.example.org", []string{"opaque.example.org"}, "ca"},
		// No SNI, or a host nobody serves: the default certificate.
		{"", []string{DefaultCertName}, ""},
		{"nobody.example.com.invalid", []string{DefaultCertName}, ""},
		{"a.b.example.com", []string{DefaultCertName}, ""}, // *.example.com covers one label
	} {
		cs, err := handshake(addr, tc.sni, nil)
		if err != nil {
			t.Errorf("handshake(%q): %v", tc.sni, err)
			continue
		}
		leaf := cs.PeerCertificates[0]
		if !slices.Equal(leaf.DNSNames, tc.wantNames) {
			t.Errorf("handshake(%q) served %v; want %v", tc.sni, leaf.DNSNames, tc.wantNames)
		}
		name := strings.ToLower(tc.sni)
		switch tc.verify {
		case "secret":
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: secretRoots, DNSName: name}); err != nil {
				t.Errorf("handshake(%q): the secret's certificate does not verify: %v", tc.sni, err)
			}
		case "ca":
			if err := fromCA(cs, name); err != nil {
				t.Errorf("handshake(%q): not a cluster CA certificate for the host: %v", tc.sni, err)
			}
		}
	}

	// Status: the source and expiry of each certificate, and what is wrong with each secret.
	sts := s.Status()
	for _, tc := range []struct {
		host, cert string
		problem    string // substring of one problem, "" for none
	}{
		{"shop.example.com", "secret default/shop-tls", ""},
		{"*.example.com", "secret default/wild-tls", ""},
		{"plain.example.net", SourceClusterCA, ""},
		{"*.apps.example.net", SourceClusterCA, ""},
		{"mismatch.example.org", SourceClusterCA, "TLS secret default/mismatch-tls of Ingress default/bad: tls.key does not match the certificate in tls.crt; serving a cluster CA certificate instead"},
		{"expired.example.org", SourceClusterCA, "TLS secret default/expired-tls of Ingress default/bad: certificate expired on " + oldCrtNotAfter(t, oldCrt)},
		{"malformed.example.org", SourceClusterCA, "TLS secret default/malformed-tls of Ingress default/bad: tls.crt: malformed certificate"},
		{"notpem.example.org", SourceClusterCA, "TLS secret default/notpem-tls of Ingress default/bad: tls.crt is not PEM"},
		{"wrongname.example.org", SourceClusterCA, "the certificate (for other.org) does not cover wrongname.example.org"},
		{"missing.example.org", SourceClusterCA, "TLS secret default/nope of Ingress default/bad: not found"},
		{"opaque.example.org", SourceClusterCA, `has no tls.crt (its type is "Opaque", not kubernetes.io/tls)`},
	} {
		hs := hostStatus(t, sts, tc.host)
		if hs.Certificate != tc.cert || hs.NotAfter.IsZero() {
			t.Errorf("Status(%s) certificate = %q, not after %v; want %q", tc.host, hs.Certificate, hs.NotAfter, tc.cert)
		}
		if tc.problem == "" && len(hs.Problems) > 0 {
			t.Errorf("Status(%s) problems = %q; want none", tc.host, hs.Problems)
		}
		if tc.problem != "" && !slices.ContainsFunc(hs.Problems, func(p string) bool { return strings.Contains(p, tc.problem) }) {
			t.Errorf("Status(%s) problems = %q; want one containing %q", tc.host, hs.Problems, tc.problem)
		}
	}
	if hs := hostStatus(t, sts, "shop.example.com"); !hs.Redirect {
		t.Errorf("Status(shop.example.com).Redirect = false; want true (listed in spec.tls)")
	}
	if hs := hostStatus(t, sts, "*.apps.example.net"); hs.Redirect {
		t.Errorf("Status(*.apps.example.net).Redirect = true; want false (not in spec.tls)")
	}
	if def := hostStatus(t, sts, DefaultHost); def.Certificate != SourceClusterCA {
		t.Errorf("Status(*) certificate = %q; want the cluster CA's default", def.Certificate)
	}

	// Issued certificates are kept: another snapshot issues nothing new.
	n := ca.issued.Load()
	s.Update(w.put(pod("p", "x", "127.0.0.1:1", true)))
	if got := ca.issued.Load(); got != n {
		t.Errorf("a new snapshot issued %d more certificates; want 0", got-n)
	}

	// A fixed secret takes over from the cluster CA with the next snapshot.
	fixedCrt, fixedKey := selfSigned(t, "fixed", []string{"mismatch.example.org"}, now.Add(-time.Hour), year)
	objs := slices.DeleteFunc(append([]manifest.Object(nil), w.git...), func(o manifest.Object) bool { return o.GetName() == "mismatch-tls" })
	s.Update(w.sync(append(objs, tlsSecret("mismatch-tls", fixedCrt, fixedKey))...))
	cs, err := handshake(addr, "mismatch.example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.PeerCertificates[0].Subject.CommonName; got != "fixed" {
		t.Errorf("after the fix, mismatch.example.org serves %q; want the fixed secret", got)
	}
	if hs := hostStatus(t, s.Status(), "mismatch.example.org"); hs.Certificate != "secret default/mismatch-tls" || len(hs.Problems) > 0 {
		t.Errorf("after the fix, Status = %q %q", hs.Certificate, hs.Problems)
	}
}

func oldCrtNotAfter(t *testing.T, p []byte) string {
	b, _ := pem.Decode(p)
	return must(x509.ParseCertificate(b.Bytes)).NotAfter.UTC().Format(time.RFC3339)
}

// Protocol versions and suites: TLS 1.2+ with forward-secret AEADs, h2 by ALPN; invalid
// and unknown SNI are reported in Status.
func TestTLSProtocolsAndSNIProblems(t *testing.T) {
	ca := newTestCA(t)
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", Issue: ca.issue, DefaultClass: true})
	s.Update(w.sync(ingress("web", rule("shop.example.com", "Prefix / web:80"))))
	addr := s.HTTPSAddr()
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		sni     string
		wantErr bool
		check   func(tls.ConnectionState) string
	}{
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, "shop.example.com", false,
			func(cs tls.ConnectionState) string {
				return want(cs.Version == tls.VersionTLS13, "version %x", cs.Version)
			}},
		{"TLS 1.2 AEAD", &tls.Config{MaxVersion: tls.VersionTLS12}, "shop.example.com", false,
			func(cs tls.ConnectionState) string {
				return want(cs.Version == tls.VersionTLS12 && slices.Contains(tls12Suites, cs.CipherSuite), "suite %s", tls.CipherSuiteName(cs.CipherSuite))
			}},
		{"h2 by ALPN", &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, "shop.example.com", false,
			func(cs tls.ConnectionState) string {
				return want(cs.NegotiatedProtocol == "h2", "ALPN %q", cs.NegotiatedProtocol)
			}},
		{"TLS 1.1 refused", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, "shop.example.com", true, nil},
		{"CBC suites refused", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}, "shop.example.com", true, nil},
		{"invalid SNI refused", nil, "under_score.example.com", true, nil},
		{"unknown SNI gets the default", nil, "nobody.example.com", false,
			func(cs tls.ConnectionState) string {
				return want(slices.Equal(cs.PeerCertificates[0].DNSNames, []string{DefaultCertName}), "names %v", cs.PeerCertificates[0].DNSNames)
			}},
	} {
		cs, err := handshake(addr, tc.sni, tc.cfg)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: handshake error = %v; want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if tc.check != nil && err == nil {
			if msg := tc.check(cs); msg != "" {
				t.Errorf("%s: %s", tc.name, msg)
			}
		}
	}
	for _, p := range []string{
		`1 TLS handshakes refused for an invalid SNI (last "under_score.example.com")`,
		`1 TLS handshakes named a host no Ingress serves (last "nobody.example.com"); they got the default certificate`,
		`2 TLS handshakes failed (last: `,
	} {
		waitFor(t, "status: "+p, 5*time.Second, func() bool {
			return slices.ContainsFunc(hostStatus(t, s.Status(), DefaultHost).Problems, func(q string) bool { return strings.HasPrefix(q, p) })
		})
	}
	// The server still serves after all that.
	if _, err := handshake(addr, "shop.example.com", nil); err != nil {
		t.Errorf("handshake after bad clients: %v", err)
	}
}

// Without a cluster CA, a host without a secret has no certificate; the others are unharmed.
func TestTLSWithoutIssuer(t *testing.T) {
	now := time.Now()
	crt, key := selfSigned(t, "shop", []string{"shop.example.com"}, now.Add(-time.Hour), now.Add(time.Hour))
	w := newWorld(t)
	s := startServer(t, Config{HTTPS: "127.0.0.1:0", DefaultClass: true})
	s.Update(w.sync(tlsSecret("shop-tls", crt, key),
		ingress("web", rule("shop.example.com", "Prefix / web:80"), rule("plain.example.com", "Prefix / web:80"),
			tlsFor("shop-tls", "shop.example.com"))))
	if _, err := handshake(s.HTTPSAddr(), "shop.example.com", nil); err != nil {
		t.Errorf("handshake(shop.example.com): %v", err)
	}
	if _, err := handshake(s.HTTPSAddr(), "plain.example.com", nil); err == nil {
		t.Errorf("handshake(plain.example.com) succeeded without any certificate for it")
	}
	hs := hostStatus(t, s.Status(), "plain.example.com")
	if want := "HTTPS: no certificate: the cluster CA is not available on this node"; !slices.Contains(hs.Problems, want) {
		t.Errorf("Status(plain.example.com) = %q; want %q", hs.Problems, want)
	}
}

func want(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return "got " + fmt.Sprintf(format, args...)
}
