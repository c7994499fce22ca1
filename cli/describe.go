package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/manifest"
)

func newDescribeCmd() *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show an object in detail, with its recent events",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			return describe(cmd.Context(), c, cmd.OutOrStdout(), args[0], args[1], ns)
		},
	}
	addNamespaceFlags(cmd, &ns, nil)
	return cmd
}

func describe(ctx context.Context, c *client, out io.Writer, kind, name, ns string) error {
	res, ok := manifest.LookupResource(kind)
	if !ok {
		return fmt.Errorf("the server doesn't have a resource type %q", kind)
	}
	objs, _, err := fetch(ctx, c, res, ns, name, "")
	if err != nil {
		return err
	}
	obj := objs[0]
	evRes, _ := manifest.LookupResource("events")
	evObjs, _, err := fetch(ctx, c, evRes, obj.GetNamespace(), "", "")
	if err != nil {
		evObjs = nil
	}
	var evs []*corev1.Event
	for _, o := range evObjs {
		e := o.(*corev1.Event)
		if e.InvolvedObject.Name == obj.GetName() && e.InvolvedObject.Kind == res.Kind {
			evs = append(evs, e)
		}
	}
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	defer w.Flush()
	if p, ok := obj.(*corev1.Pod); ok {
		describePod(w, p)
	} else {
		describeGeneric(w, obj)
	}
	printEvents(w, evs)
	return nil
}

func kv(w io.Writer, indent int, k string, v any) {
	fmt.Fprintf(w, "%s%s:\t%v\n", strings.Repeat("  ", indent), k, v)
}

func describePod(w io.Writer, p *corev1.Pod) {
	kv(w, 0, "Name", p.Name)
	kv(w, 0, "Namespace", p.Namespace)
	kv(w, 0, "Node", orNone(p.Spec.NodeName))
	if p.Status.StartTime != nil {
		kv(w, 0, "Start Time", p.Status.StartTime.Time.Local().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	kv(w, 0, "Labels", orNone(mapLines(p.Labels, "\t")))
	kv(w, 0, "Annotations", orNone(mapLines(p.Annotations, "\t")))
	status := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		status = fmt.Sprintf("Terminating (lasts %ds)", deref(p.DeletionGracePeriodSeconds))
	}
	kv(w, 0, "Status", status)
	if p.Status.Reason != "" {
		kv(w, 0, "Reason", p.Status.Reason)
	}
	if p.Status.Message != "" {
		kv(w, 0, "Message", p.Status.Message)
	}
	kv(w, 0, "IP", orNone(p.Status.PodIP))
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			kv(w, 0, "Controlled By", ref.Kind+"/"+ref.Name)
		}
	}
	if len(p.Spec.InitContainers) > 0 {
		fmt.Fprintln(w, "Init Containers:")
		for _, c := range p.Spec.InitContainers {
			describeContainer(w, c, findStatus(p.Status.InitContainerStatuses, c.Name))
		}
	}
	fmt.Fprintln(w, "Containers:")
	for _, c := range p.Spec.Containers {
		describeContainer(w, c, findStatus(p.Status.ContainerStatuses, c.Name))
	}
	fmt.Fprintln(w, "Conditions:")
	fmt.Fprintln(w, "  Type\tStatus")
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(w, "  %s\t%s\n", c.Type, c.Status)
	}
	fmt.Fprintln(w, "Volumes:")
	if len(p.Spec.Volumes) == 0 {
		fmt.Fprintln(w, "  <none>")
	}
	for _, v := range p.Spec.Volumes {
		fmt.Fprintf(w, "  %s:\n", v.Name)
		fmt.Fprintf(w, "    %s\n", volumeSummary(v))
	}
	qos := string(p.Status.QOSClass)
	kv(w, 0, "QoS Class", orNone(qos))
	kv(w, 0, "Node-Selectors", orNone(mapString(p.Spec.NodeSelector)))
}

func findStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func describeContainer(w io.Writer, c corev1.Container, cs *corev1.ContainerStatus) {
	fmt.Fprintf(w, "  %s:\n", c.Name)
	if cs != nil && cs.ContainerID != "" {
		kv(w, 2, "Container ID", cs.ContainerID)
	}
	kv(w, 2, "Image", c.Image)
	for _, p := range c.Ports {
		port := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		if p.Name != "" {
			port += " (" + p.Name + ")"
		}
		kv(w, 2, "Port", port)
		if p.HostPort != 0 {
			kv(w, 2, "Host Port", fmt.Sprintf("%d/%s", p.HostPort, p.Protocol))
		}
	}
	if len(c.Command) > 0 {
		kv(w, 2, "Command", strings.Join(c.Command, " "))
	}
	if len(c.Args) > 0 {
		kv(w, 2, "Args", strings.Join(c.Args, " "))
	}
	if cs != nil {
		describeState(w, "State", cs.State)
		if cs.LastTerminationState.Terminated != nil {
			describeState(w, "Last State", cs.LastTerminationState)
		}
		kv(w, 2, "Ready", cs.Ready)
		kv(w, 2, "Restart Count", cs.RestartCount)
	}
	if len(c.Resources.Limits) > 0 {
		fmt.Fprintf(w, "    Limits:\n")
		for k, v := range c.Resources.Limits {
			kv(w, 3, string(k), v.String())
		}
	}
	if len(c.Resources.Requests) > 0 {
		fmt.Fprintf(w, "    Requests:\n")
		for k, v := range c.Resources.Requests {
			kv(w, 3, string(k), v.String())
		}
	}
	for _, p := range []struct {
		name string
		p    *corev1.Probe
	}{{"Liveness", c.LivenessProbe}, {"Readiness", c.ReadinessProbe}, {"Startup", c.StartupProbe}} {
		if p.p != nil {
			kv(w, 2, p.name, probeSummary(p.p))
		}
	}
	if len(c.Env) > 0 || len(c.EnvFrom) > 0 {
		fmt.Fprintf(w, "    Environment:\n")
		for _, e := range c.Env {
			v := e.Value
			if s := e.ValueFrom; s != nil {
				switch {
				case s.ConfigMapKeyRef != nil:
					v = fmt.Sprintf("<set to the key '%s' of config map '%s'>", s.ConfigMapKeyRef.Key, s.ConfigMapKeyRef.Name)
				case s.SecretKeyRef != nil:
					v = fmt.Sprintf("<set to the key '%s' in secret '%s'>", s.SecretKeyRef.Key, s.SecretKeyRef.Name)
				case s.FieldRef != nil:
					v = fmt.Sprintf("(%s:%s)", s.FieldRef.APIVersion, s.FieldRef.FieldPath)
				case s.ResourceFieldRef != nil:
					v = fmt.Sprintf("%s (resource)", s.ResourceFieldRef.Resource)
				}
			}
			kv(w, 3, e.Name, v)
		}
		for _, f := range c.EnvFrom {
			switch {
			case f.ConfigMapRef != nil:
				fmt.Fprintf(w, "      %s\tConfigMap\tOptional: %v\n", f.ConfigMapRef.Name, f.ConfigMapRef.Optional != nil && *f.ConfigMapRef.Optional)
			case f.SecretRef != nil:
				fmt.Fprintf(w, "      %s\tSecret\tOptional: %v\n", f.SecretRef.Name, f.SecretRef.Optional != nil && *f.SecretRef.Optional)
			}
		}
	}
	if len(c.VolumeMounts) > 0 {
		fmt.Fprintf(w, "    Mounts:\n")
		for _, m := range c.VolumeMounts {
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			sub := ""
			if m.SubPath != "" {
				sub = ",path=" + m.SubPath
			}
			fmt.Fprintf(w, "      %s from %s (%s%s)\n", m.MountPath, m.Name, mode, sub)
		}
	}
}

