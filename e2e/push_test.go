package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
)

var soloPod = demoPod("solo", "", `env: [{name: X, value: "solo-x"}]`)

// TestGitPushUpdatesPods: a Deployment and a bare Pod from git (served over smart HTTP) run
// as Podman pods; signed GitHub-style webhooks apply a scale-up and a rolling template
// change, a webhook with a bad or no signature is refused; get -o json is kubectl-shaped;
// status, describe, logs and exec work; a hostPath volume is refused without
// --host-path-allow.
func TestGitPushUpdatesPods(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	repo := gitrepo.New(t)
	repo.Write("web.yaml", harness.Deployment("web", 2, "one"))
	repo.Write("solo.yaml", soloPod)
	repo.Write("hostpath.yaml", demoPod("hostpath-refused", "volumes: [{name: h, hostPath: {path: /etc, type: Directory}}]",
		"volumeMounts: [{name: h, mountPath: /host}]"))
	first := repo.Commit("web x2 and solo")
	secret := "s3cret-hook"
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := harness.StartAgent(t, repo.ServeHTTP(t), map[string]string{"webhook-secret-file": secretFile})

	oneX := func(x string) func(*corev1.Pod) error {
		return func(p *corev1.Pod) error {
			if got := harness.EnvValue(p.Spec.Containers[0], "X"); got != x {
				return fmt.Errorf("env X = %q; want %q", got, x)
			}
			return nil
		}
	}
	var firstPods []corev1.Pod
	t.Run("InitialCommitRuns", func(t *testing.T) {
		a.WaitLive(t, 60*time.Second, first)
		firstPods = a.WaitPods(t, 90*time.Second, "app=web", 2, oneX("one"))
		a.WaitPods(t, 60*time.Second, "app=solo", 1, nil)
		st, err := a.Status(t)
		if err != nil {
			t.Fatal(err)
		}
		if st.Ref != "main" || st.Live == nil || st.Live.Hash != first || st.Live.Ref != "main" {
			t.Errorf("status: ref %q, live %+v; want ref main and live commit %s on main", st.Ref, st.Live, first)
		}
		if st.Live != nil && st.Live.Subject != "web x2 and solo" {
			t.Errorf("status live subject = %q; want the commit's subject", st.Live.Subject)
		}
		if st.Fetch == nil || st.Fetch.Head != first || st.Fetch.Error != "" {
			t.Errorf("status fetch = %+v; want head %s and no error", st.Fetch, first)
		}
		// Podman really runs them: one running app container per pod, labelled for this node.
		if ids := harness.RunningIDs(harness.NodeContainers(t, a.Name)); len(ids) != 3 {
			t.Errorf("podman runs %d skiff app containers for %s; want 3 (web x2, solo)", len(ids), a.Name)
		}
	})

	t.Run("GetPodsIsKubectlShaped", func(t *testing.T) { checkKubectlShape(t, a) })

	t.Run("DescribeLogsExec", func(t *testing.T) {
		out := a.MustRun(t, "describe", "pod", "solo")
		for _, want := range []string{"Name:", "solo", "Node:", a.Name, "Containers:", "app:", "Container ID:", "podman://",
			"localhost/skiff/demo:latest", "Running", "Restart Count:", "Conditions:", "Ready", "Events:", "Scheduled", "Started"} {
			if !strings.Contains(out, want) {
				t.Errorf("skiff describe pod solo lacks %q:\n%s", want, out)
			}
		}
		harness.Eventually(t, 30*time.Second, func() error {
			logs := a.Run(t, "logs", "solo")
			if logs.Code != 0 || !strings.Contains(logs.Stdout, "listening on :8080") {
				return fmt.Errorf("skiff logs solo = exit %d %q %q; want the demo app's start line", logs.Code, logs.Stdout, logs.Stderr)
			}
			return nil
		})
		for _, c := range []struct {
			cmd      string
			wantOut  string
			wantCode int
		}{
			{`echo $X`, "solo-x\n", 0},
			{`echo out; echo err >&2; exit 3`, "out\n", 3},
			{`hostname`, "solo\n", 0},
		} {
			r := a.Run(t, "exec", "solo", "--", "sh", "-c", c.cmd)
			if r.Stdout != c.wantOut || r.Code != c.wantCode {
				t.Errorf("skiff exec solo -- sh -c %q = %q, exit %d; want %q, exit %d (stderr %q)", c.cmd, r.Stdout, r.Code, c.wantOut, c.wantCode, r.Stderr)
			}
		}
		if r := a.RunStdin(t, "line one\nline two\n", "exec", "-i", "solo", "--", "wc", "-l"); strings.TrimSpace(r.Stdout) != "2" || r.Code != 0 {
			t.Errorf("skiff exec -i solo -- wc -l with two lines on stdin = %q exit %d (%q); want 2", r.Stdout, r.Code, r.Stderr)
		}
		if out := a.MustRun(t, "get", "pod", "solo", "-o", "yaml"); !strings.Contains(out, "kind: Pod") || !strings.Contains(out, "phase: Running") {
			t.Errorf("skiff get pod solo -o yaml:\n%s\nwant a v1 Pod with phase Running", out)
		}
	})

	scaled := ""
	t.Run("WebhookRefusesBadSignature", func(t *testing.T) {
		repo.Write("web.yaml", harness.Deployment("web", 3, "one"))
		scaled = repo.Commit("scale web to 3")
		body := pushPayload(scaled)
		for _, c := range []struct {
			name   string
			header map[string]string
		}{
			{"no signature", map[string]string{"X-GitHub-Event": "push"}},
			{"wrong secret", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("not-the-secret", body)}},
			{"signature of another body", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, []byte("{}"))}},
			{"empty body, no signature", nil},
		} {
			b := body
			if c.header == nil {
				b = nil
			}
			if code, msg := a.Hook(t, b, c.header); code != 401 {
				t.Errorf("webhook with %s = %d %s; want 401", c.name, code, msg)
			}
		}
		st, err := a.Status(t)
		if err != nil {
			t.Fatal(err)
		}
		if st.Live == nil || st.Live.Hash != first {
			t.Errorf("after refused webhooks the live commit = %+v; want %s unchanged", st.Live, first)
		}
	})

	t.Run("SignedWebhookScalesUp", func(t *testing.T) {
		body := pushPayload(scaled)
		code, msg := a.Hook(t, body, map[string]string{
			"X-GitHub-Event": "push", "Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body),
		})
		if code != 202 {
			t.Fatalf("signed webhook = %d %s; want 202", code, msg)
		}
		a.WaitLive(t, 15*time.Second, scaled)
		pods := a.WaitPods(t, 60*time.Second, "app=web", 3, oneX("one"))
		// A scale-up keeps the pods that ran.
		names := harness.PodNames(pods)
		for _, p := range firstPods {
			if !slices.Contains(names, p.Name) {
				t.Errorf("scale-up replaced pod %s; pods now %v", p.Name, names)
			}
		}
	})

	t.Run("SignedWebhookRollsTemplate", func(t *testing.T) {
		before, err := a.Pods(t, "app=web")
		if err != nil {
			t.Fatal(err)
		}
		repo.Write("web.yaml", harness.Deployment("web", 3, "two"))
		rolled := repo.Commit("web: X=two")
		body := pushPayload(rolled)
		if code, msg := a.Hook(t, body, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body)}); code != 202 {
			t.Fatalf("signed webhook = %d %s; want 202", code, msg)
		}
		a.WaitLive(t, 15*time.Second, rolled)
		pods := a.WaitPods(t, 120*time.Second, "app=web", 3, oneX("two"))
		names := harness.PodNames(pods)
		for _, p := range before {
			if slices.Contains(names, p.Name) {
				t.Errorf("pod %s of the old template survived the rolling update; pods %v", p.Name, names)
			}
		}
		for _, p := range pods {
			if r := a.Run(t, "exec", p.Name, "--", "sh", "-c", "echo $X"); r.Stdout != "two\n" || r.Code != 0 {
				t.Errorf("skiff exec %s -- sh -c 'echo $X' = %q exit %d; want two", p.Name, r.Stdout, r.Code)
			}
		}
		// Podman converges too: the old containers are gone, three web + solo run.
		harness.Eventually(t, 30*time.Second, func() error {
			ctrs := harness.NodeContainers(t, a.Name)
			var web []string
			for _, c := range ctrs {
				if strings.HasPrefix(c.Labels["io.skiff.pod.name"], "web-") {
					web = append(web, c.Labels["io.skiff.pod.name"]+"/"+c.State)
				}
			}
			slices.Sort(web)
			want := make([]string, len(names))
			for i, n := range names {
				want[i] = n + "/running"
			}
			if !slices.Equal(web, want) {
				return fmt.Errorf("podman web containers %v; want %v", web, want)
			}
			return nil
		})
		var d struct {
			Status struct {
				Replicas, ReadyReplicas, UpdatedReplicas, AvailableReplicas int
			}
		}
		harness.Eventually(t, 10*time.Second, func() error {
			if err := json.Unmarshal([]byte(a.MustRun(t, "get", "deployment", "web", "-o", "json")), &d); err != nil {
				return err
			}
			if s := d.Status; s.Replicas != 3 || s.ReadyReplicas != 3 || s.UpdatedReplicas != 3 || s.AvailableReplicas != 3 {
				return fmt.Errorf("deployment web status %+v; want 3 replicas, all ready, updated and available", s)
			}
			return nil
		})
		rs := a.MustRun(t, "get", "replicasets", "-o", "json")
		var l struct {
			Items []struct {
				Metadata struct{ Name string }
				Spec     struct{ Replicas *int }
			}
		}
		if err := json.Unmarshal([]byte(rs), &l); err != nil {
			t.Fatal(err)
		}
		active := 0
		for _, r := range l.Items {
			if r.Spec.Replicas != nil && *r.Spec.Replicas > 0 {
				active++
			}
		}
		if active != 1 {
			t.Errorf("%d replica sets with replicas > 0 after the rollout; want 1: %s", active, rs)
		}
	})

	t.Run("GitLabTokenAndGiteaSignature", func(t *testing.T) {
		body := pushPayload(repo.Head())
		mac := strings.TrimPrefix(sign(secret, body), "sha256=")
		for _, c := range []struct {
			name   string
			header map[string]string
			want   int
		}{
			{"GitLab token", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}, 202},
			{"wrong GitLab token", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, 401},
			{"Gitea signature", map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": mac}, 202},
			{"GitHub ping", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(secret, body)}, 200},
		} {
			if code, msg := a.Hook(t, body, c.header); code != c.want {
				t.Errorf("webhook with %s = %d %s; want %d", c.name, code, msg, c.want)
			}
		}
	})

	t.Run("ErrorsNameWhatIsWrong", func(t *testing.T) {
		if code, msg := a.Hook(t, make([]byte, 2<<20), map[string]string{"X-GitHub-Event": "push"}); code != 413 {
			t.Errorf("webhook with a 2 MiB body = %d %s; want 413", code, msg)
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "pod", "nope"}, "nope"},
			{[]string{"exec", "nope", "--", "true"}, "nope"},
			{[]string{"logs", "nope"}, "nope"},
			{[]string{"describe", "pod", "nope"}, "nope"},
			{[]string{"get", "frobnicators"}, "frobnicators"},
			{[]string{"exec", "solo", "-c", "nope", "--", "true"}, "nope"},
		} {
			r := a.Run(t, c.args...)
			if r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("skiff %s: exit %d, stderr %q; want a failure naming %q", strings.Join(c.args, " "), r.Code, r.Stderr, c.want)
			}
		}
		out := a.MustRun(t, "describe", "deployment", "web")
		for _, want := range []string{"web", "Deployment", "replicas: 3", "Events:", "ScalingReplicaSet"} {
			if !strings.Contains(out, want) {
				t.Errorf("skiff describe deployment web lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("HostPathRefusedWithoutAllowFlag", func(t *testing.T) {
		harness.Eventually(t, 30*time.Second, func() error {
			p, err := a.Pod(t, "hostpath-refused")
			if err != nil {
				return err
			}
			if p.Status.Phase == corev1.PodRunning {
				return fmt.Errorf("pod hostpath-refused is Running with hostPath /etc and no --host-path-allow")
			}
			evs, err := a.Events(t, "Pod", "hostpath-refused")
			if err != nil {
				return err
			}
			for _, e := range evs {
				if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "/etc") && strings.Contains(e.Message, "--host-path-allow") {
					return nil
				}
			}
			return fmt.Errorf("no Warning event naming /etc and --host-path-allow for pod hostpath-refused: %+v", evs)
		})
		for _, c := range harness.NodeContainers(t, a.Name) {
			if c.Labels["io.skiff.pod.name"] == "hostpath-refused" && c.State == "running" {
				t.Errorf("podman runs container %s of pod hostpath-refused", c.ID[:12])
			}
		}
	})
}

