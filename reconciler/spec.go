package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podConfig turns a pod into the sandbox the runtime creates.
func (n *Node) podConfig(pod *corev1.Pod) PodConfig {
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.Name
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	cfg := PodConfig{
		UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name, Node: n.cfg.NodeName,
		Hostname:    hostname,
		Network:     n.cfg.Network,
		HostNetwork: pod.Spec.HostNetwork,
		DNS:         n.dnsConfig(pod),
	}
	for _, a := range pod.Spec.HostAliases {
		cfg.Hosts = append(cfg.Hosts, HostEntry{IP: a.IP, Hostnames: a.Hostnames})
	}
	for _, c := range allContainers(pod) {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			cfg.Ports = append(cfg.Ports, PortMapping{
				HostIP: p.HostIP, HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort),
				Protocol: strings.ToLower(string(p.Protocol)),
			})
		}
	}
	return cfg
}

// dnsConfig applies the pod's dnsPolicy: None uses only dnsConfig; ClusterFirst uses the
// cluster resolver when one is configured; Default (and ClusterFirst without cluster DNS)
// keep the runtime's default (the node's resolv.conf). dnsConfig is merged on top.
func (n *Node) dnsConfig(pod *corev1.Pod) DNSConfig {
	var d DNSConfig
	policy := pod.Spec.DNSPolicy
	if pod.Spec.HostNetwork && policy == corev1.DNSClusterFirst {
		policy = corev1.DNSDefault // as Kubernetes: host network pods keep the host resolver
	}
	if (policy == corev1.DNSClusterFirst || policy == corev1.DNSClusterFirstWithHostNet) && n.cfg.ClusterDNS != nil {
		d = n.cfg.ClusterDNS(pod)
	}
	if c := pod.Spec.DNSConfig; c != nil {
		d.Servers = append(d.Servers, c.Nameservers...)
		d.Searches = append(d.Searches, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				d.Options = append(d.Options, o.Name+":"+*o.Value)
			} else {
				d.Options = append(d.Options, o.Name)
			}
		}
	}
	return d
}

// containerConfig turns one container of a pod into what the runtime creates.
func (n *Node) containerConfig(pod *corev1.Pod, c *corev1.Container, init bool, attempt int, lk Lookup) (ContainerConfig, error) {
	env, err := containerEnv(pod, c, lk, n.serviceEnv(pod))
	if err != nil {
		return ContainerConfig{}, err
	}
	mounts, err := n.cfg.Volumes.Mounts(pod, c)
	if err != nil {
		return ContainerConfig{}, &ConfigError{Msg: err.Error()}
	}
	cfg := ContainerConfig{
		Name: c.Name, Attempt: attempt, Init: init, SpecHash: containerHash(c),
		Image:      c.Image,
		Entrypoint: expandAll(c.Command, env),
		Args:       expandAll(c.Args, env),
		WorkingDir: c.WorkingDir,
		Env:        env,
		TTY:        c.TTY,
		Stdin:      c.Stdin,
	}
	for _, m := range mounts {
		cfg.Mounts = append(cfg.Mounts, Mount{Type: "bind", Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly})
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		cfg.MemoryLimit = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		cfg.CPULimit = q.MilliValue()
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		cfg.CPURequest = q.MilliValue()
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	cfg.StopTimeout = time.Duration(grace) * time.Second
	cfg.User = userOf(pod.Spec.SecurityContext, c.SecurityContext)
	if sc := c.SecurityContext; sc != nil {
		cfg.Privileged = sc.Privileged != nil && *sc.Privileged
		cfg.ReadOnlyRootFS = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				cfg.CapAdd = append(cfg.CapAdd, string(cp))
			}
			for _, cp := range sc.Capabilities.Drop {
				cfg.CapDrop = append(cfg.CapDrop, string(cp))
			}
		}
	}
	return cfg, nil
}

// userOf merges pod- and container-level runAsUser/runAsGroup (the container wins).
func userOf(psc *corev1.PodSecurityContext, sc *corev1.SecurityContext) string {
	var uid, gid *int64
	if psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	switch {
	case uid == nil && gid == nil:
		return ""
	case gid == nil:
		return strconv.FormatInt(*uid, 10)
	case uid == nil:
		return "0:" + strconv.FormatInt(*gid, 10)
	}
	return fmt.Sprintf("%d:%d", *uid, *gid)
}

// containerHash identifies a container spec, recorded on the runtime container.
func containerHash(c *corev1.Container) string {
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// allContainers lists init containers then regular containers.
func allContainers(pod *corev1.Pod) []*corev1.Container {
	out := make([]*corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

func pullPolicy(c *corev1.Container) PullPolicy {
	switch c.ImagePullPolicy {
	case corev1.PullAlways:
		return PullAlways
	case corev1.PullNever:
		return PullNever
	}
	return PullIfNotPresent
}
