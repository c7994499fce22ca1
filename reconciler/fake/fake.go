// Package fake is an in-memory reconciler.Runtime for unit tests of the node loop.
//
// Containers "run" from StartContainer until the test ends them (Exit, OOM) or the loop
// stops them; images are present when the test says so (AddImage) and pullable when it
// says so (AddPullable); pod IPs are 10.88.0.2, .3, ... in creation order. Every call is
// recorded (Calls), events are delivered to every subscriber, errors can be injected per
// method (FailNext, Fail), and everything is safe for concurrent use.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/reconciler"
)

var _ reconciler.Runtime = (*Runtime)(nil)

// Call is one recorded method call.
type Call struct {
	Method string
	ID     string // pod or container ID, image name; "" when the method takes none
	Arg    any    // PodConfig, ContainerConfig, grace (time.Duration), LogOptions, ExecOptions, PullPolicy
}

// ExecFunc answers an Exec: it gets the container and the options (with its writers)
// and returns the exit code.
type ExecFunc func(c reconciler.Container, opts reconciler.ExecOptions) (int, error)

// Runtime is the in-memory runtime. The zero value is not usable: call New.
type Runtime struct {
	// Now is the clock for created/started/finished times (time.Now by default).
	Now func() time.Time
	// StopExitCode is the exit code a container stopped by StopContainer or RemovePod
	// reports (0 by default: it handled SIGTERM).
	StopExitCode int

	mu       sync.Mutex
	seq      int
	ipSeq    int
	pods     map[string]*pod
	ctrs     map[string]*reconciler.Container
	images   map[string]string // name → ID
	pullable map[string]bool
	logs     map[string][]byte
	exec     ExecFunc
	calls    []Call
	failNext map[string][]error
	fail     map[string]error
	subs     map[int]chan reconciler.Event
	subSeq   int
}

type pod struct {
	reconciler.Pod
	cfg reconciler.PodConfig
}

// New returns an empty runtime with the given images present.
func New(images ...string) *Runtime {
	r := &Runtime{
		Now:      time.Now,
		pods:     map[string]*pod{},
		ctrs:     map[string]*reconciler.Container{},
		images:   map[string]string{},
		pullable: map[string]bool{},
		logs:     map[string][]byte{},
		failNext: map[string][]error{},
		fail:     map[string]error{},
		subs:     map[int]chan reconciler.Event{},
	}
	for _, img := range images {
		r.images[img] = imageID(img)
	}
	return r
}

func imageID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// AddImage makes images present on the node.
func (r *Runtime) AddImage(images ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, img := range images {
		r.images[img] = imageID(img)
	}
}

// RemoveImage removes images from the node.
func (r *Runtime) RemoveImage(images ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, img := range images {
		delete(r.images, img)
	}
}

// AddPullable makes images pullable from a registry: EnsureImage then makes them present.
func (r *Runtime) AddPullable(images ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, img := range images {
		r.pullable[img] = true
	}
}

// HasImage tells whether an image is present.
func (r *Runtime) HasImage(image string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.images[image]
	return ok
}

// SetExec sets how Exec answers (default: exit 0, no output).
func (r *Runtime) SetExec(f ExecFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exec = f
}

// WriteLog appends output to a container's log, as if it had printed it.
func (r *Runtime) WriteLog(id, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs[id] = append(r.logs[id], s...)
}

// FailNext makes the next call of method return err (queued: one error per call).
func (r *Runtime) FailNext(method string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext[method] = append(r.failNext[method], err)
}

// Fail makes every call of method return err until Fail(method, nil).
func (r *Runtime) Fail(method string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.fail, method)
		return
	}
	r.fail[method] = err
}

