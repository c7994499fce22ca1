package controller

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/manifest"
	"github.com/skiffhq/skiff/state"
)

// Fixtures.

// job returns a Job as the parser gives it (defaults applied): one pod of image task:v1,
// restartPolicy Never.
func job(name string, mods ...func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       batchv1.JobSpec{Template: taskTemplate()},
	}
	for _, m := range mods {
		m(j)
	}
	manifest.SetDefaults(j)
	return j
}

// taskTemplate is the pod of a Job: one container of image task:v1, restartPolicy Never.
func taskTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers:    []corev1.Container{{Name: "main", Image: "task:v1"}},
	}}
}

func completions(n int32) func(*batchv1.Job) { return func(j *batchv1.Job) { j.Spec.Completions = &n } }
func parallelism(n int32) func(*batchv1.Job) { return func(j *batchv1.Job) { j.Spec.Parallelism = &n } }
func backoffLimit(n int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) { j.Spec.BackoffLimit = &n }
}
func activeDeadline(s int64) func(*batchv1.Job) {
	return func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = &s }
}
func ttl(s int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = &s }
}
func suspend(on bool) func(*batchv1.Job) { return func(j *batchv1.Job) { j.Spec.Suspend = &on } }
func onFailure(j *batchv1.Job)           { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }
func jobImage(image string) func(*batchv1.Job) {
	return func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].Image = image }
}

// runJob returns the cluster Job that runs a git Job (nil when there is none).
func (c *cluster) runJob(name string) *batchv1.Job {
	o, ok := c.state().Cluster.Get(state.Key{Kind: "Job", Namespace: "default", Name: name})
	if !ok {
		return nil
	}
	return o.(*batchv1.Job)
}

