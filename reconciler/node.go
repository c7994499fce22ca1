package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/reconciler/controller"
	"github.com/skiffhq/skiff/reconciler/volume"
	"github.com/skiffhq/skiff/state"
)

// Store is the replicated store as the node loop uses it.
type Store interface {
	State() *state.State
	Subscribe() (<-chan struct{}, func())
	Apply(ctx context.Context, c *state.Command) error
}

// Volumes prepares pod volumes on the host (implemented by volume.Manager).
type Volumes interface {
	Setup(ctx context.Context, pod *corev1.Pod, lk volume.Lookup) error
	Update(ctx context.Context, pod *corev1.Pod, lk volume.Lookup) ([]string, error)
	Mounts(pod *corev1.Pod, c *corev1.Container) ([]volume.Mount, error)
	Teardown(ctx context.Context, podUID types.UID) error
	Cleanup(ctx context.Context, keep func(uid types.UID) bool) error
	CleanupVolumes(ctx context.Context, keep func(name string) bool) ([]string, error)
	DiskUsage(podUID types.UID, volume string) (int64, error)
}

// Config configures the node loop.
type Config struct {
	NodeName string
	NodeIP   string // reported as status.hostIP
	Runtime  Runtime
	Store    Store
	Volumes  Volumes
	Recorder events.Recorder
	Network  string // runtime network for pods ("" = default)
	// ClusterDNS returns the resolver config for ClusterFirst pods (nil: node resolver).
	ClusterDNS func(*corev1.Pod) DNSConfig
	// ServiceEnv returns the Service discovery variables for a pod (nil: none).
	ServiceEnv func(*corev1.Pod) []corev1.EnvVar
	// Resync is how often the runtime is listed even without events (default 10s).
	Resync time.Duration
	// BackoffInitial and BackoffMax bound the crash-loop and image-pull back-off
	// (defaults: the kubelet's 10 s and 5 min).
	BackoffInitial, BackoffMax time.Duration
	// OrphanGrace is the stop grace for skiff pods found running that no longer exist in
	// the cluster state (their spec, and so their own grace period, is gone).
	OrphanGrace time.Duration
	Log         *slog.Logger
	Now         func() time.Time
}

// Node keeps this node's containers in step with the pods placed on it.
type Node struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wakeAll chan struct{}

	reports *reporter
}

// NewNode returns a node loop; Start runs it.
func NewNode(cfg Config) *Node {
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.BackoffInitial == 0 {
		cfg.BackoffInitial = backoffInitial
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = backoffMax
	}
	if cfg.OrphanGrace == 0 {
		cfg.OrphanGrace = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Recorder == nil {
		cfg.Recorder = events.Discard{}
	}
	n := &Node{cfg: cfg, log: cfg.Log.With("component", "node"), workers: map[types.UID]*podWorker{},
		wakeAll: make(chan struct{}, 1)}
	n.reports = newReporter(cfg.Store, n.log)
	return n
}

// Start adopts what the runtime already runs for this node and starts the loop. The
// caller must have waited for the store to catch up with the cluster.
func (n *Node) Start(ctx context.Context) error {
	pods, err := n.cfg.Runtime.Pods(ctx)
	if err != nil {
		return err
	}
	ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.done = make(chan struct{})
	go n.reports.run(ctx)
	go n.run(ctx, pods)
	return nil
}

// Stop ends the loop. Running pods keep running (like a kubelet restart); the next Start
// adopts them.
func (n *Node) Stop() error {
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	<-n.done
	n.mu.Lock()
	ws := make([]*podWorker, 0, len(n.workers))
	for _, w := range n.workers {
		ws = append(ws, w)
	}
	n.mu.Unlock()
	for _, w := range ws {
		<-w.done
	}
	n.reports.flush(context.Background())
	return nil
}

func (n *Node) run(ctx context.Context, adopted []Pod) {
	defer close(n.done)
	stateCh, unsub := n.cfg.Store.Subscribe()
	defer unsub()
	evCh := n.subscribeEvents(ctx)
	resync := time.NewTicker(n.cfg.Resync)
	defer resync.Stop()

	runtimePods := adopted
	n.adopt(ctx, adopted)
	for {
		n.sync(ctx, runtimePods)
		runtimePods = nil
		select {
		case <-ctx.Done():
			return
		case <-stateCh:
		case <-n.wakeAll:
		case ev, ok := <-evCh:
			if !ok {
				evCh = n.subscribeEvents(ctx)
				continue
			}
			n.wakePod(types.UID(ev.PodUID))
			continue
		case <-resync.C:
			pods, err := n.cfg.Runtime.Pods(ctx)
			if err != nil {
				n.log.Warn("list runtime pods", "err", err)
			} else {
				runtimePods = pods
			}
			n.wakeEvery()
		}
	}
}

// subscribeEvents returns the runtime's event stream, or a nil channel (never ready) when
// it is unavailable: the periodic resync still catches every change.
func (n *Node) subscribeEvents(ctx context.Context) <-chan Event {
	ch, err := n.cfg.Runtime.Events(ctx)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			n.log.Warn("runtime events unavailable; relying on resync", "err", err)
		}
		return nil
	}
	return ch
}