// Calls returns the calls made so far, in order; with methods given, only those.
func (r *Runtime) Calls(methods ...string) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(methods) == 0 {
		return append([]Call(nil), r.calls...)
	}
	want := map[string]bool{}
	for _, m := range methods {
		want[m] = true
	}
	var out []Call
	for _, c := range r.calls {
		if want[c.Method] {
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (r *Runtime) ResetCalls() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// record notes a call and returns the injected error for it, if any. Callers hold r.mu.
func (r *Runtime) record(method, id string, arg any) error {
	r.calls = append(r.calls, Call{Method: method, ID: id, Arg: arg})
	if q := r.failNext[method]; len(q) > 0 {
		r.failNext[method] = q[1:]
		return q[0]
	}
	return r.fail[method]
}

func (r *Runtime) nextID(prefix string) string {
	r.seq++
	return fmt.Sprintf("%s%04d", prefix, r.seq)
}

// Exit ends a running container with an exit code, as if its process exited.
func (r *Runtime) Exit(id string, code int) error {
	return r.end(id, code, false)
}

// OOM ends a running container as killed by the OOM killer (exit code 137).
func (r *Runtime) OOM(id string) error {
	return r.end(id, 137, true)
}

func (r *Runtime) end(id string, code int, oom bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	if c.State != reconciler.StateRunning {
		return fmt.Errorf("container %s is %s, not running", id, c.State)
	}
	if oom {
		r.emit(reconciler.EventOOM, c)
	}
	r.exitLocked(c, code, oom)
	return nil
}

func (r *Runtime) exitLocked(c *reconciler.Container, code int, oom bool) {
	c.State = reconciler.StateExited
	c.ExitCode = code
	c.OOMKilled = oom
	c.FinishedAt = r.Now()
	r.emit(reconciler.EventDied, c)
}

// emit delivers an event to every subscriber without blocking (each has a 1024-event
// buffer; a subscriber that lets it fill loses events, as a broken stream would).
func (r *Runtime) emit(kind reconciler.EventKind, c *reconciler.Container) {
	ev := reconciler.Event{Kind: kind, ContainerID: c.ID, PodUID: c.Labels[reconciler.LabelPodUID], Time: r.Now()}
	for _, ch := range r.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// BreakEvents closes every subscriber's channel, as when the event stream breaks.
func (r *Runtime) BreakEvents() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ch := range r.subs {
		close(ch)
		delete(r.subs, id)
	}
}

// Pods lists the sandboxes with their containers, oldest first.
func (r *Runtime) Pods(ctx context.Context) ([]reconciler.Pod, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("Pods", "", nil); err != nil {
		return nil, err
	}
	out := make([]reconciler.Pod, 0, len(r.pods))
	for _, p := range r.pods {
		out = append(out, r.podLocked(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// podLocked copies a pod with its containers (by creation order).
func (r *Runtime) podLocked(p *pod) reconciler.Pod {
	out := p.Pod
	out.Containers = nil
	for _, c := range r.ctrs {
		if c.PodID == p.ID {
			out.Containers = append(out.Containers, copyContainer(c))
		}
	}
	sort.Slice(out.Containers, func(i, j int) bool { return out.Containers[i].ID < out.Containers[j].ID })
	return out
}

func copyContainer(c *reconciler.Container) reconciler.Container {
	out := *c
	out.Labels = make(map[string]string, len(c.Labels))
	for k, v := range c.Labels {
		out.Labels[k] = v
	}
	return out
}

// CreatePod creates a running sandbox, or returns the one with the same UID.
func (r *Runtime) CreatePod(ctx context.Context, cfg reconciler.PodConfig) (reconciler.Pod, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("CreatePod", cfg.UID, cfg); err != nil {
		return reconciler.Pod{}, err
	}
	for _, p := range r.pods {
		if p.UID == cfg.UID {
			return r.podLocked(p), nil
		}
	}
	p := &pod{cfg: cfg, Pod: reconciler.Pod{
		ID:        r.nextID("pod"),
		UID:       cfg.UID,
		Namespace: cfg.Namespace,
		Name:      cfg.Name,
		Node:      cfg.Node,
		Running:   true,
		Created:   r.Now(),
	}}
	if !cfg.HostNetwork {
		r.ipSeq++
		p.IP = fmt.Sprintf("10.88.%d.%d", (r.ipSeq+1)/256, (r.ipSeq+1)%256)
	}
	r.pods[p.ID] = p
	return r.podLocked(p), nil
}

// PodConfig returns the configuration a sandbox was created with.
func (r *Runtime) PodConfig(id string) (reconciler.PodConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[id]
	if !ok {
		return reconciler.PodConfig{}, false
	}
	return p.cfg, true
}

// RemovePod stops (with StopExitCode) and removes a sandbox and its containers.
func (r *Runtime) RemovePod(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("RemovePod", id, grace); err != nil {
		return err
	}
	if _, ok := r.pods[id]; !ok {
		return nil
	}
	for cid, c := range r.ctrs {
		if c.PodID != id {
			continue
		}
		if c.State == reconciler.StateRunning {
			r.exitLocked(c, r.StopExitCode, false)
		}
		delete(r.ctrs, cid)
		delete(r.logs, cid)
	}
	delete(r.pods, id)
	return nil
}

// EnsureImage returns the ID of a present image, pulling a pullable one; otherwise an
// error wrapping ErrImageNotFound.
func (r *Runtime) EnsureImage(ctx context.Context, image string, policy reconciler.PullPolicy) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("EnsureImage", image, policy); err != nil {
		return "", err
	}
	id, present := r.images[image]
	switch {
	case present && policy != reconciler.PullAlways:
		return id, nil
	case policy == reconciler.PullNever:
		return "", fmt.Errorf("image %s: %w: not present and imagePullPolicy is Never", image, reconciler.ErrImageNotFound)
	case r.pullable[image]:
		r.images[image] = imageID(image)
		return r.images[image], nil
	case present: // Always, offline: the local copy
		return id, nil
	default:
		return "", fmt.Errorf("pull %s: %w: no registry has it", image, reconciler.ErrImageNotFound)
	}
}

// CreateContainer creates a container in a sandbox; its image must be present.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg reconciler.ContainerConfig) (reconciler.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("CreateContainer", podID, cfg); err != nil {
		return reconciler.Container{}, err
	}
	p, ok := r.pods[podID]
	if !ok {
		return reconciler.Container{}, fmt.Errorf("pod %s: %w", podID, reconciler.ErrNotFound)
	}
	imgID, ok := r.images[cfg.Image]
	if !ok {
		return reconciler.Container{}, fmt.Errorf("create %s: image %s: %w", cfg.Name, cfg.Image, reconciler.ErrImageNotFound)
	}
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	for k, v := range map[string]string{
		reconciler.LabelManaged: "true", reconciler.LabelNode: p.Node, reconciler.LabelPodUID: p.UID,
		reconciler.LabelPodName: p.Name, reconciler.LabelNamespace: p.Namespace,
		reconciler.LabelContainer: cfg.Name, reconciler.LabelAttempt: strconv.Itoa(cfg.Attempt),
		reconciler.LabelSpecHash: cfg.SpecHash,
	} {
		labels[k] = v
	}
	if cfg.Init {
		labels[reconciler.LabelInit] = "true"
	}
	c := &reconciler.Container{
		ID:       r.nextID("ctr"),
		PodID:    podID,
		Name:     cfg.Name,
		Attempt:  cfg.Attempt,
		Init:     cfg.Init,
		SpecHash: cfg.SpecHash,
		Image:    cfg.Image,
		ImageID:  imgID,
		State:    reconciler.StateCreated,
		Created:  r.Now(),
		Labels:   labels,
	}
	r.ctrs[c.ID] = c
	return copyContainer(c), nil
}

// StartContainer runs a created or exited container.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("StartContainer", id, nil); err != nil {
		return err
	}
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	if c.State == reconciler.StateRunning {
		return nil
	}
	c.State = reconciler.StateRunning
	c.ExitCode, c.OOMKilled, c.Error = 0, false, ""
	c.StartedAt, c.FinishedAt = r.Now(), time.Time{}
	r.emit(reconciler.EventStarted, c)
	return nil
}

// StopContainer ends a running container with StopExitCode.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("StopContainer", id, grace); err != nil {
		return err
	}
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	if c.State == reconciler.StateRunning {
		r.exitLocked(c, r.StopExitCode, false)
	}
	return nil
}

