// Package probe runs Kubernetes container probes (exec, httpGet, tcpSocket, grpc) with
// kubelet's semantics: Run makes one attempt, a Worker runs one probe of one container on its
// schedule and applies the success and failure thresholds.
//
// The package knows nothing about the node loop: it gets the pod IP, the container's ports
// and a way to exec in the container through a Target, and reports through a callback.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// UserAgent is sent with every httpGet and grpc probe unless the probe sets its own.
const UserAgent = "kube-probe/skiff"

// maxOutput bounds what a probe reads from an HTTP body or an exec's output (kubelet: 10 KiB).
const maxOutput = 10 << 10

// Errors a Result's Err wraps; check with errors.Is.
var (
	ErrNoHandler    = errors.New("probe has no handler")
	ErrPortNotFound = errors.New("port not found")
	ErrNoHost       = errors.New("no host to probe: the pod has no IP")
)

// Target is the container a probe runs against.
type Target struct {
	PodIP string                 // host for httpGet/tcpSocket/grpc unless the probe names a host
	Ports []corev1.ContainerPort // resolves named ports
	// Exec runs cmd in the container and returns its exit code and combined output. err is
	// for a command that could not be run at all, not for a non-zero exit.
	Exec func(ctx context.Context, cmd []string) (exitCode int, output []byte, err error)
}

// Result is the outcome of one probe attempt.
type Result struct {
	Success bool
	// Message says why the attempt failed, worded like kubelet's ("HTTP probe failed with
	// statuscode: 500"); for a success it may carry the exec output or an HTTP warning.
	Message string
	// Err is set when the probe could not be run at all (an unknown named port, a command the
	// runtime could not start). Like kubelet, a Worker does not count such an attempt.
	Err error
}

// Run makes one attempt of p against t, bounded by p.TimeoutSeconds (default 1 s).
func Run(ctx context.Context, p *corev1.Probe, t Target) Result {
	timeout := seconds(p.TimeoutSeconds, 1)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		return runExec(ctx, p.Exec, t, timeout)
	case p.HTTPGet != nil:
		return runHTTP(ctx, p.HTTPGet, t, timeout)
	case p.TCPSocket != nil:
		return runTCP(ctx, p.TCPSocket, t)
	case p.GRPC != nil:
		return runGRPC(ctx, p.GRPC, t, timeout)
	}
	return errResult(ErrNoHandler)
}

func errResult(err error) Result { return Result{Message: err.Error(), Err: err} }

func seconds(n, def int32) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * time.Second
}

// resolvePort turns a probe's port (number or container port name) into a number, as
// kubelet's ResolveContainerPort does, including its "a number stored as a string" fallback.
func resolvePort(port intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	n := port.IntValue()
	if port.Type == intstr.String {
		n = 0
		for _, p := range ports {
			if p.Name == port.StrVal {
				n = int(p.ContainerPort)
				break
			}
		}
		if n == 0 {
			v, err := strconv.Atoi(port.StrVal)
			if err != nil {
				return 0, fmt.Errorf("%w: %q is not a port name of the container", ErrPortNotFound, port.StrVal)
			}
			n = v
		}
	}
	if n <= 0 || n > 65535 {
		return 0, fmt.Errorf("%w: invalid port number %d", ErrPortNotFound, n)
	}
	return n, nil
}

func host(named, podIP string) (string, error) {
	if named != "" {
		return named, nil
	}
	if podIP == "" {
		return "", ErrNoHost
	}
	return podIP, nil
}

// dialer is kubelet's ProbeDialer: SO_LINGER 0 so probe connections leave no TIME_WAIT
// sockets behind (a probe every second on a small board would otherwise pile them up).
func dialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
		})
	}}
}

func runExec(ctx context.Context, a *corev1.ExecAction, t Target, timeout time.Duration) Result {
	if t.Exec == nil {
		return errResult(errors.New("exec probe: the container cannot exec"))
	}
	code, out, err := t.Exec(ctx, a.Command)
	if ctx.Err() == context.DeadlineExceeded {
		return Result{Message: fmt.Sprintf("command %q timed out after %v", a.Command, timeout)}
	}
	if err != nil {
		return errResult(fmt.Errorf("exec probe %q: %w", a.Command, err))
	}
	msg := string(bound(out))
	if code != 0 {
		return Result{Message: fmt.Sprintf("command %q exited with %d: %s", a.Command, code, msg)}
	}
	return Result{Success: true, Message: msg}
}

func bound(b []byte) []byte {
	if len(b) > maxOutput {
		return b[:maxOutput]
	}
	return b
}

func runTCP(ctx context.Context, a *corev1.TCPSocketAction, t Target) Result {
	port, err := resolvePort(a.Port, t.Ports)
	if err != nil {
		return errResult(err)
	}
	h, err := host(a.Host, t.PodIP)
	if err != nil {
		return errResult(err)
	}
	conn, err := dialer().DialContext(ctx, "tcp", net.JoinHostPort(h, strconv.Itoa(port)))
	if err != nil {
		return Result{Message: err.Error()}
	}
	_ = conn.Close()
	return Result{Success: true}
}

// newHTTPRequest builds the request as kubelet's NewRequestForHTTPGetAction does.
func newHTTPRequest(ctx context.Context, a *corev1.HTTPGetAction, t Target) (*http.Request, error) {
	port, err := resolvePort(a.Port, t.Ports)
	if err != nil {
		return nil, err
	}
	h, err := host(a.Host, t.PodIP)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(h, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("httpGet probe: %w", err)
	}
	headers := http.Header{}
	for _, hd := range a.HTTPHeaders {
		headers.Add(hd.Name, hd.Value)
	}
	if _, ok := headers["User-Agent"]; !ok {
		headers.Set("User-Agent", UserAgent)
	}
	if _, ok := headers["Accept"]; !ok {
		headers.Set("Accept", "*/*")
	} else if headers.Get("Accept") == "" {
		headers.Del("Accept")
	}
	req.Header = headers
	req.Host = headers.Get("Host")
	return req, nil
}

func runHTTP(ctx context.Context, a *corev1.HTTPGetAction, t Target, timeout time.Duration) Result {
	req, err := newHTTPRequest(ctx, a, t)
	if err != nil {
		return errResult(err)
	}
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe certificates
		DisableKeepAlives:  true,
		DisableCompression: true,
		Proxy:              nil, // never through a proxy from the environment
		DialContext:        dialer().DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: sameHostRedirects}
	res, err := client.Do(req)
	if err != nil {
		return Result{Message: err.Error()}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxOutput))
	if err != nil {
		return Result{Message: err.Error()}
	}
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return Result{Success: true, Message: string(body)}
	case res.StatusCode >= 300 && res.StatusCode < 400:
		// A redirect to another host is not followed; kubelet counts it as a success with a
		// warning.
		return Result{Success: true, Message: "Probe terminated redirects, Response body: " + string(body)}
	}
	// The body is not shown: kubelet keeps it out of user-facing messages (kubernetes#99425).
	return Result{Message: fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode)}
}

// sameHostRedirects follows redirects to the same host only, at most 10 (kubelet's
// RedirectChecker without followNonLocalRedirects).
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}
