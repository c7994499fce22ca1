package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// servers are real listeners on loopback the probes run against.
type servers struct {
	http, https      *httptest.Server
	httpPort         int
	httpsPort        int
	tcpPort          int
	closedPort       int
	grpcPort         int
	grpcNoHealthPort int
	grpcTLSPort      int
	hangPort         int
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func startServers(t *testing.T) *servers {
	t.Helper()
	s := &servers{}
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "secret detail", 500) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/redirect-to-fail", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/offhost", func(w http.ResponseWriter, r *http.Request) {
		// The same server under another host name: kubelet does not follow it.
		u := url.URL{Scheme: "http", Host: net.JoinHostPort("localhost", strconv.Itoa(s.httpPort)), Path: "/fail"}
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "app.example" || r.Header.Get("X-Probe") != "yes" || r.UserAgent() != UserAgent || r.Header.Get("Accept") != "*/*" {
			http.Error(w, "bad headers", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/agent", func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() != "custom/1" {
			http.Error(w, "bad agent", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("x", 1<<20)))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	s.http = httptest.NewServer(mux)
	s.https = httptest.NewTLSServer(mux)
	s.httpPort, s.httpsPort = port(t, s.http.Listener.Addr().String()), port(t, s.https.Listener.Addr().String())

	tcp := listen(t)
	s.tcpPort = port(t, tcp.Addr().String())
	closed := listen(t)
	s.closedPort = port(t, closed.Addr().String())
	closed.Close()

	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	gl := listen(t)
	s.grpcPort = port(t, gl.Addr().String())
	go g.Serve(gl)
	bare := grpc.NewServer()
	bl := listen(t)
	s.grpcNoHealthPort = port(t, bl.Addr().String())
	go bare.Serve(bl)

	// The same health service over TLS (the httptest server's certificate).
	gt := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&s.https.TLS.Certificates[0])))
	healthpb.RegisterHealthServer(gt, hs)
	tl := listen(t)
	s.grpcTLSPort = port(t, tl.Addr().String())
	go gt.Serve(tl)
	// A server that accepts connections and never answers.
	hang := listen(t)
	s.hangPort = port(t, hang.Addr().String())
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			go func() { <-stop; c.Close() }()
		}
	}()

	t.Cleanup(func() {
		gt.Stop()
		hang.Close()
		close(stop)
		s.http.Close()
		s.https.Close()
		tcp.Close()
		g.Stop()
		bare.Stop()
	})
	return s
}

var errNoExecutable = errors.New("executable file not found in $PATH")

// fakeExec plays a container: the command's first word says how it behaves.
func fakeExec(ctx context.Context, cmd []string) (int, []byte, error) {
	switch cmd[0] {
	case "true":
		return 0, []byte("fine\n"), nil
	case "false":
		return 1, []byte("boom\n"), nil
	case "noisy":
		return 2, []byte(strings.Repeat("y", 50<<10)), nil
	case "hang":
		<-ctx.Done()
		return -1, nil, ctx.Err()
	}
	return -1, nil, fmt.Errorf("%w: %q", errNoExecutable, cmd[0])
}

func httpProbe(path string, port intstr.IntOrString, mod ...func(*corev1.HTTPGetAction)) *corev1.Probe {
	a := &corev1.HTTPGetAction{Path: path, Port: port}
	for _, m := range mod {
		m(a)
	}
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: a}, TimeoutSeconds: 1}
}

func ptr[T any](v T) *T { return &v }

