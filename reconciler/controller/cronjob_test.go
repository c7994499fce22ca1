package controller

import (
	"fmt"
	"slices"
	"strconv"
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

// cronJob returns a CronJob as the parser gives it (defaults applied), its Jobs one pod of
// image task:v1.
func cronJob(name, schedule string, mods ...func(*batchv1.CronJob)) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: batchv1.CronJobSpec{Schedule: schedule, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: taskTemplate(),
		}}},
	}
	for _, m := range mods {
		m(cj)
	}
	manifest.SetDefaults(cj)
	return cj
}

func timeZone(tz string) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) { c.Spec.TimeZone = &tz }
}
func startingDeadline(s int64) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) { c.Spec.StartingDeadlineSeconds = &s }
}
func concurrency(p batchv1.ConcurrencyPolicy) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = p }
}
func cronSuspend(on bool) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) { c.Spec.Suspend = &on }
}
func jobHistory(ok, failed int32) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) {
		c.Spec.SuccessfulJobsHistoryLimit, c.Spec.FailedJobsHistoryLimit = &ok, &failed
	}
}
func cronImage(image string) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) { c.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Image = image }
}
func cronJobSpec(mod func(*batchv1.Job)) func(*batchv1.CronJob) {
	return func(c *batchv1.CronJob) {
		j := &batchv1.Job{Spec: c.Spec.JobTemplate.Spec}
		mod(j)
		c.Spec.JobTemplate.Spec = j.Spec
	}
}

// at is a time of day on t0's date (UTC), "10:05" or "10:05:30".
func at(hhmm string) time.Time {
	layout := "15:04"
	if strings.Count(hhmm, ":") == 2 {
		layout = "15:04:05"
	}
	t, err := time.Parse(layout, hhmm)
	if err != nil {
		panic(err)
	}
	return time.Date(t0.Year(), t0.Month(), t0.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// cronJobs renders the Jobs of a CronJob by scheduled time (from their names, in UTC):
// "10:05=Complete 10:10=running", with "-deleting" for one being deleted.
func (c *cluster) cronJobs(name string) string {
	var parts []string
	for _, j := range state.Typed[*batchv1.Job](c.state().Cluster.List("Job", "default")) {
		ref := metav1.GetControllerOf(j)
		if ref == nil || ref.Kind != "CronJob" || ref.Name != name {
			continue
		}
		min, err := strconv.ParseInt(strings.TrimPrefix(j.Name, name+"-"), 10, 64)
		if err != nil {
			c.t.Fatalf("Job %s of CronJob %s is not named CRONJOB-MINUTES", j.Name, name)
		}
		s := time.Unix(min*60, 0).UTC().Format("15:04") + "="
		switch {
		case hasJobCondition(j, batchv1.JobComplete):
			s += "Complete"
		case hasJobCondition(j, batchv1.JobFailed):
			s += "Failed"
		default:
			s += "running"
		}
		parts = append(parts, s)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (c *cluster) cronStatus(name string) batchv1.CronJobStatus {
	o, _ := c.state().Git.Get(state.Key{Kind: "CronJob", Namespace: "default", Name: name})
	return WithStatus(c.state(), c.now, o).(*batchv1.CronJob).Status
}

func TestCronJobSchedule(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Minute
	c.sync(cronJob("tick", "*/5 * * * *"))
	if res := c.plan(); res.Command != nil || res.Requeue != 5*time.Minute+nextScheduleDelta {
		t.Errorf("Plan(new CronJob at 10:00) = command %v, requeue %v; want nothing until 10:05 (requeue 5m0.1s)", res.Command != nil, res.Requeue)
	}
	made := map[string]time.Time{}
	c.run(17*time.Minute, time.Second, func() {
		for _, j := range state.Typed[*batchv1.Job](c.state().Cluster.List("Job", "")) {
			if _, ok := made[j.Name]; !ok {
				made[j.Name] = c.now
			}
		}
	})
	if got, want := c.cronJobs("tick"), "10:05=Complete 10:10=Complete 10:15=Complete"; got != want {
		t.Errorf("Jobs at 10:17 = %q; want %q", got, want)
	}
	for name, when := range made {
		min, _ := strconv.ParseInt(strings.TrimPrefix(name, "tick-"), 10, 64)
		if late := when.Sub(time.Unix(min*60, 0)); late < 0 || late > time.Second {
			t.Errorf("Job %s made %v after its time; want within a second", name, late)
		}
	}
	st := c.cronStatus("tick")
	if st.LastScheduleTime == nil || !st.LastScheduleTime.Time.Equal(at("10:15")) ||
		st.LastSuccessfulTime == nil || st.LastSuccessfulTime.Time.Before(at("10:16")) || len(st.Active) != 0 {
		t.Errorf("status = %+v; want lastScheduleTime 10:15, lastSuccessfulTime after 10:16, none active", st)
	}
	j := c.runJob("tick-" + strconv.FormatInt(at("10:15").Unix()/60, 10))
	if j == nil || j.Annotations[batchv1.CronJobScheduledTimestampAnnotation] != "2026-11-22T10:15:00Z" ||
		metav1.GetControllerOf(j).Name != "tick" {
		t.Errorf("Job of 10:15 = %+v; want the scheduled-timestamp annotation and the CronJob as its controller", j)
	}
}

func TestCronJobTimeZone(t *testing.T) {
	tests := []struct {
		name  string
		mods  []func(*batchv1.CronJob)
		first time.Time // the first start after t0 (10:00 UTC)
		stamp string    // its scheduled-timestamp annotation
	}{
		{name: "UTC without a time zone", first: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), stamp: "2026-11-23T09:00:00Z"},
		{name: "Asia/Seoul: 09:00 KST is 00:00 UTC", mods: []func(*batchv1.CronJob){timeZone("Asia/Seoul")},
			first: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), stamp: "2026-11-23T09:00:00+09:00"},
		{name: "America/New_York: 09:00 EST is 14:00 UTC", mods: []func(*batchv1.CronJob){timeZone("America/New_York")},
			first: time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC), stamp: "2026-11-22T09:00:00-05:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1")...)
			c.sync(cronJob("daily", "0 9 * * *", tt.mods...))
			if res := c.plan(); res.Requeue != tt.first.Sub(c.now)+nextScheduleDelta {
				t.Errorf("Plan(%s) requeue = %v; want until %v", tt.name, res.Requeue, tt.first)
			}
			c.now = tt.first.Add(-time.Second)
			if res := c.plan(); res.Command != nil {
				t.Errorf("Plan(%s) a second early made something", tt.name)
			}
			c.now = tt.first
			c.plan()
			name := fmt.Sprintf("daily-%d", tt.first.Unix()/60)
			j := c.runJob(name)
			if j == nil || j.Annotations[batchv1.CronJobScheduledTimestampAnnotation] != tt.stamp {
				t.Errorf("Plan(%s) at %v: Job %s = %v; want it, stamped %s", tt.name, tt.first, name, j, tt.stamp)
			}
		})
	}
}

