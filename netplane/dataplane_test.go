package netplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/state"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// plane starts a data-plane-only Plane (no Podman) for a lab node, working in the node's
// namespace; it is stopped and torn down with the test.
func (l *lab) plane(n *labNode) *Plane {
	l.t.Helper()
	p, err := New(Config{Node: n.name, NodeIP: n.ip, ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR, Log: testLog(l.t).With("node", n.name)})
	if err != nil {
		l.t.Fatal(err)
	}
	p.sys.netns = nsPath(n.ns)
	bridge := "cni0" // the lab's pod bridge: Podman would name it
	p.bridge.Store(&bridge)
	if err := p.Start(context.Background()); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			l.t.Error(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Teardown(ctx); err != nil {
			l.t.Errorf("teardown %s: %v", n.name, err)
		}
	})
	return p
}

// programmed waits until every plane has applied the rules of s.
func programmed(t *testing.T, s *state.State, planes map[string]*Plane) {
	t.Helper()
	for node, p := range planes {
		want := Render(RenderInput{State: s, Node: node, ClusterCIDR: clusterCIDR}).Text
		waitFor(t, "rules programmed on "+node, 10*time.Second, func() error {
			if rs := p.appliedRules.Load(); rs == nil || rs.Text != want {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDataPlane applies the Service data plane to two lab nodes and proves it with real
// TCP connections from pods, from the nodes themselves and from a client on the LAN.
func TestDataPlane(t *testing.T) {
	l := newLab(t)
	n1 := l.node("n1", "192.168.77.11", "10.42.1.0/24")
	n2 := l.node("n2", "192.168.77.12", "10.42.2.0/24")
	// n2 drops forwarded traffic by default, as Docker or ufw leave a host.
	l.in(n2.ns, "iptables", "-w", "-P", "FORWARD", "DROP")
	webA := l.pod(n1, "web-a", "10.42.1.2", true)
	l.pod(n1, "web-b", "10.42.1.3", true)
	l.pod(n2, "web-c", "10.42.2.2", true)
	l.pod(n1, "web-d", "10.42.1.4", true) // serves, but its pod is not ready
	l.pod(n1, "one-a", "10.42.1.5", true)
	client := l.pod(n1, "client", "10.42.1.9", false)
	client2 := l.pod(n2, "client2", "10.42.2.9", false)
	ext := l.client("ext", "192.168.77.50")
	var webE *labPod // joins later

	f := newFixture(t, withInternalLocal(), standardCluster()...)
	planes := map[string]*Plane{"n1": l.plane(n1), "n2": l.plane(n2)}
	for _, p := range planes {
		p.Update(f.state())
	}
	programmed(t, f.state(), planes)
	waitFor(t, "routes between the nodes", 10*time.Second, func() error {
		return dial(client.ns, "10.42.2.2:8080", time.Second).err
	})

	type spread struct {
		name, from, addr string
		n                int
		backends         []string // exactly these answer
		source           string   // the client address every backend saw ("" = not checked)
		notSource        string   // an address no backend may see
	}
	for _, tt := range []spread{
		{name: "pod to pod across nodes keeps the pod address", from: client.ns, addr: "10.42.2.2:8080", n: 3,
			backends: []string{"web-c"}, source: "10.42.1.9"},
		{name: "ClusterIP from a pod: ready endpoints only, spread", from: client.ns, addr: "10.43.0.10:80", n: 90,
			backends: []string{"web-a", "web-b", "web-c"}, source: "10.42.1.9"},
		{name: "ClusterIP from a pod on the other node", from: client2.ns, addr: "10.43.0.10:80", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}, source: "10.42.2.9"},
		{name: "ClusterIP from the node itself", from: n1.ns, addr: "10.43.0.10:80", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}},
		{name: "second port of a Service", from: client.ns, addr: "10.43.0.17:80", n: 30,
			backends: []string{"web-a", "web-b", "web-c"}},
		{name: "internalTrafficPolicy Local on n1", from: client.ns, addr: "10.43.0.18:80", n: 30,
			backends: []string{"web-a", "web-b"}},
		{name: "internalTrafficPolicy Local on n2", from: client2.ns, addr: "10.43.0.18:80", n: 10,
			backends: []string{"web-c"}},
		{name: "NodePort Cluster: any endpoint, masqueraded", from: ext.ns, addr: "192.168.77.11:30080", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}, notSource: "192.168.77.50"},
		{name: "NodePort Cluster on the other node", from: ext.ns, addr: "192.168.77.12:30080", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}, notSource: "192.168.77.50"},
		{name: "NodePort Local: local endpoints, client address kept", from: ext.ns, addr: "192.168.77.12:30081", n: 20,
			backends: []string{"web-c"}, source: "192.168.77.50"},
		{name: "NodePort Local on n1", from: ext.ns, addr: "192.168.77.11:30081", n: 30,
			backends: []string{"web-a", "web-b"}, source: "192.168.77.50"},
		{name: "NodePort Local from a pod uses every endpoint", from: client2.ns, addr: "192.168.77.12:30081", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}},
		{name: "LoadBalancer on a node address", from: ext.ns, addr: "192.168.77.12:8088", n: 60,
			backends: []string{"web-a", "web-b", "web-c"}, notSource: "192.168.77.50"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.backends) > 1 && tt.n < 150 {
				// Random spreading needs samples: with 150 over 3 backends, a third of the
				// fair share is more than 5 standard deviations below it.
				tt.n = 150
			}
			count, sources, err := dialMany(tt.from, tt.addr, tt.n)
			if err != nil {
				t.Fatalf("dial %s: %v (answers so far %v)", tt.addr, err, count)
			}
			if got := keys(count); !slices.Equal(got, tt.backends) {
				t.Errorf("%s answered by %v; want %v", tt.addr, count, tt.backends)
			}
			// Spread: each backend gets at least a third of its fair share.
			for b, c := range count {
				if fair := tt.n / len(tt.backends); len(tt.backends) > 1 && c < fair/3 {
					t.Errorf("%s: %s got %d of %d connections; want at least %d", tt.addr, b, c, tt.n, fair/3)
				}
			}
			for _, s := range sources {
				if (tt.source != "" && s != tt.source) || (tt.notSource != "" && s == tt.notSource) {
					t.Errorf("%s: a backend saw client %s; want %q, never %q", tt.addr, s, tt.source, tt.notSource)
					break
				}
			}
		})
	}

	t.Run("ClientIP affinity sticks", func(t *testing.T) {
		for _, from := range []*labPod{client, client2} {
			count, _, err := dialMany(from.ns, "10.43.0.11:80", 20)
			if err != nil || len(count) != 1 {
				t.Errorf("%s to the sticky Service: answers %v, %v; want one backend", from.name, count, err)
			}
		}
	})

	t.Run("no endpoint is refused at once", func(t *testing.T) {
		for _, c := range []struct{ from, addr string }{
			{client.ns, "10.43.0.14:80"}, {n1.ns, "10.43.0.14:80"}, {ext.ns, "192.168.77.11:30083"}, {n2.ns, "192.168.77.12:30083"},
		} {
			start := time.Now()
			r := dial(c.from, c.addr, 3*time.Second)
			if !refused(r.err) || time.Since(start) > time.Second {
				t.Errorf("%s from %s: %v after %v; want connection refused at once", c.addr, c.from, r.err, time.Since(start))
			}
		}
	})

	t.Run("NodePort Local without a local endpoint drops", func(t *testing.T) {
		if r := dial(ext.ns, "192.168.77.12:30082", 700*time.Millisecond); r.err == nil || refused(r.err) {
			t.Errorf("n2:30082 (endpoint only on n1): %+v; want a timeout", r)
		}
		if r := dial(ext.ns, "192.168.77.11:30082", 2*time.Second); r.backend != "one-a" || r.source != "192.168.77.50" {
			t.Errorf("n1:30082: %+v; want one-a seeing 192.168.77.50", r)
		}
	})

	t.Run("endpoints change under traffic without a failed connection", func(t *testing.T) {
		sticky := dial(client2.ns, "10.43.0.11:80", 2*time.Second).backend
		webE = l.pod(n2, "web-e", "10.42.2.3", true)
		var (
			stop          atomic.Bool
			wg            sync.WaitGroup
			mu            sync.Mutex
			ok, fail      int
			firstErr      error
			seenE         atomic.Bool
			sawAfterReady atomic.Bool
		)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					r := dial(client.ns, "10.43.0.10:80", 2*time.Second)
					mu.Lock()
					if r.err != nil {
						fail++
						if firstErr == nil {
							firstErr = r.err
						}
					} else {
						ok++
					}
					mu.Unlock()
					if r.backend == "web-e" {
						seenE.Store(true)
					}
					if r.backend == "web-d" {
						sawAfterReady.Store(true)
					}
				}
			}()
		}
		time.Sleep(200 * time.Millisecond)
		f.put(fpod("web-e", "n2", "10.42.2.3", true, "app", "web"))
		for _, p := range planes {
			p.Update(f.state())
		}
		programmed(t, f.state(), planes)
		seen := func(what string, b *atomic.Bool) {
			waitFor(t, what+" answering", 10*time.Second, func() error {
				if !b.Load() {
					return fmt.Errorf("not seen")
				}
				return nil
			})
		}
		seen("the new endpoint", &seenE)
		// web-d becomes ready: it joins too.
		d := fpod("web-d", "n1", "10.42.1.4", true, "app", "web")
		f.apply(&state.Command{Status: []state.PodStatus{{Key: state.KeyOf(d), UID: d.UID, Status: d.Status}}})
		for _, p := range planes {
			p.Update(f.state())
		}
		programmed(t, f.state(), planes)
		seen("the pod that became ready", &sawAfterReady)
		stop.Store(true)
		wg.Wait()
		if fail > 0 || ok < 50 {
			t.Errorf("under updates: %d connections answered, %d failed (first: %v); want none failed", ok, fail, firstErr)
		}
		if now := dial(client2.ns, "10.43.0.11:80", 2*time.Second).backend; now != sticky {
			t.Errorf("ClientIP affinity: client2 went to %s before the updates and to %s after; want it to stay", sticky, now)
		}
	})

	t.Run("a pod reaching its own Service is masqueraded", func(t *testing.T) {
		// web-a was on its bridge before the plane started, web-e joined after.
		for _, c := range []struct {
			pod *labPod
			gw  string
		}{{webA, gateway(n1.subnet).String()}, {webE, gateway(n2.subnet).String()}} {
			hits := 0
			for range 40 {
				r := dial(c.pod.ns, "10.43.0.10:80", 2*time.Second)
				if r.err != nil {
					t.Fatalf("%s to its own Service: %v", c.pod.name, r.err)
				}
				if r.backend == c.pod.name {
					hits++
					if r.source != c.gw {
						t.Errorf("%s saw itself as %s; want its node's bridge address %s", c.pod.name, r.source, c.gw)
					}
				}
			}
			if hits == 0 {
				t.Errorf("%s never reached itself in 40 connections to its Service", c.pod.name)
			}
		}
	})

	t.Run("a removed node's route goes", func(t *testing.T) {
		f.apply(&state.Command{Delete: []state.Ref{{Key: state.Key{Kind: "Node", Name: "n2"}}}})
		planes["n1"].Update(f.state())
		waitFor(t, "route to n2's pods removed on n1", 10*time.Second, func() error {
			if out := l.ip(n1.ns, "route", "show", "proto", RouteProto); strings.Contains(out, "10.42.2.0/24") {
				return fmt.Errorf("still there: %s", out)
			}
			return nil
		})
	})
}
