// Package agent is a skiff node: it runs Raft (hashicorp/raft with raft-boltdb on disk),
// applies the log to the state snapshot, serves the HTTP API, runs the node loop for the
// pods placed here and, while it leads, the git fetch loop and the controllers.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/dnsd"
	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/gitsync"
	"github.com/skiffhq/skiff/ingress"
	"github.com/skiffhq/skiff/internal/version"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/netplane"
	"github.com/skiffhq/skiff/pki"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/controller"
	"github.com/skiffhq/skiff/reconciler/podman"
	"github.com/skiffhq/skiff/reconciler/volume"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// Annotations skiff puts on its Node objects so peers can reach each other.
const (
	AnnotationAPI  = "skiff.io/api"  // the node's API URL
	AnnotationRaft = "skiff.io/raft" // the node's Raft address
)

// Agent is one skiff node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	version string

	feed    *state.Feed
	raft    *raftNode
	store   *Store
	events  *events.Ring
	runtime reconciler.Runtime
	node    *reconciler.Node
	volumes *volume.Manager
	leader  *leaderLoop
	hook    http.Handler
	peers   *peers
	cluster *cluster
	health  *nodeHealth
	metrics *metrics
	dns     *dnsd.Server
	ingress *ingress.Server
	plane   *netplane.Plane

	api            *http.Server
	apiLn          net.Listener
	ready          chan struct{} // closed once the node loop runs
	nodeDone       chan struct{} // closed once startNode returned
	notReadyReason string
	stopped        chan struct{}
	cancel         context.CancelFunc
	wg             sync.WaitGroup
}

// New validates cfg and prepares an agent; Start runs it.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: log, version: version.Version, feed: state.NewFeed(nil),
		events: events.NewRing(1000, cfg.Name), ready: make(chan struct{}), stopped: make(chan struct{})}
	a.health = newNodeHealth(cfg.Name, cfg.NodeGrace.Duration)
	a.peers = newPeers(a)
	a.metrics = newMetrics(a)
	return a, nil
}

// Run starts the agent, blocks until ctx ends, then stops it.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return a.Stop()
}

// Start brings the node up in order: Raft, API, catch-up, node registration, the node
// loop, then leadership duties whenever this node leads.
func (a *Agent) Start(ctx context.Context) error {
	ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, d := range []string{a.cfg.DataDir, filepath.Join(a.cfg.DataDir, "git"), filepath.Join(a.cfg.DataDir, "pods")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	bootstrapped, err := a.setupCluster(ctx)
	if err != nil {
		return err
	}
	a.peers.useTLS(pki.ClientTLS(a.cluster.ca, a.cluster.kp))
	stream, err := listenTLS(a.cfg.Raft, a.cfg.RaftAdvertise(),
		pki.ServerTLS(a.cluster.ca, a.cluster.kp, true), pki.ClientTLS(a.cluster.ca, a.cluster.kp))
	if err != nil {
		return err
	}
	a.raft, err = openRaft(a.cfg.DataDir, a.cfg.Name, NewFSM(a.feed, a.cluster.cipher), stream, a.cfg.SnapshotThreshold, a.log)
	if err != nil {
		stream.Close()
		return err
	}
	hasState, err := a.raft.hasState(a.cfg.DataDir)
	if err != nil {
		a.raft.close()
		return err
	}
	switch {
	case bootstrapped || (a.cfg.Bootstrap && !hasState):
		if err := a.raft.bootstrap(a.cfg.Name, a.cfg.RaftAdvertise()); err != nil {
			a.raft.close()
			return err
		}
	case !hasState && a.cfg.Join == "":
		a.log.Warn("this node has cluster credentials but no Raft state: waiting for the leader to replicate it. " +
			"If it was the only node, its state is gone: start it with --bootstrap to form a new cluster")
	}
	a.store = newStore(a.feed, a.raft.Raft, a.peers, a.cluster.cipher)
	a.health.watch(a.raft.Raft)
	a.leader = newLeaderLoop(a)
	if err := a.startDNS(ctx); err != nil {
		a.raft.close()
		return err
	}
	if err := a.startIngress(ctx); err != nil {
		if a.dns != nil {
			_ = a.dns.Stop()
		}
		a.raft.close()
		return err
	}
	a.hook = gitsync.WebhookHandler(a.webhookSecret(), a.leader.trigger, a.log)

	a.apiLn, err = net.Listen("tcp", a.cfg.API)
	if err != nil {
		a.raft.close()
		return fmt.Errorf("api listen %s: %w", a.cfg.API, err)
	}
	tlsCfg := pki.ServerTLS(a.cluster.ca, a.cluster.kp, false)
	tlsCfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := pki.ChainWithCA(a.cluster.kp(), a.cluster.ca) // joining nodes check the CA against their token
		return &c, nil
	}
	a.api = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.api.ServeTLS(a.apiLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api", "err", err)
		}
	}()
	a.log.Info("agent starting", "node", a.cfg.Name, "api", a.cfg.API, "raft", a.cfg.RaftAdvertise(), "version", a.version)

	a.nodeDone = make(chan struct{})
	go func() {
		defer close(a.nodeDone) // Stop waits for it before touching the node loop
		if err := a.startNode(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("node did not start; the API keeps answering, /readyz says why", "err", err)
		}
	}()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.leader.run(ctx)
	}()
	return nil
}