// TestCronJobMissedStarts: the leader was away (no plans) from 10:00 until resume.
func TestCronJobMissedStarts(t *testing.T) {
	tests := []struct {
		name     string
		schedule string
		mods     []func(*batchv1.CronJob)
		resume   time.Time
		want     string   // Jobs after the first plan
		events   []string // warnings
	}{
		{name: "only the most recent missed start runs", schedule: "*/5 * * * *", resume: at("10:32"), want: "10:30=running"},
		{name: "within startingDeadlineSeconds it runs late", schedule: "*/5 * * * *", mods: []func(*batchv1.CronJob){startingDeadline(200)},
			resume: at("10:32"), want: "10:30=running"},
		{name: "beyond startingDeadlineSeconds it is skipped", schedule: "*/5 * * * *", mods: []func(*batchv1.CronJob){startingDeadline(60)},
			resume: at("10:32"), want: ""},
		{name: "more than 100 missed: Kubernetes' warning, and the most recent runs", schedule: "* * * * *", resume: at("13:00:30"),
			want: "13:00=running", events: []string{"TooManyMissedTimes"}},
		{name: "a deadline keeps the count of missed starts small", schedule: "* * * * *", mods: []func(*batchv1.CronJob){startingDeadline(120)},
			resume: at("13:00:30"), want: "13:00=running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, nodes("n1")...)
			c.sync(cronJob("tick", tt.schedule, tt.mods...))
			c.now = tt.resume
			res := c.plan()
			if got := c.cronJobs("tick"); got != tt.want {
				t.Errorf("Plan(%s) = %q; want %q", tt.name, got, tt.want)
			}
			var warnings []string
			for _, e := range res.Events {
				if e.Type == corev1.EventTypeWarning {
					warnings = append(warnings, e.Reason)
				}
			}
			if !slices.Equal(warnings, tt.events) {
				t.Errorf("Plan(%s) warnings = %q; want %q", tt.name, warnings, tt.events)
			}
			if res := c.plan(); res.Command != nil {
				t.Errorf("Plan(%s) again = a command; want nothing more", tt.name)
			}
		})
	}
	t.Run("a start found only past its deadline is skipped", func(t *testing.T) {
		// Without the deadline 10:05 is the start due; with it, it is never found, so it
		// is skipped without a word (as in Kubernetes, where MissSchedule hardly fires).
		cj := cronJob("tick", "*/5 * * * *", startingDeadline(10))
		_, recent, _, _ := mostRecentScheduleTime(t0, nil, cj.Spec.StartingDeadlineSeconds, false, at("10:05:30"), mustSchedule(t, cj))
		if recent == nil || !recent.Equal(at("10:05")) {
			t.Fatalf("mostRecentScheduleTime = %v; want 10:05", recent)
		}
		c := newCluster(t, nodes("n1")...)
		c.sync(cj)
		c.now = at("10:05:30")
		c.plan()
		if got := c.eventsWith("MissSchedule"); len(got) != 0 || c.cronJobs("tick") != "" {
			t.Errorf("with deadline 10s at 10:05:30: events %q jobs %q; want the start skipped silently (not found within the deadline)", got, c.cronJobs("tick"))
		}
	})
}

