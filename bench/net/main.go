// Command net is the workhorse of bench/net.sh, which wires network namespaces and runs
// its subcommands inside them (nsenter):
//
//	serve -addr :8080                  a TCP server: for each byte read, 64 bytes back
//	proxy -listen A -to B              a userspace proxy (what an in-agent proxy would be)
//	program -svc IP:PORT -to IP:PORT   program one ClusterIP with netplane's renderer
//	load -addr A -name N -seconds S    new-connection rate and request latency against A
//	reprogram -services N -endpoints M the time to render and apply N Services of M endpoints
//
// load and reprogram print one table row each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/netplane"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

var (
	clusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: net serve|proxy|program|load|reprogram [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "serve":
		addr := fs.String("addr", ":8080", "listen address")
		_ = fs.Parse(os.Args[2:])
		err = serve(*addr)
	case "proxy":
		listen := fs.String("listen", "", "listen address")
		to := fs.String("to", "", "backend address")
		_ = fs.Parse(os.Args[2:])
		err = proxy(*listen, *to)
	case "program":
		svc := fs.String("svc", "10.43.0.10:80", "cluster IP:port")
		to := fs.String("to", "", "endpoint IP:port")
		_ = fs.Parse(os.Args[2:])
		err = program(*svc, *to)
	case "load":
		addr := fs.String("addr", "", "target")
		name := fs.String("name", "", "row name")
		secs := fs.Float64("seconds", 3, "seconds per measurement")
		conc := fs.Int("c", 4, "concurrent clients")
		_ = fs.Parse(os.Args[2:])
		err = load(*name, *addr, time.Duration(*secs*float64(time.Second)), *conc)
	case "reprogram":
		nsvc := fs.Int("services", 100, "Services")
		neps := fs.Int("endpoints", 10, "endpoints per Service")
		rounds := fs.Int("rounds", 5, "rounds (the median is printed)")
		_ = fs.Parse(os.Args[2:])
		err = reprogram(*nsvc, *neps, *rounds)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "net:", err)
		os.Exit(1)
	}
}

// listen serves every connection on addr with handle, in its own goroutine.
func listen(addr string, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

func serve(addr string) error {
	reply := make([]byte, 64)
	return listen(addr, func(c net.Conn) {
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	})
}

// proxy is the in-agent alternative: accept, dial the backend, copy both ways (Go uses
// splice(2) for TCP to TCP copies on Linux).
func proxy(addr, to string) error {
	return listen(addr, func(c net.Conn) {
		b, err := net.Dial("tcp", to)
		if err != nil {
			return
		}
		defer b.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(b, c)
			b.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		_, _ = io.Copy(c, b)
		<-done
	})
}

// cluster builds a leader-made state: one node, nsvc Services of neps ready endpoints each
// (pods on 10.42.0.0/16), addresses allocated by services.Plan. It builds the snapshot
// directly: one state.Command putting 10000 pods takes minutes (Objects.With copies the
// kind's map per object).
func cluster(nsvc, neps int, seed int, oneUnready bool) (*state.State, error) {
	var git, objs []manifest.Object
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.1.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.11"}}}}
	objs = append(objs, node)
	for i := range nsvc {
		app := fmt.Sprintf("app%d", i)
		git = append(git, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("svc%d", i)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": app},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}})
		for j := range neps {
			n := i*neps + j + seed
			ready := corev1.ConditionTrue
			if oneUnready && i == 0 && j == 0 {
				ready = corev1.ConditionFalse
			}
			objs = append(objs, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("p%d-%d", i, j), UID: types.UID(fmt.Sprintf("u%d-%d", i, j)),
					Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{NodeName: "n1"},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.42.%d.%d", 2+n/250, 2+n%250),
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}},
			})
		}
	}
	for _, o := range append(git, objs...) {
		if err := manifest.SetTypeMeta(o); err != nil {
			return nil, err
		}
	}
	s := &state.State{Git: state.NewObjects(git...), Cluster: state.NewObjects(objs...)}
	put, _, _ := services.Plan(s, services.AllocConfig{ServiceCIDR: serviceCIDR, PodCIDR: clusterCIDR, NodePorts: [2]int{30000, 32767}}, time.Now())
	s.Cluster = state.NewObjects(append(objs, put...)...)
	return s, nil
}

func nft(script string) error {
	_, err := nftCPU(script)
	return err
}

