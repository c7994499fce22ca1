package podman

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	nettypes "github.com/containers/common/libnetwork/types"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	"github.com/containers/podman/v4/pkg/bindings/pods"
	"github.com/containers/podman/v4/pkg/domain/entities"
	"github.com/containers/podman/v4/pkg/errorhandling"
	"github.com/containers/podman/v4/pkg/specgen"

	"github.com/skiffhq/skiff/reconciler"
)

var managedFilter = map[string][]string{"label": {reconciler.LabelManaged + "=true"}}

// Pods lists every skiff pod with its containers. It costs one container list per call
// (the infra containers carry their pod's labels, so they stand for the pods: Podman's pod
// list is the slower call by far), plus an inspect for a pod whose infra container
// (re)started and for a container whose state changed since the last call.
func (r *Runtime) Pods(ctx context.Context) ([]reconciler.Pod, error) {
	return r.listPods(ctx, nil)
}

// sandbox is a pod as one of the two lists describes it.
type sandbox struct {
	id, infraID  string
	infraStarted int64
	labels       map[string]string
	created      time.Time
	running      bool
}

// pod is the sandbox as the reconciler sees it, without IP and containers.
func (b sandbox) pod() reconciler.Pod {
	return reconciler.Pod{
		ID:        b.id,
		UID:       b.labels[reconciler.LabelPodUID],
		Namespace: b.labels[reconciler.LabelNamespace],
		Name:      b.labels[reconciler.LabelPodName],
		Node:      b.labels[reconciler.LabelNode],
		Created:   b.created,
		Running:   b.running,
	}
}

// listPods lists skiff pods (those matching podFilter when it is set, through Podman's pod
// list) with their containers.
func (r *Runtime) listPods(ctx context.Context, podFilter map[string][]string) ([]reconciler.Pod, error) {
	c := r.ctx(ctx)
	ctrs, err := containers.List(c, new(containers.ListOptions).WithAll(true).WithFilters(managedFilter))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	byPod := map[string][]entities.ListContainer{}
	infra := map[string]sandbox{}
	for _, lc := range ctrs {
		if !isManaged(lc.Labels) || lc.Pod == "" {
			continue
		}
		if lc.IsInfra {
			infra[lc.Pod] = sandbox{id: lc.Pod, infraID: lc.ID, infraStarted: lc.StartedAt, labels: lc.Labels,
				created: lc.Created, running: lc.State == "running"}
			continue
		}
		byPod[lc.Pod] = append(byPod[lc.Pod], lc)
	}
	complete := !r.infraUnlabelled()
	for podID := range byPod {
		if _, ok := infra[podID]; !ok {
			complete = false // an infra container without labels: ask for the pods
		}
	}
	var boxes []sandbox
	if podFilter == nil && complete {
		for _, b := range infra {
			boxes = append(boxes, b)
		}
	} else {
		if podFilter == nil {
			podFilter = managedFilter
		}
		reports, err := pods.List(c, new(pods.ListOptions).WithFilters(podFilter))
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for _, pr := range reports {
			b := sandbox{id: pr.Id, infraID: pr.InfraId, labels: pr.Labels, created: pr.Created}
			for _, pc := range pr.Containers {
				b.running = b.running || pc.Id == pr.InfraId && pc.Status == "running"
			}
			if in, ok := infra[pr.Id]; ok {
				b.infraStarted = in.infraStarted
			}
			boxes = append(boxes, b)
		}
	}

	out := make([]reconciler.Pod, 0, len(boxes))
	for _, b := range boxes {
		if !isManaged(b.labels) {
			continue
		}
		p := b.pod()
		r.markManaged(b.id)
		r.rememberPodMeta(b.id, b.labels)
		if p.Running {
			ip, err := r.podIP(c, b)
			if err != nil && !isNotFound(err) {
				return nil, err
			}
			p.IP = ip
		} else {
			r.dropPodIP(b.id)
		}
		for _, lc := range byPod[b.id] {
			ctr, err := r.fromList(c, lc)
			if isNotFound(err) {
				continue // removed since the list
			}
			if err != nil {
				return nil, err
			}
			p.Containers = append(p.Containers, ctr)
		}
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Created.Before(p.Containers[j].Created) })
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (r *Runtime) infraUnlabelled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unlabelledInfra
}

