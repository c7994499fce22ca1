package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cron "github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/state"
)

// The CronJob controller, as Kubernetes' pkg/controller/cronjob (v2): at each time of
// spec.schedule (standard cron, @hourly-style descriptors, in spec.timeZone, else UTC) it
// makes a Job from jobTemplate, named CRONJOB-MINUTES (the scheduled time in minutes since
// the epoch) and owned by the CronJob, so it goes with it. A start missed by more than
// startingDeadlineSeconds is skipped (MissSchedule); of several missed starts only the most
// recent runs; more than 100 missed gives Kubernetes' TooManyMissedTimes warning.
// concurrencyPolicy Forbid skips a start while a Job still runs, Replace deletes the running
// Jobs first, Allow runs them side by side; suspend stops new starts. Finished Jobs beyond
// successfulJobsHistoryLimit and failedJobsHistoryLimit are deleted, oldest first.
//
// lastScheduleTime and lastSuccessfulTime, which Kubernetes keeps in the CronJob's status,
// skiff keeps in a cluster CronJob of the same name (the record, annotated with the git
// object's UID), written in the same command as the Job it made. The Job's name makes each
// start idempotent: a leader that takes over at a tick finds the Job the old leader made (or
// makes it, if the old leader's command never committed) and never makes it twice. Plan asks
// to be run again just after the next start (Result.Requeue). The active Jobs are the
// CronJob's unfinished ones (WithStatus).

// nextScheduleDelta is added to the wait for the next start, so the plan runs just after it
// (Kubernetes' value).
const nextScheduleDelta = 100 * time.Millisecond

// tooManyMissed is how many missed starts Kubernetes tolerates before it warns.
const tooManyMissed = 100

// cronJobs runs the CronJob controller over every CronJob in git and drops the records of
// the ones that left git.
func (p *planner) cronJobs() {
	inGit := map[state.Key]bool{}
	for _, cj := range state.Typed[*batchv1.CronJob](p.s.Git.List("CronJob", "")) {
		inGit[state.KeyOf(cj)] = true
		p.syncCronJob(cj)
	}
	for _, rec := range state.Typed[*batchv1.CronJob](p.s.Cluster.List("CronJob", "")) {
		if rec.Annotations[AnnotationGitUID] != "" && !inGit[state.KeyOf(rec)] {
			p.deleteObject(rec)
		}
	}
}

// cronRecord returns the record of a git CronJob (nil when there is none).
func cronRecord(s *state.State, cj *batchv1.CronJob) *batchv1.CronJob {
	o, ok := s.Cluster.Get(state.KeyOf(cj))
	if !ok {
		return nil
	}
	if rec, ok := o.(*batchv1.CronJob); ok && rec.Annotations[AnnotationGitUID] == string(cj.UID) {
		return rec
	}
	return nil
}

// cronSchedule parses a CronJob's schedule in its time zone (Kubernetes' formatSchedule and
// cron.ParseStandard); the event says what is wrong when it cannot.
func cronSchedule(cj *batchv1.CronJob) (cron.Schedule, *Event) {
	spec := cj.Spec.Schedule
	if tz := cj.Spec.TimeZone; tz != nil && !strings.Contains(spec, "TZ") {
		if _, err := loadLocation(*tz); err != nil {
			return nil, &Event{Object: cj, Type: corev1.EventTypeWarning, Reason: "UnknownTimeZone",
				Message: fmt.Sprintf("invalid timeZone: %q: %s", *tz, err)}
		}
		spec = fmt.Sprintf("TZ=%s %s", *tz, spec)
	}
	sched, err := parseSchedule(spec)
	if err != nil {
		return nil, &Event{Object: cj, Type: corev1.EventTypeWarning, Reason: "UnparseableSchedule",
			Message: fmt.Sprintf("unparseable schedule: %q : %s", cj.Spec.Schedule, err)}
	}
	return sched, nil
}