// startNode waits until this node's state has caught up with the cluster, registers the
// node and starts the node loop.
func (a *Agent) startNode(ctx context.Context) error {
	if err := a.waitCaughtUp(ctx); err != nil {
		return err
	}
	for {
		err := a.registerNode(ctx)
		if err == nil {
			break
		}
		a.log.Warn("register node", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	var rt *podman.Runtime
	for wait := 500 * time.Millisecond; ; wait = min(wait*2, 10*time.Second) {
		var err error
		if rt, err = podman.New(ctx, a.cfg.Podman, a.cfg.Name); err == nil {
			break
		}
		// Podman may come up after the agent (a boot, a restarted podman.socket): keep
		// trying; /readyz says why the node is not ready meanwhile.
		a.setNotReady(fmt.Sprintf("podman at %s: %v", a.cfg.Podman, err))
		a.log.Warn("podman unreachable; retrying", "podman", a.cfg.Podman, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	a.setNotReady("")
	a.runtime = rt
	a.volumes = volume.NewManager(volume.Config{
		Dir:           filepath.Join(a.cfg.DataDir, "pods"),
		VolumesDir:    filepath.Join(a.cfg.DataDir, "volumes"),
		HostPathAllow: a.cfg.HostPathAllow,
		GitRepos:      gitsync.NewRepoCache(filepath.Join(a.cfg.DataDir, "gitrepo"), a.log),
	})
	if err := a.startNetPlane(ctx); err != nil {
		a.setNotReady("pod network: " + err.Error())
		return err
	}
	a.node = reconciler.NewNode(reconciler.Config{
		NodeName: a.cfg.Name, NodeIP: a.nodeIP(), Runtime: a.runtime, Store: a.store,
		Volumes: a.volumes, Recorder: a.events, Network: a.cfg.Network, Log: a.log,
		ClusterDNS: a.clusterDNS(),
		ServiceEnv: func(pod *corev1.Pod) []corev1.EnvVar { return services.EnvVars(a.store.State(), pod) },
	})
	if err := a.node.Start(ctx); err != nil {
		a.setNotReady("node loop: " + err.Error())
		return err
	}
	close(a.ready)
	a.log.Info("node ready", "node", a.cfg.Name)
	return nil
}

// waitCaughtUp waits for the store to catch up; a follower then also asks the leader for
// its applied index and waits for it, so entries in flight when it started are applied
// before the node loop acts.
func (a *Agent) waitCaughtUp(ctx context.Context) error {
	if err := a.store.WaitCaughtUp(ctx); err != nil {
		return err
	}
	if a.store.IsLeader() {
		return nil
	}
	var idx struct {
		Index uint64 `json:"index"`
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.peers.getJSON(cctx, a.leaderAPI(), PathIndex, &idx); err != nil {
		a.log.Debug("leader index unavailable; relying on the commit index", "err", err)
		return nil
	}
	_, err := a.feed.WaitFor(cctx, func(s *state.State) bool { return s.Index >= idx.Index })
	if err != nil && ctx.Err() == nil {
		return nil // best effort: the node loop is safe with the commit index too
	}
	return ctx.Err()
}

// Stop shuts down in reverse order. Pods keep running: a restarted agent adopts them.
func (a *Agent) Stop() error {
	select {
	case <-a.stopped:
		return nil
	default:
	}
	close(a.stopped)
	if a.cfg.LeaveOnTerminate && a.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		a.leave(ctx)
		cancel()
	}
	if a.cancel != nil {
		a.cancel()
	}
	if a.nodeDone != nil {
		<-a.nodeDone // startNode gave up or finished: a.node, a.runtime, a.plane are settled
	}
	var errs []error
	if a.node != nil {
		errs = append(errs, a.node.Stop())
	}
	if a.plane != nil {
		_ = a.plane.Stop() // the rules stay: pods keep their network across agent restarts
	}
	if a.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.api.Shutdown(ctx)
		cancel()
	}
	a.wg.Wait()
	if a.ingress != nil {
		_ = a.ingress.Stop()
	}
	if a.dns != nil {
		_ = a.dns.Stop()
	}
	if a.leader != nil {
		a.leader.stop()
	}
	if a.raft != nil {
		errs = append(errs, a.raft.close())
	}
	a.log.Info("agent stopped", "node", a.cfg.Name)
	return errors.Join(errs...)
}

// APIAddr is the address the API listens on (useful with port 0 in tests).
func (a *Agent) APIAddr() string { return a.apiLn.Addr().String() }

// State returns the current state snapshot.
func (a *Agent) State() *state.State { return a.feed.State() }

// Ready is closed once the node loop runs.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// nodeRuntime is the container runtime, once the node loop runs (the API must not reach it
// before: startNode sets it on its own goroutine).
func (a *Agent) nodeRuntime() (reconciler.Runtime, error) {
	select {
	case <-a.ready:
		return a.runtime, nil
	default:
		return nil, fmt.Errorf("node %s is not ready yet: %s", a.cfg.Name, a.notReady())
	}
}

var notReadyMu sync.Mutex

func (a *Agent) setNotReady(reason string) {
	notReadyMu.Lock()
	defer notReadyMu.Unlock()
	a.notReadyReason = reason
}

func (a *Agent) notReady() string {
	select {
	case <-a.ready:
		return ""
	default:
	}
	notReadyMu.Lock()
	defer notReadyMu.Unlock()
	if a.notReadyReason != "" {
		return a.notReadyReason
	}
	if id, _ := a.store.Leader(); id == "" {
		return "no raft leader yet"
	}
	return "catching up with the cluster state"
}

// webhookSecret reads the shared webhook secret, if configured.
func (a *Agent) webhookSecret() []byte {
	if a.cfg.WebhookSecretFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.cfg.WebhookSecretFile)
	if err != nil {
		a.log.Error("webhook secret unreadable: webhooks will be refused", "file", a.cfg.WebhookSecretFile, "err", err)
		return []byte{0} // a secret no sender can match
	}
	return trimNewline(b)
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (a *Agent) nodeIP() string {
	host, _, _ := net.SplitHostPort(a.cfg.RaftAdvertise())
	return host
}

// registerNode puts this node's Node object into the state when it changed (labels,
// capacity, addresses), keeping what operators set (cordon).
func (a *Agent) registerNode(ctx context.Context) error {
	want := a.nodeObject()
	if cur, ok := a.store.State().Cluster.Get(state.Key{Kind: "Node", Name: a.cfg.Name}); ok {
		old := cur.(*corev1.Node)
		want.Spec.Unschedulable = old.Spec.Unschedulable
		want.Spec.Taints = old.Spec.Taints
		want.Spec.PodCIDR, want.Spec.PodCIDRs = old.Spec.PodCIDR, old.Spec.PodCIDRs // allocated by the leader
		if equality.Semantic.DeepEqual(old.Labels, want.Labels) && equality.Semantic.DeepEqual(old.Annotations, want.Annotations) &&
			equality.Semantic.DeepEqual(old.Status, want.Status) {
			return nil
		}
		want.UID = old.UID
	}
	return a.store.Apply(ctx, &state.Command{Put: state.Wrap[manifest.Object](want)})
}

func (a *Agent) nodeObject() *corev1.Node {
	mem := memTotal()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname": a.cfg.Name,
				"kubernetes.io/arch":     runtime.GOARCH,
				"kubernetes.io/os":       runtime.GOOS,
			},
			Annotations: map[string]string{
				AnnotationAPI:                a.cfg.APIAdvertise(),
				AnnotationRaft:               a.cfg.RaftAdvertise(),
				controller.AnnotationDataDir: a.cfg.DataDir, // where provisioned volumes live
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: a.nodeIP()},
				{Type: corev1.NodeHostName, Address: a.cfg.Name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture: runtime.GOARCH, OperatingSystem: runtime.GOOS,
				KubeletVersion: "skiff/" + a.version, ContainerRuntimeVersion: "podman",
			},
		},
	}
}

// memTotal reads the machine's memory from /proc/meminfo (bytes; 1 GiB if unreadable).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	var kb int64
	if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err != nil || kb == 0 {
		return 1 << 30
	}
	return kb * 1024
}

func (a *Agent) withStatus(s *state.State, now time.Time, o manifest.Object) manifest.Object {
	return controller.WithStatus(s, now, o)
}
