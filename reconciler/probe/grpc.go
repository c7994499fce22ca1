package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
)

// The grpc probe is one unary call of the standard health protocol,
// grpc.health.v1.Health/Check, made with net/http's HTTP/2 client (cleartext h2c, or TLS
// without verification as kubelet does) and the protobuf wire format. grpc-go would do the
// same and add 9 MB to the agent's binary, about 7 MB of its resident memory. The messages
// are kubelet's.

const (
	grpcHealthPath    = "/grpc.health.v1.Health/Check"
	grpcMaxResponse   = 1 << 16 // a HealthCheckResponse is 2 bytes
	grpcUnimplemented = 12
	grpcDeadline      = 4
)

// grpcCodes are the gRPC status code names, for messages as grpc-go prints them.
var grpcCodes = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

// servingStatus names grpc.health.v1.HealthCheckResponse.ServingStatus values.
var servingStatus = [...]string{"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}

func runGRPC(ctx context.Context, a *corev1.GRPCAction, t Target, timeout time.Duration) Result {
	if a.Port <= 0 || a.Port > 65535 {
		return errResult(fmt.Errorf("%w: invalid port number %d", ErrPortNotFound, a.Port))
	}
	if t.PodIP == "" {
		return errResult(ErrNoHost)
	}
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	addr := net.JoinHostPort(t.PodIP, strconv.Itoa(int(a.Port)))
	status, err := grpcHealthCheck(ctx, addr, service, a.Mode != nil && *a.Mode == corev1.GRPCProbeModeTLS, timeout)
	var rpcErr *grpcError
	switch {
	case errors.As(err, &rpcErr) && rpcErr.code == grpcUnimplemented:
		return Result{Message: "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): " + rpcErr.message}
	case errors.As(err, &rpcErr) && rpcErr.code == grpcDeadline, errors.Is(err, context.DeadlineExceeded):
		return Result{Message: fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)}
	case err != nil:
		return Result{Message: fmt.Sprintf("error: health rpc probe failed: %v", err)}
	case status != 1:
		name := strconv.FormatUint(status, 10)
		if status < uint64(len(servingStatus)) {
			name = servingStatus[status]
		}
		return Result{Message: fmt.Sprintf("service unhealthy (responded with %q)", name)}
	}
	return Result{Success: true, Message: "service healthy"}
}

// grpcError is a non-OK gRPC status from the server.
type grpcError struct {
	code    int
	message string
}

func (e *grpcError) Error() string {
	name := "Code(" + strconv.Itoa(e.code) + ")"
	if e.code >= 0 && e.code < len(grpcCodes) {
		name = grpcCodes[e.code]
	}
	return fmt.Sprintf("rpc error: code = %s desc = %s", name, e.message)
}

// grpcHealthCheck calls Health/Check for service at addr and returns the serving status.
func grpcHealthCheck(ctx context.Context, addr, service string, useTLS bool, timeout time.Duration) (uint64, error) {
	var protocols http.Protocols
	scheme := "http"
	if useTLS {
		protocols.SetHTTP2(true)
		scheme = "https"
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{
		DialContext:       dialer().DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as kubelet
		Protocols:         &protocols,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()

	// HealthCheckRequest{service = 1}, in a gRPC message frame: flag 0 (not compressed),
	// big-endian length, message.
	var msg []byte
	if service != "" {
		msg = protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), service)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+grpcHealthPath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Grpc-Timeout", strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)+"m")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("rpc error: code = Unavailable desc = connection error: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, grpcMaxResponse))
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("rpc error: code = Unavailable desc = reading the response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("rpc error: code = Unknown desc = unexpected HTTP status code received from server: %d (%s)",
			resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	// A status comes in the trailers, or in the headers of a response without a body.
	st := resp.Trailer.Get("Grpc-Status")
	stMsg := resp.Trailer.Get("Grpc-Message")
	if h := resp.Header.Get("Grpc-Status"); h != "" {
		st, stMsg = h, resp.Header.Get("Grpc-Message")
	}
	code, err := strconv.Atoi(st)
	if err != nil {
		return 0, fmt.Errorf("rpc error: code = Internal desc = server sent no valid grpc-status (%q)", st)
	}
	if code != 0 {
		if m, err := url.PathUnescape(stMsg); err == nil {
			stMsg = m
		}
		return 0, &grpcError{code: code, message: stMsg}
	}
	return parseHealthResponse(raw)
}

// parseHealthResponse reads one gRPC message frame holding a HealthCheckResponse and
// returns its status (field 1; absent means 0, UNKNOWN).
func parseHealthResponse(frame []byte) (uint64, error) {
	bad := func(why string) (uint64, error) {
		return 0, fmt.Errorf("rpc error: code = Internal desc = malformed health response: %s", why)
	}
	if len(frame) < 5 {
		return bad("short message frame")
	}
	if frame[0] != 0 {
		return bad("compressed message (none was asked for)")
	}
	n := binary.BigEndian.Uint32(frame[1:5])
	msg := frame[5:]
	if uint64(n) != uint64(len(msg)) {
		return bad(fmt.Sprintf("frame says %d bytes, got %d", n, len(msg)))
	}
	var status uint64
	for len(msg) > 0 {
		num, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return bad(protowire.ParseError(l).Error())
		}
		msg = msg[l:]
		if num == 1 && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(msg)
			if l < 0 {
				return bad(protowire.ParseError(l).Error())
			}
			status, msg = v, msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, msg)
		if l < 0 {
			return bad(protowire.ParseError(l).Error())
		}
		msg = msg[l:]
	}
	return status, nil
}