// Parsed schedules and loaded time zones, kept: every plan looks at every CronJob, and
// loading a zone reads the zoneinfo database. Both are immutable once made.
var parsed struct {
	sync.Mutex
	schedules map[string]cron.Schedule
	zones     map[string]*time.Location
}

// maxParsed bounds the caches (schedules come from git: a handful).
const maxParsed = 256

func parseSchedule(spec string) (cron.Schedule, error) {
	parsed.Lock()
	defer parsed.Unlock()
	if s, ok := parsed.schedules[spec]; ok {
		return s, nil
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, err
	}
	if parsed.schedules == nil || len(parsed.schedules) >= maxParsed {
		parsed.schedules = map[string]cron.Schedule{}
	}
	parsed.schedules[spec] = s
	return s, nil
}

func loadLocation(name string) (*time.Location, error) {
	parsed.Lock()
	defer parsed.Unlock()
	if l, ok := parsed.zones[name]; ok {
		return l, nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	if parsed.zones == nil || len(parsed.zones) >= maxParsed {
		parsed.zones = map[string]*time.Location{}
	}
	parsed.zones[name] = l
	return l, nil
}

type missed int

const (
	noneMissed missed = iota
	fewMissed
	manyMissed
)

// mostRecentScheduleTime is Kubernetes' mostRecentScheduleTime: from the last start (or the
// CronJob's creation), and no earlier than startingDeadlineSeconds ago when withDeadline, the
// most recent start due by now (nil when none) and whether starts were missed.
func mostRecentScheduleTime(created time.Time, last *metav1.Time, deadline *int64, withDeadline bool, now time.Time, sched cron.Schedule) (time.Time, *time.Time, missed, error) {
	earliest := created
	if last != nil {
		earliest = last.Time
	}
	if withDeadline && deadline != nil {
		if d := now.Add(-time.Duration(*deadline) * time.Second); d.After(earliest) {
			earliest = d
		}
	}
	t1 := sched.Next(earliest)
	t2 := sched.Next(t1)
	if now.Before(t1) {
		return earliest, nil, noneMissed, nil
	}
	if now.Before(t2) {
		return earliest, &t1, noneMissed, nil
	}
	between := int64(t2.Sub(t1).Round(time.Second).Seconds())
	if between < 1 {
		return earliest, nil, noneMissed, fmt.Errorf("time difference between two schedules is less than 1 second")
	}
	n := int64(now.Sub(t1).Seconds())/between + 1
	var recent time.Time
	from := t1.Add(time.Duration((n-2)*between) * time.Second)
	for t := sched.Next(from); !t.After(now); t = sched.Next(t) {
		recent = t
	}
	m := fewMissed
	if n > tooManyMissed {
		m = manyMissed
	}
	if recent.IsZero() {
		return earliest, nil, m, nil
	}
	return earliest, &recent, m, nil
}

// cronJobName is the name of the Job of one start.
func cronJobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}

// cronSync is one CronJob's sync.
type cronSync struct {
	p      *planner
	cj     *batchv1.CronJob
	st     batchv1.CronJobStatus // lastScheduleTime and lastSuccessfulTime
	jobs   []*batchv1.Job        // the CronJob's Jobs, by name
	active []*batchv1.Job
}

func (p *planner) syncCronJob(cj *batchv1.CronJob) {
	c := &cronSync{p: p, cj: cj}
	rec := cronRecord(p.s, cj)
	if rec != nil {
		c.st.LastScheduleTime = rec.Status.LastScheduleTime.DeepCopy()
		c.st.LastSuccessfulTime = rec.Status.LastSuccessfulTime.DeepCopy()
	}
	for _, j := range p.sortedJobs() {
		if j.Namespace != cj.Namespace || controllerUID(j) != cj.UID {
			continue
		}
		c.jobs = append(c.jobs, j)
		switch {
		case !jobFinished(j):
			c.active = append(c.active, j)
		case hasJobCondition(j, batchv1.JobComplete) && j.Status.CompletionTime != nil &&
			(c.st.LastSuccessfulTime == nil || j.Status.CompletionTime.After(c.st.LastSuccessfulTime.Time)):
			c.st.LastSuccessfulTime = ptrTo(metav1.NewTime(j.Status.CompletionTime.UTC()))
		}
	}
	c.start()
	c.cleanupFinishedJobs()
	c.writeRecord(rec)
}

