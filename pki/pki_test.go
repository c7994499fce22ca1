package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustNode(t *testing.T, ca *CA, name string, validity time.Duration) *KeyPair {
	t.Helper()
	key, csr, err := NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(csr, name, NodeOrg, []net.IP{net.ParseIP("127.0.0.1")}, []string{name}, validity)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ParseKeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestVerify(t *testing.T) {
	ca, other := mustCA(t, "a"), mustCA(t, "b")
	good := mustNode(t, ca, "pi1", NodeValidity)
	foreign := mustNode(t, other, "pi9", NodeValidity)
	expired := mustNode(t, ca, "old", -ClockSkewSlop-time.Hour) // NotAfter in the past
	tests := []struct {
		name    string
		kp      *KeyPair
		wantErr string
	}{
		{"issued by the cluster", good, ""},
		{"another cluster", foreign, "another cluster's CA"},
		{"expired", expired, "expired or not yet valid"},
	}
	for _, tt := range tests {
		err := ca.Verify(tt.kp.Leaf, x509.ExtKeyUsageClientAuth)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Verify(%s) = %v; want %q", tt.name, err, tt.wantErr)
		}
	}
	if good.Leaf.Subject.CommonName != "pi1" || good.Leaf.Subject.Organization[0] != NodeOrg {
		t.Errorf("subject = %v; want CN pi1, O %s (set by the CA)", good.Leaf.Subject, NodeOrg)
	}
}

func TestJoinToken(t *testing.T) {
	ca := mustCA(t, "a")
	tok := NewJoinToken(ca)
	back, err := ParseJoinToken(tok.String() + "\n")
	if err != nil || back != tok {
		t.Fatalf("ParseJoinToken(String()) = %+v, %v; want %+v", back, err, tok)
	}
	if !CheckSecret(tok.Secret, SecretHash(tok.Secret)) || CheckSecret("nope", SecretHash(tok.Secret)) {
		t.Error("CheckSecret accepts the wrong secret or refuses the right one")
	}
	for _, bad := range []string{"", "skiff1.abc.id.secret", "k10.x.y.z", strings.Replace(tok.String(), "skiff1", "skiff2", 1)} {
		if _, err := ParseJoinToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseJoinToken(%q) = %v; want ErrBadToken", bad, err)
		}
	}
}

// handshake runs a TLS handshake and returns the client's and server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = io.ReadAll(c) // wait for the client to finish (it may reject us)
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), client)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	return err, <-done
}

func TestMutualTLS(t *testing.T) {
	ca, other := mustCA(t, "a"), mustCA(t, "b")
	n1, n2, stranger := mustNode(t, ca, "n1", NodeValidity), mustNode(t, ca, "n2", NodeValidity), mustNode(t, other, "x", NodeValidity)
	fix := func(kp *KeyPair) func() *KeyPair { return func() *KeyPair { return kp } }
	noCert := &tls.Config{InsecureSkipVerify: true}
	tests := []struct {
		name        string
		server      *tls.Config
		client      *tls.Config
		clientFails bool
		serverFails bool
	}{
		{"two members", ServerTLS(ca, fix(n1), true), ClientTLS(ca, fix(n2)), false, false},
		{"client from another cluster", ServerTLS(ca, fix(n1), true), ClientTLS(other, fix(stranger)), true, true},
		{"client without certificate", ServerTLS(ca, fix(n1), true), noCert, false, true},
		{"optional client certificate", ServerTLS(ca, fix(n1), false), noCert, false, false},
		{"server from another cluster", ServerTLS(other, fix(stranger), false), ClientTLS(ca, fix(n2)), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr, serr := handshake(t, tt.server, tt.client)
			if (cerr != nil) != tt.clientFails && !tt.serverFails {
				t.Errorf("client error = %v; want failure %v", cerr, tt.clientFails)
			}
			if (serr != nil) != tt.serverFails {
				t.Errorf("server error = %v; want failure %v", serr, tt.serverFails)
			}
		})
	}
}

func TestPinnedTLS(t *testing.T) {
	ca, other := mustCA(t, "a"), mustCA(t, "b")
	n1 := mustNode(t, ca, "n1", NodeValidity)
	chained := ChainWithCA(n1, ca)
	server := &tls.Config{Certificates: []tls.Certificate{chained}}
	if cerr, _ := handshake(t, server, PinnedTLS(ca.Fingerprint())); cerr != nil {
		t.Errorf("pinned to the right CA: %v", cerr)
	}
	cerr, _ := handshake(t, server, PinnedTLS(other.Fingerprint()))
	if cerr == nil || !strings.Contains(cerr.Error(), "does not match the join token") {
		t.Errorf("pinned to another CA: %v; want a pin mismatch", cerr)
	}
}
