package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/fake"
	"github.com/skiffhq/skiff/reconciler/volume"
	"github.com/skiffhq/skiff/state"
)

const image = "localhost/skiff/demo:latest"

// countingStore counts the commands the node loop writes (each one is a Raft entry).
type countingStore struct {
	*state.MemStore
	applies atomic.Int64
}

func (c *countingStore) Apply(ctx context.Context, cmd *state.Command) error {
	c.applies.Add(1)
	return c.MemStore.Apply(ctx, cmd)
}

type env struct {
	t     *testing.T
	store *countingStore
	rt    *fake.Runtime
	rec   *events.Ring
	node  *reconciler.Node
}

// newEnv starts a node loop for node n1 over the fake runtime, with the given git objects
// (ConfigMaps, Secrets) live and the given pods placed on it.
func newEnv(t *testing.T, git []manifest.Object, pods ...*corev1.Pod) *env {
	t.Helper()
	e := &env{t: t, store: &countingStore{MemStore: state.NewMemStore()}, rt: fake.New(image), rec: events.NewRing(500, "n1")}
	ctx := context.Background()
	if err := e.store.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c1"}, Objects: state.Wrap(git...)}}); err != nil {
		t.Fatal(err)
	}
	e.put(pods...)
	return e
}

func (e *env) start(rt reconciler.Runtime) {
	e.t.Helper()
	if rt == nil {
		rt = e.rt
	}
	e.node = reconciler.NewNode(reconciler.Config{
		NodeName: "n1", NodeIP: "192.0.2.1", Runtime: rt, Store: e.store, Recorder: e.rec,
		Volumes:        volume.NewManager(volume.Config{Dir: e.t.TempDir()}),
		Resync:         200 * time.Millisecond,
		BackoffInitial: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		OrphanGrace: time.Second,
	})
	if err := e.node.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.node.Stop() })
}

func (e *env) put(pods ...*corev1.Pod) {
	e.t.Helper()
	objs := make([]manifest.Object, len(pods))
	for i, p := range pods {
		objs[i] = p
	}
	if len(objs) == 0 {
		return
	}
	if err := e.store.Apply(context.Background(), &state.Command{Put: state.Wrap(objs...)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pod(name string) *corev1.Pod {
	o, ok := e.store.State().Cluster.Get(state.Key{Kind: "Pod", Namespace: "default", Name: name})
	if !ok {
		return nil
	}
	return o.(*corev1.Pod)
}

// eventually retries check until it passes or the deadline; the last error is reported.
func (e *env) eventually(what string, check func() error) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("%s: %v\nevents:\n%s", what, err, e.events())
}

func (e *env) events() string {
	var b strings.Builder
	for _, ev := range e.rec.List("", "", "") {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", ev.InvolvedObject.Name, ev.Type, ev.Reason, ev.Message)
	}
	return b.String()
}

func (e *env) hasEvent(reason, contains string) error {
	for _, ev := range e.rec.List("", "", "") {
		if ev.Reason == reason && strings.Contains(ev.Message, contains) {
			return nil
		}
	}
	return fmt.Errorf("no %s event containing %q", reason, contains)
}

// current returns the newest runtime container of a pod's container.
func (e *env) current(p *corev1.Pod, name string) reconciler.Container {
	e.t.Helper()
	var c reconciler.Container
	e.eventually("container "+name+" exists", func() error {
		var ok bool
		c, ok = e.rt.Find(string(p.UID), name)
		if !ok {
			return fmt.Errorf("no container %s in pod %s", name, p.Name)
		}
		return nil
	})
	return c
}

func containerStatus(p *corev1.Pod, name string) (corev1.ContainerStatus, error) {
	if p == nil {
		return corev1.ContainerStatus{}, fmt.Errorf("pod gone")
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			if cs.Name == name {
				return cs, nil
			}
		}
	}
	return corev1.ContainerStatus{}, fmt.Errorf("no status for %s (phase %q)", name, p.Status.Phase)
}

func newPod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func phaseIs(want corev1.PodPhase, p *corev1.Pod) error {
	if p == nil {
		return fmt.Errorf("pod gone")
	}
	if p.Status.Phase != want {
		return fmt.Errorf("phase = %q; want %q", p.Status.Phase, want)
	}
	return nil
}

func readyIs(want bool, p *corev1.Pod) error {
	if p == nil {
		return fmt.Errorf("pod gone")
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			if (c.Status == corev1.ConditionTrue) != want {
				return fmt.Errorf("Ready = %s; want %v", c.Status, want)
			}
			return nil
		}
	}
	return fmt.Errorf("no Ready condition")
}