// jobPods returns the pods of Jobs named name (any run).
func (c *cluster) jobPods(name string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range c.pods() {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Job" && ref.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// jobStatus renders a Job's status as `skiff get` would read it: "succeeded=3 failed=0
// active=0 Complete", with the reason of a Failed condition and Suspended when it is.
func jobStatus(s *state.State, now time.Time, j *batchv1.Job) string {
	st := WithStatus(s, now, j).(*batchv1.Job).Status
	var conds []string
	for _, c := range st.Conditions {
		switch {
		case c.Status != corev1.ConditionTrue:
		case c.Type == batchv1.JobFailed:
			conds = append(conds, "Failed/"+c.Reason)
		case c.Type == batchv1.JobComplete, c.Type == batchv1.JobSuspended:
			conds = append(conds, string(c.Type))
		}
	}
	return strings.TrimSpace(fmt.Sprintf("succeeded=%d failed=%d active=%d %s", st.Succeeded, st.Failed, st.Active, strings.Join(conds, ",")))
}

func (c *cluster) jobStatus(name string) string {
	o, ok := c.state().Git.Get(state.Key{Kind: "Job", Namespace: "default", Name: name})
	if !ok {
		o = c.runJob(name)
	}
	return jobStatus(c.state(), c.now, o.(*batchv1.Job))
}

// phases renders the phases of pods: "Failed=2 Succeeded=1".
func phases(pods []*corev1.Pod) string {
	n := map[corev1.PodPhase]int{}
	for _, p := range pods {
		n[p.Status.Phase]++
	}
	var parts []string
	for ph, k := range n {
		parts = append(parts, fmt.Sprintf("%s=%d", ph, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// jobWatch records, as the harness steps, the pods of a Job: when each was made, and the
// most running at once.
type jobWatch struct {
	c         *cluster
	name      string
	created   map[string]time.Time
	order     []string
	maxActive int
}

func (w *jobWatch) observe() {
	active := 0
	for _, p := range w.c.jobPods(w.name) {
		if _, ok := w.created[p.Name]; !ok {
			w.created[p.Name] = w.c.now
			w.order = append(w.order, p.Name)
		}
		if isPodActive(p) {
			active++
		}
	}
	w.maxActive = max(w.maxActive, active)
}

func watchJob(c *cluster, name string) *jobWatch {
	w := &jobWatch{c: c, name: name, created: map[string]time.Time{}}
	w.observe()
	return w
}

func TestJob(t *testing.T) {
	tests := []struct {
		name      string
		job       *batchv1.Job
		agent     agent
		status    string
		pods      int             // pods made in all
		maxActive int             // most pods running at once
		left      string          // the pods left, by phase
		gaps      []time.Duration // least time between one pod made and the next
	}{
		{name: "completions 3, one at a time", job: job("batch", completions(3)), agent: agent{runFor: 5 * time.Second},
			status: "succeeded=3 failed=0 active=0 Complete", pods: 3, maxActive: 1, left: "Succeeded=3"},
		{name: "completions 5, parallelism 2", job: job("batch", completions(5), parallelism(2)), agent: agent{runFor: 5 * time.Second},
			status: "succeeded=5 failed=0 active=0 Complete", pods: 5, maxActive: 2, left: "Succeeded=5"},
		{name: "work queue: parallelism 3 without completions", job: job("batch", parallelism(3)), agent: agent{runFor: 5 * time.Second},
			status: "succeeded=3 failed=0 active=0 Complete", pods: 3, maxActive: 3, left: "Succeeded=3"},
		{name: "Never: each failure a new pod, after the back-off", job: job("batch"),
			agent:  agent{runFor: 5 * time.Second, fail: map[string]int{"task:v1": 2}},
			status: "succeeded=1 failed=2 active=0 Complete", pods: 3, maxActive: 1, left: "Failed=2 Succeeded=1",
			gaps: []time.Duration{15 * time.Second, 25 * time.Second}}, // 5 s running, then 10 s and 20 s of back-off
		{name: "Never: past backoffLimit the Job fails", job: job("batch", backoffLimit(2)),
			agent:  agent{runFor: 2 * time.Second, fail: map[string]int{"task:v1": -1}},
			status: "succeeded=0 failed=3 active=0 Failed/BackoffLimitExceeded", pods: 3, maxActive: 1, left: "Failed=3"},
		{name: "backoffLimit 0: the first failure fails it", job: job("batch", backoffLimit(0), completions(2), parallelism(2)),
			agent:  agent{runFor: 2 * time.Second, fail: map[string]int{"task:v1": 1}},
			status: "succeeded=1 failed=1 active=0 Failed/BackoffLimitExceeded", pods: 2, maxActive: 2, left: "Failed=1 Succeeded=1"},
		{name: "OnFailure: the node restarts it; restarts count toward backoffLimit", job: job("batch", onFailure, backoffLimit(3)),
			agent:  agent{runFor: 2 * time.Second, fail: map[string]int{"task:v1": -1}},
			status: "succeeded=0 failed=1 active=0 Failed/BackoffLimitExceeded", pods: 1, maxActive: 1},
		{name: "OnFailure: restarts below backoffLimit, then success", job: job("batch", onFailure, backoffLimit(3)),
			agent:  agent{runFor: 2 * time.Second, fail: map[string]int{"task:v1": 2}},
			status: "succeeded=1 failed=0 active=0 Complete", pods: 1, maxActive: 1, left: "Succeeded=1"},
		{name: "activeDeadlineSeconds: the running pods are killed", job: job("batch", activeDeadline(30), parallelism(2), completions(4)),
			agent:  agent{runFor: 10 * time.Minute},
			status: "succeeded=0 failed=2 active=0 Failed/DeadlineExceeded", pods: 2, maxActive: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1", "n2")...)
			c.agent = tt.agent
			c.sync(tt.job)
			w := watchJob(c, "batch")
			c.converge(w.observe)
			if got := c.jobStatus("batch"); got != tt.status {
				t.Errorf("Job(%s) = %s; want %s", tt.name, got, tt.status)
			}
			if len(w.order) != tt.pods || w.maxActive != tt.maxActive {
				t.Errorf("Job(%s) made %d pods, %d at most at once; want %d, %d", tt.name, len(w.order), w.maxActive, tt.pods, tt.maxActive)
			}
			if got := phases(c.jobPods("batch")); got != tt.left {
				t.Errorf("Job(%s) left pods %s; want %s (kept for their logs)", tt.name, got, tt.left)
			}
			for i, gap := range tt.gaps {
				if got := w.created[w.order[i+1]].Sub(w.created[w.order[i]]); got < gap {
					t.Errorf("Job(%s) pod %d made %v after the one before; want at least %v", tt.name, i+1, got, gap)
				}
			}
			for _, p := range c.jobPods("batch") {
				if hasTrackingFinalizer(p) {
					t.Errorf("Job(%s) finished pod %s still has the tracking finalizer; want it counted", tt.name, p.Name)
				}
			}
			c.converged(tt.name)
		})
	}
}

func TestJobDeadlineTimes(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Hour
	c.sync(job("batch", activeDeadline(30)))
	c.converge(nil)
	run := c.runJob("batch")
	target := jobCondition(run, batchv1.JobFailureTarget)
	if target == nil || target.LastTransitionTime.Sub(run.Status.StartTime.Time) != 30*time.Second {
		t.Errorf("FailureTarget = %+v, start %v; want it 30s after the start", target, run.Status.StartTime)
	}
	if got := c.eventsWith(batchv1.JobReasonDeadlineExceeded); !slices.Equal(got, []string{msgDeadline}) {
		t.Errorf("events = %q; want one %q", got, msgDeadline)
	}
	if run.Status.CompletionTime != nil {
		t.Errorf("a failed Job has completionTime %v; want none (as Kubernetes)", run.Status.CompletionTime)
	}
}

func TestJobPodsAndLabels(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(job("batch", func(j *batchv1.Job) { j.Spec.Template.Labels = map[string]string{"app": "batch"} }))
	c.plan()
	run := c.runJob("batch")
	if run == nil || run.Annotations[AnnotationGitUID] == "" || run.Annotations[AnnotationJobRun] == "" {
		t.Fatalf("cluster Job of a git Job = %+v; want one annotated with the git UID and run", run)
	}
	uid := string(run.UID)
	if g, _ := c.state().Git.Get(state.KeyOf(run)); g.GetUID() == run.UID {
		t.Errorf("cluster Job has the git Job's UID; want a UID of its own (the run's)")
	}
	if run.Spec.Selector == nil || run.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] != uid || run.Labels["app"] != "batch" {
		t.Errorf("Job selector %v labels %v; want the API server's controller-uid selector and labels from the template", run.Spec.Selector, run.Labels)
	}
	pods := c.jobPods("batch")
	if len(pods) != 1 {
		t.Fatalf("pods = %d; want 1", len(pods))
	}
	p := pods[0]
	want := map[string]string{"app": "batch", batchv1.ControllerUidLabel: uid, batchv1.JobNameLabel: "batch", "controller-uid": uid, "job-name": "batch"}
	for k, v := range want {
		if p.Labels[k] != v {
			t.Errorf("pod label %s = %q; want %q", k, p.Labels[k], v)
		}
	}
	if !hasTrackingFinalizer(p) || !strings.HasPrefix(p.Name, "batch-") || p.Spec.NodeName != "n1" {
		t.Errorf("pod %s finalizers %v node %q; want batch-xxxxx with the tracking finalizer, placed", p.Name, p.Finalizers, p.Spec.NodeName)
	}
}

func TestJobSuspend(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Minute
	c.sync(job("batch", suspend(true), completions(2), parallelism(2)))
	c.converge(nil)
	if got := c.jobStatus("batch"); got != "succeeded=0 failed=0 active=0 Suspended" {
		t.Errorf("suspended Job = %s; want nothing run", got)
	}
	if run := c.runJob("batch"); run.Status.StartTime != nil || len(c.jobPods("batch")) > 0 {
		t.Errorf("suspended Job started at %v with %d pods; want not started", run.Status.StartTime, len(c.jobPods("batch")))
	}
	uid := c.runJob("batch").UID
	c.now = c.now.Add(time.Minute)
	resumed := c.now
	c.sync(job("batch", suspend(false), completions(2), parallelism(2)))
	c.run(10*time.Second, time.Second, nil)
	run := c.runJob("batch")
	if run.UID != uid || !run.Status.StartTime.Time.Equal(resumed) || len(c.jobPods("batch")) != 2 {
		t.Errorf("resumed Job uid %s start %v pods %d; want the same run, started %v, 2 pods", run.UID, run.Status.StartTime, len(c.jobPods("batch")), resumed)
	}
	c.sync(job("batch", suspend(true), completions(2), parallelism(2)))
	c.converge(nil)
	if got := c.jobStatus("batch"); got != "succeeded=0 failed=0 active=0 Suspended" {
		t.Errorf("Job suspended while running = %s; want its pods deleted, not counted as failures", got)
	}
	if got := c.eventsWith("Resumed"); len(got) != 1 {
		t.Errorf("Resumed events = %q; want one", got)
	}
}

// TestJobInGit: what a Job does as git changes around it.
func TestJobInGit(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2")...)
	c.agent.runFor = 5 * time.Second
	c.sync(job("batch", completions(2)))
	c.converge(nil)
	first := c.runJob("batch")
	if got := c.jobStatus("batch"); got != "succeeded=2 failed=0 active=0 Complete" {
		t.Fatalf("Job = %s; want Complete", got)
	}

	// A commit that changes something else keeps the run: nothing runs again.
	c.sync(job("batch", completions(2), parallelism(2), func(j *batchv1.Job) { j.Labels = map[string]string{"team": "a"} }))
	c.converge(nil)
	if run := c.runJob("batch"); run.UID != first.UID || run.Labels["team"] != "a" || *run.Spec.Parallelism != 2 || len(c.jobPods("batch")) != 2 {
		t.Errorf("after a parallelism change: run %s labels %v pods %d; want the same run, updated, no new pods", run.UID, run.Labels, len(c.jobPods("batch")))
	}

	// A new template runs it again, the previous run's pods deleted.
	c.sync(job("batch", completions(2), parallelism(2), jobImage("task:v2")))
	c.converge(nil)
	run := c.runJob("batch")
	if run.UID == first.UID || c.jobStatus("batch") != "succeeded=2 failed=0 active=0 Complete" {
		t.Errorf("after a template change: run %s status %s; want a new run, Complete", run.UID, c.jobStatus("batch"))
	}
	for _, p := range c.jobPods("batch") {
		if controllerUID(p) != run.UID || p.Spec.Containers[0].Image != "task:v2" {
			t.Errorf("pod %s of run %s image %s left; want only the new run's pods", p.Name, controllerUID(p), p.Spec.Containers[0].Image)
		}
	}
	if got := c.eventsWith("Rerun"); len(got) != 1 {
		t.Errorf("Rerun events = %q; want one", got)
	}

	// Gone from git: its run and pods go.
	c.sync()
	c.converge(nil)
	if c.runJob("batch") != nil || len(c.jobPods("batch")) != 0 {
		t.Errorf("Job gone from git: run %v, %d pods; want none", c.runJob("batch"), len(c.jobPods("batch")))
	}
	c.converged("job gone")
}

// TestJobTTL: ttlSecondsAfterFinished deletes a git Job's pods, keeps its finished status
// and never runs it again.
func TestJobTTL(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = 5 * time.Second
	c.sync(job("batch", completions(2), ttl(60)))
	var finished time.Time
	c.run(5*time.Minute, time.Second, func() {
		if run := c.runJob("batch"); finished.IsZero() && run != nil && jobFinished(run) {
			finished = run.Status.CompletionTime.Time
		}
		if !finished.IsZero() && c.now.Before(finished.Add(60*time.Second)) && len(c.jobPods("batch")) != 2 {
			t.Fatalf("at %v, %d pods; want the finished pods kept until the ttl", c.now.Sub(finished), len(c.jobPods("batch")))
		}
	})
	if finished.IsZero() {
		t.Fatal("Job never finished")
	}
	if n := len(c.jobPods("batch")); n != 0 {
		t.Errorf("%d pods after the ttl; want none", n)
	}
	if got := c.jobStatus("batch"); got != "succeeded=2 failed=0 active=0 Complete" {
		t.Errorf("after the ttl: %s; want the finished status kept", got)
	}
	if got := c.eventsWith("SuccessfulCreate"); len(got) != 2 {
		t.Errorf("pods made: %q; want 2 (the Job never runs again)", got)
	}
	c.converged("after ttl")
}

// TestJobCountsLostPods: a pod of the Job on a node that is removed is counted as failed and
// replaced; the counters stay when pods go.
func TestJobCountsLostPods(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Minute
	c.sync(job("batch"))
	c.run(5*time.Second, time.Second, nil)
	n, _ := c.state().Cluster.Get(state.Key{Kind: "Node", Name: "n1"})
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(n), UID: n.GetUID()}}, Put: state.Wrap(node("n2"))})
	c.converge(nil)
	if got := c.jobStatus("batch"); got != "succeeded=1 failed=1 active=0 Complete" {
		t.Errorf("Job after its node went = %s; want the lost pod counted failed, its replacement succeeded", got)
	}
}

