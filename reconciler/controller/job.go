package controller

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// The Job controller, as Kubernetes' pkg/controller/job for completionMode NonIndexed (the
// validator refuses Indexed): up to parallelism pods at a time until completions of them
// succeed (without completions, until one succeeds and the rest finish), each failed pod
// counted toward backoffLimit and replaced after Kubernetes' back-off (10 s doubling to
// 6 min after consecutive failures); with restartPolicy OnFailure the node restarts the
// container in place and the restarts of the running pods count toward backoffLimit, as
// Kubernetes counts them. activeDeadlineSeconds after the start the Job fails
// (DeadlineExceeded) and its running pods are deleted; past backoffLimit it fails
// (BackoffLimitExceeded) the same way. A suspended Job deletes its running pods (not counted
// as failures) and resumes with a new start time. podReplacementPolicy Failed waits for a
// deleted pod to be gone before replacing it. The finished pods stay (Succeeded or Failed,
// for skiff logs) until ttlSecondsAfterFinished.
//
// Every Job that runs is a cluster Job: one a CronJob made (named CRONJOB-MINUTES, owned by
// the CronJob), or the run of a Job in git (same name, annotated with the git object's UID
// and the hash of what defines a run: template, completions, completionMode). The cluster
// Job keeps what cannot be derived from its pods, as Kubernetes keeps it in .status: start
// and completion times, the Complete/Failed (and SuccessCriteriaMet/FailureTarget,
// Suspended) conditions and the succeeded and failed counters. Its pods carry Kubernetes'
// batch.kubernetes.io/job-tracking finalizer until they are counted: a pod is counted once,
// when it finishes (or is deleted before it could), and the finalizer is removed in the same
// command, so the counters survive the pods. Active, ready and terminating are counted from
// the pods when read (WithStatus). It is written only when a counter, condition or time
// changes.
//
// Where skiff differs from Kubernetes, because a Job in git stays in git:
//   - ttlSecondsAfterFinished deletes a git Job's pods but keeps its cluster Job (finished,
//     with its status): deleting it would run the Job again, since git still declares it. A
//     CronJob's Job is deleted with its pods, as in Kubernetes.
//   - A commit that changes the Job's template, completions or completionMode (fields
//     Kubernetes does not let change) runs it again: a new cluster Job (new UID), the previous
//     run's pods deleted, as `kubectl replace --force` would. Other changes (parallelism,
//     suspend, activeDeadlineSeconds, backoffLimit, ttlSecondsAfterFinished,
//     podReplacementPolicy, labels, annotations) apply to the run in place. A Job removed from
//     git is deleted with its pods; added again, it runs again.
//   - The back-off counts the failed pods still present (Kubernetes keeps the count in
//     memory); a pod deleted from outside the plan (a drain) is counted when the plan sees it
//     terminating, so one the node removes before that is not counted.

// AnnotationJobRun on the cluster Job that runs a git Job is the hash of the git Job's
// template, completions and completionMode: a different hash runs the Job again.
const AnnotationJobRun = "skiff.io/job-run"

// Job timing, as Kubernetes' (DefaultJobPodFailureBackOff, MaxJobPodFailureBackOff).
const (
	defaultJobBackoff = 10 * time.Second
	maxJobBackoff     = 6 * time.Minute
)

// Condition reasons and messages, as Kubernetes words them.
const (
	msgBackoffLimit   = "Job has reached the specified backoff limit"
	msgDeadline       = "Job was active longer than specified deadline"
	msgCompletions    = "Reached expected number of succeeded pods"
	reasonSuspended   = "JobSuspended"
	reasonResumed     = "JobResumed"
	legacyJobNameKey  = "job-name"
	legacyJobUIDLabel = "controller-uid"
)

// jobView returns the plan's cluster Jobs (nil once deleted), built on first use.
func (p *planner) jobView() map[state.Key]*batchv1.Job {
	if p.batch == nil {
		p.batch = map[state.Key]*batchv1.Job{}
		for _, j := range state.Typed[*batchv1.Job](p.s.Cluster.List("Job", "")) {
			k := state.KeyOf(j)
			if d, gone := p.del[k]; !gone || d.UID != j.UID {
				p.batch[k] = j
			}
		}
	}
	return p.batch
}

func (p *planner) putJob(j *batchv1.Job) {
	k := state.KeyOf(j)
	p.jobView()[k] = j
	p.put[k] = j
}

