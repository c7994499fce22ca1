package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/reconciler/probe"
)

// Crash-loop back-off, as the kubelet: the first restart is immediate, then 10 s doubling
// to 5 min; a container that ran for 10 min resets it.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
	retryConfig    = 10 * time.Second // missing ConfigMap/Secret, failed mount: look again
)

var metaZero = metav1.Time{}

// podWorker runs one pod: sandbox, init containers in order, containers with restarts and
// probes, volumes, termination. Only its goroutine touches its fields, except those under mu.
type podWorker struct {
	n     *Node
	wakeC chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	pod      *corev1.Pod // latest from the state
	commit   string      // live commit the pod was last seen with (ConfigMap changes)
	isGone   bool        // the pod left the state without a graceful termination
	podDirty bool
	listed   *Pod // the sandbox as the runtime last listed it, not yet looked at
	// forceReport: the state holds a status this node did not write; report again.
	forceReport bool

	sandbox    *Pod
	ctrs       map[string]*ctr
	order      []string // init containers then containers, by name
	reported   *corev1.PodStatus
	startTime  *metav1.Time
	failed     string // reason the pod failed for good (Evicted, DeadlineExceeded), "" if not
	failedMsg  string
	volErr     string
	lastCommit string
	warned     map[string]string // event reason → last message, to avoid repeating events
}

type ctr struct {
	spec        *corev1.Container
	init        bool
	cur         *Container // the current attempt; nil before the first start
	prev        *Container // the previous attempt (lastState, logs --previous)
	backoff     time.Duration
	retryAt     time.Time
	waiting     string // reason it is not running: ContainerCreating, ErrImagePull, ...
	waitMsg     string
	pulled      bool
	exitSeen    string        // ID of the exited attempt whose restart is scheduled
	delay       time.Duration // the back-off of the scheduled restart
	pullBackoff time.Duration
	pullRetryAt time.Time
	probes      *ctrProbes
	liveKill    bool // the current attempt was killed by its liveness probe
}

func newPodWorker(n *Node, pod *corev1.Pod, rp *Pod) *podWorker {
	w := &podWorker{n: n, wakeC: make(chan struct{}, 1), done: make(chan struct{}), pod: pod,
		ctrs: map[string]*ctr{}, warned: map[string]string{}}
	for _, c := range allContainers(pod) {
		w.ctrs[c.Name] = &ctr{spec: c, init: isInit(pod, c.Name)}
		w.order = append(w.order, c.Name)
	}
	if pod.Status.StartTime != nil {
		t := *pod.Status.StartTime
		w.startTime = &t
	}
	if pod.Status.Phase != "" {
		st := *pod.Status.DeepCopy()
		w.reported = &st
	}
	if rp != nil {
		w.adopt(rp)
	}
	return w
}

func isInit(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// adopt rebuilds the worker's view from what the runtime runs: the newest attempt of each
// container is current, the one before is previous; restart counts come from attempts.
func (w *podWorker) adopt(rp *Pod) {
	sb := *rp
	w.sandbox = &sb
	byName := map[string][]Container{}
	for _, c := range rp.Containers {
		byName[c.Name] = append(byName[c.Name], c)
	}
	for name, cs := range byName {
		c := w.ctrs[name]
		if c == nil {
			continue
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Attempt > cs[j].Attempt })
		cur := cs[0]
		c.cur = &cur
		c.pulled = true
		if len(cs) > 1 {
			prev := cs[1]
			c.prev = &prev
		}
		for i := 0; i < cur.Attempt; i++ {
			c.backoff = w.n.nextBackoff(c.backoff)
		}
	}
}

func (w *podWorker) wake() {
	select {
	case w.wakeC <- struct{}{}:
	default:
	}
}

// markedNotReadyByLeader reports whether the pod's Ready condition was set False by the
// leader because this node stopped answering (controller.ReasonNodeNotReady).
func markedNotReadyByLeader(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse && c.Reason == "NodeNotReady" {
			return true
		}
	}
	return false
}

// observe records the sandbox as the runtime last listed it (running, IP).
func (w *podWorker) observe(rp Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listed = &rp
}