// podIP returns the infra container's address, inspecting it only when the infra
// container is not the one cached or restarted since.
func (r *Runtime) podIP(ctx context.Context, b sandbox) (string, error) {
	key := fmt.Sprintf("%s/%d", b.infraID, b.infraStarted)
	r.mu.Lock()
	cached, ok := r.podIPs[b.id]
	r.mu.Unlock()
	if ok && cached.key == key {
		return cached.ip, nil
	}
	data, err := containers.Inspect(ctx, b.infraID, nil)
	if err != nil {
		return "", fmt.Errorf("inspect infra container of pod %s: %w", b.id, err)
	}
	if data.Config != nil && !isManaged(data.Config.Labels) {
		// This Podman does not give the infra container its pod's labels: from now on
		// Pods() asks for the pod list too.
		r.mu.Lock()
		r.unlabelledInfra = true
		r.mu.Unlock()
	}
	ip := ""
	if ns := data.NetworkSettings; ns != nil {
		ip = ns.IPAddress
		if ip == "" {
			names := make([]string, 0, len(ns.Networks))
			for name := range ns.Networks {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				if a := ns.Networks[name].IPAddress; a != "" {
					ip = a
					break
				}
			}
		}
	}
	hostNet := data.HostConfig != nil && data.HostConfig.NetworkMode == "host"
	if ip != "" || hostNet {
		r.mu.Lock()
		r.podIPs[b.id] = podIP{key: key, ip: ip}
		r.mu.Unlock()
	}
	return ip, nil
}

func (r *Runtime) dropPodIP(podID string) {
	r.mu.Lock()
	delete(r.podIPs, podID)
	r.mu.Unlock()
}

func (r *Runtime) rememberPodMeta(podID string, labels map[string]string) {
	meta := map[string]string{}
	for _, k := range []string{reconciler.LabelManaged, reconciler.LabelNode, reconciler.LabelPodUID, reconciler.LabelPodName, reconciler.LabelNamespace} {
		meta[k] = labels[k]
	}
	r.mu.Lock()
	r.podMeta[podID] = meta
	r.mu.Unlock()
}

// PodName is the Podman pod name for a Kubernetes pod: readable, and unique through the
// UID prefix.
func PodName(cfg reconciler.PodConfig) string {
	uid := cfg.UID
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return sanitize(fmt.Sprintf("k8s_%s_%s_%s", cfg.Name, cfg.Namespace, uid))
}

