package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

// restartPods are bare Pods whose containers crash, get killed or stop being ready.
var restartPods = strings.Join([]string{
	demoPod("crash", "", "command: [sh, -c, 'echo crash-run; exit 1']"),
	demoPod("never", "restartPolicy: Never", "command: [sh, -c, 'echo bye; exit 1']"),
	demoPod("liveness", "", `livenessProbe:
  httpGet: {path: /healthz, port: 8080}
  periodSeconds: 1
  failureThreshold: 2`),
	demoPod("readiness", "", `readinessProbe:
  httpGet: {path: /readyz, port: 8080}
  periodSeconds: 1
  failureThreshold: 1
livenessProbe:
  httpGet: {path: /healthz, port: 8080}
  periodSeconds: 1`),
	demoPod("oom", "", "resources: {limits: {memory: 32Mi}}"),
	demoPod("limits", "", "resources: {limits: {memory: 48Mi, cpu: 250m}}"),
}, "---\n")

// TestContainerRestarts: restartPolicy, back-off, liveness and readiness probes, OOM kills
// and resource limits, each on a pod of its own in one commit, observed through skiff get,
// events, logs --previous, exec and the container's cgroup.
func TestContainerRestarts(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	repo := gitrepo.New(t)
	repo.Write("pods.yaml", restartPods)
	head := repo.Commit("restart cases")
	a := harness.StartAgent(t, repo.ServeDaemon(t), nil) // git:// (git daemon)
	a.WaitLive(t, 60*time.Second, head)

	t.Run("CrashLoopBackOffGrows", func(t *testing.T) {
		// Checked first, from the pod's start: the first crash restarts at once, then the
		// waits are 10 s, 20 s, ... (kubelet's back-off).
		delays := map[string]int32{} // back-off seen → restart count when seen
		re := regexp.MustCompile(`back-off (\S+) restarting`)
		a.WaitPod(t, 90*time.Second, "crash", func(p *corev1.Pod) error {
			cs := harness.ContainerStatus(p, "app")
			if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
				if m := re.FindStringSubmatch(w.Message); m != nil {
					if _, ok := delays[m[1]]; !ok {
						delays[m[1]] = cs.RestartCount
					}
				} else {
					return fmt.Errorf("CrashLoopBackOff message %q does not say the back-off", w.Message)
				}
				if harness.PodReady(p) {
					return fmt.Errorf("Ready while in CrashLoopBackOff")
				}
			}
			if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending {
				return fmt.Errorf("phase %s; want Running (restartPolicy Always)", p.Status.Phase)
			}
			if last := cs.LastTerminationState.Terminated; cs.RestartCount > 0 && (last == nil || last.ExitCode != 1) {
				return fmt.Errorf("lastState.terminated = %+v; want exit code 1", last)
			}
			c10, ok10 := delays["10s"]
			c20, ok20 := delays["20s"]
			if !ok10 || !ok20 {
				return fmt.Errorf("back-offs seen %v; want 10s then 20s", delays)
			}
			if c20 <= c10 {
				return fmt.Errorf("restartCount %d at back-off 10s, %d at 20s; want it to grow", c10, c20)
			}
			return nil
		})
		prev := a.Run(t, "logs", "crash", "--previous")
		if prev.Code != 0 || !strings.Contains(prev.Stdout, "crash-run") {
			t.Errorf("skiff logs crash --previous = exit %d %q %q; want crash-run", prev.Code, prev.Stdout, prev.Stderr)
		}
		evs, err := a.Events(t, "Pod", "crash")
		if err != nil {
			t.Fatal(err)
		}
		if !hasEvent(evs, "BackOff", "") {
			t.Errorf("no BackOff event for pod crash: %s", eventSummary(evs))
		}
	})

	t.Run("LivenessFailureRestarts", func(t *testing.T) {
		before := a.WaitPod(t, 60*time.Second, "liveness", harness.RunningReady)
		oldID := harness.ContainerStatus(before, "app").ContainerID
		a.MustRun(t, "exec", "liveness", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/sick")
		a.WaitPod(t, 60*time.Second, "liveness", func(p *corev1.Pod) error {
			cs := harness.ContainerStatus(p, "app")
			if cs.RestartCount < 1 || cs.ContainerID == oldID {
				return fmt.Errorf("restartCount %d, container %s; want a restart", cs.RestartCount, cs.ContainerID)
			}
			return harness.RunningReady(p)
		})
		evs, err := a.Events(t, "Pod", "liveness")
		if err != nil {
			t.Fatal(err)
		}
		for _, reason := range []string{"Unhealthy", "Killing"} {
			if !hasEvent(evs, reason, "iveness") {
				t.Errorf("no %s event about the liveness probe for pod liveness: %s", reason, eventSummary(evs))
			}
		}
		prev := a.Run(t, "logs", "liveness", "--previous")
		if prev.Code != 0 || !strings.Contains(prev.Stdout, "POST /sick") {
			t.Errorf("skiff logs liveness --previous = exit %d %q %q; want the killed container's log with POST /sick", prev.Code, prev.Stdout, prev.Stderr)
		}
		cur := a.Run(t, "logs", "liveness")
		if cur.Code != 0 || strings.Contains(cur.Stdout, "POST /sick") || !strings.Contains(cur.Stdout, "listening") {
			t.Errorf("skiff logs liveness = exit %d %q; want the new container's log only", cur.Code, cur.Stdout)
		}
	})

	t.Run("ReadinessFailureWithoutRestart", func(t *testing.T) {
		before := a.WaitPod(t, 60*time.Second, "readiness", harness.RunningReady)
		id := harness.ContainerStatus(before, "app").ContainerID
		a.MustRun(t, "exec", "readiness", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/ready?value=false")
		a.WaitPod(t, 30*time.Second, "readiness", func(p *corev1.Pod) error {
			cs := harness.ContainerStatus(p, "app")
			switch {
			case harness.PodReady(p) || cs.Ready:
				return fmt.Errorf("still Ready")
			case p.Status.Phase != corev1.PodRunning || cs.State.Running == nil:
				return fmt.Errorf("phase %s; want Running", p.Status.Phase)
			case cs.RestartCount != 0 || cs.ContainerID != id:
				return fmt.Errorf("restarted (count %d, container %s -> %s); a readiness failure must not restart", cs.RestartCount, id, cs.ContainerID)
			}
			return nil
		})
		evs, err := a.Events(t, "Pod", "readiness")
		if err != nil {
			t.Fatal(err)
		}
		if !hasEvent(evs, "Unhealthy", "eadiness") {
			t.Errorf("no Unhealthy readiness event for pod readiness: %s", eventSummary(evs))
		}
		a.MustRun(t, "exec", "readiness", "--", "wget", "-q", "-O-", "--post-data=", "http://127.0.0.1:8080/ready?value=true")
		a.WaitPod(t, 30*time.Second, "readiness", func(p *corev1.Pod) error {
			if cs := harness.ContainerStatus(p, "app"); cs.RestartCount != 0 || cs.ContainerID != id {
				return fmt.Errorf("restarted")
			}
			return harness.RunningReady(p)
		})
	})

	t.Run("OOMKilled", func(t *testing.T) {
		a.WaitPod(t, 60*time.Second, "oom", harness.RunningReady)
		// The request dies with the container; its exit code does not matter.
		a.Run(t, "exec", "oom", "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/alloc?mb=100")
		a.WaitPod(t, 60*time.Second, "oom", func(p *corev1.Pod) error {
			cs := harness.ContainerStatus(p, "app")
			term := cs.LastTerminationState.Terminated
			if term == nil {
				term = cs.State.Terminated
			}
			if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
				return fmt.Errorf("terminated state %+v; want reason OOMKilled, exit code 137", term)
			}
			if cs.RestartCount < 1 {
				return fmt.Errorf("restartCount %d; want a restart (restartPolicy Always)", cs.RestartCount)
			}
			return nil
		})
	})

	t.Run("LimitsInCgroup", func(t *testing.T) {
		a.WaitPod(t, 60*time.Second, "limits", harness.RunningReady)
		// cgroup v2 (memory.max, cpu.max) or v1 (memory/memory.limit_in_bytes, cpu/cpu.cfs_*).
		mem := strings.TrimSpace(a.MustRun(t, "exec", "limits", "--", "sh", "-c",
			"cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"))
		if mem != strconv.Itoa(48<<20) {
			t.Errorf("memory limit in the container's cgroup = %q; want %d (48Mi)", mem, 48<<20)
		}
		cpu := strings.Fields(a.MustRun(t, "exec", "limits", "--", "sh", "-c",
			"cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"))
		if len(cpu) != 2 {
			t.Fatalf("cpu quota and period from the cgroup = %q", cpu)
		}
		quota, err1 := strconv.Atoi(cpu[0])
		period, err2 := strconv.Atoi(cpu[1])
		if err1 != nil || err2 != nil || period == 0 || quota*1000/period != 250 {
			t.Errorf("cpu quota/period in the container's cgroup = %v; want 250m (quota = period/4)", cpu)
		}
	})

	// Checked last, when the other cases have given it time to (wrongly) restart.
	t.Run("RestartPolicyNeverFails", func(t *testing.T) {
		a.WaitPod(t, 30*time.Second, "never", func(p *corev1.Pod) error {
			cs := harness.ContainerStatus(p, "app")
			if p.Status.Phase != corev1.PodFailed {
				return fmt.Errorf("phase %s; want Failed", p.Status.Phase)
			}
			if cs.RestartCount != 0 || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 1 {
				return fmt.Errorf("restartCount %d, state %+v; want terminated with exit code 1, never restarted", cs.RestartCount, cs.State)
			}
			return nil
		})
		n := 0
		for _, c := range harness.NodeContainers(t, a.Name) {
			if c.Labels["io.skiff.pod.name"] == "never" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("podman has %d containers for pod never; want the one that exited", n)
		}
	})
}

func hasEvent(evs []corev1.Event, reason, msgPart string) bool {
	for _, e := range evs {
		if e.Reason == reason && strings.Contains(e.Message, msgPart) {
			return true
		}
	}
	return false
}

func eventSummary(evs []corev1.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Reason+": "+e.Message)
	}
	return "[" + strings.Join(s, "; ") + "]"
}