func mustSchedule(t *testing.T, cj *batchv1.CronJob) interface{ Next(time.Time) time.Time } {
	s, ev := cronSchedule(cj)
	if ev != nil {
		t.Fatalf("cronSchedule(%q) = %s", cj.Spec.Schedule, ev.Message)
	}
	return s
}

func TestCronJobConcurrency(t *testing.T) {
	tests := []struct {
		policy  batchv1.ConcurrencyPolicy
		at1011  string // Jobs at 10:11 (the 10:05 one runs 7 minutes)
		at1014  string
		message string // event
	}{
		{policy: batchv1.AllowConcurrent, at1011: "10:05=running 10:10=running", at1014: "10:05=Complete 10:10=running"},
		{policy: batchv1.ForbidConcurrent, at1011: "10:05=running", at1014: "10:05=Complete 10:10=running",
			message: "Not starting job because prior execution is running and concurrency policy is Forbid"},
		{policy: batchv1.ReplaceConcurrent, at1011: "10:10=running", at1014: "10:10=running", message: "Deleted job tick-" +
			strconv.FormatInt(at("10:05").Unix()/60, 10)},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			c := newCluster(t, nodes("n1")...)
			c.agent.runFor = 7 * time.Minute
			c.sync(cronJob("tick", "*/5 * * * *", concurrency(tt.policy)))
			c.run(11*time.Minute, time.Second, nil)
			if got := c.cronJobs("tick"); got != tt.at1011 {
				t.Errorf("%s at 10:11 = %q; want %q", tt.policy, got, tt.at1011)
			}
			if got := len(c.cronStatus("tick").Active); got != strings.Count(tt.at1011, "running") {
				t.Errorf("%s active = %d; want %d", tt.policy, got, strings.Count(tt.at1011, "running"))
			}
			if tt.message != "" && !slices.ContainsFunc(c.events, func(e Event) bool { return e.Message == tt.message }) {
				t.Errorf("%s events lack %q", tt.policy, tt.message)
			}
			c.run(3*time.Minute, time.Second, nil)
			if got := c.cronJobs("tick"); got != tt.at1014 {
				t.Errorf("%s at 10:14 = %q; want %q (Forbid starts the missed 10:10 once 10:05 finished)", tt.policy, got, tt.at1014)
			}
			for _, p := range c.pods() {
				if ref := metav1.GetControllerOf(p); c.runJob(ref.Name) == nil && p.DeletionTimestamp == nil {
					t.Errorf("%s: pod %s of a deleted Job %s still runs", tt.policy, p.Name, ref.Name)
				}
			}
		})
	}
}

func TestCronJobHistoryLimits(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = 10 * time.Second
	c.agent.fail = map[string]int{"task:bad": -1}
	c.sync(cronJob("ok", "* * * * *", jobHistory(2, 1)),
		cronJob("bad", "* * * * *", jobHistory(2, 1), cronImage("task:bad"), cronJobSpec(backoffLimit(0))))
	c.run(6*time.Minute+30*time.Second, time.Second, nil)
	if got, want := c.cronJobs("ok"), "10:05=Complete 10:06=Complete"; got != want {
		t.Errorf("successful history = %q; want %q", got, want)
	}
	if got, want := c.cronJobs("bad"), "10:06=Failed"; got != want {
		t.Errorf("failed history = %q; want %q", got, want)
	}
	c.run(time.Minute, time.Second, nil)
	for _, p := range c.pods() {
		if ref := metav1.GetControllerOf(p); c.runJob(ref.Name) == nil {
			t.Errorf("pod %s of deleted Job %s is still there", p.Name, ref.Name)
		}
	}
	if st := c.cronStatus("bad"); st.LastSuccessfulTime != nil {
		t.Errorf("lastSuccessfulTime of a CronJob whose Jobs all fail = %v; want none", st.LastSuccessfulTime)
	}
}

func TestCronJobSuspend(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.sync(cronJob("tick", "*/5 * * * *", cronSuspend(true)))
	c.run(12*time.Minute, time.Second, nil)
	if got := c.cronJobs("tick"); got != "" {
		t.Errorf("suspended CronJob made %q; want nothing", got)
	}
	c.sync(cronJob("tick", "*/5 * * * *", cronSuspend(false)))
	c.plan()
	if got := c.cronJobs("tick"); got != "10:10=running" {
		t.Errorf("CronJob resumed at 10:12 = %q; want the most recent missed start run at once", got)
	}
}