// CreatePod creates and starts the sandbox for cfg, or returns the existing one with the
// same UID (starting its infra container if it stopped).
func (r *Runtime) CreatePod(ctx context.Context, cfg reconciler.PodConfig) (reconciler.Pod, error) {
	if cfg.UID == "" {
		return reconciler.Pod{}, errors.New("create pod: empty UID")
	}
	c := r.ctx(ctx)
	if p, ok, err := r.existingPod(ctx, cfg.UID); err != nil || ok {
		return p, err
	}
	spec, err := r.podSpec(cfg)
	if err != nil {
		return reconciler.Pod{}, fmt.Errorf("create pod %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	rep, err := pods.CreatePodFromSpec(c, &entities.PodSpec{PodSpecGen: *spec})
	if err != nil {
		if httpCode(err) == 409 { // created concurrently by another call
			if p, ok, err2 := r.existingPod(ctx, cfg.UID); err2 == nil && ok {
				return p, nil
			}
		}
		return reconciler.Pod{}, fmt.Errorf("create pod %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	r.markManaged(rep.Id)
	if _, err := pods.Start(c, rep.Id, nil); err != nil {
		// Leave nothing half-made behind (a port in use, say): the next attempt starts over.
		_, _ = pods.Remove(c, rep.Id, new(pods.RemoveOptions).WithForce(true))
		r.forget(rep.Id)
		return reconciler.Pod{}, fmt.Errorf("start pod %s/%s: %w", cfg.Namespace, cfg.Name, startError(err))
	}
	return r.newPod(c, rep.Id)
}

// newPod describes a sandbox just created (it has no containers yet) from one pod
// inspect and one infra inspect, cheaper than the lists.
func (r *Runtime) newPod(ctx context.Context, id string) (reconciler.Pod, error) {
	rep, err := pods.Inspect(ctx, id, nil)
	if err != nil {
		return reconciler.Pod{}, notFound("inspect new pod", id, err)
	}
	b := sandbox{id: rep.ID, infraID: rep.InfraContainerID, labels: rep.Labels, created: rep.Created}
	for _, ctr := range rep.Containers {
		b.running = b.running || ctr.ID == rep.InfraContainerID && ctr.State == "running"
	}
	p := b.pod()
	r.rememberPodMeta(b.id, b.labels)
	if p.Running {
		if p.IP, err = r.podIP(ctx, b); err != nil {
			return p, err
		}
	}
	return p, nil
}

// startError makes a pod start failure readable: Podman reports it as a conflict model
// with one error per container.
func startError(err error) error {
	var pc *errorhandling.PodConflictErrorModel
	if errors.As(err, &pc) && len(pc.Errs) > 0 {
		return errors.New(strings.Join(pc.Errs, "; "))
	}
	return err
}

// existingPod finds the sandbox with this UID and makes sure its infra container runs.
func (r *Runtime) existingPod(ctx context.Context, uid string) (reconciler.Pod, bool, error) {
	filter := map[string][]string{"label": {reconciler.LabelManaged + "=true", reconciler.LabelPodUID + "=" + uid}}
	// The pod list alone first: the common case is that there is none.
	if reports, err := pods.List(r.ctx(ctx), new(pods.ListOptions).WithFilters(filter)); err != nil || len(reports) == 0 {
		if err != nil {
			err = fmt.Errorf("list pods: %w", err)
		}
		return reconciler.Pod{}, false, err
	}
	ps, err := r.listPods(ctx, filter)
	if err != nil || len(ps) == 0 {
		return reconciler.Pod{}, false, err
	}
	p := ps[0]
	if !p.Running {
		rep, err := pods.Inspect(r.ctx(ctx), p.ID, nil)
		if err != nil {
			return p, true, notFound("inspect pod", p.ID, err)
		}
		if err := containers.Start(r.ctx(ctx), rep.InfraContainerID, nil); err != nil && httpCode(err) != 304 {
			return p, true, fmt.Errorf("start infra container of pod %s: %w", p.ID, err)
		}
		if ps, err = r.listPods(ctx, filter); err != nil || len(ps) == 0 {
			return p, true, err
		}
		p = ps[0]
	}
	return p, true, nil
}

func (r *Runtime) podSpec(cfg reconciler.PodConfig) (*specgen.PodSpecGenerator, error) {
	s := specgen.NewPodSpecGenerator()
	s.Name = PodName(cfg)
	s.Hostname = cfg.Hostname
	s.SharedNamespaces = []string{"net", "ipc", "uts"}
	s.Labels = map[string]string{}
	for k, v := range cfg.Labels {
		s.Labels[k] = v
	}
	node := cfg.Node
	if node == "" {
		node = r.node
	}
	s.Labels[reconciler.LabelManaged] = "true"
	s.Labels[reconciler.LabelNode] = node
	s.Labels[reconciler.LabelPodUID] = cfg.UID
	s.Labels[reconciler.LabelPodName] = cfg.Name
	s.Labels[reconciler.LabelNamespace] = cfg.Namespace

	switch {
	case cfg.HostNetwork:
		s.NetNS = specgen.Namespace{NSMode: specgen.Host}
		s.Hostname = "" // a host-network pod has the node's hostname (UTS follows the net ns)
		s.SharedNamespaces = []string{"net", "ipc"}
	case cfg.Network != "":
		s.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
		s.Networks = map[string]nettypes.PerNetworkOptions{cfg.Network: {}}
	default:
		s.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
	}
	for _, pm := range cfg.Ports {
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		hostPort := pm.HostPort
		if cfg.HostNetwork {
			continue // nothing to publish: the containers are on the node's network
		}
		if hostPort == 0 {
			continue
		}
		s.PortMappings = append(s.PortMappings, nettypes.PortMapping{
			HostIP: pm.HostIP, HostPort: hostPort, ContainerPort: pm.ContainerPort, Protocol: proto, Range: 1,
		})
	}
	for _, srv := range cfg.DNS.Servers {
		ip := net.ParseIP(srv)
		if ip == nil {
			return nil, fmt.Errorf("dns server %q is not an IP address", srv)
		}
		s.DNSServer = append(s.DNSServer, ip)
	}
	s.DNSSearch = append(s.DNSSearch, cfg.DNS.Searches...)
	s.DNSOption = append(s.DNSOption, cfg.DNS.Options...)
	for _, h := range cfg.Hosts {
		if net.ParseIP(h.IP) == nil {
			return nil, fmt.Errorf("hosts entry %v: %q is not an IP address", h.Hostnames, h.IP)
		}
		for _, name := range h.Hostnames {
			s.HostAdd = append(s.HostAdd, name+":"+h.IP)
		}
	}
	return s, nil
}

// RemovePod stops the sandbox's containers (SIGTERM, then SIGKILL after grace) and removes
// it. A missing pod is not an error; a pod skiff did not create is refused.
func (r *Runtime) RemovePod(ctx context.Context, id string, grace time.Duration) error {
	c := r.ctx(ctx)
	rep, err := pods.Inspect(c, id, nil)
	if isNotFound(err) {
		r.forget(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect pod %s: %w", id, err)
	}
	if !isManaged(rep.Labels) {
		return fmt.Errorf("remove pod %s (%s): %w", rep.Name, id, ErrNotManaged)
	}
	// A stop that fails for one container is not fatal: the forced remove kills it.
	_, stopErr := pods.Stop(c, id, new(pods.StopOptions).WithTimeout(int(seconds(grace))))
	if _, err := pods.Remove(c, id, new(pods.RemoveOptions).WithForce(true)); err != nil && !isNotFound(err) {
		if stopErr != nil {
			err = fmt.Errorf("%w (stopping first: %v)", err, startError(stopErr))
		}
		return fmt.Errorf("remove pod %s: %w", rep.Name, err)
	}
	ids := []string{id}
	for _, ctr := range rep.Containers {
		ids = append(ids, ctr.ID)
	}
	r.forget(ids...)
	return nil
}

// sanitize makes s a valid Podman name: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
func sanitize(s string) string {
	b := []byte(s)
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || (i > 0 && (ch == '_' || ch == '.' || ch == '-'))
		if !ok {
			b[i] = '_'
			if i == 0 {
				b[i] = 'x'
			}
		}
	}
	return string(b)
}