// nftCPU applies a script and returns the CPU time nft used (user and system: the kernel's
// work on the transaction runs in nft's system calls), which a loaded machine does not
// inflate the way it inflates wall time.
func nftCPU(script string) (time.Duration, error) {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("nft: %w: %s", err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// program installs the data plane of one ClusterIP Service with a single endpoint.
func program(svcAddr, to string) error {
	sap, err := netip.ParseAddrPort(svcAddr)
	if err != nil {
		return err
	}
	tap, err := netip.ParseAddrPort(to)
	if err != nil {
		return err
	}
	m := state.NewMemStore()
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bench"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: sap.Addr().String(), Selector: map[string]string{"app": "bench"},
			Ports: []corev1.ServicePort{{Name: "tcp", Port: int32(sap.Port()), TargetPort: intstr.FromInt32(int32(tap.Port())), Protocol: corev1.ProtocolTCP}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "server", UID: "u", Labels: map[string]string{"app": "bench"}},
		Spec:   corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: tap.Addr().String(), Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	if err := m.Apply(ctx, &state.Command{Sync: &state.Sync{Commit: state.Commit{Hash: "b"}, Objects: state.Wrap[manifest.Object](svc)}}); err != nil {
		return err
	}
	copySvc := svc.DeepCopy()
	if err := m.Apply(ctx, &state.Command{Put: state.Wrap[manifest.Object](pod, copySvc)}); err != nil {
		return err
	}
	rs := netplane.Render(netplane.RenderInput{State: m.State(), Node: "n1", ClusterCIDR: clusterCIDR})
	return nft(netplane.Transaction(nil, rs))
}

// load measures a target twice: new connections (dial, one request, close) for d with
// conc clients, and requests on conc kept-open connections for d.
func load(name, addr string, d time.Duration, conc int) error {
	connRate, connLat, err := run(d, conc, func(lat *[]time.Duration, stop *atomic.Bool) error {
		b := make([]byte, 64)
		for !stop.Load() {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			if _, err := c.Write([]byte{1}); err != nil {
				c.Close()
				return err
			}
			if _, err := io.ReadFull(c, b); err != nil {
				c.Close()
				return err
			}
			c.Close()
			*lat = append(*lat, time.Since(start))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s connections: %w", name, err)
	}
	reqRate, reqLat, err := run(d, conc, func(lat *[]time.Duration, stop *atomic.Bool) error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 64)
		for !stop.Load() {
			start := time.Now()
			if _, err := c.Write([]byte{1}); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, b); err != nil {
				return err
			}
			*lat = append(*lat, time.Since(start))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s requests: %w", name, err)
	}
	fmt.Printf("%-22s %10.0f %9s %9s %10.0f %9s %9s\n", name, connRate, pct(connLat, 50), pct(connLat, 99), reqRate, pct(reqLat, 50), pct(reqLat, 99))
	return nil
}

func run(d time.Duration, conc int, worker func(*[]time.Duration, *atomic.Bool) error) (float64, []time.Duration, error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	lats := make([][]time.Duration, conc)
	errs := make([]error, conc)
	start := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = worker(&lats[i], &stop)
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	return float64(len(all)) / el.Seconds(), all, errors.Join(errs...)
}

func pct(sorted []time.Duration, p int) string {
	if len(sorted) == 0 {
		return "-"
	}
	d := sorted[min(len(sorted)-1, len(sorted)*p/100)]
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// reprogram measures rendering and applying nsvc Services of neps endpoints: the first
// program (an empty table to all of it), an update where every Service's endpoints moved,
// and an update where one endpoint turned unready (the common case: readiness flaps).
func reprogram(nsvc, neps, rounds int) error {
	a, err := cluster(nsvc, neps, 0, false)
	if err != nil {
		return err
	}
	b, err := cluster(nsvc, neps, 1, false) // every endpoint shifted by one address
	if err != nil {
		return err
	}
	c, err := cluster(nsvc, neps, 0, true) // one endpoint not ready
	if err != nil {
		return err
	}
	var renders, fulls, updates, ones, fullCPU, updateCPU, oneCPU []time.Duration
	var ra *netplane.Ruleset
	apply := func(wall, cpu *[]time.Duration, script string) error {
		start := time.Now()
		c, err := nftCPU(script)
		*wall, *cpu = append(*wall, time.Since(start)), append(*cpu, c)
		return err
	}
	for range rounds {
		start := time.Now()
		ra = netplane.Render(netplane.RenderInput{State: a, Node: "n1", ClusterCIDR: clusterCIDR})
		renders = append(renders, time.Since(start))
		rb := netplane.Render(netplane.RenderInput{State: b, Node: "n1", ClusterCIDR: clusterCIDR})
		rc := netplane.Render(netplane.RenderInput{State: c, Node: "n1", ClusterCIDR: clusterCIDR})
		if err := apply(&fulls, &fullCPU, netplane.Transaction(nil, ra)); err != nil {
			return err
		}
		if err := apply(&ones, &oneCPU, netplane.Transaction(ra, rc)); err != nil {
			return err
		}
		if err := apply(&updates, &updateCPU, netplane.Transaction(rc, rb)); err != nil {
			return err
		}
	}
	if err := nft("delete table ip " + netplane.Table + "\n"); err != nil {
		return err
	}
	med := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("%.1f ms", float64(d[len(d)/2])/float64(time.Millisecond))
	}
	fmt.Printf("%-16s %6d %7d %10s %11s %11s %11s %11s %11s %11s\n", fmt.Sprintf("%d svc x %d ep", nsvc, neps),
		ra.Endpoints, len(ra.Chains), med(renders), med(fulls), med(fullCPU), med(ones), med(oneCPU), med(updates), med(updateCPU))
	return nil
}
