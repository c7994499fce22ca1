package podman_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/testenv"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/podman"
)

// node is this test binary's node label, so concurrent test binaries sharing the Podman
// storage never see each other's pods as their own.
var node = "test-" + randHex(4)

var (
	rtOnce sync.Once
	rtVal  *podman.Runtime
	rtErr  error
)

// env is one test's handle on the real runtime.
type env struct {
	t   testing.TB
	ctx context.Context
	rt  *podman.Runtime
	img string
}

func setup(t testing.TB) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs real Podman (not in -short)")
	}
	uri := testenv.Podman(t)
	img := testenv.DemoImage(t)
	rtOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rtVal, rtErr = podman.New(ctx, uri, node)
	})
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &env{t: t, ctx: ctx, rt: rtVal, img: img}
}

// with is e for a subtest: failures and cleanups go to t.
func (e *env) with(t *testing.T) *env {
	return &env{t: t, ctx: e.ctx, rt: e.rt, img: e.img}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pod creates a sandbox, filling in UID, names and node; it is removed when the test ends.
func (e *env) pod(cfg reconciler.PodConfig) reconciler.Pod {
	e.t.Helper()
	if cfg.UID == "" {
		cfg.UID = randHex(16)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "test"
	}
	if cfg.Name == "" {
		cfg.Name = "p-" + cfg.UID[:6]
	}
	if cfg.Node == "" {
		cfg.Node = node
	}
	p, err := e.rt.CreatePod(e.ctx, cfg)
	if err != nil {
		e.t.Fatalf("CreatePod(%s): %v", cfg.Name, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.rt.RemovePod(ctx, p.ID, 0); err != nil {
			e.t.Errorf("RemovePod(%s): %v", p.ID, err)
		}
	})
	return p
}

// run creates and starts a container (the demo image unless cfg says otherwise).
func (e *env) run(p reconciler.Pod, cfg reconciler.ContainerConfig) reconciler.Container {
	e.t.Helper()
	c := e.create(p, cfg)
	if err := e.rt.StartContainer(e.ctx, c.ID); err != nil {
		e.t.Fatalf("StartContainer(%s): %v", cfg.Name, err)
	}
	return c
}

func (e *env) create(p reconciler.Pod, cfg reconciler.ContainerConfig) reconciler.Container {
	e.t.Helper()
	if cfg.Image == "" {
		cfg.Image = e.img
	}
	if cfg.Name == "" {
		cfg.Name = "app"
	}
	c, err := e.rt.CreateContainer(e.ctx, p.ID, cfg)
	if err != nil {
		e.t.Fatalf("CreateContainer(%s): %v", cfg.Name, err)
	}
	return c
}

// exec runs cmd and returns its exit code and combined output.
func (e *env) exec(id string, cmd ...string) (int, string) {
	e.t.Helper()
	var out bytes.Buffer
	code, err := e.rt.Exec(e.ctx, id, reconciler.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
	if err != nil {
		e.t.Fatalf("Exec(%v): %v", cmd, err)
	}
	return code, out.String()
}

// sh runs a shell script in the container and fails the test unless it exits 0.
func (e *env) sh(id, script string) string {
	e.t.Helper()
	code, out := e.exec(id, "sh", "-c", script)
	if code != 0 {
		e.t.Fatalf("sh -c %q = exit %d: %s", script, code, out)
	}
	return out
}

// fetch GETs url from inside the container, retrying until the server answers.
func (e *env) fetch(id, url string) string {
	e.t.Helper()
	var out string
	waitFor(e.t, 15*time.Second, "GET "+url+" from "+id[:12], func() bool {
		var code int
		// No -T: busybox 1.35's static wget crashes with it.
		code, out = e.exec(id, "wget", "-qO-", url)
		return code == 0
	})
	return out
}

// waitExited waits until the container has exited and returns its final state.
func (e *env) waitExited(id string) reconciler.Container {
	e.t.Helper()
	var c reconciler.Container
	waitFor(e.t, 20*time.Second, id[:12]+" exited", func() bool {
		var err error
		c, err = e.rt.Container(e.ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		return c.State == reconciler.StateExited
	})
	return c
}

func (e *env) logs(id string, opts reconciler.LogOptions) string {
	e.t.Helper()
	var out bytes.Buffer
	if err := e.rt.Logs(e.ctx, id, opts, &out); err != nil {
		e.t.Fatalf("Logs(%s): %v", id, err)
	}
	return out.String()
}

// waitLogs waits until the container's output contains s.
func (e *env) waitLogs(id, s string) string {
	e.t.Helper()
	var out string
	waitFor(e.t, 15*time.Second, fmt.Sprintf("logs of %s contain %q", id[:12], s), func() bool {
		out = e.logs(id, reconciler.LogOptions{})
		return strings.Contains(out, s)
	})
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpGet GETs url from the test process (the node), retrying until it answers.
func httpGet(t testing.TB, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	waitFor(t, 15*time.Second, "GET "+url, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	return body
}

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// sleeper is a container that runs until stopped.
var sleeper = []string{"sh", "-c", "exec sleep 600"}
