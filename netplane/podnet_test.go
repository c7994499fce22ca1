package netplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/fixtures/testenv"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// podmanNode is a lab node with its own Podman: storage (vfs: no mounts to clean up),
// network configuration directory and API service, all inside the node's namespace.
type podmanNode struct {
	*labNode
	dir  string
	uri  string
	args []string // podman global options of this node's storage
	env  []string
}

// podmanNode starts a Podman service in node n's namespace with image (a `podman save`
// archive) loaded; everything is removed with the test.
func (l *lab) podmanNode(n *labNode, image string) *podmanNode {
	l.t.Helper()
	dir, err := os.MkdirTemp("", "skiff-netplane-"+n.name+"-")
	if err != nil {
		l.t.Fatal(err)
	}
	l.onClose(func() { _ = os.RemoveAll(dir) })
	conf := filepath.Join(dir, "containers.conf")
	// The dev settings (runc, rlimits) plus a network directory of this node's own.
	if err := os.WriteFile(conf, []byte(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_config_dir = "`+filepath.Join(dir, "networks")+`"
`), 0o644); err != nil {
		l.t.Fatal(err)
	}
	pn := &podmanNode{labNode: n, dir: dir, uri: "unix://" + filepath.Join(dir, "podman.sock"),
		args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs"},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf)}
	if out, err := pn.podmanErr("load", "-q", "-i", image); err != nil {
		l.t.Fatal(err, out)
	}

	logf, err := os.Create(filepath.Join(dir, "podman.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("nsenter", append(append([]string{"--net=" + nsPath(n.ns), "podman"}, pn.args...), "system", "service", "--time=0", pn.uri)...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = pn.env, dir, logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	l.onClose(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(pn.uri, "unix://"))
		}}}
	waitFor(l.t, "podman service on "+n.name, 30*time.Second, func() error {
		resp, err := client.Get("http://d/_ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return pn
}

// podmanErr runs the podman CLI on this node's storage (local, not through the service).
func (pn *podmanNode) podmanErr(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append(append([]string{"--net=" + nsPath(pn.ns), "podman"}, pn.args...), args...)...)
	cmd.Env = pn.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// run starts a demo container on network with hostname name and returns its address; it
// is removed with the test (before the planes' teardown, which removes the network).
func (pn *podmanNode) run(t *testing.T, network, name string) netip.Addr {
	t.Helper()
	if out, err := pn.podmanErr("run", "-d", "--name", name, "--hostname", name, "--network", network, "--init", testenv.DemoImageName); err != nil {
		t.Fatal(err, out)
	}
	t.Cleanup(func() { _, _ = pn.podmanErr("rm", "-f", "-t", "0", name) })
	out, err := pn.podmanErr("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(out)
	if err != nil {
		t.Fatalf("container %s address %q: %v", name, out, err)
	}
	return ip
}

func (pn *podmanNode) exec(name string, args ...string) (string, error) {
	return pn.podmanErr(append([]string{"exec", name}, args...)...)
}

// TestPodNetwork runs two nodes with real Podman and netavark: each Plane makes its pod
// network from the pod subnet the leader's allocator gave its node, and routes to the
// other's; a container on n1 then reaches a container on n2 by pod IP (keeping its own
// address, despite netavark's masquerade rule) and by ClusterIP, and still reaches the LAN
// masqueraded. Then n1's subnet changes: the network is made again once no container
// uses it.
func TestPodNetwork(t *testing.T) {
	l := newLab(t)
	testenv.DemoImage(t)
	image := filepath.Join(t.TempDir(), "demo.tar")
	if out, err := exec.Command("podman", "save", "-q", "-o", image, testenv.DemoImageName).CombinedOutput(); err != nil {
		t.Fatalf("podman save: %v: %s", err, out)
	}
	nodes := map[string]*podmanNode{
		"n1": l.podmanNode(l.node("n1", "192.168.77.11", "10.42.0.0/24"), image),
		"n2": l.podmanNode(l.node("n2", "192.168.77.12", "10.42.1.0/24"), image),
	}
	ext := l.client("ext", "192.168.77.50")
	l.serve(ext, 8080)
	// The lab made a bridge for pods; here Podman does.
	for _, n := range nodes {
		l.ip(n.ns, "link", "del", "cni0")
	}

	// The leader's view: both nodes registered, pod subnets allocated by services.Plan.
	f := newFixture(t, nil, fnode("n1", "192.168.77.11", ""), fnode("n2", "192.168.77.12", ""))
	network := l.id // node-unique enough: all lab nodes share Podman's IPAM directory
	planes := map[string]*Plane{}
	for name, n := range nodes {
		p, err := New(Config{Node: name, NodeIP: n.ip, Podman: n.uri, Network: network,
			ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR, Log: testLog(t).With("node", name)})
		if err != nil {
			t.Fatal(err)
		}
		p.sys.netns = nsPath(n.ns)
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = p.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Teardown(ctx); err != nil {
				t.Errorf("teardown %s: %v", name, err)
			}
		})
		planes[name] = p
	}
	update := func() {
		for _, p := range planes {
			p.Update(f.state())
		}
	}
	update()
	for name, p := range planes {
		select {
		case <-p.Ready():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: pod network not ready", name)
		}
	}
	subnets := map[string]string{}
	for name, n := range nodes {
		node, _ := f.state().Cluster.Get(state.Key{Kind: "Node", Name: name})
		subnets[name] = node.(*corev1.Node).Spec.PodCIDR
		got, err := n.podmanErr("network", "inspect", "-f", "{{range .Subnets}}{{.Subnet}} {{.Gateway}}{{end}}", network)
		if want := subnets[name] + " " + gateway(netip.MustParsePrefix(subnets[name])).String(); err != nil || got != want {
			t.Fatalf("%s: network %s is %q, %v; want %q", name, network, got, err, want)
		}
	}

	client := nodes["n1"].run(t, network, "client")
	web := nodes["n2"].run(t, network, "web")
	for name, ip := range map[string]netip.Addr{"n1": client, "n2": web} {
		if !netip.MustParsePrefix(subnets[name]).Contains(ip) {
			t.Fatalf("container on %s got %s, outside the node's pod subnet %s", name, ip, subnets[name])
		}
	}
	// The data plane: a Service with the web container as its ready endpoint.
	f.sync(fsvc("web", "", app("web")))
	f.put(fpod("web", "n2", web.String(), true, "app", "web"))
	svc, _ := services.Get(f.state(), "default", "web")
	update()

	t.Run("pod to pod across nodes, by pod IP and by ClusterIP", func(t *testing.T) {
		// busybox nc, not wget: the static busybox's wget crashes in this image.
		for _, addr := range []string{web.String() + " 8080", svc.Spec.ClusterIP + " 80"} {
			waitFor(t, "client on n1 fetching from "+addr, 20*time.Second, func() error {
				out, err := nodes["n1"].exec("client", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 `+addr)
				if err != nil {
					return err
				}
				if !strings.Contains(out, "You've hit web") {
					return fmt.Errorf("answer %q", out)
				}
				return nil
			})
		}
	})

	t.Run("the other node sees the pod's own address", func(t *testing.T) {
		// A connection held open for a few seconds, then the server's socket table.
		if _, err := nodes["n1"].podmanErr("exec", "-d", "client", "sh", "-c", "sleep 6 | nc "+web.String()+" 8080"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the connection from client on web's side", 5*time.Second, func() error {
			out, err := nodes["n2"].exec("web", "netstat", "-tn")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) >= 6 && strings.HasSuffix(f[3], ":8080") && f[5] == "ESTABLISHED" {
					if !strings.HasPrefix(strings.TrimPrefix(f[4], "::ffff:"), client.String()+":") {
						t.Fatalf("web sees the connection from %s; want the client pod's own address %s", f[4], client)
					}
					return nil
				}
			}
			return fmt.Errorf("no established connection yet:\n%s", out)
		})
	})

	t.Run("traffic leaving the cluster is masqueraded", func(t *testing.T) {
		out, err := nodes["n1"].exec("client", "nc", "-w", "2", ext.ip.String(), "8080")
		if err != nil || strings.TrimSpace(out) != "ext 192.168.77.11" {
			t.Errorf("client to a LAN host: %q, %v; want it seen as its node 192.168.77.11", out, err)
		}
	})

	t.Run("a network of that name skiff did not make is left alone", func(t *testing.T) {
		foreign := l.id + "-theirs"
		if out, err := nodes["n2"].podmanErr("network", "create", "--subnet", "10.99.0.0/24", foreign); err != nil {
			t.Fatal(err, out)
		}
		defer func() { _, _ = nodes["n2"].podmanErr("network", "rm", foreign) }()
		p, err := New(Config{Node: "n2", NodeIP: nodes["n2"].ip, Podman: nodes["n2"].uri, Network: foreign,
			ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR, Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		p.sys.netns = nsPath(nodes["n2"].ns)
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		if _, err := p.ensureNetwork(context.Background(), netip.MustParsePrefix(subnets["n2"])); !errors.Is(err, ErrNotOurs) {
			t.Errorf("ensureNetwork over a foreign network: %v; want ErrNotOurs", err)
		}
		if err := p.removeNetwork(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, err := nodes["n2"].podmanErr("network", "inspect", "-f", "{{range .Subnets}}{{.Subnet}}{{end}}", foreign); err != nil || got != "10.99.0.0/24" {
			t.Errorf("the foreign network after ensure and teardown: %q, %v; want it untouched (10.99.0.0/24)", got, err)
		}
	})

	t.Run("a changed subnet waits for the network to empty", func(t *testing.T) {
		node, _ := f.state().Cluster.Get(state.Key{Kind: "Node", Name: "n1"})
		moved := node.(*corev1.Node).DeepCopy()
		moved.Spec.PodCIDR, moved.Spec.PodCIDRs = "10.42.9.0/24", []string{"10.42.9.0/24"}
		f.apply(&state.Command{Put: state.Wrap[manifest.Object](moved)})
		update()
		time.Sleep(500 * time.Millisecond)
		inspect := func() string {
			out, _ := nodes["n1"].podmanErr("network", "inspect", "-f", "{{range .Subnets}}{{.Subnet}}{{end}}", network)
			return out
		}
		if got := inspect(); got != subnets["n1"] {
			t.Fatalf("network subnet %q while the client container still uses it; want the old %s", got, subnets["n1"])
		}
		if _, err := nodes["n1"].podmanErr("rm", "-f", "-t", "0", "client"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "network made again with the new subnet", 40*time.Second, func() error {
			if got := inspect(); got != "10.42.9.0/24" {
				return fmt.Errorf("subnet %q", got)
			}
			return nil
		})
	})
}