func TestRun(t *testing.T) {
	s := startServers(t)
	target := Target{
		PodIP: "127.0.0.1",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(s.httpPort)}, {Name: "metrics", ContainerPort: int32(s.tcpPort)}},
		Exec:  fakeExec,
	}
	num := func(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }
	tests := []struct {
		name    string
		probe   *corev1.Probe
		target  *Target // nil: the default target
		success bool
		msg     string // substring of Result.Message
		err     error  // Result.Err wraps it
	}{
		{name: "http 200", probe: httpProbe("/ok", num(s.httpPort)), success: true, msg: "ok"},
		{name: "http 500 hides the body", probe: httpProbe("/fail", num(s.httpPort)), msg: "HTTP probe failed with statuscode: 500"},
		{name: "http named port", probe: httpProbe("/ok", intstr.FromString("http")), success: true},
		{name: "http port number as string", probe: httpProbe("/ok", intstr.FromString(strconv.Itoa(s.httpPort))), success: true},
		{name: "http unknown port name", probe: httpProbe("/ok", intstr.FromString("admin")), msg: `"admin" is not a port name`, err: ErrPortNotFound},
		{name: "http redirect on the same host followed", probe: httpProbe("/redirect", num(s.httpPort)), success: true, msg: "ok"},
		{name: "http redirect followed to a failure", probe: httpProbe("/redirect-to-fail", num(s.httpPort)), msg: "statuscode: 500"},
		{name: "http redirect to another host not followed", probe: httpProbe("/offhost", num(s.httpPort)), success: true, msg: "Probe terminated redirects"},
		{name: "http headers, Host header sets the host", probe: httpProbe("/headers", num(s.httpPort), func(a *corev1.HTTPGetAction) {
			a.HTTPHeaders = []corev1.HTTPHeader{{Name: "host", Value: "app.example"}, {Name: "x-probe", Value: "yes"}}
		}), success: true},
		{name: "http User-Agent header overrides kube-probe", probe: httpProbe("/agent", num(s.httpPort), func(a *corev1.HTTPGetAction) {
			a.HTTPHeaders = []corev1.HTTPHeader{{Name: "User-Agent", Value: "custom/1"}}
		}), success: true},
		{name: "http probe host overrides pod IP", probe: httpProbe("/ok", num(s.httpPort), func(a *corev1.HTTPGetAction) { a.Host = "127.0.0.1" }),
			target: &Target{PodIP: "192.0.2.1"}, success: true},
		{name: "http large body read bounded", probe: httpProbe("/big", num(s.httpPort)), success: true},
		{name: "https without certificate verification", probe: httpProbe("/ok", num(s.httpsPort), func(a *corev1.HTTPGetAction) { a.Scheme = corev1.URISchemeHTTPS }), success: true},
		{name: "http connection refused", probe: httpProbe("/ok", num(s.closedPort)), msg: "connection refused"},
		{name: "http slow handler times out", probe: httpProbe("/slow", num(s.httpPort)), msg: "context deadline exceeded"},
		{name: "http no pod IP", probe: httpProbe("/ok", num(s.httpPort)), target: &Target{}, err: ErrNoHost},

		{name: "tcp open", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: num(s.tcpPort)}}}, success: true},
		{name: "tcp named port", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("metrics")}}}, success: true},
		{name: "tcp closed port", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: num(s.closedPort)}}}, msg: "connect: connection refused"},
		{name: "tcp invalid port", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: num(70000)}}}, err: ErrPortNotFound},

		{name: "grpc serving", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcPort)}}}, success: true, msg: "service healthy"},
		{name: "grpc named service not serving", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcPort), Service: ptr("db")}}}, msg: `service unhealthy (responded with "NOT_SERVING")`},
		{name: "grpc unknown service", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcPort), Service: ptr("nope")}}}, msg: "code = NotFound"},
		{name: "grpc server without health service", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcNoHealthPort)}}}, msg: "does not implement the grpc health protocol"},
		{name: "grpc over TLS", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcTLSPort), Mode: ptr(corev1.GRPCProbeModeTLS)}}}, success: true, msg: "service healthy"},
		{name: "grpc plaintext to a TLS server", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.grpcTLSPort)}}}, msg: "error: health rpc probe failed"},
		{name: "grpc to an HTTP/1 server", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.httpPort)}}}, msg: "error: health rpc probe failed"},
		{name: "grpc server that never answers", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.hangPort)}}}, msg: "timeout: health rpc did not complete within 1s"},
		{name: "grpc connection refused", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(s.closedPort)}}}, msg: "connection refused"},

		{name: "exec exit 0", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}, success: true, msg: "fine"},
		{name: "exec exit 1 shows output", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false", "-x"}}}}, msg: `command ["false" "-x"] exited with 1: boom`},
		{name: "exec output bounded", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"noisy"}}}}, msg: "exited with 2"},
		{name: "exec times out", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"hang"}}}, TimeoutSeconds: 1}, msg: `command ["hang"] timed out after 1s`},
		{name: "exec cannot run", probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"nosuch"}}}}, msg: "not found", err: errNoExecutable},

		{name: "no handler", probe: &corev1.Probe{}, err: ErrNoHandler},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := target
			if tc.target != nil {
				tg = *tc.target
			}
			got := Run(context.Background(), tc.probe, tg)
			if got.Success != tc.success || !strings.Contains(got.Message, tc.msg) || (tc.err != nil) != (got.Err != nil) || !errors.Is(got.Err, tc.err) {
				t.Errorf("Run() = %+v; want success %v, message containing %q, err %v", got, tc.success, tc.msg, tc.err)
			}
			if len(got.Message) > maxOutput+200 {
				t.Errorf("Run() message is %d bytes; want it bounded near %d", len(got.Message), maxOutput)
			}
		})
	}
}

func TestParseHealthResponse(t *testing.T) {
	frame := func(msg ...byte) []byte { return append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...) }
	tests := []struct {
		name   string
		frame  []byte
		status uint64
		err    string
	}{
		{name: "serving", frame: frame(0x08, 0x01), status: 1},
		{name: "not serving", frame: frame(0x08, 0x02), status: 2},
		{name: "empty message is UNKNOWN", frame: frame(), status: 0},
		{name: "unknown fields skipped", frame: frame(0x12, 0x02, 'h', 'i', 0x08, 0x01), status: 1},
		{name: "short frame", frame: []byte{0, 0}, err: "short message frame"},
		{name: "compressed", frame: []byte{1, 0, 0, 0, 0}, err: "compressed"},
		{name: "length mismatch", frame: []byte{0, 0, 0, 0, 9, 0x08, 0x01}, err: "frame says 9 bytes, got 2"},
		{name: "truncated varint", frame: frame(0x08, 0x80), err: "malformed health response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHealthResponse(tt.frame)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseHealthResponse = %d, %v; want error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.status {
				t.Fatalf("parseHealthResponse = %d, %v; want %d", got, err, tt.status)
			}
		})
	}
}

// listen opens a TCP listener on a free loopback port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
