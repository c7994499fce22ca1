package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

// workloads are the other controllers of issue 2: a ReplicationController with envFrom, a
// ReplicaSet selecting by matchExpressions, a Deployment that may be paused (created
// unpaused: Kubernetes gives a Deployment created paused no ReplicaSet at all) and a
// Recreate Deployment.
func workloads(x string, rcReplicas int, paused bool) string {
	demo := `      containers:
      - name: app
        image: localhost/skiff/demo:latest
        imagePullPolicy: IfNotPresent
        env: [{name: X, value: "%s"}]
`
	ctr := fmt.Sprintf(demo, x)
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: env-cm}
data: {A: "1", B: "2"}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: %[1]d
  selector: {app: rc}
  template:
    metadata:
      labels: {app: rc}
    spec:
      terminationGracePeriodSeconds: 1
%[2]s        envFrom: [{configMapRef: {name: env-cm}}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 2
  selector:
    matchExpressions: [{key: app, operator: In, values: [rs, rs-other]}, {key: tier, operator: Exists}]
  template:
    metadata:
      labels: {app: rs, tier: web}
    spec:
      terminationGracePeriodSeconds: 1
%[2]s---
apiVersion: apps/v1
kind: Deployment
metadata: {name: paused}
spec:
  replicas: 1
  paused: %[3]v
  selector:
    matchLabels: {app: paused}
  template:
    metadata:
      labels: {app: paused}
    spec:
      terminationGracePeriodSeconds: 1
%[2]s---
apiVersion: apps/v1
kind: Deployment
metadata: {name: recreate}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector:
    matchLabels: {app: recreate}
  template:
    metadata:
      labels: {app: recreate}
    spec:
      terminationGracePeriodSeconds: 1
%[2]s        readinessProbe:
          httpGet: {path: /readyz, port: 8080}
          periodSeconds: 1
`, rcReplicas, ctr, paused)
}

// probesPod runs the demo app four times on different ports, each container made ready by
// another probe handler (grpc, tcpSocket, exec, httpGet with headers and a named port).
var probesPod = `apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  terminationGracePeriodSeconds: 1
  containers:
` + probeContainer("grpc", 8081, "grpc: {port: 9091}") +
	probeContainer("tcp", 8082, "tcpSocket: {port: 8082}") +
	probeContainer("exec", 8083, "exec: {command: [wget, -q, -O-, 'http://127.0.0.1:8083/readyz']}") +
	probeContainer("http", 8084, "httpGet: {path: /readyz, port: web, httpHeaders: [{name: X-Probe, value: skiff}]}") + `
    startupProbe:
      httpGet: {path: /healthz, port: 8084}
      periodSeconds: 1
      failureThreshold: 30
`

func probeContainer(name string, port int, handler string) string {
	return fmt.Sprintf(`  - name: %s
    image: localhost/skiff/demo:latest
    imagePullPolicy: IfNotPresent
    env: [{name: PORT, value: "%d"}, {name: GRPC_PORT, value: "%d"}]
    ports: [{name: web, containerPort: %d}]
    readinessProbe:
      %s
      periodSeconds: 1
`, name, port, port+1010, port, handler)
}

// gracePod ignores SIGTERM: removing it must take its grace period, not Podman's 10 s or
// Kubernetes' default 30 s.
var gracePod = demoPod("grace", "terminationGracePeriodSeconds: 3", `env: [{name: IGNORE_SIGTERM, value: "1"}]`)

// TestWorkloadKinds: ReplicationController (with envFrom), ReplicaSet with matchExpressions,
// a paused Deployment that does not roll, a Recreate Deployment that never runs old and new
// pods together, grpc/tcpSocket/exec/httpGet(+headers, named port) readiness probes and a
// startupProbe, terminationGracePeriodSeconds, /metrics and `skiff get nodes`. The agent
// fetches with --depth 1 over git://.
func TestWorkloadKinds(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	repo := gitrepo.New(t)
	repo.Write("workloads.yaml", workloads("a", 2, false))
	repo.Write("probes.yaml", probesPod)
	repo.Write("grace.yaml", gracePod)
	head := repo.Commit("workloads")
	a := harness.StartAgent(t, repo.ServeDaemon(t), map[string]string{"depth": "1"})
	a.WaitLive(t, 60*time.Second, head)

	xIs := func(x string) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			if got := harness.EnvValue(p.Spec.Containers[0], "X"); got != x {
				return fmt.Errorf("X = %q; want %q", got, x)
			}
			return nil
		}
	}
	ownedBy := func(kind string) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != kind {
				return fmt.Errorf("owners %+v; want one %s", p.OwnerReferences, kind)
			}
			return nil
		}
	}

	t.Run("ReplicationControllerWithEnvFrom", func(t *testing.T) {
		pods := a.WaitPods(t, 90*time.Second, "app=rc", 2, ownedBy("ReplicationController"))
		if r := a.Run(t, "exec", pods[0].Name, "--", "sh", "-c", "echo $A$B"); r.Stdout != "12\n" {
			t.Errorf("envFrom configMapRef: echo $A$B = %q exit %d; want 12", r.Stdout, r.Code)
		}
	})
	t.Run("ReplicaSetMatchExpressions", func(t *testing.T) {
		a.WaitPods(t, 60*time.Second, "app=rs", 2, ownedBy("ReplicaSet"))
	})
	t.Run("EveryProbeHandler", func(t *testing.T) {
		a.WaitPod(t, 60*time.Second, "probes", func(p *corev1.Pod) error {
			for _, cs := range p.Status.ContainerStatuses {
				if !cs.Ready {
					return fmt.Errorf("container %s not ready", cs.Name)
				}
			}
			if len(p.Status.ContainerStatuses) != 4 {
				return fmt.Errorf("%d container statuses; want 4", len(p.Status.ContainerStatuses))
			}
			return harness.RunningReady(p)
		})
	})

	pausedPods := a.WaitPods(t, 60*time.Second, "app=paused", 1, xIs("a"))
	a.WaitPods(t, 60*time.Second, "app=recreate", 2, xIs("a"))
	graceCtr := ""
	a.WaitPod(t, 60*time.Second, "grace", func(p *corev1.Pod) error {
		graceCtr = strings.TrimPrefix(harness.ContainerStatus(p, "app").ContainerID, "podman://")
		return harness.RunningReady(p)
	})

	// One commit: template X=b everywhere (paused is paused in the same commit), rc scaled
	// to 3, the grace pod removed.
	repo.Write("workloads.yaml", workloads("b", 3, true))
	repo.Remove("grace.yaml")
	next := repo.Commit("X=b, rc x3, no grace pod")
	// Watch the Recreate rollout from the commit on (through the API, in-process: fast
	// enough to see a brief overlap), while the other checks run.
	overlap := make(chan string, 1)
	go func() { overlap <- watchRecreate(a, 90*time.Second) }()
	if code, msg := a.Hook(t, nil, nil); code != 202 {
		t.Fatalf("webhook = %d %s", code, msg)
	}
	committed := time.Now()

	t.Run("TerminationGracePeriod", func(t *testing.T) {
		a.WaitLive(t, 15*time.Second, next)
		harness.Eventually(t, 40*time.Second, func() error {
			if out, err := harness.Podman(t, "inspect", "--format", "{{.State.Status}}", graceCtr); err == nil {
				return fmt.Errorf("container of pod grace still exists: %s", strings.TrimSpace(out))
			}
			return nil
		})
		if took := time.Since(committed); took < 3*time.Second || took > 10*time.Second {
			t.Errorf("a pod ignoring SIGTERM with terminationGracePeriodSeconds 3 took %s to go; want about 3 s", took.Round(100*time.Millisecond))
		}
	})

	t.Run("RecreateNeverOverlaps", func(t *testing.T) {
		if msg := <-overlap; msg != "" {
			t.Error(msg)
		}
		a.WaitPods(t, 30*time.Second, "app=recreate", 2, xIs("b"))
	})

	t.Run("ScaledReplicationController", func(t *testing.T) {
		// A ReplicationController does not roll: the two pods keep template a, the new one
		// is made from template b.
		a.WaitPods(t, 60*time.Second, "app=rc", 3, nil)
		pods, err := a.Pods(t, "app=rc")
		if err != nil {
			t.Fatal(err)
		}
		var xs []string
		for i := range pods {
			xs = append(xs, harness.EnvValue(pods[i].Spec.Containers[0], "X"))
		}
		slices.Sort(xs)
		if !slices.Equal(xs, []string{"a", "a", "b"}) {
			t.Errorf("rc pods' X = %v; want the two kept pods a and the new one b", xs)
		}
		var rc struct {
			Status struct{ Replicas, ReadyReplicas int }
		}
		harness.Eventually(t, 10*time.Second, func() error {
			if err := json.Unmarshal([]byte(a.MustRun(t, "get", "replicationcontrollers", "rc", "-o", "json")), &rc); err != nil {
				return err
			}
			if rc.Status.Replicas != 3 || rc.Status.ReadyReplicas != 3 {
				return fmt.Errorf("rc status %+v; want 3 replicas, 3 ready", rc.Status)
			}
			return nil
		})
	})

	t.Run("PausedDeploymentDoesNotRoll", func(t *testing.T) {
		// By now the Recreate rollout of the same commit has finished.
		pods := a.WaitPods(t, 10*time.Second, "app=paused", 1, nil)
		if pods[0].Name != pausedPods[0].Name || harness.EnvValue(pods[0].Spec.Containers[0], "X") != "a" {
			t.Errorf("paused Deployment rolled: pod %s X=%s; want %s X=a", pods[0].Name, harness.EnvValue(pods[0].Spec.Containers[0], "X"), pausedPods[0].Name)
		}
	})

	t.Run("MetricsAndNodes", func(t *testing.T) {
		body, err := harness.HTTPGet(a.Server + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf(`skiff_live_commit_info{commit="%s",ref="main"} 1`, next),
			"skiff_raft_leader 1", "skiff_sync_failed 0", "skiff_node_pods ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		nodes := a.MustRun(t, "get", "nodes")
		if !strings.Contains(nodes, a.Name) || !strings.Contains(nodes, "Ready") {
			t.Errorf("skiff get nodes:\n%s\nwant %s Ready", nodes, a.Name)
		}
	})
}

// watchRecreate reads the recreate Deployment's pods every 100 ms until two new (X=b) pods
// run ready alone, and says what went wrong: old and new pods running together, or no end.
func watchRecreate(a *harness.Agent, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		var l struct {
			Items []corev1.Pod `json:"items"`
		}
		if err := a.GetJSON(ctx, "/api/v1/resources/pods?namespace=default&selector=app%3Drecreate", &l); err == nil {
			running := map[string]int{}
			for i := range l.Items {
				if p := &l.Items[i]; p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
					running[harness.EnvValue(p.Spec.Containers[0], "X")]++
				}
			}
			if running["a"] > 0 && running["b"] > 0 {
				return fmt.Sprintf("Recreate Deployment ran old and new pods together: %v", running)
			}
			if len(l.Items) == 2 && running["b"] == 2 && harness.RunningReady(&l.Items[0]) == nil && harness.RunningReady(&l.Items[1]) == nil {
				return ""
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "the Recreate rollout did not finish within " + timeout.String()
}