// sandboxRunning reports whether the sandbox runs, by the newest listing when it is newer
// than what the worker knows.
func (w *podWorker) sandboxRunning() bool {
	w.mu.Lock()
	listed := w.listed
	w.listed = nil
	w.mu.Unlock()
	if listed != nil && listed.ID == w.sandbox.ID {
		w.sandbox.Running = listed.Running
		if listed.IP != "" {
			w.sandbox.IP = listed.IP
		}
	}
	return w.sandbox.Running
}

// update hands the worker the pod's newest version; it wakes only if something other
// than the status (which this worker wrote itself) changed.
func (w *podWorker) update(p *corev1.Pod, commit string) {
	w.mu.Lock()
	old := w.pod
	changed := commit != w.commit || p.DeletionTimestamp != nil && old.DeletionTimestamp == nil ||
		!equality.Semantic.DeepEqual(old.ObjectMeta.Labels, p.ObjectMeta.Labels) ||
		!equality.Semantic.DeepEqual(old.ObjectMeta.Annotations, p.ObjectMeta.Annotations)
	w.pod, w.commit = p, commit
	w.podDirty = w.podDirty || changed
	if markedNotReadyByLeader(p) {
		// The leader marked the pod NotReady while this node was unreachable: report
		// this node's own view again.
		w.forceReport = true
		changed = true
	}
	w.mu.Unlock()
	if changed {
		w.wake()
	}
}

// removed tells the worker its pod left the state (force-deleted): stop everything.
func (w *podWorker) removed() {
	w.mu.Lock()
	w.isGone = true
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.isGone
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	defer w.stopProbes()
	for {
		next, finished := w.sync(ctx)
		if finished || ctx.Err() != nil {
			return
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.wakeC:
			t.Stop()
		case <-t.C:
		}
	}
}

