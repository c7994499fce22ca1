package agent

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// NodeInfo is one member as `skiff nodes` lists it.
type NodeInfo struct {
	Name          string    `json:"name"`
	Address       string    `json:"address"`
	Role          string    `json:"role"` // leader, follower, non-voter, or "" when not in Raft
	Ready         bool      `json:"ready"`
	Cordoned      bool      `json:"cordoned"`
	Pods          int       `json:"pods"`
	CPU           Resource  `json:"cpu"`    // millicores
	Memory        Resource  `json:"memory"` // bytes
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	Version       string    `json:"version"`
}

// Resource is allocatable vs requested by the pods placed on a node.
type Resource struct {
	Allocatable int64 `json:"allocatable"`
	Requested   int64 `json:"requested"`
}

// handleNodes lists members; readiness is the leader's view, so a follower asks it.
func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) {
	if !a.store.IsLeader() && r.Header.Get("X-Skiff-Forwarded") == "" {
		if id, _ := a.store.Leader(); id != "" {
			a.proxyToLeader(w, r)
			return
		}
	}
	writeJSON(w, http.StatusOK, a.nodeInfos())
}

func (a *Agent) nodeInfos() []NodeInfo {
	s := a.store.State()
	roles := map[string]string{}
	leader, _ := a.store.Leader()
	if cf := a.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			role := "follower"
			switch {
			case string(srv.ID) == leader:
				role = "leader"
			case srv.Suffrage != raft.Voter:
				role = "non-voter"
			}
			roles[string(srv.ID)] = role
		}
	}
	pods := state.Typed[*corev1.Pod](s.Cluster.List("Pod", ""))
	var out []NodeInfo
	for _, n := range state.Typed[*corev1.Node](s.Cluster.List("Node", "")) {
		info := NodeInfo{
			Name: n.Name, Role: roles[n.Name], Ready: a.nodeReady(n.Name) && roles[n.Name] != "",
			Cordoned: n.Spec.Unschedulable, LastHeartbeat: a.lastHeartbeat(n.Name),
			Version: n.Status.NodeInfo.KubeletVersion, Address: n.Annotations[AnnotationRaft],
		}
		cpu, mem := n.Status.Allocatable[corev1.ResourceCPU], n.Status.Allocatable[corev1.ResourceMemory]
		info.CPU.Allocatable, info.Memory.Allocatable = cpu.MilliValue(), mem.Value()
		for _, p := range pods {
			if p.Spec.NodeName != n.Name || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			info.Pods++
			for _, c := range p.Spec.Containers {
				info.CPU.Requested += qty(c.Resources.Requests, corev1.ResourceCPU).MilliValue()
				info.Memory.Requested += qty(c.Resources.Requests, corev1.ResourceMemory).Value()
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func qty(l corev1.ResourceList, r corev1.ResourceName) *resource.Quantity {
	q := l[r]
	return &q
}

// handleCreateToken makes a join token (`skiff token create [--ttl 24h]`).
func (a *Agent) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	ttl, err := parseTTL(r.URL.Query().Get("ttl"))
	if err != nil || ttl < 0 {
		writeErr(w, http.StatusBadRequest, "ttl %q: want a duration like 24h, or 0 for a token that never expires", r.URL.Query().Get("ttl"))
		return
	}
	tok, err := a.createToken(r.Context(), ttl)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "create token: %v", err)
		return
	}
	resp := map[string]string{"token": tok.String(), "join": a.cfg.APIAdvertise()}
	if ttl > 0 {
		resp["expires"] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleNodeOp runs cordon, uncordon, drain or remove on a node.
func (a *Agent) handleNodeOp(w http.ResponseWriter, r *http.Request) {
	name, op := r.PathValue("name"), r.PathValue("op")
	o, ok := a.store.State().Cluster.Get(state.Key{Kind: "Node", Name: name})
	if !ok {
		writeErr(w, http.StatusNotFound, "node %q not found", name)
		return
	}
	node := o.(*corev1.Node)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	msg := ""
	switch op {
	case "cordon", "uncordon":
		err = a.setCordon(ctx, node, op == "cordon")
		msg = fmt.Sprintf("node/%s %sed", name, op)
	case "drain":
		var n int
		n, err = a.drain(ctx, node)
		msg = fmt.Sprintf("node/%s drained: %d pods evicted", name, n)
	case "remove":
		force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
		err = a.removeNode(ctx, name, force)
		msg = fmt.Sprintf("node/%s removed from the cluster; its pods are rescheduled", name)
	default:
		writeErr(w, http.StatusNotFound, "unknown node operation %q (cordon, uncordon, drain, remove)", op)
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "%s %s: %v", op, name, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": msg})
}

func (a *Agent) setCordon(ctx context.Context, node *corev1.Node, on bool) error {
	if node.Spec.Unschedulable == on {
		return nil
	}
	n := node.DeepCopy()
	n.Spec.Unschedulable = on
	return a.store.Apply(ctx, &state.Command{Put: state.Wrap[manifest.Object](n)})
}

// drain cordons a node and evicts its pods gracefully (not DaemonSet pods, not finished
// ones); their controllers start replacements elsewhere.
func (a *Agent) drain(ctx context.Context, node *corev1.Node) (int, error) {
	if err := a.setCordon(ctx, node, true); err != nil {
		return 0, err
	}
	cmd := &state.Command{}
	for _, p := range state.Typed[*corev1.Pod](a.store.State().Cluster.List("Pod", "")) {
		if p.Spec.NodeName != node.Name || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // finished pods stay for their logs
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
			continue // it would come straight back: kubectl drain --ignore-daemonsets
		}
		cmd.Delete = append(cmd.Delete, state.Ref{Key: state.KeyOf(p), UID: p.UID})
	}
	if len(cmd.Delete) == 0 {
		return 0, nil
	}
	return len(cmd.Delete), a.store.Apply(ctx, cmd)
}

// removeNode takes a node out of the cluster: its Node object goes (so its pods are
// rescheduled) and it leaves Raft.
func (a *Agent) removeNode(ctx context.Context, name string, _ bool) error {
	o, ok := a.store.State().Cluster.Get(state.Key{Kind: "Node", Name: name})
	if ok {
		if err := a.store.Apply(ctx, &state.Command{Delete: []state.Ref{{Key: state.KeyOf(o), UID: o.GetUID()}}}); err != nil {
			return err
		}
	}
	return a.changeMember(ctx, memberRequest{Name: name, Remove: true})
}

// leave takes this node out of the cluster on shutdown (--leave-on-terminate): its pods
// move elsewhere first, then it leaves Raft.
func (a *Agent) leave(ctx context.Context) {
	a.log.Info("leaving the cluster")
	if a.store.IsLeader() {
		if err := a.raft.LeadershipTransfer().Error(); err != nil {
			a.log.Warn("leadership transfer", "err", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for a.store.IsLeader() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if o, ok := a.store.State().Cluster.Get(state.Key{Kind: "Node", Name: a.cfg.Name}); ok {
		if err := a.store.Apply(ctx, &state.Command{Delete: []state.Ref{{Key: state.KeyOf(o), UID: o.GetUID()}}}); err != nil {
			a.log.Warn("leave: remove node object", "err", err)
		}
	}
	// Wait until this node's pods are gone from the state (the node loop stops them).
	_, _ = a.feed.WaitFor(ctx, func(s *state.State) bool {
		for _, p := range state.Typed[*corev1.Pod](s.Cluster.List("Pod", "")) {
			if p.Spec.NodeName == a.cfg.Name {
				return false
			}
		}
		return true
	})
	if err := a.changeMember(ctx, memberRequest{Name: a.cfg.Name, Remove: true}); err != nil {
		a.log.Warn("leave: remove from raft", "err", err)
	}
}
