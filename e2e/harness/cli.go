package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	PathHook    = "/hooks/git" // the agent's webhook endpoint
	AdminConfig = "admin.yaml" // client config (server, cluster CA, admin token) in the data dir
)

// Status is `skiff status -o json`.
type Status struct {
	Node     string         `json:"node"`
	Leader   string         `json:"leader"`
	Repo     string         `json:"repo"`
	Ref      string         `json:"ref"`
	Path     string         `json:"path"`
	Live     *Commit        `json:"live"`
	Failed   *Failure       `json:"failed"`
	Fetch    *Fetch         `json:"fetch"`
	Objects  map[string]int `json:"objects"`
	Pods     map[string]int `json:"pods"`
	Warnings []Problem      `json:"warnings"`
}

// Commit is a commit as status shows it.
type Commit struct {
	Hash    string `json:"hash"`
	Ref     string `json:"ref"`
	Subject string `json:"subject"`
}

// Failure is a refused commit or a failed fetch.
type Failure struct {
	Commit   Commit    `json:"commit"`
	Error    string    `json:"error"`
	Problems []Problem `json:"problems"`
}

// Fetch is the state of the leader's fetch loop.
type Fetch struct {
	Head  string `json:"head"`
	Error string `json:"error"`
}

// Problem is one problem with a manifest, as status and `skiff check -o json` print it.
type Problem struct {
	File     string `json:"file"`
	Doc      int    `json:"doc"`
	Line     int    `json:"line"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Field    string `json:"field"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// CLIResult is one run of the skiff CLI.
type CLIResult struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the skiff CLI against this agent (SKIFF_SERVER, and the client config with the
// cluster CA and admin token that the agent writes to its data dir) and returns what it
// printed.
func (a *Agent) Run(t testing.TB, args ...string) CLIResult {
	return a.RunStdin(t, "", args...)
}

// RunStdin is Run with stdin.
func (a *Agent) RunStdin(t testing.TB, stdin string, args ...string) CLIResult {
	t.Helper()
	env := []string{"SKIFF_SERVER=" + a.Server, "SKIFF_CONFIG=" + filepath.Join(a.DataDir, AdminConfig)}
	return runSkiff(t, env, stdin, args...)
}

// RunSkiff runs the skiff CLI with extra environment and returns what it printed.
func RunSkiff(t testing.TB, env []string, args ...string) CLIResult {
	t.Helper()
	return runSkiff(t, env, "", args...)
}

func runSkiff(t testing.TB, env []string, stdin string, args ...string) CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := CLIResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("skiff %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// MustRun runs the CLI and fails the test unless it exits 0.
func (a *Agent) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := a.Run(t, args...)
	if r.Code != 0 {
		t.Fatalf("skiff %s: exit %d: %s%s", strings.Join(args, " "), r.Code, r.Stderr, r.Stdout)
	}
	return r.Stdout
}

// podList is `skiff get pods -o json`.
type podList struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Items      []corev1.Pod `json:"items"`
}

// Pods lists the pods matching a label selector ("" for all) through `skiff get pods -o json`.
func (a *Agent) Pods(t testing.TB, selector string) ([]corev1.Pod, error) {
	args := []string{"get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	r := a.Run(t, args...)
	if r.Code != 0 {
		return nil, fmt.Errorf("skiff get pods: exit %d: %s", r.Code, r.Stderr)
	}
	var l podList
	if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil {
		return nil, fmt.Errorf("skiff get pods -o json: %v: %.300s", err, r.Stdout)
	}
	return l.Items, nil
}

// Pod gets one pod by name through `skiff get pod NAME -o json`.
func (a *Agent) Pod(t testing.TB, name string) (*corev1.Pod, error) {
	r := a.Run(t, "get", "pod", name, "-o", "json")
	if r.Code != 0 {
		return nil, fmt.Errorf("skiff get pod %s: exit %d: %s", name, r.Code, r.Stderr)
	}
	var p corev1.Pod
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		return nil, fmt.Errorf("skiff get pod %s -o json: %v", name, err)
	}
	return &p, nil
}

// Status is `skiff status -o json`.
func (a *Agent) Status(t testing.TB) (Status, error) {
	var st Status
	r := a.Run(t, "status", "-o", "json")
	if r.Code != 0 {
		return st, fmt.Errorf("skiff status: exit %d: %s", r.Code, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		return st, fmt.Errorf("skiff status -o json: %v: %.300s", err, r.Stdout)
	}
	return st, nil
}

// Sync is `skiff sync -o json`: fetch now, answer with the status after it and the exit
// code (2: the newest commit was refused).
func (a *Agent) Sync(t testing.TB) (Status, int) {
	t.Helper()
	var st Status
	r := a.Run(t, "sync", "-o", "json")
	if r.Code != 0 && r.Code != 2 {
		t.Fatalf("skiff sync -o json: exit %d: %s%s", r.Code, r.Stderr, r.Stdout)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("skiff sync -o json: %v: %.300s", err, r.Stdout)
	}
	return st, r.Code
}

// Events lists the events about one object through `skiff get events -o json`.
func (a *Agent) Events(t testing.TB, kind, name string) ([]corev1.Event, error) {
	r := a.Run(t, "get", "events", "-o", "json")
	if r.Code != 0 {
		return nil, fmt.Errorf("skiff get events: exit %d: %s", r.Code, r.Stderr)
	}
	var l struct {
		Items []corev1.Event `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil {
		return nil, fmt.Errorf("skiff get events -o json: %v", err)
	}
	var out []corev1.Event
	for _, e := range l.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out, nil
}

// Hook posts to the agent's webhook endpoint and returns the HTTP status and body.
func (a *Agent) Hook(t testing.TB, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.Server+PathHook, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := InsecureHTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", PathHook, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// WaitLive waits until the agent's live commit is hash.
func (a *Agent) WaitLive(t testing.TB, timeout time.Duration, hash string) {
	t.Helper()
	Eventually(t, timeout, func() error {
		st, err := a.Status(t)
		if err != nil {
			return err
		}
		if st.Live == nil || st.Live.Hash != hash {
			return fmt.Errorf("live commit = %+v; want %s (failed: %+v)", st.Live, hash, st.Failed)
		}
		return nil
	})
}

// WaitPods waits until exactly n pods match selector, none terminating, each Running with
// Ready=True and passing check (nil: no extra check); it returns them.
func (a *Agent) WaitPods(t testing.TB, timeout time.Duration, selector string, n int, check func(*corev1.Pod) error) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	Eventually(t, timeout, func() error {
		var err error
		if pods, err = a.Pods(t, selector); err != nil {
			return err
		}
		if len(pods) != n {
			return fmt.Errorf("%d pods match %q: %s; want %d", len(pods), selector, PodSummary(pods), n)
		}
		for i := range pods {
			p := &pods[i]
			if err := RunningReady(p); err != nil {
				return err
			}
			if check != nil {
				if err := check(p); err != nil {
					return fmt.Errorf("pod %s: %w", p.Name, err)
				}
			}
		}
		return nil
	})
	return pods
}

// WaitPod waits until the named pod passes check and returns it.
func (a *Agent) WaitPod(t testing.TB, timeout time.Duration, name string, check func(*corev1.Pod) error) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	Eventually(t, timeout, func() error {
		var err error
		if p, err = a.Pod(t, name); err != nil {
			return err
		}
		if ContainerStatus(p, "") == nil {
			return fmt.Errorf("pod %s has no container status yet", name)
		}
		if err := check(p); err != nil {
			return fmt.Errorf("pod %s: %w (%s)", name, err, ContainerSummary(p))
		}
		return nil
	})
	return p
}

// InsecureHTTP reaches the agent's open endpoints (/readyz, /hooks/git) over its TLS
// listener without the cluster CA, as a git host sending webhooks would be configured to.
var InsecureHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test client of a loopback agent
}}

// HTTPGet fetches a URL (http, or https on an agent) and returns the body of a 200 answer.
func HTTPGet(url string) (string, error) {
	resp, err := InsecureHTTP.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s = %d %s", url, resp.StatusCode, b)
	}
	return string(b), nil
}

// clientConfig is the admin.yaml an agent writes for the CLI.
type clientConfig struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// GetJSON GETs an API path in-process with the admin token (cheaper than a CLI process when
// polling fast, as the benchmark does) and decodes the JSON answer into v.
func (a *Agent) GetJSON(ctx context.Context, path string, v any) error {
	b, err := os.ReadFile(filepath.Join(a.DataDir, AdminConfig))
	if err != nil {
		return err
	}
	var cc clientConfig
	if err := yaml.Unmarshal(b, &cc); err != nil {
		return fmt.Errorf("%s: %w", AdminConfig, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cc.Token)
	resp, err := InsecureHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s = %d %s", path, resp.StatusCode, msg)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