func describeState(w io.Writer, label string, s corev1.ContainerState) {
	switch {
	case s.Running != nil:
		kv(w, 2, label, "Running")
		kv(w, 3, "Started", s.Running.StartedAt.Time.Local().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	case s.Waiting != nil:
		kv(w, 2, label, "Waiting")
		kv(w, 3, "Reason", s.Waiting.Reason)
		if s.Waiting.Message != "" {
			kv(w, 3, "Message", s.Waiting.Message)
		}
	case s.Terminated != nil:
		kv(w, 2, label, "Terminated")
		kv(w, 3, "Reason", s.Terminated.Reason)
		kv(w, 3, "Exit Code", s.Terminated.ExitCode)
		if !s.Terminated.StartedAt.IsZero() {
			kv(w, 3, "Started", s.Terminated.StartedAt.Time.Local().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
		}
		if !s.Terminated.FinishedAt.IsZero() {
			kv(w, 3, "Finished", s.Terminated.FinishedAt.Time.Local().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
		}
	}
}

func probeSummary(p *corev1.Probe) string {
	var h string
	switch {
	case p.HTTPGet != nil:
		h = fmt.Sprintf("http-get %s://:%s%s", strings.ToLower(string(p.HTTPGet.Scheme)), p.HTTPGet.Port.String(), p.HTTPGet.Path)
	case p.TCPSocket != nil:
		h = "tcp-socket :" + p.TCPSocket.Port.String()
	case p.Exec != nil:
		h = "exec [" + strings.Join(p.Exec.Command, " ") + "]"
	case p.GRPC != nil:
		h = fmt.Sprintf("grpc <pod>:%d %s", p.GRPC.Port, deref(p.GRPC.Service))
	}
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		h, p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
}

func volumeSummary(v corev1.Volume) string {
	switch s := v.VolumeSource; {
	case s.EmptyDir != nil:
		return fmt.Sprintf("Type: EmptyDir (a temporary directory that shares a pod's lifetime) Medium: %s", s.EmptyDir.Medium)
	case s.HostPath != nil:
		return fmt.Sprintf("Type: HostPath Path: %s", s.HostPath.Path)
	case s.ConfigMap != nil:
		return fmt.Sprintf("Type: ConfigMap Name: %s", s.ConfigMap.Name)
	case s.Secret != nil:
		return fmt.Sprintf("Type: Secret SecretName: %s", s.Secret.SecretName)
	case s.DownwardAPI != nil:
		return "Type: DownwardAPI"
	case s.Projected != nil:
		return "Type: Projected"
	case s.GitRepo != nil:
		return fmt.Sprintf("Type: GitRepo Repository: %s Revision: %s", s.GitRepo.Repository, s.GitRepo.Revision)
	case s.PersistentVolumeClaim != nil:
		return fmt.Sprintf("Type: PersistentVolumeClaim ClaimName: %s", s.PersistentVolumeClaim.ClaimName)
	}
	return "Type: <unknown>"
}

// describeGeneric prints any object as YAML-like sections: metadata, spec, status.
func describeGeneric(w io.Writer, o manifest.Object) {
	kv(w, 0, "Name", o.GetName())
	if o.GetNamespace() != "" {
		kv(w, 0, "Namespace", o.GetNamespace())
	}
	kv(w, 0, "Kind", manifest.KindOf(o))
	kv(w, 0, "Labels", orNone(mapLines(o.GetLabels(), "\t")))
	kv(w, 0, "Annotations", orNone(mapLines(o.GetAnnotations(), "\t")))
	kv(w, 0, "Created", age(o.GetCreationTimestamp())+" ago")
	b, err := manifest.Encode(o)
	if err != nil {
		return
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return
	}
	delete(m, "metadata")
	delete(m, "apiVersion")
	delete(m, "kind")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		y, _ := yaml.Marshal(m[k])
		fmt.Fprintf(w, "%s%s:\n", strings.ToUpper(k[:1]), k[1:])
		for _, line := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

func printEvents(w io.Writer, evs []*corev1.Event) {
	fmt.Fprintln(w, "Events:")
	if len(evs) == 0 {
		fmt.Fprintln(w, "  <none>")
		return
	}
	fmt.Fprintln(w, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(w, "  ----\t------\t----\t----\t-------")
	for _, e := range evs {
		a := age(e.LastTimestamp)
		if e.Count > 1 {
			a = fmt.Sprintf("%s (x%d over %s)", a, e.Count, age(e.FirstTimestamp))
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, a, e.Source.Host, e.Message)
	}
}

func mapLines(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + "=" + m[k]
	}
	return strings.Join(lines, "\n"+sep)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