// sync moves the pod one step toward running and reports its status. It returns when to
// look again at the latest, and whether the worker is finished (the pod is gone).
func (w *podWorker) sync(ctx context.Context) (time.Duration, bool) {
	pod, gone := w.snapshot()
	if gone || pod.DeletionTimestamp != nil {
		w.terminate(ctx, pod, gone)
		return 0, true
	}
	now := w.n.cfg.Now()
	if w.startTime == nil {
		t := metav1.NewTime(now.UTC().Truncate(time.Second))
		w.startTime = &t
	}
	if w.failed != "" || terminalPhase(w.reported) {
		w.report(pod, now)
		return time.Minute, false
	}
	next := w.n.cfg.Resync * 3

	s := w.n.cfg.Store.State()
	lk := lookup{s}
	if err := w.n.cfg.Volumes.Setup(ctx, pod, lk); err != nil {
		w.volErr = err.Error()
		w.warn(pod, "FailedMount", "%v", err)
		w.report(pod, now)
		return retryConfig, false
	}
	w.volErr = ""
	if s.Live.Hash != w.lastCommit {
		if changed, err := w.n.cfg.Volumes.Update(ctx, pod, lk); err != nil {
			w.warn(pod, "FailedMount", "update volumes: %v", err)
		} else if len(changed) > 0 {
			w.n.log.Info("updated volumes in place", "pod", pod.Namespace+"/"+pod.Name, "volumes", changed)
		}
		w.lastCommit = s.Live.Hash
	}

	if w.sandbox == nil || !w.sandboxRunning() {
		// A new pod, or one whose sandbox died (a node reboot): (re)start the sandbox;
		// its containers are restarted below, counting restarts, as the kubelet does.
		sb, err := w.n.cfg.Runtime.CreatePod(ctx, w.n.podConfig(pod))
		if err != nil {
			w.warn(pod, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			w.report(pod, now)
			return retryConfig, false
		}
		w.sandbox = &sb
	}
	w.refresh(ctx)

	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && now.Sub(w.startTime.Time) > time.Duration(*d)*time.Second {
		w.fail(ctx, pod, "DeadlineExceeded", fmt.Sprintf("Pod was active on the node longer than the specified deadline (%ds)", *d))
		return time.Minute, false
	}
	if reason, msg := w.checkEmptyDirLimits(pod); reason != "" {
		w.fail(ctx, pod, reason, msg)
		return time.Minute, false
	}

	initDone := true
	for _, c := range pod.Spec.InitContainers {
		st := w.ctrs[c.Name]
		if st.cur != nil && st.cur.State == StateExited && st.cur.ExitCode == 0 {
			continue
		}
		initDone = false
		if d := w.step(ctx, pod, lk, st, now); d > 0 {
			next = min(next, d)
		}
		break // init containers run one at a time, in order
	}
	if initDone {
		for _, c := range pod.Spec.Containers {
			if d := w.step(ctx, pod, lk, w.ctrs[c.Name], now); d > 0 {
				next = min(next, d)
			}
		}
	}
	w.report(pod, w.n.cfg.Now())
	return max(next, 100*time.Millisecond), false
}

// refresh reads the current state of every container the worker knows.
func (w *podWorker) refresh(ctx context.Context) {
	for _, name := range w.order {
		c := w.ctrs[name]
		if c.cur == nil {
			continue
		}
		got, err := w.n.cfg.Runtime.Container(ctx, c.cur.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			// Removed behind our back: start it again, counting a restart.
			gone := *c.cur
			gone.State, gone.ExitCode = StateExited, 137
			c.prev, c.cur = &gone, nil
			c.cur = nil
			c.retryAt = time.Time{}
		case err != nil:
			w.n.log.Warn("inspect container", "container", c.cur.ID, "err", err)
		default:
			c.cur = &got
		}
	}
}

// step moves one container forward: start it, restart it after a crash (with back-off),
// run its probes, act on a failed liveness probe. It returns when to look again (0: only
// on an event).
func (w *podWorker) step(ctx context.Context, pod *corev1.Pod, lk Lookup, c *ctr, now time.Time) time.Duration {
	if c.cur != nil {
		switch c.cur.State {
		case StateRunning:
			w.ensureProbes(ctx, pod, c)
			if failed := c.probes.failed(); failed != nil {
				st := failed.Status()
				w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", st.Kind, st.Message)
				w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.spec.Name, strings.ToLower(string(st.Kind)))
				c.probes.stop()
				c.probes = nil
				c.liveKill = true
				if err := w.n.cfg.Runtime.StopContainer(ctx, c.cur.ID, w.probeGrace(pod, c.spec.LivenessProbe)); err != nil {
					w.n.log.Warn("stop unhealthy container", "container", c.cur.ID, "err", err)
				}
				if got, err := w.n.cfg.Runtime.Container(ctx, c.cur.ID); err == nil {
					c.cur = &got
				}
				return 100 * time.Millisecond
			}
			if !c.cur.StartedAt.IsZero() && now.Sub(c.cur.StartedAt) > backoffReset {
				c.backoff = 0
			}
			return 0
		case StateCreated:
			if err := w.n.cfg.Runtime.StartContainer(ctx, c.cur.ID); err != nil {
				w.warn(pod, "Failed", "Error: %v", err)
				c.waiting, c.waitMsg = "RunContainerError", err.Error()
				return retryConfig
			}
			w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)
			w.refreshOne(ctx, c)
			return 0
		case StateExited, StateUnknown:
			w.stopContainerProbes(c)
			if !w.shouldRestart(pod, c) {
				return 0
			}
			if c.exitSeen != c.cur.ID {
				// First look at this exit: the restart waits out the current back-off
				// (none for the first crash), and the next one waits longer.
				c.exitSeen = c.cur.ID
				from := c.cur.FinishedAt
				if from.IsZero() || from.After(now) {
					from = now
				}
				c.retryAt = from.Add(c.backoff)
				c.delay = c.backoff
				c.backoff = w.n.nextBackoff(c.backoff)
			}
			if now.Before(c.retryAt) {
				c.waiting = "CrashLoopBackOff"
				c.waitMsg = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", c.delay, c.spec.Name, pod.Name)
				w.warn(pod, "BackOff", "Back-off restarting failed container %s in pod %s", c.spec.Name, pod.Name)
				return c.retryAt.Sub(now)
			}
		}
	}
	return w.start(ctx, pod, lk, c, now)
}