// adopt creates a worker for every pod of this node the runtime already runs, so a
// restarted agent continues where it left off instead of starting duplicates.
func (n *Node) adopt(ctx context.Context, pods []Pod) {
	s := n.cfg.Store.State()
	for _, rp := range pods {
		if rp.Node != n.cfg.NodeName {
			continue
		}
		pod := n.podByUID(s, types.UID(rp.UID))
		if pod == nil {
			continue // an orphan; sync removes it
		}
		n.mu.Lock()
		if _, ok := n.workers[pod.UID]; !ok {
			rp := rp
			n.workers[pod.UID] = n.startWorker(ctx, pod, &rp)
			n.log.Info("adopted pod", "pod", pod.Namespace+"/"+pod.Name, "sandbox", rp.ID)
		}
		n.mu.Unlock()
	}
}

func (n *Node) podByUID(s *state.State, uid types.UID) *corev1.Pod {
	for _, o := range s.Cluster.List("Pod", "") {
		if p := o.(*corev1.Pod); p.UID == uid && p.Spec.NodeName == n.cfg.NodeName {
			return p
		}
	}
	return nil
}

// sync starts workers for new pods, hands changed pods to their workers, tells workers of
// pods gone from the state to stop, and removes orphans found in runtimePods (when given).
func (n *Node) sync(ctx context.Context, runtimePods []Pod) {
	s := n.cfg.Store.State()
	desired := map[types.UID]*corev1.Pod{}
	for _, o := range s.Cluster.List("Pod", "") {
		if p := o.(*corev1.Pod); p.Spec.NodeName == n.cfg.NodeName {
			desired[p.UID] = p
		}
	}
	n.mu.Lock()
	for uid, w := range n.workers {
		if _, ok := desired[uid]; !ok {
			w.removed()
		}
	}
	for uid, p := range desired {
		if w, ok := n.workers[uid]; ok {
			w.update(p, s.Live.Hash)
			continue
		}
		n.workers[uid] = n.startWorker(ctx, p, nil)
	}
	known := make(map[types.UID]bool, len(n.workers))
	for uid := range n.workers {
		known[uid] = true
	}
	n.mu.Unlock()

	if runtimePods == nil {
		return
	}
	for _, rp := range runtimePods {
		if rp.Node != n.cfg.NodeName {
			continue
		}
		if known[types.UID(rp.UID)] {
			n.mu.Lock()
			if w := n.workers[types.UID(rp.UID)]; w != nil {
				w.observe(rp)
				if !rp.Running {
					w.wake()
				}
			}
			n.mu.Unlock()
			continue
		}
		n.log.Info("removing orphan pod", "pod", rp.Namespace+"/"+rp.Name, "uid", rp.UID)
		if err := n.cfg.Runtime.RemovePod(ctx, rp.ID, n.cfg.OrphanGrace); err != nil {
			n.log.Warn("remove orphan pod", "pod", rp.Namespace+"/"+rp.Name, "err", err)
		}
		if err := n.cfg.Volumes.Teardown(ctx, types.UID(rp.UID)); err != nil {
			n.log.Warn("tear down orphan volumes", "uid", rp.UID, "err", err)
		}
	}
	if err := n.cfg.Volumes.Cleanup(ctx, func(uid types.UID) bool { return known[uid] }); err != nil {
		n.log.Warn("clean up volumes", "err", err)
	}
	if s.Synced() { // only a synced state says for sure that a volume is gone
		keep := func(name string) bool { _, ok := controller.Volume(s, name); return ok }
		removed, err := n.cfg.Volumes.CleanupVolumes(ctx, keep)
		if err != nil {
			n.log.Warn("clean up provisioned volumes", "err", err)
		}
		for _, v := range removed {
			n.log.Info("removed the data of a deleted volume", "volume", v)
		}
	}
}

func (n *Node) startWorker(ctx context.Context, pod *corev1.Pod, rp *Pod) *podWorker {
	w := newPodWorker(n, pod, rp)
	go func() {
		w.run(ctx)
		n.mu.Lock()
		if n.workers[pod.UID] == w {
			delete(n.workers, pod.UID)
		}
		n.mu.Unlock()
	}()
	return w
}

func (n *Node) wakePod(uid types.UID) {
	n.mu.Lock()
	w := n.workers[uid]
	n.mu.Unlock()
	if w != nil {
		w.wake()
	}
}