// RemoveContainer stops and removes a container; a missing one is not an error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("RemoveContainer", id, nil); err != nil {
		return err
	}
	c, ok := r.ctrs[id]
	if !ok {
		return nil
	}
	if c.State == reconciler.StateRunning {
		r.exitLocked(c, r.StopExitCode, false)
	}
	delete(r.ctrs, id)
	delete(r.logs, id)
	return nil
}

// Container returns one container's state.
func (r *Runtime) Container(ctx context.Context, id string) (reconciler.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("Container", id, nil); err != nil {
		return reconciler.Container{}, err
	}
	c, ok := r.ctrs[id]
	if !ok {
		return reconciler.Container{}, fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	return copyContainer(c), nil
}

// Find returns the newest attempt of the named container of the pod with this UID.
func (r *Runtime) Find(podUID, name string) (reconciler.Container, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *reconciler.Container
	for _, c := range r.ctrs {
		if c.Labels[reconciler.LabelPodUID] == podUID && c.Name == name && (best == nil || c.Attempt > best.Attempt) {
			best = c
		}
	}
	if best == nil {
		return reconciler.Container{}, false
	}
	return copyContainer(best), true
}

// Logs writes what WriteLog stored (TailLines and Since are not applied). With Follow it
// returns when the container is no longer running or ctx ends.
func (r *Runtime) Logs(ctx context.Context, id string, opts reconciler.LogOptions, w io.Writer) error {
	r.mu.Lock()
	err := r.record("Logs", id, opts)
	c, ok := r.ctrs[id]
	running := ok && c.State == reconciler.StateRunning
	out := append([]byte(nil), r.logs[id]...)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	if !opts.Follow || !running {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := len(out)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		r.mu.Lock()
		c, ok := r.ctrs[id]
		more := append([]byte(nil), r.logs[id][min(sent, len(r.logs[id])):]...)
		running := ok && c.State == reconciler.StateRunning
		r.mu.Unlock()
		if len(more) > 0 {
			if _, err := w.Write(more); err != nil {
				return err
			}
			sent += len(more)
		}
		if !running {
			return nil
		}
	}
}

// Exec runs the ExecFunc set by SetExec in a running container.
func (r *Runtime) Exec(ctx context.Context, id string, opts reconciler.ExecOptions) (int, error) {
	r.mu.Lock()
	err := r.record("Exec", id, opts)
	c, ok := r.ctrs[id]
	var ctr reconciler.Container
	if ok {
		ctr = copyContainer(c)
	}
	f := r.exec
	r.mu.Unlock()
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, fmt.Errorf("container %s: %w", id, reconciler.ErrNotFound)
	}
	if ctr.State != reconciler.StateRunning {
		return -1, fmt.Errorf("exec in container %s: not running (%s)", id, ctr.State)
	}
	if f == nil {
		return 0, nil
	}
	return f(ctr, opts) // outside the lock: it may call back into the runtime
}

// Events subscribes to start, died and OOM events until ctx ends or BreakEvents.
func (r *Runtime) Events(ctx context.Context) (<-chan reconciler.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.record("Events", "", nil); err != nil {
		return nil, err
	}
	ch := make(chan reconciler.Event, 1024)
	r.subSeq++
	id := r.subSeq
	r.subs[id] = ch
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.subs[id]; ok {
			close(ch)
			delete(r.subs, id)
		}
	})
	return ch, nil
}