func TestNodeStartsPodAndReportsStatus(t *testing.T) {
	e := newEnv(t, nil, newPod("web", func(p *corev1.Pod) {
		p.Spec.Hostname = "web-host"
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 18080, Protocol: corev1.ProtocolTCP}}
	}))
	e.start(nil)
	e.eventually("pod running and ready", func() error {
		p := e.pod("web")
		if err := phaseIs(corev1.PodRunning, p); err != nil {
			return err
		}
		if err := readyIs(true, p); err != nil {
			return err
		}
		if p.Status.PodIP == "" || p.Status.HostIP != "192.0.2.1" {
			return fmt.Errorf("podIP %q hostIP %q", p.Status.PodIP, p.Status.HostIP)
		}
		return nil
	})
	pods, _ := e.rt.Pods(context.Background())
	if len(pods) != 1 {
		t.Fatalf("runtime pods = %d; want 1", len(pods))
	}
	cfg, _ := e.rt.PodConfig(pods[0].ID)
	if cfg.Hostname != "web-host" || len(cfg.Ports) != 1 || cfg.Ports[0].HostPort != 18080 || cfg.Node != "n1" {
		t.Errorf("PodConfig = %+v; want hostname web-host, hostPort 18080, node n1", cfg)
	}
	for _, reason := range []string{"Pulled", "Created", "Started"} {
		if err := e.hasEvent(reason, ""); err != nil {
			t.Error(err)
		}
	}
}

func TestNodeRestartPolicy(t *testing.T) {
	tests := []struct {
		name      string
		policy    corev1.RestartPolicy
		exit      int
		wantPhase corev1.PodPhase
		restarts  bool
	}{
		{"Always restarts a crash", corev1.RestartPolicyAlways, 1, corev1.PodRunning, true},
		{"Always restarts a clean exit", corev1.RestartPolicyAlways, 0, corev1.PodRunning, true},
		{"OnFailure restarts a crash", corev1.RestartPolicyOnFailure, 2, corev1.PodRunning, true},
		{"OnFailure completes", corev1.RestartPolicyOnFailure, 0, corev1.PodSucceeded, false},
		{"Never fails", corev1.RestartPolicyNever, 1, corev1.PodFailed, false},
		{"Never completes", corev1.RestartPolicyNever, 0, corev1.PodSucceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPod("job", func(p *corev1.Pod) { p.Spec.RestartPolicy = tt.policy })
			e := newEnv(t, nil, p)
			e.start(nil)
			first := e.current(p, "app")
			e.eventually("running", func() error { return phaseIs(corev1.PodRunning, e.pod("job")) })
			if err := e.rt.Exit(first.ID, tt.exit); err != nil {
				t.Fatal(err)
			}
			if tt.restarts {
				e.eventually("restarted", func() error {
					cs, err := containerStatus(e.pod("job"), "app")
					if err != nil {
						return err
					}
					if cs.RestartCount < 1 || cs.State.Running == nil {
						return fmt.Errorf("restartCount %d state %+v", cs.RestartCount, cs.State)
					}
					if t := cs.LastTerminationState.Terminated; t == nil || t.ExitCode != int32(tt.exit) {
						return fmt.Errorf("lastState = %+v; want exit %d", cs.LastTerminationState, tt.exit)
					}
					return nil
				})
				return
			}
			e.eventually("terminal phase", func() error {
				p := e.pod("job")
				if err := phaseIs(tt.wantPhase, p); err != nil {
					return err
				}
				cs, _ := containerStatus(p, "app")
				if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != int32(tt.exit) {
					return fmt.Errorf("state = %+v; want terminated with %d", cs.State, tt.exit)
				}
				return nil
			})
			if c, _ := e.rt.Find(string(p.UID), "app"); c.ID != first.ID {
				t.Errorf("container replaced (%s → %s); want no restart", first.ID, c.ID)
			}
		})
	}
}

