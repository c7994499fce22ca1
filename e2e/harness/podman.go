package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/testenv"
)

// PodmanCtr is one line of `podman ps -a --format json`.
type PodmanCtr struct {
	ID      string            `json:"Id"`
	Names   []string          `json:"Names"`
	Labels  map[string]string `json:"Labels"`
	State   string            `json:"State"`
	Pod     string            `json:"Pod"`
	IsInfra bool              `json:"IsInfra"`
}

// Podman runs the podman CLI (default storage, the same the test's service uses).
func Podman(t testing.TB, args ...string) (string, error) {
	t.Helper()
	env, err := testenv.Env()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// NodeContainers lists the app containers (not infra) skiff runs for node, keyed by ID.
func NodeContainers(t testing.TB, node string) map[string]PodmanCtr {
	t.Helper()
	out, err := Podman(t, "ps", "-a", "--format", "json",
		"--filter", "label=io.skiff.node="+node, "--filter", "label=io.skiff.managed=true")
	if err != nil {
		t.Fatal(err)
	}
	var ctrs []PodmanCtr
	if err := json.Unmarshal([]byte(out), &ctrs); err != nil {
		t.Fatalf("podman ps --format json: %v: %.300s", err, out)
	}
	m := map[string]PodmanCtr{}
	for _, c := range ctrs {
		if c.IsInfra || c.Labels["io.skiff.container"] == "" {
			continue
		}
		m[c.ID] = c
	}
	return m
}

// RunningIDs is the set of IDs of the running containers in m.
func RunningIDs(m map[string]PodmanCtr) []string {
	var ids []string
	for id, c := range m {
		if c.State == "running" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// RemoveNodePods removes every pod and container labelled with the node's name, each pod
// by its own podman call, concurrently (one pod at a time takes seconds each).
func RemoveNodePods(t testing.TB, node string) {
	filter := "label=io.skiff.node=" + node
	rm := func(what []string, ids []string) {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := Podman(t, append(what, "-f", "-t", "0", id)...); err != nil && !strings.Contains(err.Error(), "no such") {
					t.Logf("cleanup: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	if out, err := Podman(t, "pod", "ps", "-q", "--filter", filter); err == nil {
		rm([]string{"pod", "rm"}, strings.Fields(out))
	}
	if out, err := Podman(t, "ps", "-aq", "--filter", filter); err == nil {
		rm([]string{"rm"}, strings.Fields(out))
	}
}