// TestJobDeletedPodCountedOnce: a running pod deleted from outside the plan (a drain) counts
// as one failure, however many plans see it terminating.
func TestJobDeletedPodCountedOnce(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Minute
	c.agent.stuck = true
	c.sync(job("batch"))
	c.run(5*time.Second, time.Second, nil)
	p := c.jobPods("batch")[0]
	c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(p), UID: p.UID}}})
	c.run(10*time.Second, time.Second, nil)
	if got := c.jobStatus("batch"); got != "succeeded=0 failed=1 active=1" {
		t.Errorf("Job after a pod was deleted = %s; want it counted once and replaced", got)
	}
}

// TestBatchPlanIsDeterministic: the same state and input give the same command, with
// DaemonSets, Jobs and CronJobs at a schedule tick.
func TestBatchPlanIsDeterministic(t *testing.T) {
	c := newCluster(t, nodes("n1", "n2", "n3")...)
	c.agent.runFor = time.Minute
	c.sync(daemonSet("agent", "img:v1"), job("batch", completions(4), parallelism(2)), cronJob("tick", "*/5 * * * *"))
	c.run(4*time.Minute+59*time.Second, time.Second, nil)
	c.sync(daemonSet("agent", "img:v2"), job("batch", completions(4), parallelism(3)), job("other", parallelism(2)),
		cronJob("tick", "*/5 * * * *"), cronJob("each", "* * * * *"))
	c.now = at("10:05")
	in := c.input()
	var first []byte
	for i := range 3 {
		a := in
		a.Rand = newRand(7)
		res := Plan(a)
		b, _ := res.Command.Encode()
		if i == 0 {
			first = b
			if res.Command == nil || !strings.Contains(string(b), "tick-") || !strings.Contains(string(b), `"kind":"DaemonSet"`) {
				t.Fatalf("Plan(tick) = %s; want Jobs made and DaemonSet pods replaced", b)
			}
			continue
		}
		if string(b) != string(first) {
			t.Fatalf("Plan(same input) = %s\nthen %s; want the same command", first, b)
		}
	}
}