func TestNodeCrashLoopBackOff(t *testing.T) {
	p := newPod("crash")
	e := newEnv(t, nil, p)
	e.start(nil)
	seen := map[string]bool{}
	sawBackOff := false
	for i := 0; i < 4; i++ {
		var c reconciler.Container
		e.eventually("next attempt running", func() error {
			c = e.current(p, "app")
			if seen[c.ID] || c.State != reconciler.StateRunning {
				if cs, err := containerStatus(e.pod("crash"), "app"); err == nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
					sawBackOff = true
				}
				return fmt.Errorf("attempt %d not running yet (%s %s)", i, c.ID, c.State)
			}
			return nil
		})
		if c.Attempt != i {
			t.Fatalf("attempt = %d; want %d", c.Attempt, i)
		}
		seen[c.ID] = true
		if err := e.rt.Exit(c.ID, 1); err != nil {
			t.Fatal(err)
		}
	}
	if !sawBackOff {
		t.Error("never reported CrashLoopBackOff between restarts")
	}
	if err := e.hasEvent("BackOff", "Back-off restarting failed container app"); err != nil {
		t.Error(err)
	}
	e.eventually("restart count", func() error {
		cs, err := containerStatus(e.pod("crash"), "app")
		if err != nil {
			return err
		}
		if cs.RestartCount < 4 {
			return fmt.Errorf("restartCount = %d; want >= 4", cs.RestartCount)
		}
		return nil
	})
	// Only the current and the previous attempt are kept (logs --previous).
	pods, _ := e.rt.Pods(context.Background())
	if n := len(pods[0].Containers); n > 2 {
		t.Errorf("runtime keeps %d containers; want at most 2", n)
	}
}

func TestNodeOOMKilledReason(t *testing.T) {
	p := newPod("oom")
	e := newEnv(t, nil, p)
	e.start(nil)
	c := e.current(p, "app")
	e.eventually("running", func() error { return phaseIs(corev1.PodRunning, e.pod("oom")) })
	if err := e.rt.OOM(c.ID); err != nil {
		t.Fatal(err)
	}
	e.eventually("OOMKilled in last state", func() error {
		cs, err := containerStatus(e.pod("oom"), "app")
		if err != nil {
			return err
		}
		if t := cs.LastTerminationState.Terminated; t == nil || t.Reason != "OOMKilled" || t.ExitCode != 137 {
			return fmt.Errorf("lastState = %+v; want OOMKilled 137", cs.LastTerminationState)
		}
		return nil
	})
}

func TestNodeInitContainersRunInOrder(t *testing.T) {
	p := newPod("init", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "first", Image: image}, {Name: "second", Image: image}}
	})
	e := newEnv(t, nil, p)
	e.start(nil)
	first := e.current(p, "first")
	if _, ok := e.rt.Find(string(p.UID), "second"); ok {
		t.Fatal("second init container started before the first finished")
	}
	e.eventually("Init:0/2", func() error { return phaseIs(corev1.PodPending, e.pod("init")) })
	e.rt.Exit(first.ID, 1) // fails: restarted (restartPolicy Always)
	var again reconciler.Container
	e.eventually("first init container restarted", func() error {
		again = e.current(p, "first")
		if again.ID == first.ID || again.State != reconciler.StateRunning {
			return fmt.Errorf("not restarted yet")
		}
		return nil
	})
	e.rt.Exit(again.ID, 0)
	second := e.current(p, "second")
	if _, ok := e.rt.Find(string(p.UID), "app"); ok {
		t.Fatal("app started before init containers finished")
	}
	e.eventually("second running", func() error {
		c, _ := e.rt.Container(context.Background(), second.ID)
		if c.State != reconciler.StateRunning {
			return fmt.Errorf("second is %s", c.State)
		}
		return nil
	})
	e.rt.Exit(second.ID, 0)
	e.current(p, "app")
	e.eventually("running and initialized", func() error {
		p := e.pod("init")
		if err := phaseIs(corev1.PodRunning, p); err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodInitialized && c.Status != corev1.ConditionTrue {
				return fmt.Errorf("Initialized = %s", c.Status)
			}
		}
		return nil
	})
}

func TestNodeWaitingReasons(t *testing.T) {
	cmRef := func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "x"}}}}
	}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		reasons []string // any of these, then fixed by fix
		fix     func(e *env)
	}{
		{"missing image", newPod("noimg", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "localhost/nope:1" }),
			[]string{"ErrImagePull", "ImagePullBackOff"}, func(e *env) { e.rt.AddImage("localhost/nope:1") }},
		{"missing configmap", newPod("nocm", cmRef), []string{"CreateContainerConfigError"}, func(e *env) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cfg"}, Data: map[string]string{"x": "1"}}
			if err := e.store.Apply(context.Background(), &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "c2"}, Objects: state.Wrap[manifest.Object](cm)}}); err != nil {
				e.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, tt.pod)
			e.start(nil)
			e.eventually("waiting reason", func() error {
				cs, err := containerStatus(e.pod(tt.pod.Name), "app")
				if err != nil {
					return err
				}
				for _, r := range tt.reasons {
					if cs.State.Waiting != nil && cs.State.Waiting.Reason == r && cs.State.Waiting.Message != "" {
						return nil
					}
				}
				return fmt.Errorf("state = %+v; want waiting %v with a message", cs.State, tt.reasons)
			})
			if p := e.pod(tt.pod.Name); p.Status.Phase != corev1.PodPending {
				t.Errorf("phase = %s; want Pending", p.Status.Phase)
			}
			tt.fix(e)
			e.eventually("starts once fixed", func() error { return phaseIs(corev1.PodRunning, e.pod(tt.pod.Name)) })
		})
	}
}

