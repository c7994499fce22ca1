// Package podman implements reconciler.Runtime over Podman's REST API
// (github.com/containers/podman/v4/pkg/bindings): one Podman pod per Kubernetes pod, sharing
// the network, IPC and UTS namespaces through the locally built infra container, and one
// Podman container per Kubernetes container, run with catatonit as PID 1 and restart
// policy "no" (the node loop restarts with back-off itself).
//
// Everything it creates carries the reconciler.Label* labels; it lists only objects with
// reconciler.LabelManaged and refuses to stop, remove, exec into or read logs of anything
// else (ErrNotManaged).
package podman

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/blang/semver/v4"
	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/errorhandling"

	"github.com/skiffhq/skiff/reconciler"
)

// ErrNotManaged is returned for an object that exists but that skiff did not create.
var ErrNotManaged = errors.New("not managed by skiff")

// minVersion is the oldest Podman service this package is tested against (Debian bookworm).
var minVersion = semver.MustParse("4.3.0")

var _ reconciler.Runtime = (*Runtime)(nil)

// Runtime is a reconciler.Runtime backed by a Podman API service. It is safe for
// concurrent use.
type Runtime struct {
	conn    context.Context // carries the bindings connection; never cancelled
	node    string          // default LabelNode when a PodConfig has none
	version *semver.Version
	oom     *oomWatcher // nil when the kernel log cannot be read

	mu      sync.Mutex
	podIPs  map[string]podIP             // by pod ID
	details map[string]containerDetails  // by container ID: from inspect, per list state
	managed map[string]bool              // container and pod IDs known to be skiff's
	podMeta map[string]map[string]string // pod ID → its skiff labels, for CreateContainer
	// unlabelledInfra: this Podman does not copy pod labels to infra containers, so
	// Pods() needs Podman's pod list (set on the first such infra container seen).
	unlabelledInfra bool
}

// podIP caches the address of a pod's infra container, valid while the same infra
// container keeps running (key: its ID and start time).
type podIP struct {
	key string
	ip  string
}

// containerDetails caches what only an inspect tells (OOMKilled, the runtime error,
// precise times), keyed by the list's coarse state so a change invalidates it.
type containerDetails struct {
	key        string
	oomKilled  bool
	errMsg     string
	exitCode   int
	startedAt  time.Time
	finishedAt time.Time
	tty        bool
}

// New connects to the Podman service at uri (unix:///run/podman/podman.sock,
// tcp://host:port or ssh://...) and checks its version. node is recorded as LabelNode on
// pods whose PodConfig names no node.
func New(ctx context.Context, uri string, node string) (*Runtime, error) {
	conn, err := bindings.NewConnection(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("connect to podman at %s: %w", uri, err)
	}
	v := bindings.ServiceVersion(conn)
	if v == nil || v.LT(minVersion) {
		return nil, fmt.Errorf("podman at %s is version %v; skiff needs %v or newer", uri, v, minVersion)
	}
	return &Runtime{
		conn:    context.WithoutCancel(conn),
		node:    node,
		version: v,
		oom:     startOOMWatcher(),
		podIPs:  map[string]podIP{},
		details: map[string]containerDetails{},
		managed: map[string]bool{},
		podMeta: map[string]map[string]string{},
	}, nil
}

// Close stops the runtime's background work (the kernel log reader). The API connection
// needs no closing.
func (r *Runtime) Close() error {
	r.oom.close()
	return nil
}

// Version is the Podman service's version.
func (r *Runtime) Version() string { return r.version.String() }

// ctx returns a context with the caller's deadline and cancellation and the bindings
// connection's values.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return callCtx{Context: ctx, values: r.conn}
}

type callCtx struct {
	context.Context
	values context.Context
}

func (c callCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}

// httpCode is the HTTP status of a failed API call, 0 when the error is not from the API.
func httpCode(err error) int {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) {
		return em.ResponseCode
	}
	var pc *errorhandling.PodConflictErrorModel
	if errors.As(err, &pc) {
		return pc.Code()
	}
	return 0
}

// isNotFound: a 404, or the 500 Podman answers when an object vanishes while it is being
// inspected (removed concurrently).
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	if httpCode(err) == 404 {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no such container") || strings.Contains(msg, "no such pod")
}

// notFound wraps a 404 from the API as reconciler.ErrNotFound.
func notFound(what, id string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s %s: %w: %v", what, id, reconciler.ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", what, id, err)
}

func (r *Runtime) markManaged(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.managed[id] = true
	}
}

func (r *Runtime) knownManaged(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.managed[id]
}

func (r *Runtime) forget(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.managed, id)
		delete(r.details, id)
		delete(r.podIPs, id)
		delete(r.podMeta, id)
		r.oom.forget(id)
	}
}

func isManaged(labels map[string]string) bool { return labels[reconciler.LabelManaged] == "true" }

// seconds converts a grace period to Podman's whole-second timeouts, rounding up so a
// container never gets less time than asked for.
func seconds(d time.Duration) uint {
	if d <= 0 {
		return 0
	}
	return uint((d + time.Second - 1) / time.Second)
}