func (p *planner) removeJob(j *batchv1.Job) {
	p.jobView()
	p.deleteObject(j)
}

// sortedJobs returns the plan's cluster Jobs by key.
func (p *planner) sortedJobs() []*batchv1.Job {
	view := p.jobView()
	keys := make([]state.Key, 0, len(view))
	for k, j := range view {
		if j != nil {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	out := make([]*batchv1.Job, len(keys))
	for i, k := range keys {
		out[i] = view[k]
	}
	return out
}

// jobs runs the git Jobs (each as a cluster Job) and then the Job controller over every
// cluster Job.
func (p *planner) jobs() {
	p.runGitJobs()
	for _, j := range p.sortedJobs() {
		p.syncJob(j)
	}
}

// jobRun identifies a run of a git Job: what Kubernetes does not let change on a Job.
func jobRun(spec *batchv1.JobSpec) string {
	return hashObject(struct {
		Template       *corev1.PodTemplateSpec
		Completions    *int32
		CompletionMode *batchv1.CompletionMode
	}{&spec.Template, spec.Completions, spec.CompletionMode}, nil)
}

// runGitJobs keeps one cluster Job per Job in git: made when the git Job appears, made anew
// (a new run) when its run hash or UID changes, updated in place otherwise, deleted when the
// git Job leaves git.
func (p *planner) runGitJobs() {
	view := p.jobView()
	inGit := map[state.Key]bool{}
	for _, g := range state.Typed[*batchv1.Job](p.s.Git.List("Job", "")) {
		k := state.KeyOf(g)
		inGit[k] = true
		run := jobRun(&g.Spec)
		cur := view[k]
		switch {
		case cur != nil && cur.Annotations[AnnotationGitUID] == "":
			p.event(g, corev1.EventTypeWarning, "FailedCreate",
				fmt.Sprintf("Error creating job: a Job named %s already exists (made by %s); this one does not run while it does", g.Name, ownerName(cur)))
		case cur == nil || cur.Annotations[AnnotationGitUID] != string(g.UID) || cur.Annotations[AnnotationJobRun] != run:
			j := p.newJob(gitJobMeta(g, run), &g.Spec)
			if cur != nil && cur.Annotations[AnnotationGitUID] == string(g.UID) {
				p.event(j, corev1.EventTypeNormal, "Rerun",
					"The Job's template, completions or completionMode changed in git: running it again (the previous run's pods are deleted)")
			}
			p.putJob(j)
		default:
			c := cur.DeepCopy()
			meta := gitJobMeta(g, run)
			c.Labels, c.Annotations = meta.Labels, meta.Annotations
			if len(c.Labels) == 0 {
				c.Labels = cur.Labels // defaulted from the template when the run was made
			}
			s, gs := &c.Spec, &g.Spec
			s.Parallelism, s.Suspend, s.ActiveDeadlineSeconds = gs.Parallelism, gs.Suspend, gs.ActiveDeadlineSeconds
			s.BackoffLimit, s.TTLSecondsAfterFinished, s.PodReplacementPolicy = gs.BackoffLimit, gs.TTLSecondsAfterFinished, gs.PodReplacementPolicy
			if !equality.Semantic.DeepEqual(c, cur) {
				p.putJob(c)
			}
		}
	}
	for _, j := range p.sortedJobs() {
		if j.Annotations[AnnotationGitUID] != "" && !inGit[state.KeyOf(j)] {
			p.removeJob(j)
		}
	}
}

func ownerName(o metav1.Object) string {
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		return ref.Kind + " " + ref.Name
	}
	return "someone else"
}

// gitJobMeta is the metadata of the cluster Job that runs a git Job.
func gitJobMeta(g *batchv1.Job, run string) metav1.ObjectMeta {
	ann := maps.Clone(g.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationGitUID] = string(g.UID)
	ann[AnnotationJobRun] = run
	return metav1.ObjectMeta{Name: g.Name, Namespace: g.Namespace, Labels: maps.Clone(g.Labels), Annotations: ann}
}

// newJob makes a cluster Job as the API server creates one: labels from the template when
// it has none, and a selector of its own UID, whose labels the template gets
// (generateSelector).
func (p *planner) newJob(meta metav1.ObjectMeta, spec *batchv1.JobSpec) *batchv1.Job {
	j := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: meta,
		Spec:       *spec.DeepCopy(),
	}
	j.UID, j.CreationTimestamp = p.newUID(), p.stamp
	if len(j.Labels) == 0 {
		j.Labels = maps.Clone(j.Spec.Template.Labels)
	}
	uid := string(j.UID)
	tl := maps.Clone(j.Spec.Template.Labels)
	if tl == nil {
		tl = map[string]string{}
	}
	tl[batchv1.ControllerUidLabel], tl[batchv1.JobNameLabel] = uid, j.Name
	tl[legacyJobUIDLabel], tl[legacyJobNameKey] = uid, j.Name
	j.Spec.Template.Labels = tl
	j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
	j.Spec.ManualSelector = nil
	return j
}