func (n *Node) nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return n.cfg.BackoffInitial
	}
	return min(b*2, n.cfg.BackoffMax)
}

// start creates and starts the next attempt of a container.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, lk Lookup, c *ctr, now time.Time) time.Duration {
	attempt := 0
	if c.cur != nil {
		attempt = c.cur.Attempt + 1
	}
	if !c.pulled || pullPolicy(c.spec) == PullAlways {
		if !w.pull(ctx, pod, c, now) {
			return c.pullRetryAt.Sub(now) + 10*time.Millisecond
		}
	}
	cfg, err := w.n.containerConfig(w.withRuntimeStatus(pod), c.spec, c.init, attempt, lk)
	if err != nil {
		c.waiting, c.waitMsg = "CreateContainerConfigError", err.Error()
		w.warn(pod, "Failed", "Error: %v", err)
		return retryConfig
	}
	created, err := w.n.cfg.Runtime.CreateContainer(ctx, w.sandbox.ID, cfg)
	if err != nil {
		c.waiting, c.waitMsg = "CreateContainerError", err.Error()
		w.warn(pod, "Failed", "Error: %v", err)
		if errors.Is(err, ErrNotFound) || strings.Contains(strings.ToLower(err.Error()), "no such pod") {
			w.sandbox = nil // the sandbox vanished: recreate it on the next pass
		}
		return retryConfig
	}
	w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Created", "Created container %s", c.spec.Name)
	old := c.prev
	if c.cur != nil {
		c.prev = c.cur
	}
	c.cur = &created
	c.retryAt = time.Time{}
	c.liveKill = false
	c.waiting, c.waitMsg = "", ""
	if old != nil && old.ID != created.ID && (c.prev == nil || old.ID != c.prev.ID) {
		if err := w.n.cfg.Runtime.RemoveContainer(ctx, old.ID); err != nil {
			w.n.log.Warn("remove old container", "container", old.ID, "err", err)
		}
	}
	if err := w.n.cfg.Runtime.StartContainer(ctx, created.ID); err != nil {
		c.waiting, c.waitMsg = "RunContainerError", err.Error()
		w.warn(pod, "Failed", "Error: %v", err)
		w.refreshOne(ctx, c)
		return retryConfig
	}
	w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)
	w.refreshOne(ctx, c)
	return 0
}

// withRuntimeStatus returns the pod with the status fields the downward API reads
// (status.podIP, status.hostIP) taken from the running sandbox: the cluster only learns them
// from this node's next report, after the container is made.
func (w *podWorker) withRuntimeStatus(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	if ip := w.podIP(); ip != "" {
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	if ip := w.n.cfg.NodeIP; ip != "" {
		p.Status.HostIP, p.Status.HostIPs = ip, []corev1.HostIP{{IP: ip}}
	}
	return p
}

// pull makes the image present; on failure the container waits with ErrImagePull, then
// ImagePullBackOff, retried with back-off.
func (w *podWorker) pull(ctx context.Context, pod *corev1.Pod, c *ctr, now time.Time) bool {
	if now.Before(c.pullRetryAt) {
		c.waiting = "ImagePullBackOff"
		c.waitMsg = fmt.Sprintf("Back-off pulling image %q", c.spec.Image)
		return false
	}
	if _, err := w.n.cfg.Runtime.EnsureImage(ctx, c.spec.Image, pullPolicy(c.spec)); err != nil {
		reason := "ErrImagePull"
		if pullPolicy(c.spec) == PullNever {
			reason = "ErrImageNeverPull"
		}
		if c.waiting == "ErrImagePull" || c.waiting == "ImagePullBackOff" {
			w.warn(pod, "BackOff", "Back-off pulling image %q", c.spec.Image)
		}
		c.waiting, c.waitMsg = reason, err.Error()
		w.warn(pod, "Failed", "Failed to pull image %q: %v", c.spec.Image, err)
		c.pullBackoff = w.n.nextBackoff(c.pullBackoff)
		c.pullRetryAt = now.Add(c.pullBackoff)
		return false
	}
	if !c.pulled {
		w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.spec.Image)
	}
	c.pulled, c.pullBackoff, c.pullRetryAt = true, 0, time.Time{}
	return true
}

