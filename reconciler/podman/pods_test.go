package podman_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/fixtures/testenv"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/podman"
)

// TestPodSandbox: pod configurations → what the containers and the node observe.
func TestPodSandbox(t *testing.T) {
	e := setup(t)
	hostPort := freePort(t)
	hostNetPort := freePort(t)
	cases := []struct {
		name  string
		pod   reconciler.PodConfig
		ctrs  []reconciler.ContainerConfig
		check func(t *testing.T, e *env, p reconciler.Pod, ids []string)
	}{
		{
			name: "containers share localhost and the pod hostname",
			pod:  reconciler.PodConfig{Hostname: "web-0"},
			ctrs: []reconciler.ContainerConfig{
				{Name: "a"},
				{Name: "b", Env: []string{"PORT=8081", "GRPC_PORT=9091"}},
			},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				if got := e.fetch(ids[1], "http://127.0.0.1:8080/"); got != "You've hit web-0\n" {
					t.Errorf("b → a on localhost = %q; want %q", got, "You've hit web-0\n")
				}
				if got := e.fetch(ids[0], "http://localhost:8081/"); got != "You've hit web-0\n" {
					t.Errorf("a → b on localhost = %q", got)
				}
			},
		},
		{
			name: "pod IP reachable from the node",
			ctrs: []reconciler.ContainerConfig{{Name: "a"}},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				if p.IP == "" {
					t.Fatal("pod has no IP")
				}
				if got := httpGet(t, "http://"+p.IP+":8080/"); !strings.HasPrefix(got, "You've hit ") {
					t.Errorf("GET podIP:8080 = %q", got)
				}
			},
		},
		{
			name: "hostPort published on the node",
			pod: reconciler.PodConfig{Ports: []reconciler.PortMapping{
				{HostPort: hostPort, ContainerPort: 8080, Protocol: "TCP"},
			}},
			ctrs: []reconciler.ContainerConfig{{Name: "a"}},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				url := fmt.Sprintf("http://%s:%d/", nodeIP(t), hostPort)
				if got := httpGet(t, url); !strings.HasPrefix(got, "You've hit ") {
					t.Errorf("GET %s = %q", url, got)
				}
			},
		},
		{
			name: "DNS config and /etc/hosts entries",
			pod: reconciler.PodConfig{
				DNS: reconciler.DNSConfig{
					Servers:  []string{"10.96.0.10"},
					Searches: []string{"test.svc.cluster.local", "svc.cluster.local"},
					Options:  []string{"ndots:5"},
				},
				Hosts: []reconciler.HostEntry{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}}},
			},
			ctrs: []reconciler.ContainerConfig{{Name: "a", Entrypoint: sleeper}},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				resolv := e.sh(ids[0], "cat /etc/resolv.conf")
				for _, want := range []string{"nameserver 10.96.0.10", "search test.svc.cluster.local svc.cluster.local", "options ndots:5"} {
					if !strings.Contains(resolv, want) {
						t.Errorf("/etc/resolv.conf = %q; want a line %q", resolv, want)
					}
				}
				hosts := e.sh(ids[0], "cat /etc/hosts")
				for _, name := range []string{"foo.local", "bar.local"} {
					if !strings.Contains(hosts, "10.1.2.3\t"+name) && !strings.Contains(hosts, "10.1.2.3 "+name) {
						t.Errorf("/etc/hosts = %q; want 10.1.2.3 %s", hosts, name)
					}
				}
			},
		},
		{
			name: "host network",
			pod:  reconciler.PodConfig{HostNetwork: true},
			ctrs: []reconciler.ContainerConfig{{Name: "a", Env: []string{fmt.Sprintf("PORT=%d", hostNetPort), "GRPC_PORT=0"}}},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				if p.IP != "" {
					t.Errorf("host-network pod IP = %q; want none", p.IP)
				}
				if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostNetPort)); !strings.HasPrefix(got, "You've hit ") {
					t.Errorf("GET 127.0.0.1:%d = %q", hostNetPort, got)
				}
			},
		},
		{
			name: "named network",
			pod:  reconciler.PodConfig{Network: testNetwork(t)},
			ctrs: []reconciler.ContainerConfig{{Name: "a", Entrypoint: sleeper}},
			check: func(t *testing.T, e *env, p reconciler.Pod, ids []string) {
				if !strings.HasPrefix(p.IP, "10.89.77.") {
					t.Errorf("pod IP on network %s = %q; want 10.89.77.x", testNetworkName, p.IP)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.with(t)
			p := e.pod(tc.pod)
			var ids []string
			for _, c := range tc.ctrs {
				ids = append(ids, e.run(p, c).ID)
			}
			tc.check(t, e, p, ids)
		})
	}
}

