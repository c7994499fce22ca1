package controller

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// Store is the replicated store as the Manager uses it.
type Store interface {
	State() *state.State
	Subscribe() (<-chan struct{}, func())
	Apply(ctx context.Context, c *state.Command) error
}

// Errors of the Manager's lifecycle.
var (
	ErrStarted    = errors.New("controller manager already started")
	ErrNotStarted = errors.New("controller manager not started")
)

// Defaults of the Manager's timing.
const (
	// DefaultResync is how often the Manager plans without a state change: node liveness
	// is not in the state, so a node going NotReady is noticed by the next plan at the
	// latest (Trigger notices it at once).
	DefaultResync = 5 * time.Second
	// DefaultRetry is the wait after a failed Apply (not the leader, a timeout).
	DefaultRetry = time.Second
)

// Manager runs Plan on the leader: on every state change (a one-slot channel, so it always
// plans on the newest snapshot), when a plan asked to be run again (Requeue), on Trigger
// and every Resync. It applies each command and waits for it before planning again, so no
// decision is ever made twice; it records the plan's events once the command is applied.
type Manager struct {
	store     Store
	rec       events.Recorder
	nodeReady func(string) bool
	log       *slog.Logger

	// Optional settings, read by Start.

	// UnreachableToleration is the cluster-wide default toleration of an unreachable node
	// (DefaultUnreachableToleration when 0).
	UnreachableToleration time.Duration
	// Services, when set, makes every plan allocate Service addresses and node subnets.
	Services *services.AllocConfig
	Resync   time.Duration // DefaultResync when 0
	Retry    time.Duration // DefaultRetry when 0
	Now      func() time.Time

	notReadySinceFn func(node string) (time.Time, bool)

	wake     chan struct{}
	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	notReady map[string]time.Time // the run goroutine's own
}

// NewManager returns a manager planning over store. rec receives the plans' events (nil:
// dropped); nodeReady reports node liveness (nil: every node with a Node object is ready).
func NewManager(store Store, rec events.Recorder, nodeReady func(string) bool, log *slog.Logger) *Manager {
	if rec == nil {
		rec = events.Discard{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: store, rec: rec, nodeReady: nodeReady, log: log, wake: make(chan struct{}, 1)}
}

// SetNodeNotReadySince gives the Manager the agent's record of since when each node has
// been NotReady (its heartbeat tracker knows best). Without it the Manager notes the first
// plan at which nodeReady reported a node not ready. Call it before Start.
func (m *Manager) SetNodeNotReadySince(f func(node string) (time.Time, bool)) {
	m.notReadySinceFn = f
}

// Start starts planning in the background until ctx ends or Stop.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil {
		return ErrStarted
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	m.notReady = map[string]time.Time{}
	ch, unsubscribe := m.store.Subscribe()
	go func() {
		defer close(m.done)
		defer unsubscribe()
		m.run(ctx, ch)
	}()
	return nil
}

// Stop stops planning and waits for a plan in progress to finish.
func (m *Manager) Stop() error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if cancel == nil {
		return ErrNotStarted
	}
	cancel()
	<-done
	return nil
}

// Trigger asks for a plan now (say, when a node's liveness changed).
func (m *Manager) Trigger() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) run(ctx context.Context, changed <-chan struct{}) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x736b696666))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(m.planOnce(ctx, r))
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// planOnce plans, applies and records, and returns how long to wait at most before the
// next plan.
func (m *Manager) planOnce(ctx context.Context, r *rand.Rand) time.Duration {
	wait := m.Resync
	if wait <= 0 {
		wait = DefaultResync
	}
	s := m.store.State()
	if !s.Synced() && m.Services == nil {
		return wait // nothing is declared yet: nothing to decide
	}
	now := m.now()
	res := Plan(Input{
		State: s, Now: now, NodeReady: m.nodeReady, NodeNotReadySince: m.notReadySince(s, now),
		UnreachableToleration: m.UnreachableToleration, Rand: r, Services: m.Services,
	})
	if res.Command != nil {
		if err := m.store.Apply(ctx, res.Command); err != nil {
			// Nothing was decided: the events did not happen, the next plan decides again.
			if ctx.Err() == nil {
				m.log.Warn("apply controller decisions", "err", err, "puts", len(res.Command.Put), "deletes", len(res.Command.Delete))
			}
			if m.Retry > 0 {
				return m.Retry
			}
			return DefaultRetry
		}
	}
	for _, e := range res.Events {
		m.rec.Eventf(e.Object, e.Type, e.Reason, "%s", e.Message)
	}
	if res.Requeue > 0 && res.Requeue < wait {
		wait = res.Requeue
	}
	return wait
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// notReadySince returns the NotReady tracker for a plan: the configured one, or the
// Manager's own record of when it first saw each node not ready.
func (m *Manager) notReadySince(s *state.State, now time.Time) func(string) (time.Time, bool) {
	if m.notReadySinceFn != nil {
		return m.notReadySinceFn
	}
	seen := map[string]bool{}
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		seen[n.Name] = true
		if m.nodeReady == nil || m.nodeReady(n.Name) {
			delete(m.notReady, n.Name)
		} else if _, ok := m.notReady[n.Name]; !ok {
			m.notReady[n.Name] = now
		}
	}
	for n := range m.notReady {
		if !seen[n] {
			delete(m.notReady, n)
		}
	}
	since := make(map[string]time.Time, len(m.notReady))
	for n, t := range m.notReady {
		since[n] = t
	}
	return func(n string) (time.Time, bool) {
		t, ok := since[n]
		return t, ok
	}
}