func (w *podWorker) refreshOne(ctx context.Context, c *ctr) {
	if c.cur == nil {
		return
	}
	if got, err := w.n.cfg.Runtime.Container(ctx, c.cur.ID); err == nil {
		c.cur = &got
	}
}

// shouldRestart applies restartPolicy (init containers: Never means the pod fails).
func (w *podWorker) shouldRestart(pod *corev1.Pod, c *ctr) bool {
	if c.cur == nil {
		return true
	}
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return c.cur.ExitCode != 0 || c.cur.OOMKilled
	}
	if c.init {
		return c.cur.ExitCode != 0
	}
	return true
}

func (w *podWorker) probeGrace(pod *corev1.Pod, p *corev1.Probe) time.Duration {
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return corev1.DefaultTerminationGracePeriodSeconds * time.Second
}

// fail ends the pod for good (evicted, deadline exceeded): containers stopped, phase Failed.
func (w *podWorker) fail(ctx context.Context, pod *corev1.Pod, reason, msg string) {
	if w.failed == "" {
		w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, reason, "%s", msg)
		w.stopProbes()
		grace := w.probeGrace(pod, nil)
		for _, name := range w.order {
			if c := w.ctrs[name]; c.cur != nil && c.cur.State == StateRunning {
				w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
				if err := w.n.cfg.Runtime.StopContainer(ctx, c.cur.ID, grace); err != nil {
					w.n.log.Warn("stop container", "container", c.cur.ID, "err", err)
				}
			}
		}
		w.refresh(ctx)
	}
	w.failed, w.failedMsg = reason, msg
	w.report(pod, w.n.cfg.Now())
}

// checkEmptyDirLimits evicts a pod whose disk-backed emptyDir outgrew its sizeLimit.
func (w *podWorker) checkEmptyDirLimits(pod *corev1.Pod) (string, string) {
	for _, v := range pod.Spec.Volumes {
		ed := v.EmptyDir
		if ed == nil || ed.SizeLimit == nil || ed.Medium == corev1.StorageMediumMemory {
			continue
		}
		used, err := w.n.cfg.Volumes.DiskUsage(pod.UID, v.Name)
		if err == nil && used > ed.SizeLimit.Value() {
			return "Evicted", fmt.Sprintf("Usage of EmptyDir volume %q exceeds the limit %q.", v.Name, ed.SizeLimit.String())
		}
	}
	return "", ""
}

