package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/skiffhq/skiff/manifest"
)

// table is rows of cells under a header, printed like kubectl.
type table struct {
	header []string
	rows   []row
}

type row struct {
	ns    string
	name  string
	cells []string
}

func (t *table) print(out io.Writer, withNamespace, withKind bool, kind string) {
	tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	h := t.header
	if withNamespace {
		h = append([]string{"NAMESPACE"}, h...)
	}
	fmt.Fprintln(tw, strings.Join(h, "\t"))
	for _, r := range t.rows {
		name := r.name
		if withKind {
			name = kind + "/" + name
		}
		cells := append([]string{name}, r.cells...)
		if withNamespace {
			cells = append([]string{r.ns}, cells...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// age renders a timestamp like kubectl's AGE column.
func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func tableFor(res manifest.Resource, objs []manifest.Object, wide bool) *table {
	sortByNamespaceName(objs)
	t := &table{}
	add := func(o manifest.Object, cells ...string) {
		t.rows = append(t.rows, row{ns: o.GetNamespace(), name: o.GetName(), cells: cells})
	}
	switch res.Kind {
	case "Pod":
		t.header = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if wide {
			t.header = append(t.header, "IP", "NODE")
		}
		for _, o := range objs {
			p := o.(*corev1.Pod)
			ready, total, restarts := 0, len(p.Spec.Containers), int32(0)
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Ready {
					ready++
				}
				restarts += cs.RestartCount
			}
			cells := []string{fmt.Sprintf("%d/%d", ready, total), podStatus(p), strconv.Itoa(int(restarts)), age(p.CreationTimestamp)}
			if wide {
				cells = append(cells, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
			}
			add(o, cells...)
		}
	case "Deployment":
		t.header = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
		if wide {
			t.header = append(t.header, "CONTAINERS", "IMAGES", "SELECTOR")
		}
		for _, o := range objs {
			d := o.(*appsv1.Deployment)
			cells := []string{fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
				itoa(d.Status.UpdatedReplicas), itoa(d.Status.AvailableReplicas), age(d.CreationTimestamp)}
			if wide {
				cells = append(cells, containerNames(d.Spec.Template.Spec), images(d.Spec.Template.Spec), selectorString(d.Spec.Selector))
			}
			add(o, cells...)
		}
	case "ReplicaSet", "ReplicationController":
		t.header = []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}
		if wide {
			t.header = append(t.header, "CONTAINERS", "IMAGES", "SELECTOR")
		}
		for _, o := range objs {
			var desired, current, ready int32
			var spec corev1.PodSpec
			var sel string
			switch v := o.(type) {
			case *appsv1.ReplicaSet:
				desired, current, ready = replicas(v.Spec.Replicas), v.Status.Replicas, v.Status.ReadyReplicas
				spec, sel = v.Spec.Template.Spec, selectorString(v.Spec.Selector)
			case *corev1.ReplicationController:
				desired, current, ready = replicas(v.Spec.Replicas), v.Status.Replicas, v.Status.ReadyReplicas
				if v.Spec.Template != nil {
					spec = v.Spec.Template.Spec
				}
				sel = mapString(v.Spec.Selector)
			}
			cells := []string{itoa(desired), itoa(current), itoa(ready), age(o.GetCreationTimestamp())}
			if wide {
				cells = append(cells, containerNames(spec), images(spec), sel)
			}
			add(o, cells...)
		}
	case "StatefulSet":
		t.header = []string{"NAME", "READY", "AGE"}
		for _, o := range objs {
			s := o.(*appsv1.StatefulSet)
			add(o, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicas(s.Spec.Replicas)), age(s.CreationTimestamp))
		}
	case "DaemonSet":
		t.header = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
		for _, o := range objs {
			d := o.(*appsv1.DaemonSet)
			add(o, itoa(d.Status.DesiredNumberScheduled), itoa(d.Status.CurrentNumberScheduled), itoa(d.Status.NumberReady),
				itoa(d.Status.UpdatedNumberScheduled), itoa(d.Status.NumberAvailable), orNone(mapString(d.Spec.Template.Spec.NodeSelector)), age(d.CreationTimestamp))
		}
	case "Job":
		t.header = []string{"NAME", "COMPLETIONS", "DURATION", "AGE"}
		for _, o := range objs {
			j := o.(*batchv1.Job)
			completions := int32(1)
			if j.Spec.Completions != nil {
				completions = *j.Spec.Completions
			}
			dur := ""
			if j.Status.StartTime != nil {
				end := time.Now()
				if j.Status.CompletionTime != nil {
					end = j.Status.CompletionTime.Time
				}
				dur = duration.HumanDuration(end.Sub(j.Status.StartTime.Time))
			}
			add(o, fmt.Sprintf("%d/%d", j.Status.Succeeded, completions), dur, age(j.CreationTimestamp))
		}
	case "CronJob":
		t.header = []string{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"}
		for _, o := range objs {
			c := o.(*batchv1.CronJob)
			last := "<none>"
			if c.Status.LastScheduleTime != nil {
				last = age(*c.Status.LastScheduleTime)
			}
			add(o, c.Spec.Schedule, strconv.FormatBool(c.Spec.Suspend != nil && *c.Spec.Suspend), strconv.Itoa(len(c.Status.Active)), last, age(c.CreationTimestamp))
		}
	case "Service":
		t.header = []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
		if wide {
			t.header = append(t.header, "SELECTOR")
		}
		for _, o := range objs {
			s := o.(*corev1.Service)
			cells := []string{string(s.Spec.Type), orNone(s.Spec.ClusterIP), externalIP(s), servicePorts(s), age(s.CreationTimestamp)}
			if wide {
				cells = append(cells, orNone(mapString(s.Spec.Selector)))
			}
			add(o, cells...)
		}
	case "Endpoints":
		t.header = []string{"NAME", "ENDPOINTS", "AGE"}
		for _, o := range objs {
			e := o.(*corev1.Endpoints)
			var eps []string
			for _, ss := range e.Subsets {
				for _, a := range ss.Addresses {
					for _, p := range ss.Ports {
						eps = append(eps, fmt.Sprintf("%s:%d", a.IP, p.Port))
					}
				}
			}
			add(o, orNone(truncList(eps, 3)), age(e.CreationTimestamp))
		}
	case "ConfigMap":
		t.header = []string{"NAME", "DATA", "AGE"}
		for _, o := range objs {
			c := o.(*corev1.ConfigMap)
			add(o, strconv.Itoa(len(c.Data)+len(c.BinaryData)), age(c.CreationTimestamp))
		}
	case "Secret":
		t.header = []string{"NAME", "TYPE", "DATA", "AGE"}
		for _, o := range objs {
			s := o.(*corev1.Secret)
			add(o, string(s.Type), strconv.Itoa(len(s.Data)), age(s.CreationTimestamp))
		}
	case "Ingress":
		t.header = []string{"NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"}
		for _, o := range objs {
			i := o.(*networkingv1.Ingress)
			class := "<none>"
			if i.Spec.IngressClassName != nil {
				class = *i.Spec.IngressClassName
			}
			var hosts []string
			for _, r := range i.Spec.Rules {
				h := r.Host
				if h == "" {
					h = "*"
				}
				hosts = append(hosts, h)
			}
			ports := "80"
			if len(i.Spec.TLS) > 0 {
				ports = "80, 443"
			}
			var addrs []string
			for _, lb := range i.Status.LoadBalancer.Ingress {
				addrs = append(addrs, lb.IP+lb.Hostname)
			}
			add(o, class, orNone(strings.Join(hosts, ",")), strings.Join(addrs, ","), ports, age(i.CreationTimestamp))
		}
	case "PersistentVolumeClaim":
		t.header = []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"}
		for _, o := range objs {
			p := o.(*corev1.PersistentVolumeClaim)
			capacity := ""
			if q, ok := p.Status.Capacity[corev1.ResourceStorage]; ok {
				capacity = q.String()
			}
			class := ""
			if p.Spec.StorageClassName != nil {
				class = *p.Spec.StorageClassName
			}
			add(o, string(p.Status.Phase), p.Spec.VolumeName, capacity, accessModes(p.Spec.AccessModes), class, age(p.CreationTimestamp))
		}
	case "PersistentVolume":
		t.header = []string{"NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "AGE"}
		for _, o := range objs {
			p := o.(*corev1.PersistentVolume)
			capacity := ""
			if q, ok := p.Spec.Capacity[corev1.ResourceStorage]; ok {
				capacity = q.String()
			}
			claim := ""
			if p.Spec.ClaimRef != nil {
				claim = p.Spec.ClaimRef.Namespace + "/" + p.Spec.ClaimRef.Name
			}
			add(o, capacity, accessModes(p.Spec.AccessModes), string(p.Spec.PersistentVolumeReclaimPolicy), string(p.Status.Phase), claim, p.Spec.StorageClassName, age(p.CreationTimestamp))
		}
	case "Node":
		t.header = []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}
		if wide {
			t.header = append(t.header, "INTERNAL-IP", "OS-IMAGE", "ARCH")
		}
		for _, o := range objs {
			n := o.(*corev1.Node)
			status := "Unknown"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					status = map[corev1.ConditionStatus]string{corev1.ConditionTrue: "Ready", corev1.ConditionFalse: "NotReady"}[c.Status]
					if status == "" {
						status = "Unknown"
					}
				}
			}
			if n.Spec.Unschedulable {
				status += ",SchedulingDisabled"
			}
			roles := n.Labels["skiff.io/role"]
			cells := []string{status, orNone(roles), age(n.CreationTimestamp), n.Status.NodeInfo.KubeletVersion}
			if wide {
				ip := ""
				for _, a := range n.Status.Addresses {
					if a.Type == corev1.NodeInternalIP {
						ip = a.Address
					}
				}
				cells = append(cells, ip, n.Status.NodeInfo.OSImage, n.Status.NodeInfo.Architecture)
			}
			add(o, cells...)
		}
	case "Event":
		t.header = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
		sort.SliceStable(objs, func(i, j int) bool {
			a, b := objs[i].(*corev1.Event), objs[j].(*corev1.Event)
			return a.LastTimestamp.Before(&b.LastTimestamp)
		})
		for _, o := range objs {
			e := o.(*corev1.Event)
			obj := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			last := age(e.LastTimestamp)
			if e.Count > 1 {
				last = fmt.Sprintf("%s (x%d over %s)", last, e.Count, age(e.FirstTimestamp))
			}
			t.rows = append(t.rows, row{ns: e.Namespace, name: last, cells: []string{e.Type, e.Reason, obj, e.Message}})
		}
	default:
		t.header = []string{"NAME", "AGE"}
		for _, o := range objs {
			add(o, age(o.GetCreationTimestamp()))
		}
	}
	return t
}

// podStatus is kubectl's STATUS column: the most telling reason.
func podStatus(p *corev1.Pod) string {
	reason := string(p.Status.Phase)
	if reason == "" {
		reason = "Pending"
	}
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for i, cs := range p.Status.InitContainerStatuses {
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case cs.State.Terminated != nil:
			reason = "Init:" + cs.State.Terminated.Reason
			if cs.State.Terminated.Reason == "" {
				reason = fmt.Sprintf("Init:ExitCode:%d", cs.State.Terminated.ExitCode)
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		return reason
	}
	hasRunning := false
	for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
		cs := p.Status.ContainerStatuses[i]
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			reason = cs.State.Terminated.Reason
		case cs.State.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode)
		case cs.Ready && cs.State.Running != nil:
			hasRunning = true
		}
	}
	if reason == "Completed" && hasRunning {
		reason = "Running"
	}
	if p.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
				return "Pending"
			}
		}
	}
	return reason
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func containerNames(s corev1.PodSpec) string {
	var n []string
	for _, c := range s.Containers {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func images(s corev1.PodSpec) string {
	var n []string
	for _, c := range s.Containers {
		n = append(n, c.Image)
	}
	return strings.Join(n, ",")
}

func selectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<invalid>"
	}
	return sel.String()
}

func mapString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func servicePorts(s *corev1.Service) string {
	var ps []string
	for _, p := range s.Spec.Ports {
		x := strconv.Itoa(int(p.Port))
		if p.NodePort != 0 {
			x += ":" + strconv.Itoa(int(p.NodePort))
		}
		ps = append(ps, x+"/"+string(p.Protocol))
	}
	return orNone(strings.Join(ps, ","))
}

func externalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, i := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, i.IP+i.Hostname)
		}
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(s.Spec.ExternalIPs) > 0 {
		return strings.Join(s.Spec.ExternalIPs, ",")
	}
	return "<none>"
}

func accessModes(m []corev1.PersistentVolumeAccessMode) string {
	short := map[corev1.PersistentVolumeAccessMode]string{
		corev1.ReadWriteOnce: "RWO", corev1.ReadOnlyMany: "ROX", corev1.ReadWriteMany: "RWX", corev1.ReadWriteOncePod: "RWOP",
	}
	var out []string
	for _, x := range m {
		out = append(out, short[x])
	}
	return strings.Join(out, ",")
}

func truncList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ",")
	}
	return strings.Join(s[:n], ",") + fmt.Sprintf(" + %d more...", len(s)-n)
}