func (n *Node) wakeEvery() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.workers {
		w.wake()
	}
}

func (n *Node) serviceEnv(pod *corev1.Pod) []corev1.EnvVar {
	if n.cfg.ServiceEnv == nil || (pod.Spec.EnableServiceLinks != nil && !*pod.Spec.EnableServiceLinks) {
		return nil
	}
	return n.cfg.ServiceEnv(pod)
}

// lookup reads ConfigMaps and Secrets from the live commit.
type lookup struct{ s *state.State }

func (l lookup) ConfigMap(ns, name string) (*corev1.ConfigMap, bool) {
	o, ok := l.s.Git.Get(state.Key{Kind: "ConfigMap", Namespace: ns, Name: name})
	if !ok {
		return nil, false
	}
	cm, ok := o.(*corev1.ConfigMap)
	return cm, ok
}

// PersistentVolumeClaim and PersistentVolume give the volume manager the claims and
// volumes as the leader's binder keeps them.
func (l lookup) PersistentVolumeClaim(ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	return controller.Claim(l.s, ns, name)
}

func (l lookup) PersistentVolume(name string) (*corev1.PersistentVolume, bool) {
	return controller.Volume(l.s, name)
}

var _ volume.ClaimLookup = lookup{}

func (l lookup) Secret(ns, name string) (*corev1.Secret, bool) {
	o, ok := l.s.Git.Get(state.Key{Kind: "Secret", Namespace: ns, Name: name})
	if !ok {
		return nil, false
	}
	sec, ok := o.(*corev1.Secret)
	return sec, ok
}

// reporter batches pod status reports into few Raft commands: every write is SD-card
// wear, so reports of many pods changing at once share one log entry, and a report that
// changes nothing is never sent.
type reporter struct {
	store Store
	log   *slog.Logger
	mu    sync.Mutex
	queue map[types.UID]state.PodStatus
	done  []state.Ref
	kick  chan struct{}
}

func newReporter(s Store, log *slog.Logger) *reporter {
	return &reporter{store: s, log: log, queue: map[types.UID]state.PodStatus{}, kick: make(chan struct{}, 1)}
}

func (r *reporter) report(pod *corev1.Pod, st corev1.PodStatus) {
	r.mu.Lock()
	r.queue[pod.UID] = state.PodStatus{Key: state.KeyOf(pod), UID: pod.UID, Status: st}
	r.mu.Unlock()
	r.poke()
}

// gone reports that a terminating pod's containers are stopped and removed.
func (r *reporter) gone(pod *corev1.Pod) {
	r.mu.Lock()
	delete(r.queue, pod.UID)
	r.done = append(r.done, state.Ref{Key: state.KeyOf(pod), UID: pod.UID, Force: true})
	r.mu.Unlock()
	r.poke()
}

func (r *reporter) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reporter) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		// Let reports of pods changing together gather into one entry.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		for r.flush(ctx) != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		backoff = 100 * time.Millisecond
	}
}

// flush sends everything queued in one command; on failure it is queued again (newer
// reports of the same pod win).
func (r *reporter) flush(ctx context.Context) error {
	r.mu.Lock()
	if len(r.queue) == 0 && len(r.done) == 0 {
		r.mu.Unlock()
		return nil
	}
	cmd := &state.Command{}
	for _, st := range r.queue {
		cmd.Status = append(cmd.Status, st)
	}
	cmd.Delete = r.done
	queued := r.queue
	r.queue, r.done = map[types.UID]state.PodStatus{}, nil
	r.mu.Unlock()
	sortStatuses(cmd.Status)

	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := r.store.Apply(actx, cmd)
	if err != nil {
		r.log.Warn("report pod status", "pods", len(cmd.Status), "err", err)
		r.mu.Lock()
		for uid, st := range queued {
			if _, newer := r.queue[uid]; !newer {
				r.queue[uid] = st
			}
		}
		r.done = append(cmd.Delete, r.done...)
		r.mu.Unlock()
	}
	return err
}

func sortStatuses(sts []state.PodStatus) {
	for i := 1; i < len(sts); i++ {
		for j := i; j > 0 && sts[j].Key.String() < sts[j-1].Key.String(); j-- {
			sts[j], sts[j-1] = sts[j-1], sts[j]
		}
	}
}

// sameStatus compares statuses ignoring probe timestamps, so unchanged pods write nothing.
func sameStatus(a, b corev1.PodStatus) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	for _, s := range []*corev1.PodStatus{&a, &b} {
		for i := range s.Conditions {
			s.Conditions[i].LastProbeTime = metaZero
		}
	}
	return equality.Semantic.DeepEqual(a, b)
}