// terminate stops the pod's containers within its grace period, removes the sandbox and
// volumes, and tells the cluster the pod is gone.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod, gone bool) {
	w.stopProbes()
	grace := w.probeGrace(pod, nil)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	for _, name := range w.order {
		if c := w.ctrs[name]; c.cur != nil && c.cur.State == StateRunning {
			w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
		}
	}
	sandboxID := ""
	if w.sandbox != nil {
		sandboxID = w.sandbox.ID
	} else if pods, err := w.n.cfg.Runtime.Pods(ctx); err == nil {
		for _, rp := range pods {
			if rp.UID == string(pod.UID) {
				sandboxID = rp.ID
			}
		}
	}
	if sandboxID != "" {
		if err := w.n.cfg.Runtime.RemovePod(ctx, sandboxID, grace); err != nil {
			w.n.log.Warn("remove pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	if err := w.n.cfg.Volumes.Teardown(ctx, pod.UID); err != nil {
		w.n.log.Warn("tear down volumes", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	if !gone {
		w.n.reports.gone(pod)
	}
}

// warn records a warning event once per distinct message (events fold repeats anyway,
// but this keeps retry loops from refreshing them every few seconds).
func (w *podWorker) warn(pod *corev1.Pod, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if w.warned[reason] == msg && reason != "BackOff" {
		return
	}
	w.warned[reason] = msg
	typ := corev1.EventTypeWarning
	w.n.cfg.Recorder.Eventf(pod, typ, reason, "%s", msg)
}

// report sends the pod's status to the cluster when it changed.
func (w *podWorker) report(pod *corev1.Pod, now time.Time) {
	st := w.status(pod, now)
	w.mu.Lock()
	force := w.forceReport
	w.forceReport = false
	w.mu.Unlock()
	if !force && w.reported != nil && sameStatus(*w.reported, st) {
		return
	}
	w.reported = &st
	w.n.reports.report(pod, st)
}

// --- probes ---

type ctrProbes struct {
	id        string
	startup   *probe.Worker
	liveness  *probe.Worker
	readiness *probe.Worker
	cancel    context.CancelFunc
	ctx       context.Context
	target    probe.Target
	wake      func()
}

func (p *ctrProbes) stop() {
	p.cancel()
	for _, pw := range []*probe.Worker{p.startup, p.liveness, p.readiness} {
		if pw != nil {
			pw.Stop()
		}
	}
}

func (p *ctrProbes) started() bool {
	return p.startup == nil || p.startup.Status().State == probe.Success
}

// failed returns the liveness or startup probe that failed (the container must be
// restarted), or nil.
func (p *ctrProbes) failed() *probe.Worker {
	if p == nil {
		return nil
	}
	for _, w := range []*probe.Worker{p.startup, p.liveness} {
		if w != nil && w.Status().State == probe.Failure {
			return w
		}
	}
	return nil
}

func (p *ctrProbes) ready() bool {
	if !p.started() {
		return false
	}
	return p.readiness == nil || p.readiness.Status().State == probe.Success
}

// ensureProbes runs the container's probes against its current attempt: the startup probe
// first, liveness and readiness once it succeeded.
func (w *podWorker) ensureProbes(ctx context.Context, pod *corev1.Pod, c *ctr) {
	if c.probes != nil && c.probes.id != c.cur.ID {
		w.stopContainerProbes(c)
	}
	if c.probes == nil {
		pctx, cancel := context.WithCancel(ctx)
		id := c.cur.ID
		ip := w.podIP()
		c.probes = &ctrProbes{id: id, cancel: cancel, ctx: pctx, wake: w.wake, target: probe.Target{
			PodIP: ip, Ports: c.spec.Ports,
			Exec: func(ctx context.Context, cmd []string) (int, []byte, error) {
				var out bytes.Buffer
				code, err := w.n.cfg.Runtime.Exec(ctx, id, ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
				return code, out.Bytes(), err
			},
		}}
		if p := c.spec.StartupProbe; p != nil {
			c.probes.startup = w.newProbe(pod, c, probe.Startup, p)
		}
	}
	if c.probes.started() {
		if p := c.spec.LivenessProbe; p != nil && c.probes.liveness == nil {
			c.probes.liveness = w.newProbe(pod, c, probe.Liveness, p)
		}
		if p := c.spec.ReadinessProbe; p != nil && c.probes.readiness == nil {
			c.probes.readiness = w.newProbe(pod, c, probe.Readiness, p)
		}
	}
}

func (w *podWorker) newProbe(pod *corev1.Pod, c *ctr, kind probe.Kind, p *corev1.Probe) *probe.Worker {
	name := c.spec.Name
	pw := probe.NewWorker(kind, p, c.probes.target, func(st probe.Status) {
		if st.State == probe.Failure && kind == probe.Readiness {
			w.n.cfg.Recorder.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "Readiness probe failed: %s", st.Message)
		}
		w.n.log.Debug("probe", "pod", pod.Name, "container", name, "kind", kind, "state", st.State, "msg", st.Message)
		w.wake()
	})
	pw.Start(c.probes.ctx)
	return pw
}

func (w *podWorker) stopContainerProbes(c *ctr) {
	if c.probes != nil {
		c.probes.stop()
		c.probes = nil
	}
}

func (w *podWorker) stopProbes() {
	for _, c := range w.ctrs {
		w.stopContainerProbes(c)
	}
}

func (w *podWorker) podIP() string {
	if w.sandbox != nil && w.sandbox.IP != "" {
		return w.sandbox.IP
	}
	return w.n.cfg.NodeIP
}
