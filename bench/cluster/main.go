// Command cluster measures skiff's cluster behaviour on simulated nodes (fixtures/rig:
// network namespaces, one Podman each) and prints a table: node death → pods Ready
// elsewhere, leader death → writes accepted again, git push → pods Ready on 3 nodes, idle
// disk writes per node per hour, agent memory with 20 pods. Run as root: `make bench-cluster`.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/fixtures/rig"
)

var (
	trials  = flag.Int("trials", 5, "failover trials")
	pushes  = flag.Int("pushes", 20, "git push trials")
	idleFor = flag.Duration("idle", 3*time.Minute, "how long to measure idle disk writes")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cluster:", err)
		os.Exit(1)
	}
}

type row struct{ metric, value, target string }

func run() error {
	ctx := context.Background()
	r, err := rig.Up(ctx, rig.Options{Nodes: 3, Logf: func(string, ...any) {}})
	if err != nil {
		return err
	}
	defer r.Down(context.Background())
	repo, err := os.MkdirTemp("", "skiff-bench-repo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(repo)
	g := func(args ...string) error {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.email=b@skiff", "-c", "user.name=bench"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
		return nil
	}
	if err := g("init", "-q", "-b", "main"); err != nil {
		return err
	}
	write := func(name, content string) error {
		return os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644)
	}
	commit := func(msg string) error {
		if err := g("add", "-A"); err != nil {
			return err
		}
		return g("commit", "-q", "--allow-empty", "-m", msg)
	}
	if err := write("README", "bench\n"); err != nil {
		return err
	}
	if err := commit("init"); err != nil {
		return err
	}
	url, err := r.ServeGit(repo)
	if err != nil {
		return err
	}
	if err := r.StartCluster(ctx, "--repo", url, "--poll", "10s", "--dns", "off", "--http", "off", "--https", "off"); err != nil {
		return err
	}
	nodes := r.Nodes()
	c := &client{}
	var rows []row

	// git push → 10 pods Running+Ready on 3 nodes, via the webhook.
	var push []time.Duration
	for i := 0; i < *pushes; i++ {
		if err := write("load.yaml", deployment("load", 10, strconv.Itoa(i), 10)); err != nil {
			return err
		}
		if err := commit(fmt.Sprintf("load %d", i)); err != nil {
			return err
		}
		start := time.Now()
		c.hook(nodes[i%3])
		if err := c.waitReady(ctx, nodes[0], "load", strconv.Itoa(i), 10, nil, 2*time.Minute); err != nil {
			return fmt.Errorf("push %d: %w", i, err)
		}
		push = append(push, time.Since(start))
		// Remove it again, so each push starts from no pods.
		os.Remove(filepath.Join(repo, "load.yaml"))
		if err := commit(fmt.Sprintf("unload %d", i)); err != nil {
			return err
		}
		c.hook(nodes[0])
		if err := c.waitGone(ctx, nodes[0], "load", time.Minute); err != nil {
			return err
		}
	}
	p50, p95 := pct(push, 50), pct(push, 95)
	rows = append(rows, row{"git push → 10 pods Running+Ready on 3 nodes (webhook)", fmt.Sprintf("p50 %s, p95 %s (n=%d)", p50, p95, len(push)), "—"})

	// 20 pods for memory and idle writes.
	if err := write("web.yaml", deployment("web", 20, "v1", 5)); err != nil {
		return err
	}
	if err := commit("web"); err != nil {
		return err
	}
	c.hook(nodes[0])
	if err := c.waitReady(ctx, nodes[0], "web", "v1", 20, nil, 3*time.Minute); err != nil {
		return err
	}
	time.Sleep(10 * time.Second) // let status reports settle
	w0 := map[string]int64{}
	for _, n := range nodes {
		w0[n.Name()] = ioWrites(n.PID())
	}
	time.Sleep(*idleFor)
	var writes []string
	maxRSS := int64(0)
	for _, n := range nodes {
		d := ioWrites(n.PID()) - w0[n.Name()]
		perHour := float64(d) * float64(time.Hour) / float64(*idleFor)
		writes = append(writes, fmt.Sprintf("%s %.0f KB/h", n.Name(), perHour/1024))
		if rss := vmRSS(n.PID()); rss > maxRSS {
			maxRSS = rss
		}
	}
	rows = append(rows, row{"idle disk writes per node (write_bytes, " + idleFor.String() + " sampled)", strings.Join(writes, ", "), "< 1 MB/h"})
	rows = append(rows, row{"agent RSS per node, 20 pods in the cluster (max)", fmt.Sprintf("%.1f MB", float64(maxRSS)/(1<<20)), "< 40 MB"})
	var rssAll []string
	for _, n := range nodes {
		rssAll = append(rssAll, fmt.Sprintf("%s %.1f MB", n.Name(), float64(vmRSS(n.PID()))/(1<<20)))
	}
	rows = append(rows, row{"agent RSS per node", strings.Join(rssAll, ", "), "< 40 MB"})

	// Node death: power off a follower running pods; time until all pods Ready elsewhere.
	var death []time.Duration
	for i := 0; i < *trials; i++ {
		l := c.leader(ctx, nodes)
		victim := c.busiestFollower(ctx, nodes, l, "web")
		if victim == nil {
			return fmt.Errorf("no follower with pods")
		}
		if err := victim.PowerOff(ctx); err != nil {
			return err
		}
		start := time.Now()
		live := without(nodes, victim)
		if err := c.waitReady(ctx, l, "web", "v1", 20, live, 2*time.Minute); err != nil {
			return err
		}
		death = append(death, time.Since(start))
		if err := victim.PowerOn(ctx); err != nil {
			return err
		}
		if err := victim.WaitReady(ctx); err != nil {
			return err
		}
		time.Sleep(5 * time.Second)
	}
	rows = append(rows, row{"node power-off → its pods Running+Ready elsewhere", fmt.Sprintf("p50 %s, max %s (n=%d)", pct(death, 50), pct(death, 100), len(death)), "< 10 s"})

	// Leader death: kill -9 the leader agent; time until a write is accepted again.
	var writeBack []time.Duration
	for i := 0; i < *trials; i++ {
		l := c.leader(ctx, nodes)
		if err := l.Kill(); err != nil {
			return err
		}
		start := time.Now()
		others := without(nodes, l)
		for j := 0; ; j++ {
			if c.tryWrite(ctx, others[j%len(others)]) == nil {
				break
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("no write accepted within a minute of killing %s", l.Name())
			}
			time.Sleep(20 * time.Millisecond)
		}
		writeBack = append(writeBack, time.Since(start))
		if err := l.Restart(); err != nil {
			return err
		}
		if err := l.WaitReady(ctx); err != nil {
			return err
		}
		time.Sleep(5 * time.Second)
	}
	rows = append(rows, row{"leader kill -9 → writes accepted again", fmt.Sprintf("p50 %s, max %s (n=%d)", pct(writeBack, 50), pct(writeBack, 100), len(writeBack)), "< 3 s"})

	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER (3 simulated nodes)\tMEASURED\tTARGET")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.metric, r.value, r.target)
	}
	return tw.Flush()
}