// TestCronJobLeaderChange: a start is made once, whichever leader plans it.
func TestCronJobLeaderChange(t *testing.T) {
	name := fmt.Sprintf("tick-%d", at("10:05").Unix()/60)
	jobNames := func(cmd *state.Command) []string {
		var out []string
		if cmd != nil {
			for _, o := range cmd.Put {
				if j, ok := o.Object.(*batchv1.Job); ok {
					out = append(out, j.Name)
				}
			}
		}
		return out
	}
	t.Run("the old leader's decision was lost", func(t *testing.T) {
		c := newCluster(t, nodes("n1")...)
		c.sync(cronJob("tick", "*/5 * * * *"))
		c.now = at("10:05")
		lost := Plan(c.input()) // its command never committed
		c.now, c.rand = at("10:05:02"), newRand(99)
		res := c.plan()
		if a, b := jobNames(lost.Command), jobNames(res.Command); !slices.Equal(a, []string{name}) || !slices.Equal(b, []string{name}) {
			t.Errorf("old leader would have made %q, the new one made %q; want %s both times", a, b, name)
		}
	})
	t.Run("the old leader's decision committed", func(t *testing.T) {
		c := newCluster(t, nodes("n1")...)
		c.sync(cronJob("tick", "*/5 * * * *"))
		c.now = at("10:05")
		c.plan()
		for _, now := range []time.Time{at("10:04:59"), at("10:05"), at("10:05:01")} { // the new leader's clock
			c.now, c.rand = now, newRand(uint64(now.Unix()))
			if got := jobNames(Plan(c.input()).Command); len(got) > 0 {
				t.Errorf("new leader at %v made %q; want nothing", now.Format("15:04:05"), got)
			}
		}
	})
	t.Run("the record is missing but the Job exists", func(t *testing.T) {
		c := newCluster(t, nodes("n1")...)
		c.sync(cronJob("tick", "*/5 * * * *"))
		c.now = at("10:05")
		c.plan()
		rec, _ := c.state().Cluster.Get(state.Key{Kind: "CronJob", Namespace: "default", Name: "tick"})
		c.apply(&state.Command{Delete: []state.Ref{{Key: state.KeyOf(rec), UID: rec.GetUID()}}})
		c.now = at("10:05:30")
		c.plan()
		if got := c.cronJobs("tick"); got != "10:05=running" {
			t.Errorf("Jobs = %q; want the one Job of 10:05", got)
		}
		if st := c.cronStatus("tick"); st.LastScheduleTime == nil || !st.LastScheduleTime.Time.Equal(at("10:05")) {
			t.Errorf("lastScheduleTime = %v; want 10:05 taken from the Job that exists", st.LastScheduleTime)
		}
	})
}

func TestCronJobLeavesGit(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = time.Hour
	c.sync(cronJob("tick", "*/5 * * * *"), deploy("web", 1, "img:v1"))
	c.run(6*time.Minute, time.Second, nil)
	if c.cronJobs("tick") != "10:05=running" {
		t.Fatalf("Jobs = %q; want the 10:05 one running", c.cronJobs("tick"))
	}
	c.sync(deploy("web", 1, "img:v1"))
	c.converge(nil)
	if got := c.state().Cluster.Count("Job") + c.state().Cluster.Count("CronJob"); got != 0 {
		t.Errorf("%d Jobs and records left; want none", got)
	}
	if n := placedPods(c.state(), ""); n != 1 {
		t.Errorf("%d pods; want only the Deployment's", n)
	}
}

// TestCronJobTTL: a CronJob's Job is deleted, with its pods, ttlSecondsAfterFinished after
// it finished.
func TestCronJobTTL(t *testing.T) {
	c := newCluster(t, nodes("n1")...)
	c.agent.runFor = 10 * time.Second
	c.sync(cronJob("tick", "*/5 * * * *", cronJobSpec(ttl(30))))
	c.run(6*time.Minute, time.Second, nil) // 10:05 Job done at ~10:05:11, deleted at ~10:05:41
	if got := c.cronJobs("tick"); got != "" {
		t.Errorf("Jobs at 10:06 = %q; want the 10:05 one deleted after its ttl", got)
	}
	if st := c.cronStatus("tick"); st.LastSuccessfulTime == nil {
		t.Errorf("lastSuccessfulTime lost with the Job; want it kept in the record")
	}
	c.run(5*time.Second, time.Second, nil)
	if n := len(c.pods()); n != 0 {
		t.Errorf("%d pods left; want the Job's pods gone with it", n)
	}
}
