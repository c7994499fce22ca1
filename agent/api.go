package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/events"
	"github.com/skiffhq/skiff/ingress"
	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/controller"
	"github.com/skiffhq/skiff/services"
	"github.com/skiffhq/skiff/state"
)

// API paths shared with the CLI (package cli builds its requests from these).
const (
	PathStatus    = "/api/v1/status"
	PathSync      = "/api/v1/sync"
	PathResources = "/api/v1/resources/" // + plural
	PathLogs      = "/api/v1/logs/"      // + namespace/pod
	PathExec      = "/api/v1/exec/"      // + namespace/pod
	PathApply     = "/internal/v1/apply"
	PathIndex     = "/internal/v1/index"
	PathHook      = "/hooks/git"

	// ExecUpgrade is the protocol an exec request upgrades its connection to.
	ExecUpgrade = "skiff-exec/1"
)

// Status is what `skiff status` shows.
type Status struct {
	Node     string            `json:"node"`
	Leader   string            `json:"leader"`
	Version  string            `json:"version"`
	Repo     string            `json:"repo"`
	Ref      string            `json:"ref"`
	Path     string            `json:"path"`
	Live     *state.Commit     `json:"live,omitempty"` // the commit every node runs
	Failed   *state.Failure    `json:"failed,omitempty"`
	Fetch    *FetchStatus      `json:"fetch,omitempty"`
	Objects  map[string]int    `json:"objects"`
	Pods     map[string]int    `json:"pods"` // by phase
	Nodes    []NodeStatus      `json:"nodes,omitempty"`
	Index    uint64            `json:"raftIndex"`
	Warnings manifest.Problems `json:"warnings,omitempty"` // the live commit's unsupported fields
	// Ingress is this node's ingress: which host uses which certificate (secret or cluster
	// CA) and until when, and what is wrong with each route.
	Ingress []ingress.HostStatus `json:"ingress,omitempty"`
}