// start makes the Job of the most recent start due, if it should (Kubernetes' syncCronJob),
// and asks for a plan at the next start.
func (c *cronSync) start() {
	p, cj := c.p, c.cj
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return
	}
	sched, ev := cronSchedule(cj)
	if ev != nil {
		p.events = append(p.events, *ev)
		return
	}
	defer func() { c.requeue(sched) }()
	_, scheduled, m, err := mostRecentScheduleTime(cj.CreationTimestamp.Time, c.st.LastScheduleTime, cj.Spec.StartingDeadlineSeconds, true, p.now, sched)
	if err != nil {
		p.event(cj, corev1.EventTypeWarning, "InvalidSchedule", fmt.Sprintf("invalid schedule: %s : %s", cj.Spec.Schedule, err))
		return
	}
	if m == manyMissed {
		p.event(cj, corev1.EventTypeWarning, "TooManyMissedTimes",
			"too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
	}
	if scheduled == nil {
		return
	}
	if sd := cj.Spec.StartingDeadlineSeconds; sd != nil && scheduled.Add(time.Duration(*sd)*time.Second).Before(p.now) {
		p.event(cj, corev1.EventTypeWarning, "MissSchedule",
			"Missed scheduled time to start a job: "+scheduled.UTC().Format(time.RFC1123Z))
		return
	}
	at := metav1.NewTime(scheduled.UTC())
	name := cronJobName(cj, *scheduled)
	if existing := p.jobView()[state.Key{Kind: "Job", Namespace: cj.Namespace, Name: name}]; existing != nil || at.Equal(c.st.LastScheduleTime) {
		// Already started: by this leader, or by one whose record this plan does not have.
		if existing != nil && controllerUID(existing) == cj.UID && (c.st.LastScheduleTime == nil || c.st.LastScheduleTime.Before(&at)) {
			c.st.LastScheduleTime = &at
		}
		return
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(c.active) > 0 {
			p.event(cj, corev1.EventTypeNormal, "JobAlreadyActive",
				"Not starting job because prior execution is running and concurrency policy is Forbid")
			return
		}
	case batchv1.ReplaceConcurrent:
		for _, j := range c.active {
			p.removeJob(j)
			p.event(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job "+j.Name)
		}
		c.active = nil
	}
	j := p.newJob(c.jobMeta(name, *scheduled), &cj.Spec.JobTemplate.Spec)
	p.putJob(j)
	p.event(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job "+j.Name)
	c.active = append(c.active, j)
	c.st.LastScheduleTime = &at
}

// jobMeta is the metadata of the Job of one start (Kubernetes' getJobFromTemplate2).
func (c *cronSync) jobMeta(name string, scheduled time.Time) metav1.ObjectMeta {
	t := &c.cj.Spec.JobTemplate
	ann := maps.Clone(t.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	loc := time.UTC
	if tz := c.cj.Spec.TimeZone; tz != nil {
		if l, err := loadLocation(*tz); err == nil {
			loc = l
		}
	}
	ann[batchv1.CronJobScheduledTimestampAnnotation] = scheduled.In(loc).Format(time.RFC3339)
	return metav1.ObjectMeta{
		Name: name, Namespace: c.cj.Namespace, Labels: maps.Clone(t.Labels), Annotations: ann,
		OwnerReferences: []metav1.OwnerReference{controllerRef(c.cj, "batch/v1", "CronJob")},
	}
}

// requeue asks for a plan just after the next start (Kubernetes' nextScheduleTimeDuration).
func (c *cronSync) requeue(sched cron.Schedule) {
	p := c.p
	earliest, recent, m, err := mostRecentScheduleTime(c.cj.CreationTimestamp.Time, c.st.LastScheduleTime, nil, false, p.now, sched)
	from := p.now
	switch {
	case err != nil:
	case recent != nil:
		from = *recent
	case m == noneMissed:
		from = earliest
	}
	if next := sched.Next(from); !next.IsZero() {
		p.after(next.Add(nextScheduleDelta).Sub(p.now))
	}
}

// cleanupFinishedJobs deletes the oldest finished Jobs beyond the history limits.
func (c *cronSync) cleanupFinishedJobs() {
	var ok, failed []*batchv1.Job
	for _, j := range c.jobs {
		if c.p.jobView()[state.KeyOf(j)] == nil {
			continue // deleted by this sync
		}
		switch {
		case hasJobCondition(j, batchv1.JobComplete):
			ok = append(ok, j)
		case hasJobCondition(j, batchv1.JobFailed):
			failed = append(failed, j)
		}
	}
	c.removeOldest(ok, c.cj.Spec.SuccessfulJobsHistoryLimit)
	c.removeOldest(failed, c.cj.Spec.FailedJobsHistoryLimit)
}

func (c *cronSync) removeOldest(jobs []*batchv1.Job, limit *int32) {
	if limit == nil || len(jobs) <= int(*limit) {
		return
	}
	slices.SortStableFunc(jobs, byJobStartTime)
	for _, j := range jobs[:len(jobs)-int(*limit)] {
		c.p.removeJob(j)
		c.p.event(c.cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job "+j.Name)
	}
}

// byJobStartTime orders Jobs by start time (not started last), then by name.
func byJobStartTime(a, b *batchv1.Job) int {
	sa, sb := a.Status.StartTime, b.Status.StartTime
	switch {
	case sa == nil && sb != nil:
		return 1
	case sa != nil && sb == nil:
		return -1
	case sa != nil && !sa.Equal(sb):
		if sa.Before(sb) {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// writeRecord writes the record when a schedule time changed.
func (c *cronSync) writeRecord(old *batchv1.CronJob) {
	st := c.st
	if old == nil && st.LastScheduleTime == nil && st.LastSuccessfulTime == nil {
		return
	}
	if old != nil && timesEqual(old.Status.LastScheduleTime, st.LastScheduleTime) &&
		timesEqual(old.Status.LastSuccessfulTime, st.LastSuccessfulTime) {
		return
	}
	rec := &batchv1.CronJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{
			Name: c.cj.Name, Namespace: c.cj.Namespace,
			Annotations: map[string]string{AnnotationGitUID: string(c.cj.UID)},
		},
		Status: st,
	}
	if old == nil {
		c.p.identify(&rec.ObjectMeta, nil)
	} else {
		c.p.identify(&rec.ObjectMeta, &old.ObjectMeta)
	}
	c.p.put[state.KeyOf(rec)] = rec
}

func timesEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// cronJobWithStatus returns a CronJob with its record's schedule times and its unfinished
// Jobs as active.
func cronJobWithStatus(s *state.State, cj *batchv1.CronJob) *batchv1.CronJob {
	out := cj.DeepCopy()
	out.Status = batchv1.CronJobStatus{}
	if rec := cronRecord(s, cj); rec != nil {
		out.Status.LastScheduleTime = rec.Status.LastScheduleTime.DeepCopy()
		out.Status.LastSuccessfulTime = rec.Status.LastSuccessfulTime.DeepCopy()
	}
	for _, j := range state.Typed[*batchv1.Job](s.Cluster.List("Job", cj.Namespace)) {
		if controllerUID(j) == cj.UID && !jobFinished(j) {
			out.Status.Active = append(out.Status.Active, corev1.ObjectReference{
				APIVersion: "batch/v1", Kind: "Job", Namespace: j.Namespace, Name: j.Name, UID: j.UID,
				ResourceVersion: j.ResourceVersion,
			})
		}
	}
	return out
}