func deployment(name string, replicas int, version string, surge int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  strategy: {rollingUpdate: {maxSurge: %[4]d, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: localhost/skiff/demo:latest
        imagePullPolicy: IfNotPresent
        env: [{name: VERSION, value: %[3]q}]
        readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
        resources: {requests: {cpu: 5m, memory: 8Mi}}
`, name, replicas, version, surge)
}

type client struct{ cache map[string]*api }

type api struct {
	base string
	hc   *http.Client
	tok  string
}

func (c *client) api(n *rig.Node) *api {
	if c.cache == nil {
		c.cache = map[string]*api{}
	}
	if a := c.cache[n.Name()]; a != nil {
		return a
	}
	b, err := os.ReadFile(filepath.Join(n.DataDir(), agent.AdminConfig))
	if err != nil {
		panic(err)
	}
	var cc agent.ClientConfig
	_ = yaml.Unmarshal(b, &cc)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cc.CA))
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
		return err
	}}}
	a := &api{base: n.APIURL(), hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}, tok: cc.Token}
	c.cache[n.Name()] = a
	return a
}

func (a *api) do(ctx context.Context, method, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+a.tok)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

func (c *client) hook(n *rig.Node) {
	a := c.api(n)
	req, _ := http.NewRequest(http.MethodPost, a.base+agent.PathHook, nil)
	if resp, err := a.hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

func (c *client) pods(ctx context.Context, n *rig.Node) ([]corev1.Pod, error) {
	var list struct{ Items []corev1.Pod }
	err := c.api(n).do(ctx, http.MethodGet, agent.PathResources+"pods", &list)
	return list.Items, err
}

func ready(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitReady polls until want pods of app at version are Ready (on the given nodes, if any).
func (c *client) waitReady(ctx context.Context, via *rig.Node, app, version string, want int, on []*rig.Node, d time.Duration) error {
	allowed := map[string]bool{}
	for _, n := range on {
		allowed[n.Name()] = true
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pods, err := c.pods(ctx, via)
		if err == nil {
			n := 0
			for _, p := range pods {
				v := ""
				if len(p.Spec.Containers) > 0 && len(p.Spec.Containers[0].Env) > 0 {
					v = p.Spec.Containers[0].Env[0].Value
				}
				if p.Labels["app"] == app && v == version && p.DeletionTimestamp == nil && ready(p) && (on == nil || allowed[p.Spec.NodeName]) {
					n++
				}
			}
			if n >= want {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%d %s pods not ready within %s", want, app, d)
}

func (c *client) waitGone(ctx context.Context, via *rig.Node, app string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pods, err := c.pods(ctx, via)
		if err == nil {
			n := 0
			for _, p := range pods {
				if p.Labels["app"] == app {
					n++
				}
			}
			if n == 0 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s pods still there after %s", app, d)
}

func (c *client) leader(ctx context.Context, nodes []*rig.Node) *rig.Node {
	for i := 0; i < 200; i++ {
		for _, n := range nodes {
			if !n.Running() {
				continue
			}
			var st agent.Status
			if c.api(n).do(ctx, http.MethodGet, agent.PathStatus, &st) == nil {
				for _, m := range nodes {
					if m.Name() == st.Leader {
						return m
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nodes[0]
}

func (c *client) busiestFollower(ctx context.Context, nodes []*rig.Node, l *rig.Node, app string) *rig.Node {
	pods, err := c.pods(ctx, l)
	if err != nil {
		return nil
	}
	count := map[string]int{}
	for _, p := range pods {
		if p.Labels["app"] == app {
			count[p.Spec.NodeName]++
		}
	}
	var best *rig.Node
	for _, n := range nodes {
		if n != l && (best == nil || count[n.Name()] > count[best.Name()]) {
			best = n
		}
	}
	return best
}

func (c *client) tryWrite(ctx context.Context, n *rig.Node) error {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.api(n).do(cctx, http.MethodPost, agent.PathTokens+"?ttl=1m", nil)
}

func without(nodes []*rig.Node, x *rig.Node) []*rig.Node {
	var out []*rig.Node
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1].Round(10 * time.Millisecond)
}

func ioWrites(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func vmRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n * 1024
		}
	}
	return 0
}
