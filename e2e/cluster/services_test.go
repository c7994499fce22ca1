package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/e2e/harness"
	"github.com/skiffhq/skiff/fixtures/rig"
)

const webService = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
`

const statefulSet = `apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  selector: {app: peers}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: peers}
spec:
  serviceName: peers
  replicas: 3
  selector: {matchLabels: {app: peers}}
  template:
    metadata: {labels: {app: peers}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: localhost/skiff/demo:latest
        imagePullPolicy: IfNotPresent
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
`

// skiff runs the CLI against a node, with that node's admin config.
func (c *cluster) skiff(ctx context.Context, n *rig.Node, args ...string) (string, error) {
	bin, err := c.r.Binary()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{args[0], "--server", n.APIURL()}, args[1:]...)...)
	cmd.Env = append(os.Environ(), "SKIFF_CONFIG="+filepath.Join(n.DataDir(), agent.AdminConfig))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func podsOf(ctx context.Context, t *testing.T, a *api, app string) []corev1.Pod {
	t.Helper()
	pods, err := a.pods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods {
		if p.Labels["app"] == app && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// TestServicesAcrossNodes: a pod on one node reaches pods on other nodes by pod IP, by
// Service name (cluster DNS + ClusterIP) and through a NodePort on every node.
func TestServicesAcrossNodes(t *testing.T) {
	c := newCluster(t, 3, 3)
	ctx := context.Background()
	n := c.r.Nodes()
	c.push(ctx, n[0], "web", map[string]string{"web.yaml": harness.Deployment("web", 3, "v1"), "svc.yaml": webService})
	c.wantPods(ctx, n[0], "web", 3, n, 120*time.Second)
	a := newAPI(t, n[0])
	pods := podsOf(ctx, t, a, "web")
	byNode := map[string]corev1.Pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
		t.Logf("pod %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.PodIP)
	}
	if len(byNode) != 3 {
		t.Fatalf("web pods on %d nodes; want one per node", len(byNode))
	}
	from, to := byNode["n1"], byNode["n2"]
	// Pod IPs come from each node's own subnet.
	for _, p := range pods {
		if !strings.HasPrefix(p.Status.PodIP, "10.42.") {
			t.Errorf("pod %s on %s has IP %s; want one from the pod CIDR 10.42.0.0/16", p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}
	cases := []struct{ name, url, want string }{
		{"pod IP on another node", "http://" + to.Status.PodIP + ":8080/", "You've hit " + to.Name},
		{"Service short name", "http://web/", "You've hit web-"},
		{"Service full name", "http://web.default.svc.cluster.local/", "You've hit web-"},
	}
	for _, tc := range cases {
		eventually(t, tc.name, 60*time.Second, func() error {
			out, err := c.skiff(ctx, n[0], "exec", from.Name, "--", "wget", "-qO-", tc.url)
			if err != nil || !strings.Contains(out, tc.want) {
				return fmt.Errorf("wget %s from %s: %v: %s", tc.url, from.Name, err, out)
			}
			return nil
		})
	}
	// The ClusterIP spreads over all three pods.
	seen := map[string]bool{}
	eventually(t, "ClusterIP spreads over every ready pod", 60*time.Second, func() error {
		out, err := c.skiff(ctx, n[0], "exec", from.Name, "--", "wget", "-qO-", "http://web/")
		if err != nil {
			return err
		}
		for _, p := range pods {
			if strings.Contains(out, p.Name) {
				seen[p.Name] = true
			}
		}
		if len(seen) < 3 {
			return fmt.Errorf("reached %d of 3 pods so far", len(seen))
		}
		return nil
	})
	// NodePort: every node's address answers, whichever node runs the pod.
	for _, x := range n {
		eventually(t, "NodePort on "+x.Name(), 30*time.Second, func() error {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(x.IP(), "30080"), 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET / HTTP/1.0\r\n\r\n")
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			b := make([]byte, 512)
			k, _ := conn.Read(b)
			if !strings.Contains(string(b[:k]), "You've hit web-") {
				return fmt.Errorf("answer %q", b[:k])
			}
			return nil
		})
	}
	// Readiness reaches DNS and the data plane on every node: a pod turned not ready
	// leaves the Service.
	if out, err := c.skiff(ctx, n[0], "exec", to.Name, "--", "wget", "-qO-", "--post-data=", "http://127.0.0.1:8080/ready?value=false"); err != nil {
		t.Fatalf("toggle readiness: %v: %s", err, out)
	}
	eventually(t, "a not-ready pod leaves the Service", 30*time.Second, func() error {
		for i := 0; i < 12; i++ {
			out, err := c.skiff(ctx, n[0], "exec", from.Name, "--", "wget", "-qO-", "http://web/")
			if err != nil {
				return err
			}
			if strings.Contains(out, to.Name) {
				return fmt.Errorf("still reached %s", to.Name)
			}
		}
		return nil
	})
}

// TestStatefulSetPeersDiscoverEachOther: a 3-replica StatefulSet behind a headless Service
// on 3 nodes; each pod finds every peer with an SRV lookup from inside its container, and
// reaches web-0 style names.
func TestStatefulSetPeersDiscoverEachOther(t *testing.T) {
	c := newCluster(t, 3, 3)
	ctx := context.Background()
	n := c.r.Nodes()
	c.push(ctx, n[0], "peers", map[string]string{"peers.yaml": statefulSet})
	c.wantPods(ctx, n[0], "peers", 3, n, 180*time.Second)
	a := newAPI(t, n[0])
	pods := podsOf(ctx, t, a, "peers")
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 3 {
		t.Errorf("peers on %d nodes; want 3", len(nodes))
	}
	for _, p := range pods {
		eventually(t, "SRV lookup from "+p.Name, 60*time.Second, func() error {
			out, err := c.skiff(ctx, n[0], "exec", p.Name, "--", "nslookup", "-type=SRV", "_http._tcp.peers.default.svc.cluster.local")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for i := 0; i < 3; i++ {
				if want := fmt.Sprintf("peers-%d.peers.default.svc.cluster.local", i); !strings.Contains(out, want) {
					return fmt.Errorf("SRV answer lacks %s:\n%s", want, out)
				}
			}
			return nil
		})
	}
	eventually(t, "peers-0 by its stable name from peers-2", 60*time.Second, func() error {
		out, err := c.skiff(ctx, n[0], "exec", "peers-2", "--", "wget", "-qO-", "http://peers-0.peers:8080/")
		if err != nil || !strings.Contains(out, "You've hit peers-0") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}
