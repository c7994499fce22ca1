package probe

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kind says which of a container's probes a Worker runs.
type Kind string

const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// State is a probe's verdict on its container.
type State string

const (
	Unknown State = "Unknown"
	Success State = "Success"
	Failure State = "Failure"
)

// Status is what a Worker currently says about its container.
type Status struct {
	Kind  Kind
	State State
	// Message says why the last attempt failed ("" when it succeeded). It may explain a
	// failure that has not yet reached failureThreshold.
	Message string
	// Since is when State last changed (when the worker was made, for the initial state).
	Since time.Time
	// Consecutive counts the attempts in a row that gave the last attempt's outcome.
	Consecutive int
}

// Clock is a Worker's time source; tests inject a fake one to drive the schedule.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Option configures a Worker.
type Option func(*Worker)

// WithClock makes a Worker schedule its attempts on c instead of the wall clock.
func WithClock(c Clock) Option { return func(w *Worker) { w.clock = c } }

// Worker runs one probe of one container on its schedule, as kubelet's probe worker does:
// the first attempt after initialDelaySeconds, then one every periodSeconds, each bounded by
// timeoutSeconds; successThreshold successes in a row make it Success, failureThreshold
// failures in a row make it Failure. It starts in Failure for readiness, Success for liveness
// and Unknown for startup.
//
// A liveness or startup worker stops probing once it reports Failure (the container is to be
// restarted; the caller starts a new worker for the new container), and a startup worker stops
// once it reports Success (the caller then starts the liveness and readiness workers).
type Worker struct {
	kind   Kind
	probe  *corev1.Probe
	target Target
	notify func(Status)
	clock  Clock

	mu       sync.Mutex
	status   Status
	reported bool // a result has been reported through notify
	lastOK   bool // outcome of the last counted attempt

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// NewWorker returns a worker for probe p of kind on t. notify, which may be nil, is called
// from the worker's goroutine with the first result and then on every change of State.
func NewWorker(kind Kind, p *corev1.Probe, t Target, notify func(Status), opts ...Option) *Worker {
	w := &Worker{kind: kind, probe: p, target: t, notify: notify, clock: realClock{}, done: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	initial := Unknown
	switch kind {
	case Readiness:
		initial = Failure
	case Liveness:
		initial = Success
	}
	w.status = Status{Kind: kind, State: initial, Since: w.clock.Now()}
	return w
}

// Start begins probing in the background until ctx ends or Stop is called. Calls after the
// first do nothing.
func (w *Worker) Start(ctx context.Context) {
	w.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(ctx)
		w.mu.Lock()
		w.cancel = cancel
		w.mu.Unlock()
		go w.run(ctx)
	})
}

// Stop ends probing and waits for an attempt in flight to return. Its result is discarded.
func (w *Worker) Stop() {
	started := true
	w.startOnce.Do(func() { started = false; close(w.done) })
	if !started {
		return
	}
	w.mu.Lock()
	cancel := w.cancel
	w.mu.Unlock()
	cancel()
	<-w.done
}

// Status returns the worker's current verdict.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Worker) run(ctx context.Context) {
	defer close(w.done)
	if !w.sleep(ctx, time.Duration(w.probe.InitialDelaySeconds)*time.Second) {
		return
	}
	period := seconds(w.probe.PeriodSeconds, 10)
	early := firstRetry // readiness: retry sooner until the container was first ready
	for {
		res := Run(ctx, w.probe, w.target)
		if ctx.Err() != nil {
			return // stopped mid-attempt: the result says nothing about the container
		}
		if !w.record(res) {
			return
		}
		wait := period
		if w.kind == Readiness && early > 0 {
			if res.Success {
				early = 0
			} else if early < period {
				wait, early = early, early*2
			}
		}
		if !w.sleep(ctx, wait) {
			return
		}
	}
}

// firstRetry is how soon a readiness probe that failed is retried while its container has
// never been ready (doubling up to periodSeconds). A container is not ready until its probe
// succeeds either way; kubelet waits a whole period (10 s by default) after a first attempt
// made before the app listens, skiff puts the pod in its Services as soon as it answers.
const firstRetry = 100 * time.Millisecond

func (w *Worker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.clock.After(d):
		return true
	}
}

// record counts one attempt, applies the thresholds and notifies. It reports whether the
// worker should keep probing.
func (w *Worker) record(res Result) bool {
	w.mu.Lock()
	w.status.Message = ""
	if !res.Success {
		w.status.Message = res.Message
	}
	if res.Err != nil {
		// The probe could not run: kubelet throws such a result away.
		w.mu.Unlock()
		return true
	}
	if w.status.Consecutive > 0 && res.Success == w.lastOK {
		w.status.Consecutive++
	} else {
		w.lastOK, w.status.Consecutive = res.Success, 1
	}
	next, threshold := Failure, w.probe.FailureThreshold
	if res.Success {
		next, threshold = Success, w.probe.SuccessThreshold
	}
	if threshold <= 0 {
		threshold = map[State]int32{Success: 1, Failure: 3}[next]
	}
	if w.status.Consecutive < int(threshold) {
		w.mu.Unlock()
		return true
	}
	changed := next != w.status.State
	if changed {
		w.status.State, w.status.Since = next, w.clock.Now()
	}
	report := changed || !w.reported
	w.reported = true
	st := w.status
	w.mu.Unlock()

	if report && w.notify != nil {
		w.notify(st)
	}
	switch {
	case w.kind == Startup && next == Success:
		return false
	case (w.kind == Liveness || w.kind == Startup) && next == Failure:
		return false
	}
	return true
}
