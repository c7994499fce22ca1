package reconciler

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// status computes the pod's status as the kubelet would report it.
func (w *podWorker) status(pod *corev1.Pod, now time.Time) corev1.PodStatus {
	st := corev1.PodStatus{
		HostIP:    w.n.cfg.NodeIP,
		StartTime: w.startTime,
		QOSClass:  qosClass(pod),
	}
	if st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	if ip := w.podIP(); ip != "" && w.sandbox != nil {
		st.PodIP = ip
		st.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	initDone := true
	for _, c := range pod.Spec.InitContainers {
		cs := w.containerStatus(pod, w.ctrs[c.Name])
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			initDone = false
		}
	}
	allReady := initDone
	for _, c := range pod.Spec.Containers {
		cs := w.containerStatus(pod, w.ctrs[c.Name])
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
	}
	st.Phase = podPhase(pod, st.InitContainerStatuses, st.ContainerStatuses, initDone)
	if w.failed != "" {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, w.failed, w.failedMsg
		allReady = false
	} else if w.volErr != "" && st.Phase == corev1.PodPending {
		st.Message = w.volErr
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		allReady = false
	}

	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		c.LastTransitionTime = w.transitionTime(pod, t, c.Status, now)
		return c
	}
	notReady := "ContainersNotReady"
	if st.Phase == corev1.PodSucceeded {
		notReady = "PodCompleted"
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized"),
		cond(corev1.PodReady, allReady, notReady),
		cond(corev1.ContainersReady, allReady, notReady),
		cond(corev1.PodScheduled, true, ""),
	}
	return st
}

// transitionTime keeps a condition's last transition time while its status is unchanged.
func (w *podWorker) transitionTime(pod *corev1.Pod, t corev1.PodConditionType, s corev1.ConditionStatus, now time.Time) metav1.Time {
	prev := pod.Status.Conditions
	if w.reported != nil {
		prev = w.reported.Conditions
	}
	for _, c := range prev {
		if c.Type == t && c.Status == s && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime
		}
	}
	return metav1.NewTime(now.UTC().Truncate(time.Second))
}

func (w *podWorker) containerStatus(pod *corev1.Pod, c *ctr) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image}
	if c.prev != nil {
		cs.LastTerminationState.Terminated = terminated(c.prev, false)
	}
	if c.cur == nil {
		reason, msg := c.waiting, c.waitMsg
		if reason == "" {
			reason = "ContainerCreating"
			if w.volErr != "" {
				msg = w.volErr
			}
		}
		if c.init {
			reason, msg = initWaiting(reason, msg)
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		if pod.Status.ContainerStatuses != nil || pod.Status.InitContainerStatuses != nil {
			cs.RestartCount = previousRestarts(pod, c.spec.Name)
		}
		return cs
	}
	cs.RestartCount = int32(c.cur.Attempt)
	cs.ContainerID = "podman://" + c.cur.ID
	cs.ImageID = c.cur.ImageID
	started := false
	switch c.cur.State {
	case StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.cur.StartedAt.UTC().Truncate(time.Second))}
		started = c.probes == nil || c.probes.started()
		cs.Ready = c.probes == nil && c.spec.ReadinessProbe == nil && c.spec.StartupProbe == nil ||
			c.probes != nil && c.probes.ready()
		if c.init {
			cs.Ready = false
		}
	case StateCreated:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		if c.waiting != "" {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.waitMsg}
		}
	default:
		t := terminated(c.cur, c.liveKill)
		if c.waiting == "CrashLoopBackOff" && w.shouldRestart(pod, c) && w.failed == "" {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.waitMsg}
			cs.LastTerminationState.Terminated = t
		} else {
			cs.State.Terminated = t
			if c.init && t.ExitCode == 0 {
				cs.Ready = true
			}
		}
	}
	cs.Started = &started
	return cs
}

// previousRestarts keeps the restart count the cluster last saw for a container that has
// no current attempt here (e.g. its container was removed behind our back).
func previousRestarts(pod *corev1.Pod, name string) int32 {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if cs.Name == name {
				return cs.RestartCount
			}
		}
	}
	return 0
}

func initWaiting(reason, msg string) (string, string) {
	if reason == "ContainerCreating" {
		return "PodInitializing", msg
	}
	return reason, msg
}

func terminated(c *Container, liveKill bool) *corev1.ContainerStateTerminated {
	reason := "Error"
	switch {
	case c.OOMKilled:
		reason = "OOMKilled"
	case c.ExitCode == 0 && !liveKill:
		reason = "Completed"
	}
	t := &corev1.ContainerStateTerminated{
		ExitCode: int32(c.ExitCode), Reason: reason, Message: c.Error,
		ContainerID: "podman://" + c.ID,
	}
	if !c.StartedAt.IsZero() {
		t.StartedAt = metav1.NewTime(c.StartedAt.UTC().Truncate(time.Second))
	}
	if !c.FinishedAt.IsZero() {
		t.FinishedAt = metav1.NewTime(c.FinishedAt.UTC().Truncate(time.Second))
	}
	return t
}

// podPhase is the kubelet's getPhase.
func podPhase(pod *corev1.Pod, inits, ctrs []corev1.ContainerStatus, initDone bool) corev1.PodPhase {
	if !initDone {
		for _, cs := range inits {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range ctrs {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

func terminalPhase(st *corev1.PodStatus) bool {
	return st != nil && (st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed)
}

// qosClass is Kubernetes' QoS class of a pod.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	for _, c := range allContainers(pod) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq && !req.IsZero() {
				add(requests, r, req)
			}
			if hasLim && !lim.IsZero() {
				add(limits, r, lim)
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func add(l corev1.ResourceList, r corev1.ResourceName, q resource.Quantity) {
	cur := l[r]
	cur.Add(q)
	l[r] = cur
}