// pushPayload is a GitHub push event for main at after.
func pushPayload(after string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": after,
		"repository":  map[string]any{"full_name": "shop/deploy"},
		"head_commit": map[string]any{"id": after},
	})
	return b
}

// sign is GitHub's X-Hub-Signature-256 for body.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// checkKubectlShape checks that `skiff get pods -o json` prints what kubectl prints: a v1
// List of v1 Pods with metadata, spec and status filled in as the kubelet fills them.
func checkKubectlShape(t *testing.T, a *harness.Agent) {
	out := a.MustRun(t, "get", "pods", "-o", "json")
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("skiff get pods -o json: %v", err)
	}
	if raw["kind"] != "List" || raw["apiVersion"] != "v1" {
		t.Errorf("get pods -o json: kind %v apiVersion %v; want List v1", raw["kind"], raw["apiVersion"])
	}
	items, _ := raw["items"].([]any)
	if len(items) == 0 {
		t.Fatalf("get pods -o json has no items: %.500s", out)
	}
	for _, it := range items {
		item := it.(map[string]any)
		name := dig(item, "metadata", "name")
		for _, path := range [][]string{
			{"kind"}, {"apiVersion"}, {"metadata", "name"}, {"metadata", "namespace"}, {"metadata", "uid"},
			{"metadata", "creationTimestamp"}, {"spec", "containers"}, {"spec", "nodeName"}, {"spec", "restartPolicy"},
			{"status", "phase"}, {"status", "conditions"}, {"status", "containerStatuses"},
		} {
			if dig(item, path...) == nil {
				t.Errorf("pod %v: no %s", name, strings.Join(path, "."))
			}
		}
		if item["kind"] != "Pod" || item["apiVersion"] != "v1" {
			t.Errorf("pod %v: kind %v apiVersion %v; want Pod v1", name, item["kind"], item["apiVersion"])
		}
		statuses, _ := dig(item, "status", "containerStatuses").([]any)
		for _, s := range statuses {
			keys := []string{"name", "ready", "restartCount", "state", "image"}
			if dig(s, "state", "waiting") == nil {
				keys = append(keys, "containerID") // a container that was created has an ID
			}
			for _, k := range keys {
				if _, ok := s.(map[string]any)[k]; !ok {
					t.Errorf("pod %v: containerStatuses entry without %q: %v", name, k, s)
				}
			}
		}
	}
	pods, err := a.Pods(t, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		p := &pods[i]
		if p.Name == "hostpath-refused" {
			continue
		}
		if p.Spec.NodeName != a.Name {
			t.Errorf("pod %s: spec.nodeName %q; want %q", p.Name, p.Spec.NodeName, a.Name)
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || p.Status.StartTime == nil {
			t.Errorf("pod %s: phase %q podIP %q startTime %v; want Running with an IP and a start time", p.Name, p.Status.Phase, p.Status.PodIP, p.Status.StartTime)
		}
		conds := map[corev1.PodConditionType]corev1.ConditionStatus{}
		for _, c := range p.Status.Conditions {
			conds[c.Type] = c.Status
		}
		for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			if conds[ct] != corev1.ConditionTrue {
				t.Errorf("pod %s: condition %s = %q; want True", p.Name, ct, conds[ct])
			}
		}
		cs := harness.ContainerStatus(p, "app")
		if cs == nil || !cs.Ready || cs.RestartCount != 0 || cs.State.Running == nil || cs.State.Running.StartedAt.IsZero() ||
			!strings.HasPrefix(cs.ContainerID, "podman://") {
			t.Errorf("pod %s: container status %+v; want app ready, running since a time, 0 restarts, a podman:// ID", p.Name, cs)
		}
		if strings.HasPrefix(p.Name, "web-") {
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "ReplicaSet" || !strings.HasPrefix(p.OwnerReferences[0].Name, "web-") {
				t.Errorf("pod %s: ownerReferences %+v; want its ReplicaSet web-...", p.Name, p.OwnerReferences)
			}
			if p.GenerateName == "" || p.Labels["pod-template-hash"] == "" {
				t.Errorf("pod %s: generateName %q, labels %v; want a generateName and pod-template-hash", p.Name, p.GenerateName, p.Labels)
			}
		}
		// The container ID is Podman's: the container really runs there.
		if cs != nil {
			id := strings.TrimPrefix(cs.ContainerID, "podman://")
			if out, err := harness.Podman(t, "inspect", "--format", "{{.State.Status}} {{index .Config.Labels \"io.skiff.node\"}}", id); err != nil ||
				strings.TrimSpace(out) != "running "+a.Name {
				t.Errorf("podman inspect %s (pod %s) = %q, %v; want running on %s", id[:12], p.Name, out, err, a.Name)
			}
		}
	}
}

// dig walks nested JSON objects.
func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}
