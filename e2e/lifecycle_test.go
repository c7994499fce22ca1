package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/gitrepo"
	"github.com/skiffhq/skiff/fixtures/testenv"
)

// TestAgentLifecycle follows one node through a crash: an empty-body webhook applies a
// scale-up; `kill -9` of the agent leaves its pods running and the restarted agent adopts
// them without duplicates; a poll (no webhook) applies a rolling template change; a
// Deployment removed from git is pruned with its ReplicaSets and pods; a force push back to
// the first commit is followed; a kill -9 in the middle of a rollout leaves no duplicates;
// containers skiff did not create are never touched.
func TestAgentLifecycle(t *testing.T) {
	needsPodman(t)
	t.Parallel()
	repo := gitrepo.New(t)
	repo.Write("keep.yaml", harness.Deployment("keep", 2, "v1"))
	repo.Write("gone.yaml", harness.Deployment("gone", 1, "v1"))
	first := repo.Commit("keep x2, gone x1")
	// No --ref: the remote's default branch.
	a := harness.StartAgent(t, repo.URL(), map[string]string{"ref": ""})

	// Containers skiff did not create, one even carrying this node's label.
	foreign := map[string]string{}
	for _, c := range []struct{ name, label string }{
		{"foreign-plain", ""},
		{"foreign-labelled", "io.skiff.node=" + a.Name},
	} {
		name := c.name + "-" + a.Name
		args := []string{"run", "-d", "--name", name, "--label", "e2e.owner=" + a.Name}
		if c.label != "" {
			args = append(args, "--label", c.label)
		}
		args = append(args, testenv.DemoImageName)
		out, err := harness.Podman(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		foreign[name] = strings.TrimSpace(out)
		t.Cleanup(func() { _, _ = harness.Podman(t, "rm", "-f", "-t", "0", name) })
	}

	a.WaitLive(t, 60*time.Second, first)
	a.WaitPods(t, 90*time.Second, "app=keep", 2, nil)
	a.WaitPods(t, 60*time.Second, "app=gone", 1, nil)

	t.Run("StatusNamesTheDefaultBranch", func(t *testing.T) {
		st, err := a.Status(t)
		if err != nil {
			t.Fatal(err)
		}
		if st.Live == nil || st.Live.Hash != first {
			t.Fatalf("live = %+v; want %s", st.Live, first)
		}
		if st.Ref != "main" && st.Live.Ref != "main" {
			t.Errorf("status ref %q, live.ref %q; want the branch the live commit came from (main, the remote's default) named", st.Ref, st.Live.Ref)
		}
	})

	t.Run("EmptyBodyWebhook", func(t *testing.T) {
		repo.Write("keep.yaml", harness.Deployment("keep", 3, "v1"))
		head := repo.Commit("keep x3")
		if code, msg := a.Hook(t, nil, nil); code != 202 {
			t.Fatalf("POST /hooks/git with an empty body = %d %s; want 202", code, msg)
		}
		a.WaitLive(t, 15*time.Second, head)
		a.WaitPods(t, 60*time.Second, "app=keep", 3, nil)
	})

	t.Run("Kill9AdoptsPods", func(t *testing.T) {
		before := harness.RunningIDs(harness.NodeContainers(t, a.Name))
		if len(before) != 4 {
			t.Fatalf("podman runs %d app containers for the node; want 4 (keep x3, gone x1)", len(before))
		}
		pods, err := a.Pods(t, "")
		if err != nil {
			t.Fatal(err)
		}
		a.Kill9(t)
		if after := harness.RunningIDs(harness.NodeContainers(t, a.Name)); !slices.Equal(after, before) {
			t.Errorf("containers after kill -9 of the agent %v; want them running on %v", after, before)
		}
		a.Restart(t, map[string]string{"poll": "2s"})
		a.WaitPods(t, 60*time.Second, "app=keep", 3, nil)
		a.WaitPods(t, 30*time.Second, "app=gone", 1, nil)
		got, err := a.Pods(t, "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(harness.PodNames(got), harness.PodNames(pods)) {
			t.Errorf("pods after the restart %v; want the same pods %v", harness.PodNames(got), harness.PodNames(pods))
		}
		for i := range got {
			if cs := harness.ContainerStatus(&got[i], "app"); cs == nil || cs.RestartCount != 0 {
				t.Errorf("pod %s after the agent restart: %+v; want its container adopted, not restarted", got[i].Name, cs)
			}
		}
		// No duplicates: still exactly the same containers.
		if after := harness.RunningIDs(harness.NodeContainers(t, a.Name)); !slices.Equal(after, before) {
			t.Errorf("containers after the restart %v; want exactly the adopted %v", after, before)
		}
	})

	t.Run("PollAppliesRollingUpdate", func(t *testing.T) {
		gonePods, err := a.Pods(t, "app=gone")
		if err != nil {
			t.Fatal(err)
		}
		goneID := harness.ContainerStatus(&gonePods[0], "app").ContainerID
		repo.Write("keep.yaml", harness.Deployment("keep", 3, "v2"))
		head := repo.Commit("keep: X=v2")
		a.WaitLive(t, 20*time.Second, head) // the 2 s poll, no webhook
		a.WaitPods(t, 120*time.Second, "app=keep", 3, func(p *corev1.Pod) error {
			if x := harness.EnvValue(p.Spec.Containers[0], "X"); x != "v2" {
				return fmt.Errorf("X = %q; want v2", x)
			}
			return nil
		})
		// The adopted pod of the other Deployment is untouched; Podman has no leftovers.
		g := a.WaitPods(t, 10*time.Second, "app=gone", 1, nil)
		if id := harness.ContainerStatus(&g[0], "app").ContainerID; id != goneID {
			t.Errorf("pod %s's container changed %s -> %s during another Deployment's rollout", g[0].Name, goneID, id)
		}
		harness.Eventually(t, 30*time.Second, func() error {
			if n := len(harness.NodeContainers(t, a.Name)); n != 4 {
				return fmt.Errorf("podman has %d app containers for the node; want 4 (keep x3, gone x1)", n)
			}
			return nil
		})
	})

	t.Run("PruneRemovedDeployment", func(t *testing.T) {
		repo.Remove("gone.yaml")
		head := repo.Commit("remove gone")
		a.WaitLive(t, 20*time.Second, head)
		harness.Eventually(t, 60*time.Second, func() error {
			pods, err := a.Pods(t, "app=gone")
			if err != nil {
				return err
			}
			if len(pods) != 0 {
				return fmt.Errorf("pods of the removed Deployment remain: %s", harness.PodSummary(pods))
			}
			var l struct {
				Items []struct{ Metadata struct{ Name string } }
			}
			if err := json.Unmarshal([]byte(a.MustRun(t, "get", "replicasets", "-o", "json")), &l); err != nil {
				return err
			}
			for _, rs := range l.Items {
				if strings.HasPrefix(rs.Metadata.Name, "gone-") {
					return fmt.Errorf("replica set %s of the removed Deployment remains", rs.Metadata.Name)
				}
			}
			if out := a.MustRun(t, "get", "deployments", "-o", "name"); strings.Contains(out, "gone") {
				return fmt.Errorf("skiff get deployments still lists it: %s", out)
			}
			for _, c := range harness.NodeContainers(t, a.Name) {
				if strings.HasPrefix(c.Labels["io.skiff.pod.name"], "gone-") {
					return fmt.Errorf("podman still has container %s of pod %s", c.ID[:12], c.Labels["io.skiff.pod.name"])
				}
			}
			return nil
		})
		a.WaitPods(t, 10*time.Second, "app=keep", 3, nil)
	})

	t.Run("ForcePushFollowed", func(t *testing.T) {
		// History rewritten back to the first commit: the agent follows the branch, even
		// to an older commit, and the cluster returns to it (gone is back, keep rolls back).
		repo.ResetHard(first)
		if code, msg := a.Hook(t, nil, nil); code != 202 {
			t.Fatalf("webhook = %d %s", code, msg)
		}
		a.WaitLive(t, 15*time.Second, first)
		v1 := func(p *corev1.Pod) error {
			if x := harness.EnvValue(p.Spec.Containers[0], "X"); x != "v1" {
				return fmt.Errorf("X = %q; want v1", x)
			}
			return nil
		}
		a.WaitPods(t, 120*time.Second, "app=keep", 2, v1)
		a.WaitPods(t, 60*time.Second, "app=gone", 1, v1)
	})

	t.Run("Kill9MidRollout", func(t *testing.T) {
		// kill -9 as soon as the first pod of a new template exists: the restarted agent
		// finishes the rollout, leaving exactly one sandbox and one container per pod.
		repo.Write("keep.yaml", harness.Deployment("keep", 2, "v3"))
		repo.Commit("keep: X=v3")
		if code, msg := a.Hook(t, nil, nil); code != 202 {
			t.Fatalf("webhook = %d %s", code, msg)
		}
		harness.Eventually(t, 30*time.Second, func() error {
			pods, err := a.Pods(t, "app=keep")
			if err != nil {
				return err
			}
			for i := range pods {
				if harness.EnvValue(pods[i].Spec.Containers[0], "X") == "v3" {
					return nil
				}
			}
			return fmt.Errorf("no pod of the new template yet: %s", harness.PodSummary(pods))
		})
		a.Kill9(t)
		a.Restart(t, nil)
		v3 := func(p *corev1.Pod) error {
			if x := harness.EnvValue(p.Spec.Containers[0], "X"); x != "v3" {
				return fmt.Errorf("X = %q; want v3", x)
			}
			return nil
		}
		keep := a.WaitPods(t, 120*time.Second, "app=keep", 2, v3)
		gone := a.WaitPods(t, 10*time.Second, "app=gone", 1, nil)
		want := append(harness.PodNames(keep), harness.PodNames(gone)...)
		slices.Sort(want)
		harness.Eventually(t, 30*time.Second, func() error {
			var ctrs, sandboxes []string
			for _, c := range harness.NodeContainers(t, a.Name) {
				ctrs = append(ctrs, c.Labels["io.skiff.pod.name"]+"/"+c.State)
			}
			out, err := harness.Podman(t, "pod", "ps", "--format", "{{index .Labels \"io.skiff.pod.name\"}}", "--filter", "label=io.skiff.node="+a.Name)
			if err != nil {
				return err
			}
			sandboxes = strings.Fields(out)
			slices.Sort(ctrs)
			slices.Sort(sandboxes)
			wantCtrs := make([]string, len(want))
			for i, n := range want {
				wantCtrs[i] = n + "/running"
			}
			if !slices.Equal(ctrs, wantCtrs) || !slices.Equal(sandboxes, want) {
				return fmt.Errorf("podman has containers %v and pods %v; want exactly %v", ctrs, sandboxes, want)
			}
			return nil
		})
	})

	t.Run("ForeignContainersUntouched", func(t *testing.T) {
		for name, id := range foreign {
			out, err := harness.Podman(t, "inspect", "--format", "{{.Id}} {{.State.Status}} {{.RestartCount}}", name)
			if err != nil {
				t.Errorf("container %s that skiff did not create is gone: %v", name, err)
				continue
			}
			if got := strings.TrimSpace(out); got != id+" running 0" {
				t.Errorf("container %s = %q; want %s running, never restarted", name, got, id)
			}
		}
	})
}