// FetchStatus is the leader's git fetch loop as seen now (kept in memory, not in Raft).
type FetchStatus struct {
	LastFetch time.Time `json:"lastFetch,omitempty"`
	Duration  string    `json:"duration,omitempty"`
	Head      string    `json:"head,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// NodeStatus is one member as `skiff status` lists it.
type NodeStatus struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Ready bool   `json:"ready"`
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...)})
}

// routes builds the HTTP API. Health, metrics, webhooks (HMAC-checked by gitsync) and
// joins (join token) are open; /api/ needs the admin token or a cluster certificate;
// /internal/ only answers other nodes.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.HandleFunc("POST "+PathHook, a.handleHook)
	mux.HandleFunc("POST "+PathJoin, a.handleJoin)

	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.requireAdmin(h)) }
	admin("GET "+PathStatus, a.handleStatus)
	admin("POST "+PathSync, a.handleSync)
	admin("GET "+PathResources+"{resource}", a.handleGet)
	admin("GET "+PathLogs+"{namespace}/{pod}", a.handleLogs)
	admin("POST "+PathExec+"{namespace}/{pod}", a.handleExec)
	admin("POST "+PathTokens, a.handleCreateToken)
	admin("GET "+PathNodes, a.handleNodes)
	admin("POST "+PathNodeOp+"{name}/{op}", a.handleNodeOp)
	// Profiles of this agent, for operators (go tool pprof with the admin token).
	admin("GET /debug/pprof/", pprof.Index)
	admin("GET /debug/pprof/profile", pprof.Profile)
	admin("GET /debug/pprof/trace", pprof.Trace)

	peer := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.requirePeer(h)) }
	peer("POST "+PathApply, a.requireMember(a.handleApply))
	peer("POST "+PathMembers, a.handleMembers)
	peer("GET "+PathEvents, a.handleLocalEvents)
	peer("GET "+PathIndex, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]uint64{"index": a.store.State().Index})
	})
	return mux
}

func (a *Agent) requireAdmin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.checkAdmin(r); err != nil {
			writeErr(w, http.StatusUnauthorized, "%v", err)
			return
		}
		h(w, r)
	})
}

// requireMember admits only nodes that are still Raft members (a removed node keeps its
// certificate but may no longer write).
func (a *Agent) requireMember(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, _ := a.checkPeer(r)
		if cf := a.raft.GetConfiguration(); cf.Error() == nil {
			for _, s := range cf.Configuration().Servers {
				if string(s.ID) == name {
					h(w, r)
					return
				}
			}
		}
		writeErr(w, http.StatusForbidden, "node %q is not a member of this cluster (removed?)", name)
	}
}

func (a *Agent) requirePeer(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.checkPeer(r); err != nil {
			writeErr(w, http.StatusForbidden, "%v", err)
			return
		}
		h(w, r)
	})
}

func (a *Agent) handleReady(w http.ResponseWriter, _ *http.Request) {
	if reason := a.notReady(); reason != "" {
		writeErr(w, http.StatusServiceUnavailable, "not ready: %s", reason)
		return
	}
	io.WriteString(w, "ok\n")
}

// handleHook accepts git webhooks. On a follower it forwards the request to the leader,
// which runs the fetch loop.
func (a *Agent) handleHook(w http.ResponseWriter, r *http.Request) {
	if !a.store.IsLeader() {
		a.proxyToLeader(w, r)
		return
	}
	a.hook.ServeHTTP(w, r)
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.status(r.Context()))
}

func (a *Agent) status(ctx context.Context) Status {
	s := a.store.State()
	st := Status{
		Node: a.cfg.Name, Version: a.version, Repo: a.cfg.Repo, Ref: a.cfg.Ref, Path: a.cfg.Path,
		Failed: s.Failed, Objects: map[string]int{}, Pods: map[string]int{}, Index: s.Index,
	}
	st.Leader, _ = a.store.Leader()
	if st.Ref == "" {
		st.Ref = s.Live.Ref // the branch the remote's HEAD points to
	}
	if s.Synced() {
		live := s.Live
		st.Warnings, live.Problems = live.Problems, nil
		st.Live = &live
	}
	for _, o := range s.Git.All() {
		st.Objects[manifest.KindOf(o)]++
	}
	for _, p := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
		phase := string(p.Status.Phase)
		if phase == "" {
			phase = string(corev1.PodPending)
		}
		if p.DeletionTimestamp != nil {
			phase = "Terminating"
		}
		st.Pods[phase]++
	}
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		role := "follower"
		if n.Name == st.Leader {
			role = "leader"
		}
		st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name, Role: role, Ready: a.nodeReady(n.Name)})
	}
	st.Fetch = a.fetchStatus(ctx)
	if a.ingress != nil {
		st.Ingress = a.ingress.Status()
	}
	return st
}

// fetchStatus reads the fetch loop's status from the leader (it only runs there).
func (a *Agent) fetchStatus(ctx context.Context) *FetchStatus {
	if a.store.IsLeader() {
		if sy := a.leader.syncer(); sy != nil {
			gs := sy.Status()
			fs := &FetchStatus{LastFetch: gs.LastFetch, Head: gs.Head.Hash}
			if gs.LastError != nil {
				fs.Error = gs.LastError.Error()
			}
			if gs.FetchDuration > 0 {
				fs.Duration = gs.FetchDuration.Round(time.Millisecond).String()
			}
			return fs
		}
		return nil
	}
	var st Status
	if err := a.peers.getJSON(ctx, a.leaderAPI(), PathStatus, &st); err != nil {
		return &FetchStatus{Error: "leader unreachable: " + err.Error()}
	}
	return st.Fetch
}

// handleSync fetches now and answers with the resulting status (`skiff sync`).
func (a *Agent) handleSync(w http.ResponseWriter, r *http.Request) {
	if !a.store.IsLeader() {
		a.proxyToLeader(w, r)
		return
	}
	sy := a.leader.syncer()
	if sy == nil {
		writeErr(w, http.StatusServiceUnavailable, "git sync is not running yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	if _, err := sy.Sync(ctx); err != nil {
		a.log.Warn("sync", "err", err)
	}
	// The proposal is applied before Sync returns; the status shows the outcome.
	writeJSON(w, http.StatusOK, a.status(ctx))
}

// handleGet lists objects of one resource kubectl-style: a List, or one object by name.
func (a *Agent) handleGet(w http.ResponseWriter, r *http.Request) {
	res, ok := manifest.LookupResource(r.PathValue("resource"))
	if !ok {
		writeErr(w, http.StatusNotFound, "the server doesn't have a resource type %q", r.PathValue("resource"))
		return
	}
	q := r.URL.Query()
	ns, name := q.Get("namespace"), q.Get("name")
	if !res.Namespaced {
		ns = ""
	}
	sel := labels.Everything()
	if s := q.Get("selector"); s != "" {
		var err error
		if sel, err = labels.Parse(s); err != nil {
			writeErr(w, http.StatusBadRequest, "selector: %v", err)
			return
		}
	}
	objs, err := a.list(r.Context(), res, ns)
	if err != nil {
		writeErr(w, http.StatusBadGateway, "%v", err)
		return
	}
	items := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		if name != "" && o.GetName() != name || !sel.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		b, err := manifest.Encode(o)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, "encode %s/%s: %v", res.Kind, o.GetName(), err)
			return
		}
		items = append(items, b)
	}
	if name != "" {
		if len(items) == 0 {
			where := ""
			if ns != "" {
				where = fmt.Sprintf(" in namespace %q", ns)
			}
			writeErr(w, http.StatusNotFound, "%s %q not found%s", strings.ToLower(res.Kind), name, where)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(items[0])
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": strconv.FormatUint(a.store.State().Index, 10)},
		"items": items,
	})
}

// list returns the objects of one resource, with status filled in where skiff computes it
// on read (workloads, nodes) and secret values hidden.
func (a *Agent) list(ctx context.Context, res manifest.Resource, ns string) ([]manifest.Object, error) {
	s := a.store.State()
	now := time.Now()
	var objs []manifest.Object
	switch res.Kind {
	case "Pod", "Node":
		objs = s.Cluster.List(res.Kind, ns)
	case "ReplicaSet":
		objs = append(s.Git.List(res.Kind, ns), s.Cluster.List(res.Kind, ns)...)
	case "ControllerRevision":
		objs = s.Cluster.List(res.Kind, ns)
	case "Job":
		for _, j := range controller.Jobs(s, ns) {
			objs = append(objs, j)
		}
	case "PersistentVolumeClaim":
		for _, c := range controller.Claims(s, ns) {
			objs = append(objs, c)
		}
	case "PersistentVolume":
		for _, v := range controller.Volumes(s) {
			objs = append(objs, v)
		}
	case "Service":
		for _, svc := range services.List(s, ns) {
			objs = append(objs, svc)
		}
	case "Endpoints":
		for _, ep := range services.Endpoints(s, ns) {
			objs = append(objs, ep)
		}
	case "Event":
		evs, err := a.clusterEvents(ctx, ns)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			objs = append(objs, &evs[i])
		}
		return objs, nil
	default:
		objs = s.Git.List(res.Kind, ns)
	}
	out := make([]manifest.Object, 0, len(objs))
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.Secret:
			o = redactSecret(v)
		case *corev1.Node:
			o = a.nodeWithReady(v)
		case *networkingv1.Ingress:
			o = a.ingressWithStatus(s, v)
		default:
			o = a.withStatus(s, now, o)
		}
		out = append(out, o)
	}
	return out, nil
}

// ingressWithStatus sets an Ingress's status.loadBalancer to the addresses of the Ready
// nodes, as every node serves it (like k3s's Traefik), when it is for our class.
func (a *Agent) ingressWithStatus(s *state.State, ing *networkingv1.Ingress) *networkingv1.Ingress {
	if a.ingress == nil || !a.ingress.Serves(ing) {
		return ing
	}
	c := ing.DeepCopy()
	c.Status.LoadBalancer.Ingress = nil
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		if ip := services.NodeInternalIP(n); ip != "" && a.nodeReady(n.Name) {
			c.Status.LoadBalancer.Ingress = append(c.Status.LoadBalancer.Ingress, networkingv1.IngressLoadBalancerIngress{IP: ip})
		}
	}
	return c
}

// redactSecret hides secret values: keys stay visible, values become empty.
func redactSecret(s *corev1.Secret) *corev1.Secret {
	c := s.DeepCopy()
	for k := range c.Data {
		c.Data[k] = nil
	}
	c.StringData = nil
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations["skiff.io/redacted"] = "values are not served by the API"
	return c
}

// clusterEvents returns this node's events (other nodes' events are added by the cluster
// layer through peers).
func (a *Agent) clusterEvents(ctx context.Context, ns string) ([]corev1.Event, error) {
	evs := a.events.List(ns, "", "")
	evs = append(evs, a.peerEvents(ctx, ns)...)
	events.Sort(evs)
	return evs, nil
}

// handleLogs streams a container's logs from the node that runs the pod.
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	pod, ok := a.findPod(w, r)
	if !ok {
		return
	}
	if pod.Spec.NodeName != a.cfg.Name {
		a.proxyToNode(w, r, pod.Spec.NodeName)
		return
	}
	q := r.URL.Query()
	id, err := a.containerID(r.Context(), pod, q.Get("container"), q.Get("previous") == "true")
	if err != nil {
		writeErr(w, http.StatusNotFound, "%v", err)
		return
	}
	opts := reconciler.LogOptions{Follow: q.Get("follow") == "true", Timestamps: q.Get("timestamps") == "true"}
	if t := q.Get("tail"); t != "" {
		opts.TailLines, _ = strconv.Atoi(t)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	rt, _ := a.nodeRuntime() // containerID succeeded: the node runs
	if err := rt.Logs(r.Context(), id, opts, fw); err != nil && r.Context().Err() == nil {
		fmt.Fprintf(w, "\nskiff: logs: %v\n", err)
	}
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

func (a *Agent) findPod(w http.ResponseWriter, r *http.Request) (*corev1.Pod, bool) {
	ns, name := r.PathValue("namespace"), r.PathValue("pod")
	o, ok := a.store.State().Cluster.Get(state.Key{Kind: "Pod", Namespace: ns, Name: name})
	if !ok {
		writeErr(w, http.StatusNotFound, "pod %q not found in namespace %q", name, ns)
		return nil, false
	}
	pod := o.(*corev1.Pod)
	if pod.Spec.NodeName == "" {
		writeErr(w, http.StatusConflict, "pod %q is not scheduled on a node yet", name)
		return nil, false
	}
	return pod, true
}

// containerID finds the runtime container of a pod's container (its newest attempt, or
// the one before with previous).
func (a *Agent) containerID(ctx context.Context, pod *corev1.Pod, name string, previous bool) (string, error) {
	if name == "" {
		if len(pod.Spec.Containers) > 1 {
			names := make([]string, len(pod.Spec.Containers))
			for i, c := range pod.Spec.Containers {
				names[i] = c.Name
			}
			return "", fmt.Errorf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " "))
		}
		name = pod.Spec.Containers[0].Name
	}
	rt, err := a.nodeRuntime()
	if err != nil {
		return "", err
	}
	pods, err := rt.Pods(ctx)
	if err != nil {
		return "", err
	}
	for _, rp := range pods {
		if rp.UID != string(pod.UID) {
			continue
		}
		var best, second *reconciler.Container
		for i := range rp.Containers {
			c := &rp.Containers[i]
			if c.Name != name {
				continue
			}
			if best == nil || c.Attempt > best.Attempt {
				best, second = c, best
			} else if second == nil || c.Attempt > second.Attempt {
				second = c
			}
		}
		if previous {
			if second == nil {
				return "", fmt.Errorf("previous terminated container %q in pod %q not found", name, pod.Name)
			}
			return second.ID, nil
		}
		if best != nil {
			return best.ID, nil
		}
	}
	return "", fmt.Errorf("container %q in pod %q is not running on %s yet", name, pod.Name, a.cfg.Name)
}

// handleExec runs a command in a container over a hijacked connection. After the 101
// response, the stream is framed: each frame is a 1-byte stream id (0 stdin, 1 stdout,
// 2 stderr, 3 exit code as decimal text, 4 stdin closed), a 4-byte big-endian length and
// the payload.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	pod, ok := a.findPod(w, r)
	if !ok {
		return
	}
	if pod.Spec.NodeName != a.cfg.Name {
		a.proxyToNode(w, r, pod.Spec.NodeName)
		return
	}
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		writeErr(w, http.StatusBadRequest, "no command given")
		return
	}
	id, err := a.containerID(r.Context(), pod, q.Get("container"), false)
	if err != nil {
		writeErr(w, http.StatusNotFound, "%v", err)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), ExecUpgrade) {
		writeErr(w, http.StatusBadRequest, "exec needs Upgrade: %s", ExecUpgrade)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeErr(w, http.StatusInternalServerError, "connection cannot be hijacked")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", ExecUpgrade)
	brw.Flush()

	fw := &frameWriter{w: conn}
	opts := reconciler.ExecOptions{
		Cmd: cmd, TTY: q.Get("tty") == "true",
		Stdout: fw.stream(1), Stderr: fw.stream(2),
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	if q.Get("stdin") == "true" {
		pr, pw := io.Pipe()
		opts.Stdin = pr
		go func() {
			err := readFrames(brw.Reader, func(id byte, p []byte) error {
				switch id {
				case 0:
					_, err := pw.Write(p)
					return err
				case 4:
					return io.EOF
				}
				return nil
			})
			pw.CloseWithError(err)
			if !errors.Is(err, io.EOF) {
				cancel() // the client went away: stop the command
			}
		}()
	} else {
		go func() {
			_, _ = io.Copy(io.Discard, brw.Reader) // notice the client leaving
			cancel()
		}()
	}
	rt, _ := a.nodeRuntime() // containerID succeeded: the node runs
	code, err := rt.Exec(ctx, id, opts)
	if err != nil {
		fw.write(2, []byte("skiff: exec: "+err.Error()+"\n"))
		code = 126
	}
	fw.write(3, []byte(strconv.Itoa(code)))
}

// handleApply commits a command forwarded by a follower.
func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	var c state.Command
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&c); err != nil {
		writeErr(w, http.StatusBadRequest, "decode command: %v", err)
		return
	}
	if err := a.store.applyLocal(r.Context(), &c); err != nil {
		var nl *NotLeaderError
		if errors.As(err, &nl) {
			writeErr(w, http.StatusMisdirectedRequest, "%v", err)
			return
		}
		writeErr(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// frameWriter multiplexes streams over one connection (see handleExec).
type frameWriter struct {
	mu chan struct{}
	w  io.Writer
}

func (f *frameWriter) write(id byte, p []byte) error {
	if f.mu == nil {
		f.mu = make(chan struct{}, 1)
	}
	f.mu <- struct{}{}
	defer func() { <-f.mu }()
	return WriteFrame(f.w, id, p)
}

func (f *frameWriter) stream(id byte) io.Writer { return streamWriter{f, id} }

type streamWriter struct {
	f  *frameWriter
	id byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.f.write(s.id, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteFrame writes one exec frame.
func WriteFrame(w io.Writer, id byte, p []byte) error {
	hdr := [5]byte{id, byte(len(p) >> 24), byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p))}
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// readFrames reads exec frames until EOF or fn fails.
func readFrames(r *bufio.Reader, fn func(id byte, p []byte) error) error {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(hdr[1])<<24 | int(hdr[2])<<16 | int(hdr[3])<<8 | int(hdr[4])
		if n > 1<<20 {
			return fmt.Errorf("exec frame of %d bytes is too large", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return err
		}
		if err := fn(hdr[0], p); err != nil {
			return err
		}
	}
}

// ReadFrames is readFrames for the CLI.
func ReadFrames(r *bufio.Reader, fn func(id byte, p []byte) error) error { return readFrames(r, fn) }

// nodeWithReady fills a Node's Ready condition from the leader's view of its heartbeats.
func (a *Agent) nodeWithReady(n *corev1.Node) *corev1.Node {
	c := n.DeepCopy()
	ready := a.nodeReady(n.Name)
	cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse,
		Reason: "NodeStatusUnknown", Message: "skiff agent stopped posting node status"}
	if ready {
		cond.Status, cond.Reason, cond.Message = corev1.ConditionTrue, "KubeletReady", "skiff agent is posting ready status"
	}
	cond.LastHeartbeatTime = metav1.NewTime(a.lastHeartbeat(n.Name))
	c.Status.Conditions = append(c.Status.Conditions[:0:0], cond)
	return c
}