// Job condition helpers, as Kubernetes' job util.

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == t {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func hasJobCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	c := jobCondition(j, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

// jobFinished: Complete or Failed.
func jobFinished(j *batchv1.Job) bool {
	return hasJobCondition(j, batchv1.JobComplete) || hasJobCondition(j, batchv1.JobFailed)
}

// jobFinishTime is when a finished Job finished: its completion time, else when it failed.
func jobFinishTime(j *batchv1.Job) time.Time {
	if j.Status.CompletionTime != nil {
		return j.Status.CompletionTime.Time
	}
	for _, t := range []batchv1.JobConditionType{batchv1.JobFailed, batchv1.JobComplete} {
		if c := jobCondition(j, t); c != nil && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// setJobCondition sets a condition's status, reason and message; it reports whether
// anything changed (a condition keeps its times while its status stays).
func (p *planner) setJobCondition(j *batchv1.Job, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string) bool {
	if c := jobCondition(j, t); c != nil {
		if c.Status == status && c.Reason == reason && c.Message == msg {
			return false
		}
		if c.Status != status {
			c.LastTransitionTime = p.stamp
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = status, reason, msg, p.stamp
		return true
	}
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{
		Type: t, Status: status, Reason: reason, Message: msg, LastProbeTime: p.stamp, LastTransitionTime: p.stamp,
	})
	return true
}

func jobSuspended(j *batchv1.Job) bool { return j.Spec.Suspend != nil && *j.Spec.Suspend }

func hasTrackingFinalizer(pod *corev1.Pod) bool {
	return slices.Contains(pod.Finalizers, batchv1.JobTrackingFinalizer)
}

// podFailed is Kubernetes' isPodFailed: failed, or (unless only failed pods are replaced)
// deleted before it succeeded.
func podFailed(pod *corev1.Pod, j *batchv1.Job) bool {
	if pod.Status.Phase == corev1.PodFailed {
		return true
	}
	if p := j.Spec.PodReplacementPolicy; p != nil && *p == batchv1.Failed {
		return false
	}
	return pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodSucceeded
}

// jobSync is one Job's sync.
type jobSync struct {
	p           *planner
	j           *batchv1.Job // a copy: its status changes
	pods        []*corev1.Pod
	active      []*corev1.Pod
	terminating int32
}

// syncJob is Kubernetes' syncJob for one cluster Job.
func (p *planner) syncJob(orig *batchv1.Job) {
	if jobFinished(orig) {
		p.jobTTL(orig)
		return
	}
	if m := orig.Spec.CompletionMode; m != nil && *m != batchv1.NonIndexedCompletion {
		return // refused by validation: never run
	}
	js := &jobSync{p: p, j: orig.DeepCopy()}
	j := js.j
	js.count()
	suspended := jobSuspended(j)
	if j.Status.StartTime == nil && !suspended {
		j.Status.StartTime = ptrTo(p.stamp)
	}

	reason, msg := "", ""
	if c := jobCondition(j, batchv1.JobFailureTarget); c != nil && c.Status == corev1.ConditionTrue {
		reason, msg = c.Reason, c.Message
	} else if j.Status.Failed > int32Or(j.Spec.BackoffLimit, 6) || js.pastBackoffLimitOnFailure() {
		reason, msg = batchv1.JobReasonBackoffLimitExceeded, msgBackoffLimit
	} else if js.pastActiveDeadline() {
		reason, msg = batchv1.JobReasonDeadlineExceeded, msgDeadline
	} else if d := j.Spec.ActiveDeadlineSeconds; d != nil && !suspended {
		p.after(j.Status.StartTime.Add(time.Duration(*d) * time.Second).Sub(p.now))
	}

	if reason != "" {
		// Failed: every running pod is deleted and counted as failed; the Job is Failed once
		// none is left running.
		for _, pod := range js.active {
			js.removePod(pod, true)
		}
		p.setJobCondition(j, batchv1.JobFailureTarget, corev1.ConditionTrue, reason, msg)
		if js.terminating == 0 && p.setJobCondition(j, batchv1.JobFailed, corev1.ConditionTrue, reason, msg) {
			p.event(j, corev1.EventTypeWarning, reason, msg)
		}
	} else {
		active := js.manage()
		var complete bool
		if c := j.Spec.Completions; c == nil {
			complete = j.Status.Succeeded > 0 && active == 0
		} else {
			complete = j.Status.Succeeded >= *c && active == 0
		}
		switch {
		case complete:
			p.setJobCondition(j, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, msgCompletions)
			if js.terminating == 0 && p.setJobCondition(j, batchv1.JobComplete, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, msgCompletions) {
				j.Status.CompletionTime = ptrTo(p.stamp)
				p.event(j, corev1.EventTypeNormal, "Completed", "Job completed")
			}
		case suspended:
			if p.setJobCondition(j, batchv1.JobSuspended, corev1.ConditionTrue, reasonSuspended, "Job suspended") {
				p.event(j, corev1.EventTypeNormal, "Suspended", "Job suspended")
			}
		case hasJobCondition(j, batchv1.JobSuspended):
			p.setJobCondition(j, batchv1.JobSuspended, corev1.ConditionFalse, reasonResumed, "Job resumed")
			p.event(j, corev1.EventTypeNormal, "Resumed", "Job resumed")
			// The deadline counts from the resumption, as Kubernetes resets startTime.
			j.Status.StartTime = ptrTo(p.stamp)
		}
	}
	if !equality.Semantic.DeepEqual(orig.Status, j.Status) {
		p.putJob(j)
	}
}

func int32Or(v *int32, dflt int32) int32 {
	if v == nil {
		return dflt
	}
	return *v
}

// count finds the Job's pods and counts the ones that finished since the last sync
// (Kubernetes' trackJobStatusAndRemoveFinalizers): a pod that still carries the tracking
// finalizer and succeeded, failed, is being deleted, or was deleted by this plan (evicted,
// its node gone) adds to the counters, and loses the finalizer in the same command.
func (js *jobSync) count() {
	p, j := js.p, js.j
	for _, k := range p.podsBy[j.UID] {
		pod := p.pods[k]
		if pod == nil {
			o, _ := p.orig(k).(*corev1.Pod)
			if d, gone := p.del[k]; o != nil && gone && d.UID == o.UID && controllerUID(o) == j.UID && hasTrackingFinalizer(o) {
				if o.Status.Phase == corev1.PodSucceeded {
					j.Status.Succeeded++
				} else {
					j.Status.Failed++
				}
			}
			continue
		}
		if controllerUID(pod) != j.UID {
			continue
		}
		js.pods = append(js.pods, pod)
		switch {
		case isPodActive(pod):
			js.active = append(js.active, pod)
		case pod.DeletionTimestamp != nil && !isTerminal(pod):
			js.terminating++
		}
		if !hasTrackingFinalizer(pod) {
			continue
		}
		switch {
		case pod.Status.Phase == corev1.PodSucceeded:
			j.Status.Succeeded++
			js.strip(pod)
		case podFailed(pod, j):
			j.Status.Failed++
			js.strip(pod)
		}
	}
}

// strip removes the tracking finalizer from the plan's view of a pod: it is counted.
func (js *jobSync) strip(pod *corev1.Pod) {
	cur := js.p.pods[state.KeyOf(pod)]
	if cur == nil || !hasTrackingFinalizer(cur) {
		return
	}
	c := cur.DeepCopy()
	c.Finalizers = slices.DeleteFunc(c.Finalizers, func(f string) bool { return f == batchv1.JobTrackingFinalizer })
	if len(c.Finalizers) == 0 {
		c.Finalizers = nil
	}
	js.p.setPod(c)
}

// removePod deletes a running pod of the Job. failed counts it as a failure (the Job failed);
// otherwise (suspended, too many) its finalizer goes first and it is not counted, as
// Kubernetes' deleteJobPods.
func (js *jobSync) removePod(pod *corev1.Pod, failed bool) {
	p := js.p
	if !p.deletePod(pod, false) {
		return
	}
	p.event(js.j, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: "+pod.Name)
	if p.pods[state.KeyOf(pod)] != nil {
		js.terminating++
	}
	if !hasTrackingFinalizer(pod) {
		return
	}
	if failed {
		js.j.Status.Failed++
	}
	js.strip(pod)
}

// pastBackoffLimitOnFailure: with restartPolicy OnFailure, the restarts of the running
// pods' containers reach backoffLimit (exceed it when it is 0).
func (js *jobSync) pastBackoffLimitOnFailure() bool {
	if js.j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	var n int32
	for _, pod := range js.pods {
		if pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodPending {
			continue
		}
		for _, c := range pod.Status.InitContainerStatuses {
			n += c.RestartCount
		}
		for _, c := range pod.Status.ContainerStatuses {
			n += c.RestartCount
		}
	}
	limit := int32Or(js.j.Spec.BackoffLimit, 6)
	if limit == 0 {
		return n > 0
	}
	return n >= limit
}

// pastActiveDeadline: activeDeadlineSeconds passed since the start (never while suspended).
func (js *jobSync) pastActiveDeadline() bool {
	j := js.j
	if j.Spec.ActiveDeadlineSeconds == nil || j.Status.StartTime == nil || jobSuspended(j) {
		return false
	}
	return !js.p.now.Before(j.Status.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second))
}

// manage is Kubernetes' manageJob: it deletes the running pods of a suspended Job, deletes
// pods beyond what is wanted, or makes the missing ones once the back-off allows. It returns
// the number of running pods.
func (js *jobSync) manage() int32 {
	p, j := js.p, js.j
	active := int32(len(js.active))
	if jobSuspended(j) {
		for _, pod := range js.forRemoval(int(active)) {
			js.removePod(pod, false)
		}
		return 0
	}
	parallelism := int32Or(j.Spec.Parallelism, 1)
	want := parallelism
	switch c := j.Spec.Completions; {
	case c == nil && j.Status.Succeeded > 0:
		want = active
	case c != nil:
		want = max(min(*c-j.Status.Succeeded, parallelism), 0)
	}
	if rm := active - want; rm > 0 {
		for _, pod := range js.forRemoval(int(min(rm, burstReplicas))) {
			js.removePod(pod, false)
			active--
		}
		return active
	}
	var terminating int32
	if r := j.Spec.PodReplacementPolicy; r != nil && *r == batchv1.Failed {
		terminating = js.terminating
	}
	diff := want - terminating - active
	if diff <= 0 {
		return active
	}
	if wait := jobBackoff(js.pods, p.now); wait > 0 {
		p.after(wait)
		return active
	}
	for range min(diff, burstReplicas) {
		pod := js.newPod()
		p.addPod(pod)
		p.event(j, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: "+pod.Name)
		active++
	}
	return active
}

// forRemoval picks n running pods to delete, the least valuable first (Kubernetes'
// activePodsForRemoval: unplaced, pending, not ready, newer first).
func (js *jobSync) forRemoval(n int) []*corev1.Pod {
	ranked := make([]rankedPod, len(js.active))
	for i, pod := range js.active {
		ranked[i] = rankedPod{pod: pod}
	}
	sort.SliceStable(ranked, func(a, b int) bool { return deleteFirst(ranked[a], ranked[b]) })
	out := make([]*corev1.Pod, 0, n)
	for _, r := range ranked[:min(n, len(ranked))] {
		out = append(out, r.pod)
	}
	return out
}

// newPod makes a pod of the Job (not yet placed), with the tracking finalizer.
func (js *jobSync) newPod() *corev1.Pod {
	p, j := js.p, js.j
	t := &j.Spec.Template
	prefix := j.Name + "-"
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.generateName(j.Namespace, prefix), GenerateName: prefix, Namespace: j.Namespace,
			UID: p.newUID(), CreationTimestamp: p.stamp,
			Labels: maps.Clone(t.Labels), Annotations: maps.Clone(t.Annotations),
			OwnerReferences: []metav1.OwnerReference{controllerRef(j, "batch/v1", "Job")},
			Finalizers:      []string{batchv1.JobTrackingFinalizer},
		},
		Spec:   *t.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	manifest.SetDefaults(pod)
	pin(pod)
	return pod
}

// jobBackoff is how long to wait before making a pod after consecutive failures: none
// without one, 10 s after the first, doubling up to 6 min, counted from the last failure
// (Kubernetes' backoffRecord, from the failed pods present that finished after the last
// success).
func jobBackoff(pods []*corev1.Pod, now time.Time) time.Duration {
	var lastSuccess, lastFailure time.Time
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded {
			if t := podFinishTime(pod); t.After(lastSuccess) {
				lastSuccess = t
			}
		}
	}
	failures := 0
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodFailed {
			continue
		}
		if t := podFinishTime(pod); t.After(lastSuccess) {
			failures++
			if t.After(lastFailure) {
				lastFailure = t
			}
		}
	}
	if failures == 0 {
		return 0
	}
	d := defaultJobBackoff
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= maxJobBackoff {
			d = maxJobBackoff
			break
		}
	}
	return max(d-now.Sub(lastFailure), 0)
}

// podFinishTime is when a pod finished (Kubernetes' getFinishedTime): its containers' last
// finish, else when it stopped being ready, else its deletion, else its creation.
func podFinishTime(pod *corev1.Pod) time.Time {
	var last time.Time
	all := len(pod.Status.ContainerStatuses) > 0
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Terminated == nil || c.State.Terminated.FinishedAt.IsZero() {
			all = false
			break
		}
		if t := c.State.Terminated.FinishedAt.Time; t.After(last) {
			last = t
		}
	}
	if all {
		return last
	}
	if c := podCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionFalse && !c.LastTransitionTime.IsZero() {
		return c.LastTransitionTime.Time
	}
	if pod.DeletionTimestamp != nil {
		grace := int64(0)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		return pod.DeletionTimestamp.Add(-time.Duration(grace) * time.Second)
	}
	return pod.CreationTimestamp.Time
}