func TestNodeProbes(t *testing.T) {
	var healthy, ready atomic.Bool
	healthy.Store(true)
	p := newPod("probed", func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		probe := func(cmd string) *corev1.Probe {
			return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
				PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1}
		}
		c.LivenessProbe, c.ReadinessProbe = probe("live"), probe("ready")
	})
	e := newEnv(t, nil, p)
	e.rt.SetExec(func(c reconciler.Container, opts reconciler.ExecOptions) (int, error) {
		ok := map[string]*atomic.Bool{"live": &healthy, "ready": &ready}[opts.Cmd[0]]
		if ok != nil && ok.Load() {
			return 0, nil
		}
		return 1, nil
	})
	e.start(nil)
	first := e.current(p, "app")
	e.eventually("running but not ready", func() error {
		p := e.pod("probed")
		if err := phaseIs(corev1.PodRunning, p); err != nil {
			return err
		}
		return readyIs(false, p)
	})
	ready.Store(true)
	e.eventually("ready", func() error { return readyIs(true, e.pod("probed")) })
	ready.Store(false)
	e.eventually("not ready again, without a restart", func() error { return readyIs(false, e.pod("probed")) })
	if c := e.current(p, "app"); c.ID != first.ID {
		t.Fatalf("readiness failure restarted the container")
	}
	healthy.Store(false)
	e.eventually("liveness failure restarts", func() error {
		if c := e.current(p, "app"); c.ID == first.ID {
			return fmt.Errorf("not restarted yet")
		}
		return nil
	})
	for _, want := range [][2]string{{"Unhealthy", "Liveness probe failed"}, {"Killing", "failed liveness probe, will be restarted"}, {"Unhealthy", "Readiness probe failed"}} {
		if err := e.hasEvent(want[0], want[1]); err != nil {
			t.Error(err)
		}
	}
}

func TestNodeTerminatesDeletedPod(t *testing.T) {
	p := newPod("bye", func(p *corev1.Pod) { g := int64(7); p.Spec.TerminationGracePeriodSeconds = &g })
	e := newEnv(t, nil, p)
	e.start(nil)
	e.eventually("running", func() error { return phaseIs(corev1.PodRunning, e.pod("bye")) })
	if err := e.store.Apply(context.Background(), &state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Pod", Namespace: "default", Name: "bye"}}}}); err != nil {
		t.Fatal(err)
	}
	e.eventually("pod removed from state after its containers stopped", func() error {
		if e.pod("bye") != nil {
			return fmt.Errorf("still in state")
		}
		return nil
	})
	calls := e.rt.Calls("RemovePod")
	if len(calls) != 1 || calls[0].Arg != 7*time.Second {
		t.Errorf("RemovePod calls = %+v; want one with the pod's 7s grace", calls)
	}
	if err := e.hasEvent("Killing", "Stopping container app"); err != nil {
		t.Error(err)
	}
}

