package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/pki"
	"github.com/skiffhq/skiff/state"
)

// --- objects ---

type ingOpt func(*networkingv1.Ingress)

func ingress(name string, opts ...ingOpt) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, o := range opts {
		o(i)
	}
	return i
}

func inNamespace(ns string) ingOpt { return func(i *networkingv1.Ingress) { i.Namespace = ns } }

func class(c string) ingOpt { return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = &c } }

func defaultBackend(svc string, port int32) ingOpt {
	return func(i *networkingv1.Ingress) { i.Spec.DefaultBackend = backendRef(svc, port) }
}

// rule adds a host rule; paths are "Type /path svc:port" (port a number or a name).
func rule(host string, paths ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		r := networkingv1.IngressRule{Host: host}
		if len(paths) > 0 {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
		}
		for _, p := range paths {
			f := strings.Fields(p)
			pt := networkingv1.PathType(f[0])
			path := f[1]
			if path == `""` {
				path = ""
			}
			svc, port, _ := strings.Cut(f[2], ":")
			b := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc}}
			if n, err := strconv.Atoi(port); err == nil {
				b.Service.Port.Number = int32(n)
			} else {
				b.Service.Port.Name = port
			}
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: path, PathType: &pt, Backend: b})
		}
		i.Spec.Rules = append(i.Spec.Rules, r)
	}
}

func tlsFor(secret string, hosts ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

func backendRef(svc string, port int32) *networkingv1.IngressBackend {
	return &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: port}}}
}

// service is a selector-less Service with one port 80 named "http".
func service(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

// endpoints are manual Endpoints of a selector-less Service: one subset per address, so
// each address has its own port (they are all 127.0.0.1 in tests).
func endpoints(name string, addrs ...string) *corev1.Endpoints {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		ep.Subsets = append(ep.Subsets, corev1.EndpointSubset{
			Addresses: []corev1.EndpointAddress{{IP: host}},
			Ports:     []corev1.EndpointPort{{Name: "http", Port: int32(n), Protocol: corev1.ProtocolTCP}},
		})
	}
	return ep
}

// backendService is a Service with a selector and a named targetPort, for pod endpoints.
func selectorService(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{
			{Name: "web", Port: 8080, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP}}}}
}

// pod is a pod of app `app` on 127.0.0.1 whose port "web" is addr's port.
func pod(name, app, addr string, ready bool) *corev1.Pod {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "web", ContainerPort: int32(n), Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func tlsSecret(name string, certPEM, keyPEM []byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}
}

// --- state ---

// world is a cluster state under test: every Sync adds a commit a second later, so objects
// added by later commits are younger.
type world struct {
	t     testing.TB
	m     *state.MemStore
	clock time.Time
	git   []manifest.Object
}

func newWorld(t testing.TB) *world {
	w := &world{t: t, m: state.NewMemStore(), clock: time.Unix(1_700_000_000, 0)}
	w.m.Now = func() time.Time { return w.clock }
	return w
}

// sync makes objs the whole git content of a new commit.
func (w *world) sync(objs ...manifest.Object) *state.State {
	w.t.Helper()
	w.clock = w.clock.Add(time.Second)
	w.git = objs
	err := w.m.Apply(context.Background(), &state.Command{Sync: &state.Sync{
		Commit: state.Commit{Hash: fmt.Sprintf("c%d", w.clock.Unix())}, Objects: state.Wrap(objs...)}})
	if err != nil {
		w.t.Fatal(err)
	}
	return w.m.State()
}

// add syncs the current git content plus objs.
func (w *world) add(objs ...manifest.Object) *state.State {
	return w.sync(append(append([]manifest.Object(nil), w.git...), objs...)...)
}

// put stores controller-made objects (pods with their status).
func (w *world) put(objs ...manifest.Object) *state.State {
	w.t.Helper()
	if err := w.m.Apply(context.Background(), &state.Command{Put: state.Wrap(objs...)}); err != nil {
		w.t.Fatal(err)
	}
	return w.m.State()
}

// --- certificates ---

type testCA struct {
	ca     *pki.CA
	issued atomic.Int32
}

func newTestCA(t testing.TB) *testCA {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca}
}

func (c *testCA) issue(hosts []string) (*tls.Certificate, error) {
	c.issued.Add(1)
	key, csr, err := pki.NewKeyAndCSR(hosts[0])
	if err != nil {
		return nil, err
	}
	crt, err := c.ca.Sign(csr, hosts[0], "skiff:ingress", nil, hosts, 90*24*time.Hour)
	if err != nil {
		return nil, err
	}
	kp, err := pki.ParseKeyPair(crt, key)
	if err != nil {
		return nil, err
	}
	return &kp.TLS, nil
}

// selfSigned makes a certificate and key for names, valid from nb to na.
func selfSigned(t *testing.T, cn string, names []string, nb, na time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    nb, NotAfter: na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// --- servers ---

func startServer(t testing.TB, cfg Config, tune ...func(*Server)) *Server {
	t.Helper()
	if cfg.HTTP == "" {
		cfg.HTTP = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tune {
		f(s)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

// echo is a backend that answers "<name> <method> <path>" and echoes what the proxy sent
// in response headers.
func echo(t testing.TB, name string) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-Fwd-Host", r.Header.Get("X-Forwarded-Host"))
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(b.Close)
	return b
}

func hostPort(s *httptest.Server) string { return s.Listener.Addr().String() }

// client dials addr for every host (curl --resolve), trusting roots; h2 when possible.
// The client's idle connections are closed at the end of the test, before the server stops
// (an HTTP/2 server otherwise waits a second for the client to hang up).
func client(t testing.TB, addr string, roots *x509.CertPool, h2 bool) *http.Client {
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get does one request and returns status and body ("" on error, with the error).
func get(c *http.Client, method, rawURL string, body io.Reader) (*http.Response, string, error) {
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