const testNetworkName = "skiff-test-net"

// testNetwork creates a Podman network for the named-network case (once; it is kept for
// later runs, as a node's network would be).
func testNetwork(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		return testNetworkName
	}
	env, err := testenv.Env()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("podman", "network", "exists", testNetworkName)
	cmd.Env = env
	if cmd.Run() == nil {
		return testNetworkName
	}
	cmd = exec.Command("podman", "network", "create", "--subnet", "10.89.77.0/24", testNetworkName)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("podman network create: %v: %s", err, out)
	}
	return testNetworkName
}

// nodeIP is an address of this machine that is not loopback (published ports are
// forwarded by the firewall, which does not see loopback traffic).
func nodeIP(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("hostname", "-I").Output()
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			if !strings.Contains(f, ":") && !strings.HasPrefix(f, "10.88.") && !strings.HasPrefix(f, "10.89.") {
				return f
			}
		}
	}
	return "127.0.0.1"
}

// TestCreatePodIdempotent: a second CreatePod with the same UID returns the same sandbox,
// also after its infra container stopped.
func TestCreatePodIdempotent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := reconciler.PodConfig{UID: randHex(16), Namespace: "test", Name: "idem", Node: node}
	first := e.pod(cfg)
	if !first.Running || first.IP == "" {
		t.Errorf("CreatePod = running %v, IP %q; want running with an IP", first.Running, first.IP)
	}
	again, err := e.rt.CreatePod(e.ctx, cfg)
	if err != nil || again.ID != first.ID {
		t.Fatalf("second CreatePod = %s, %v; want %s", again.ID, err, first.ID)
	}
	var n int
	for _, p := range pods(t, e) {
		if p.UID == cfg.UID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("Pods() has %d sandboxes for UID %s; want 1", n, cfg.UID)
	}
}

// TestCreatePodPortInUse: a hostPort the node already uses fails CreatePod with the
// reason, and leaves no sandbox behind.
func TestCreatePodPortInUse(t *testing.T) {
	t.Parallel()
	e := setup(t)
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	cfg := reconciler.PodConfig{UID: randHex(16), Namespace: "test", Name: "busy", Node: node,
		Ports: []reconciler.PortMapping{{HostPort: port, ContainerPort: 8080, Protocol: "tcp"}}}
	p, err := e.rt.CreatePod(e.ctx, cfg)
	if err == nil {
		_ = e.rt.RemovePod(e.ctx, p.ID, 0)
		t.Fatalf("CreatePod with hostPort %d in use succeeded; want an error", port)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("CreatePod error = %q; want the reason (address already in use)", err)
	}
	for _, q := range pods(t, e) {
		if q.UID == cfg.UID {
			t.Errorf("a sandbox for %s was left behind: %+v", cfg.UID, q)
			_ = e.rt.RemovePod(e.ctx, q.ID, 0)
		}
	}
}

// TestPodsListing: Pods reports each sandbox with its labels, IP and containers, and
// forgets it once removed.
func TestPodsListing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := reconciler.PodConfig{UID: randHex(16), Namespace: "shop", Name: "till", Node: node,
		Labels: map[string]string{"app": "till"}}
	p := e.pod(cfg)
	a := e.run(p, reconciler.ContainerConfig{Name: "main", Entrypoint: sleeper, SpecHash: "h1"})
	b := e.run(p, reconciler.ContainerConfig{Name: "once", Entrypoint: []string{"sh", "-c", "exit 4"}, Attempt: 1})
	e.waitExited(b.ID)

	got := findPod(t, e, cfg.UID)
	if got.ID != p.ID || got.Namespace != "shop" || got.Name != "till" || got.Node != node || !got.Running || got.IP != p.IP {
		t.Errorf("Pods() entry = %+v; want id %s shop/till on %s running with IP %s", got, p.ID, node, p.IP)
	}
	want := map[string]reconciler.Container{
		"main": {ID: a.ID, State: reconciler.StateRunning, SpecHash: "h1"},
		"once": {ID: b.ID, State: reconciler.StateExited, ExitCode: 4, Attempt: 1},
	}
	if len(got.Containers) != len(want) {
		t.Fatalf("Pods() containers = %+v; want %d (no infra container)", got.Containers, len(want))
	}
	for _, c := range got.Containers {
		w := want[c.Name]
		if c.ID != w.ID || c.State != w.State || c.ExitCode != w.ExitCode || c.Attempt != w.Attempt || c.SpecHash != w.SpecHash || c.PodID != p.ID {
			t.Errorf("container %s = %+v; want %+v", c.Name, c, w)
		}
		if c.StartedAt.IsZero() || c.Image != e.img || c.ImageID == "" {
			t.Errorf("container %s: started %v image %q id %q", c.Name, c.StartedAt, c.Image, c.ImageID)
		}
		if (c.State == reconciler.StateExited) == c.FinishedAt.IsZero() {
			t.Errorf("container %s %s with FinishedAt %v", c.Name, c.State, c.FinishedAt)
		}
	}

	if err := e.rt.RemovePod(e.ctx, p.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, q := range pods(t, e) {
		if q.ID == p.ID {
			t.Errorf("Pods() after RemovePod still has %s", p.ID)
		}
	}
	if err := e.rt.RemovePod(e.ctx, p.ID, 0); err != nil {
		t.Errorf("RemovePod of a removed pod = %v; want nil", err)
	}
	if _, err := e.rt.Container(e.ctx, a.ID); !errors.Is(err, reconciler.ErrNotFound) {
		t.Errorf("Container(removed) = %v; want ErrNotFound", err)
	}
	if err := e.rt.RemoveContainer(e.ctx, a.ID); err != nil {
		t.Errorf("RemoveContainer(removed) = %v; want nil", err)
	}
}

