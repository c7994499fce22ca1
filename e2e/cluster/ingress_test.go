package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/fixtures/rig"
)

// selfSigned makes a certificate and key for host, as a user would put in a Secret.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}

func pinned(app, node string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %[2]s}
      containers:
      - name: app
        image: localhost/skiff/demo:latest
        imagePullPolicy: IfNotPresent
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: web, port: 80, targetPort: http}]
`, app, node)
}

func ingressYAML(extraPath bool) string {
	extra := ""
	if extraPath {
		extra = `
      - {path: /other, pathType: Prefix, backend: {service: {name: beta, port: {name: web}}}}`
	}
	return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  tls:
  - {hosts: [alpha.shop.lan], secretName: alpha-tls}
  - {hosts: [beta.shop.lan]}
  rules:
  - host: alpha.shop.lan
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {name: web}}}}` + extra + `
  - host: beta.shop.lan
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
`
}

// resolveTo is curl --resolve: every request goes to addr, with the URL's host as SNI and
// Host header.
func resolveTo(addr string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 3 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: true,
	}}
}

func TestIngressAcrossNodes(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3, 3)
	ctx := context.Background()
	n := c.r.Nodes()
	// This test serves ingress: restart the agents with HTTPS and HTTP on every node.
	certPEM, keyPEM, alphaRoots := selfSigned(t, "alpha.shop.lan")
	secret := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: alpha-tls}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
		base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM))
	for _, x := range n {
		if err := x.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := x.Start(append(c.args(), "--http", x.IP()+":80", "--https", x.IP()+":443")...); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range n {
		if err := x.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c.push(ctx, n[0], "shop", map[string]string{
		"alpha.yaml": pinned("alpha", "n2"), "beta.yaml": pinned("beta", "n3"),
		"secret.yaml": secret, "ingress.yaml": ingressYAML(false),
	})
	c.wantPods(ctx, n[0], "alpha", 1, []*rig.Node{n[1]}, 90*time.Second)
	c.wantPods(ctx, n[0], "beta", 1, []*rig.Node{n[2]}, 90*time.Second)

	// The cluster CA signs what hosts without a Secret get.
	b, err := os.ReadFile(filepath.Join(n[0].DataDir(), agent.AdminConfig))
	if err != nil {
		t.Fatal(err)
	}
	var cc agent.ClientConfig
	_ = yaml.Unmarshal(b, &cc)
	caRoots := x509.NewCertPool()
	caRoots.AppendCertsFromPEM([]byte(cc.CA))

	for _, x := range n {
		for _, tc := range []struct {
			host  string
			roots *x509.CertPool
			want  string
		}{{"alpha.shop.lan", alphaRoots, "You've hit alpha-"}, {"beta.shop.lan", caRoots, "You've hit beta-"}} {
			eventually(t, tc.host+" through "+x.Name(), 60*time.Second, func() error {
				resp, err := resolveTo(x.IP()+":443", tc.roots).Get("https://" + tc.host + "/")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tc.want) {
					return fmt.Errorf("%s: %s", resp.Status, body)
				}
				if names := resp.TLS.PeerCertificates[0].DNSNames; len(names) == 0 || names[0] != tc.host {
					return fmt.Errorf("certificate for %v", names)
				}
				if resp.ProtoMajor != 2 {
					return fmt.Errorf("served over %s; want HTTP/2", resp.Proto)
				}
				return nil
			})
		}
		// Plain HTTP to a TLS host redirects to HTTPS.
		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, "http://"+x.IP()+"/", nil)
		req.Host = "alpha.shop.lan"
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(resp.Header.Get("Location"), "https://alpha.shop.lan/") {
			t.Errorf("http://alpha.shop.lan on %s = %s → %q; want a redirect to https", x.Name(), resp.Status, resp.Header.Get("Location"))
		}
	}

	// Every node serves the Ingress: its status lists their addresses.
	out, err := c.skiff(ctx, n[1], "get", "ingress", "shop", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ing networkingv1.Ingress
	if err := json.Unmarshal([]byte(out), &ing); err != nil {
		t.Fatalf("get ingress -o json: %v\n%s", err, out)
	}
	var addrs []string
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		addrs = append(addrs, lb.IP)
	}
	if want := []string{n[0].IP(), n[1].IP(), n[2].IP()}; !slices.Equal(addrs, want) {
		t.Errorf("ingress status addresses = %v; want %v", addrs, want)
	}

	// A push changes a path while a load runs: no failed request, and the change lands.
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, x := range n {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			cl := resolveTo(addr, alphaRoots)
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get("https://alpha.shop.lan/")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
						continue
					}
					err = fmt.Errorf("%s", resp.Status)
				}
				failed.Add(1)
				lastErr.Store(err.Error())
			}
		}(x.IP() + ":443")
	}
	c.push(ctx, n[0], "add /other", map[string]string{"ingress.yaml": ingressYAML(true)})
	for _, x := range n {
		eventually(t, "the new path through "+x.Name(), 30*time.Second, func() error {
			resp, err := resolveTo(x.IP()+":443", alphaRoots).Get("https://alpha.shop.lan/other")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "You've hit beta-") {
				return fmt.Errorf("%s: %s", resp.Status, body)
			}
			return nil
		})
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed while the route changed (last: %v)", failed.Load(), failed.Load()+ok.Load(), lastErr.Load())
	}
	t.Logf("%d requests during the change, %d failed", ok.Load()+failed.Load(), failed.Load())
}