func TestNodeAdoptsAndRemovesOrphans(t *testing.T) {
	ctx := context.Background()
	p := newPod("kept")
	e := newEnv(t, nil, p)
	// What a previous agent left running: our pod (second attempt), an orphan of ours,
	// and another node's pod (sharing this runtime).
	for _, x := range []struct {
		uid, name, node string
		attempts        int
	}{{string(p.UID), "kept", "n1", 2}, {"uid-orphan", "orphan", "n1", 1}, {"uid-other", "other", "n2", 1}} {
		sb, err := e.rt.CreatePod(ctx, reconciler.PodConfig{UID: x.uid, Namespace: "default", Name: x.name, Node: x.node})
		if err != nil {
			t.Fatal(err)
		}
		for a := 0; a < x.attempts; a++ {
			c, err := e.rt.CreateContainer(ctx, sb.ID, reconciler.ContainerConfig{Name: "app", Attempt: a, Image: image})
			if err != nil {
				t.Fatal(err)
			}
			e.rt.StartContainer(ctx, c.ID)
			if a < x.attempts-1 {
				e.rt.Exit(c.ID, 1)
			}
		}
	}
	before, _ := e.rt.Find(string(p.UID), "app")
	e.start(nil)
	e.eventually("adopted with its restart count", func() error {
		cs, err := containerStatus(e.pod("kept"), "app")
		if err != nil {
			return err
		}
		if cs.RestartCount != 1 || cs.State.Running == nil {
			return fmt.Errorf("status %+v; want running with restartCount 1", cs)
		}
		return nil
	})
	e.eventually("orphan removed, other node's pod kept", func() error {
		pods, _ := e.rt.Pods(ctx)
		names := map[string]bool{}
		for _, rp := range pods {
			names[rp.Name] = true
		}
		if names["orphan"] || !names["other"] || !names["kept"] {
			return fmt.Errorf("runtime pods = %v; want kept and other", names)
		}
		return nil
	})
	if after, _ := e.rt.Find(string(p.UID), "app"); after.ID != before.ID {
		t.Errorf("adopted container replaced: %s → %s", before.ID, after.ID)
	}
	if n := len(e.rt.Calls("CreateContainer")); n != 4 {
		// 4 made by the test itself; the node loop must create none.
		t.Errorf("CreateContainer calls = %d; want 4 (the test's own)", n)
	}
}

func TestNodeStopLeavesPodsRunning(t *testing.T) {
	e := newEnv(t, nil, newPod("stay"))
	e.start(nil)
	e.eventually("running", func() error { return phaseIs(corev1.PodRunning, e.pod("stay")) })
	if err := e.node.Stop(); err != nil {
		t.Fatal(err)
	}
	if calls := e.rt.Calls("RemovePod", "StopContainer", "RemoveContainer"); len(calls) != 0 {
		t.Errorf("stopping the agent touched containers: %+v", calls)
	}
}

func TestNodeBatchesStatusReports(t *testing.T) {
	var pods []*corev1.Pod
	for i := 0; i < 20; i++ {
		pods = append(pods, newPod(fmt.Sprintf("p%02d", i)))
	}
	e := newEnv(t, nil, pods...)
	base := e.store.applies.Load()
	e.start(nil)
	e.eventually("all running", func() error {
		for _, p := range pods {
			if err := readyIs(true, e.pod(p.Name)); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		return nil
	})
	writes := e.store.applies.Load() - base
	if writes > 20 {
		t.Errorf("%d status writes for 20 pods starting; want them batched (≤ 20)", writes)
	}
	// Once converged, nothing more is written.
	settled := e.store.applies.Load()
	time.Sleep(3 * 200 * time.Millisecond) // three resyncs
	if n := e.store.applies.Load() - settled; n != 0 {
		t.Errorf("%d writes while nothing changed; want 0", n)
	}
}

func TestNodeReportsAgainAfterTheLeaderMarkedItsPodNotReady(t *testing.T) {
	e := newEnv(t, nil, newPod("back"))
	e.start(nil)
	e.eventually("ready", func() error { return readyIs(true, e.pod("back")) })
	p := e.pod("back")
	st := *p.Status.DeepCopy()
	for i := range st.Conditions {
		if st.Conditions[i].Type == corev1.PodReady {
			st.Conditions[i].Status, st.Conditions[i].Reason = corev1.ConditionFalse, "NodeNotReady"
		}
	}
	if err := e.store.Apply(context.Background(), &state.Command{Status: []state.PodStatus{{Key: state.KeyOf(p), UID: p.UID, Status: st}}}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the node's own view (Ready) reported again", func() error { return readyIs(true, e.pod("back")) })
}

func TestNodeDownwardAPISeesThePodIP(t *testing.T) {
	p := newPod("ip", func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
		}
	})
	e := newEnv(t, nil, p)
	e.start(nil)
	e.current(p, "app")
	calls := e.rt.Calls("CreateContainer")
	if len(calls) == 0 {
		t.Fatal("no container created")
	}
	cfg := calls[0].Arg.(reconciler.ContainerConfig)
	pods, _ := e.rt.Pods(context.Background())
	want := []string{"POD_IP=" + pods[0].IP, "HOST_IP=192.0.2.1"}
	if pods[0].IP == "" || strings.Join(cfg.Env, ",") != strings.Join(want, ",") {
		t.Errorf("env = %v; want %v", cfg.Env, want)
	}
}