func pods(t *testing.T, e *env) []reconciler.Pod {
	t.Helper()
	ps, err := e.rt.Pods(e.ctx)
	if err != nil {
		t.Fatalf("Pods: %v", err)
	}
	return ps
}

func findPod(t *testing.T, e *env, uid string) reconciler.Pod {
	t.Helper()
	for _, p := range pods(t, e) {
		if p.UID == uid {
			return p
		}
	}
	t.Fatalf("Pods() has no pod with UID %s", uid)
	return reconciler.Pod{}
}

// TestForeignUntouched: a container and a pod started with the podman CLI beside skiff's
// are never listed, and every call that would change them is refused.
func TestForeignUntouched(t *testing.T) {
	t.Parallel()
	e := setup(t)
	podmanCLI := func(args ...string) string {
		t.Helper()
		env, err := testenv.Env()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("podman", args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("podman %v: %v: %s", args, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	name := "foreign-" + randHex(4)
	// A foreign container may even carry skiff-looking labels other than the managed one.
	ctrID := podmanCLI("run", "-d", "--name", name, "--label", reconciler.LabelNode+"="+node, e.img)
	podID := podmanCLI("pod", "create", "--name", name+"-pod", "--label", reconciler.LabelPodUID+"=x")
	podmanCLI("pod", "start", podID)
	t.Cleanup(func() {
		env, _ := testenv.Env()
		cmd := exec.Command("podman", "rm", "-f", "-t", "0", ctrID)
		cmd.Env = env
		_ = cmd.Run()
		cmd = exec.Command("podman", "pod", "rm", "-f", "-t", "0", podID)
		cmd.Env = env
		_ = cmd.Run()
	})

	// Skiff's own pod beside them, so every call has something to do.
	p := e.pod(reconciler.PodConfig{})
	mine := e.run(p, reconciler.ContainerConfig{Entrypoint: sleeper})

	for _, q := range pods(t, e) {
		if q.ID == podID {
			t.Errorf("Pods() lists the foreign pod %s", podID)
		}
		for _, c := range q.Containers {
			if c.ID == ctrID {
				t.Errorf("Pods() lists the foreign container %s", ctrID)
			}
		}
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"StopContainer", func() error { return e.rt.StopContainer(e.ctx, ctrID, 0) }},
		{"RemoveContainer", func() error { return e.rt.RemoveContainer(e.ctx, ctrID) }},
		{"StartContainer", func() error { return e.rt.StartContainer(e.ctx, ctrID) }},
		{"Container", func() error { _, err := e.rt.Container(e.ctx, ctrID); return err }},
		{"Exec", func() error {
			_, err := e.rt.Exec(e.ctx, ctrID, reconciler.ExecOptions{Cmd: []string{"true"}})
			return err
		}},
		{"Logs", func() error { return e.rt.Logs(e.ctx, ctrID, reconciler.LogOptions{}, nil) }},
		{"RemovePod", func() error { return e.rt.RemovePod(e.ctx, podID, 0) }},
		{"CreateContainer in foreign pod", func() error {
			_, err := e.rt.CreateContainer(e.ctx, podID, reconciler.ContainerConfig{Name: "x", Image: e.img})
			return err
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, podman.ErrNotManaged) {
			t.Errorf("%s(foreign) = %v; want ErrNotManaged", c.name, err)
		}
	}
	if err := e.rt.RemovePod(e.ctx, p.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Container(e.ctx, mine.ID); !errors.Is(err, reconciler.ErrNotFound) {
		t.Errorf("skiff's own container after RemovePod: %v; want ErrNotFound", err)
	}
	if st := podmanCLI("inspect", "--format", "{{.State.Status}}", ctrID); st != "running" {
		t.Errorf("foreign container is %s after every call; want running", st)
	}
	if st := podmanCLI("pod", "inspect", "--format", "{{.State}}", podID); st != "Running" {
		t.Errorf("foreign pod is %s after every call; want Running", st)
	}
}

// TestEnsureImage: pull policies against a node without a registry.
func TestEnsureImage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	made := "localhost/skiff/no-such-image-" + randHex(4) + ":1"
	cases := []struct {
		image    string
		policy   reconciler.PullPolicy
		wantErr  error // nil: an image ID
		inWithin time.Duration
	}{
		{e.img, reconciler.PullIfNotPresent, nil, 5 * time.Second},
		{e.img, reconciler.PullNever, nil, 5 * time.Second},
		{e.img, reconciler.PullAlways, nil, 15 * time.Second}, // pull fails offline, local copy used
		{made, reconciler.PullNever, reconciler.ErrImageNotFound, 5 * time.Second},
		{made, reconciler.PullIfNotPresent, reconciler.ErrImageNotFound, 10 * time.Second},
		{"madeup.invalid/nope/nope:1", reconciler.PullAlways, reconciler.ErrImageNotFound, 10 * time.Second},
	}
	for _, tc := range cases {
		start := time.Now()
		id, err := e.rt.EnsureImage(e.ctx, tc.image, tc.policy)
		took := time.Since(start)
		switch {
		case tc.wantErr == nil && (err != nil || id == ""):
			t.Errorf("EnsureImage(%s, %s) = %q, %v; want an ID", tc.image, tc.policy, id, err)
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("EnsureImage(%s, %s) = %q, %v; want %v", tc.image, tc.policy, id, err, tc.wantErr)
		case tc.wantErr != nil && !strings.Contains(err.Error(), tc.image):
			t.Errorf("EnsureImage(%s, %s) error %q does not name the image", tc.image, tc.policy, err)
		}
		if took > tc.inWithin {
			t.Errorf("EnsureImage(%s, %s) took %v; want < %v", tc.image, tc.policy, took, tc.inWithin)
		}
	}
}

// TestEvents: starting, exiting and being OOM-killed are reported for skiff containers;
// the channel closes when the context ends.
func TestEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	events, err := e.rt.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := e.pod(reconciler.PodConfig{})
	exits := e.run(p, reconciler.ContainerConfig{Name: "exits", Entrypoint: []string{"sh", "-c", "sleep 0.2; exit 2"}})
	oom := e.run(p, reconciler.ContainerConfig{Name: "oom", MemoryLimit: 32 << 20})
	e.fetch(oom.ID, "http://127.0.0.1:8080/healthz")
	_, _ = e.rt.Exec(e.ctx, oom.ID, reconciler.ExecOptions{Cmd: []string{"sh", "-c", "wget -qO- http://127.0.0.1:8080/alloc?mb=100"}})

	want := map[string][]reconciler.EventKind{
		exits.ID: {reconciler.EventStarted, reconciler.EventDied},
		oom.ID:   {reconciler.EventStarted, reconciler.EventOOM, reconciler.EventDied},
	}
	timeout := time.After(20 * time.Second)
	for len(want[exits.ID])+len(want[oom.ID]) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events closed early; still waiting for %v", want)
			}
			w, mine := want[ev.ContainerID]
			if !mine {
				continue // other tests' containers
			}
			if ev.PodUID != p.UID || ev.Time.IsZero() {
				t.Errorf("event %+v; want pod %s and a time", ev, p.UID)
			}
			// Podman may report an OOM twice (its own event and the kernel's); order
			// within one container is what matters.
			if len(w) > 0 && ev.Kind == w[0] {
				want[ev.ContainerID] = w[1:]
			} else if ev.Kind != reconciler.EventOOM {
				t.Errorf("event %s for %s; want next %v", ev.Kind, ev.ContainerID[:12], w)
			}
		case <-timeout:
			t.Fatalf("events still missing after 20s: %v", want)
		}
	}
	cancel()
	closed := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-closed:
			t.Fatal("events channel not closed 5s after cancel")
		}
	}
}