// jobTTL deletes a finished Job ttlSecondsAfterFinished after it finished (Kubernetes' TTL
// controller): a CronJob's Job with its pods; the run of a git Job keeps its cluster Job (its
// status) and loses only its pods.
func (p *planner) jobTTL(j *batchv1.Job) {
	ttl := j.Spec.TTLSecondsAfterFinished
	if ttl == nil {
		return
	}
	expire := jobFinishTime(j).Add(time.Duration(*ttl) * time.Second)
	if p.now.Before(expire) {
		p.after(expire.Sub(p.now))
		return
	}
	if j.Annotations[AnnotationGitUID] == "" {
		p.removeJob(j) // its pods go with it (garbage collection)
		return
	}
	for _, pod := range p.podsOf(j.UID) {
		if pod.DeletionTimestamp == nil && p.deletePod(pod, false) {
			p.event(j, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: "+pod.Name)
		}
	}
}

// jobWithStatus returns a Job with the status its controller keeps: a git Job with its
// run's, a cluster Job with its own, plus the active, ready and terminating pods counted.
func jobWithStatus(s *state.State, obj *batchv1.Job) *batchv1.Job {
	out := obj.DeepCopy()
	run := obj
	if g, inGit := s.Git.Get(state.KeyOf(obj)); inGit && g.GetUID() == obj.UID {
		o, _ := s.Cluster.Get(state.KeyOf(obj))
		c, ok := o.(*batchv1.Job)
		if !ok || c.Annotations[AnnotationGitUID] != string(obj.UID) {
			out.Status = batchv1.JobStatus{} // not started yet
			return out
		}
		run = c
	}
	out.Status = *run.Status.DeepCopy()
	var active, ready, terminating int32
	for _, pod := range podsControlledBy(s, run.UID) {
		switch {
		case isPodActive(pod):
			active++
			if isPodReady(pod) {
				ready++
			}
		case pod.DeletionTimestamp != nil && !isTerminal(pod):
			terminating++
		}
	}
	out.Status.Active, out.Status.Ready, out.Status.Terminating = active, &ready, &terminating
	return out
}

// Jobs lists the Jobs of namespace ns ("" for all) as `skiff get jobs` shows them, sorted by
// namespace and name: every Job running in the cluster (the run of a git Job, a CronJob's
// Jobs) and every git Job not started yet, with their status.
func Jobs(s *state.State, ns string) []*batchv1.Job {
	var out []*batchv1.Job
	for _, j := range state.Typed[*batchv1.Job](s.Cluster.List("Job", ns)) {
		out = append(out, jobWithStatus(s, j))
	}
	for _, g := range state.Typed[*batchv1.Job](s.Git.List("Job", ns)) {
		if _, running := s.Cluster.Get(state.KeyOf(g)); !running {
			out = append(out, jobWithStatus(s, g))
		}
	}
	slices.SortFunc(out, func(a, b *batchv1.Job) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}
