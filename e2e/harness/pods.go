package harness

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// RunningReady says why a pod is not Running with Ready=True (nil when it is).
func RunningReady(p *corev1.Pod) error {
	if p.DeletionTimestamp != nil {
		return fmt.Errorf("pod %s is terminating", p.Name)
	}
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("pod %s phase %q; want Running (%s)", p.Name, p.Status.Phase, ContainerSummary(p))
	}
	if !PodReady(p) {
		return fmt.Errorf("pod %s is not Ready (%s)", p.Name, ContainerSummary(p))
	}
	return nil
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodSummary is a one-line view of pods for error messages.
func PodSummary(pods []corev1.Pod) string {
	var s []string
	for i := range pods {
		s = append(s, fmt.Sprintf("%s(%s ready=%v)", pods[i].Name, pods[i].Status.Phase, PodReady(&pods[i])))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// ContainerSummary is a one-line view of a pod's container states for error messages.
func ContainerSummary(p *corev1.Pod) string {
	var s []string
	for _, c := range p.Status.ContainerStatuses {
		st := "?"
		switch {
		case c.State.Running != nil:
			st = "running"
		case c.State.Waiting != nil:
			st = "waiting " + c.State.Waiting.Reason + ": " + c.State.Waiting.Message
		case c.State.Terminated != nil:
			st = fmt.Sprintf("terminated %s exit %d", c.State.Terminated.Reason, c.State.Terminated.ExitCode)
		}
		s = append(s, fmt.Sprintf("%s: %s ready=%v restarts=%d", c.Name, st, c.Ready, c.RestartCount))
	}
	return strings.Join(s, "; ")
}

// PodNames returns the pods' names, sorted.
func PodNames(pods []corev1.Pod) []string {
	names := make([]string, len(pods))
	for i := range pods {
		names[i] = pods[i].Name
	}
	sort.Strings(names)
	return names
}

// EnvValue is the literal value of a container's env var name ("" when absent).
func EnvValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// ContainerStatus returns the status of the named container (or the only one).
func ContainerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if name == "" || p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}
