package probe

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fakeClock hands out timers that fire only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []fakeTimer
	asked   chan time.Duration // every After call, in order
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, asked: make(chan time.Duration, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.pending = append(c.pending, fakeTimer{at: c.now.Add(d), ch: ch})
	c.asked <- d
	return ch
}

// fire moves the clock to the pending timer and fires it.
func (c *fakeClock) fire(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) != 1 {
		t.Fatalf("%d timers pending; want 1", len(c.pending))
	}
	tm := c.pending[0]
	c.pending = c.pending[:0]
	c.now = tm.at
	tm.ch <- tm.at
}

// waitAsk waits until the worker asks for a timer (reporting the duration) or finishes.
func (c *fakeClock) waitAsk(t *testing.T, w *Worker) (d time.Duration, finished bool) {
	t.Helper()
	select {
	case d := <-c.asked:
		return d, false
	case <-w.done:
		return 0, true
	case <-time.After(5 * time.Second):
		t.Fatal("worker neither asked for a timer nor finished within 5s")
		return 0, false
	}
}

// scripted is a container whose exec probe gives the next outcome of a script:
// "ok" exits 0, "fail" exits 1, "err" cannot run.
type scripted struct {
	mu    sync.Mutex
	steps []string
}

func (s *scripted) exec(ctx context.Context, _ []string) (int, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.steps) == 0 {
		return 0, nil, errors.New("script exhausted")
	}
	step := s.steps[0]
	s.steps = s.steps[1:]
	switch step {
	case "ok":
		return 0, nil, nil
	case "fail":
		return 1, []byte("unhealthy"), nil
	case "hang":
		<-ctx.Done()
		return -1, nil, ctx.Err()
	}
	return -1, nil, errors.New("container not running")
}

func TestWorkerThresholds(t *testing.T) {
	type note struct {
		State   State
		Attempt int // 1-based attempt that changed the state, whose time is Since; 0: unchanged since the start
	}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		kind          Kind
		delay, period int32
		success, fail int32
		script        []string
		initial       State
		notes         []note
		final         Status // Kind, Since are not compared
		finished      bool   // the worker stopped probing by itself after the script
	}{
		{
			name: "readiness starts failed, flips on one success and three failures", kind: Readiness, period: 10,
			script:  []string{"ok", "fail", "fail", "fail", "ok"},
			initial: Failure,
			notes:   []note{{Success, 1}, {Failure, 4}, {Success, 5}},
			final:   Status{State: Success, Consecutive: 1},
		},
		{
			name: "readiness first result reported although it is the initial state", kind: Readiness, period: 5,
			script:  []string{"fail", "fail", "fail", "fail"},
			initial: Failure,
			notes:   []note{{Failure, 0}},
			final:   Status{State: Failure, Message: `command ["check"] exited with 1: unhealthy`, Consecutive: 4},
		},
		{
			// waits: 100ms, 200ms, 400ms (not yet ready), then the period once it was ready
			name: "readiness retries sooner until the container is first ready", kind: Readiness, period: 10,
			script:  []string{"fail", "fail", "fail", "ok", "fail", "fail"},
			initial: Failure,
			notes:   []note{{Failure, 0}, {Success, 4}},
			final:   Status{State: Success, Message: `command ["check"] exited with 1: unhealthy`, Consecutive: 2},
		},
		{
			name: "readiness successThreshold 2 needs two in a row", kind: Readiness, period: 3, success: 2,
			script:  []string{"ok", "fail", "ok", "ok", "ok"},
			initial: Failure,
			notes:   []note{{Success, 4}},
			final:   Status{State: Success, Consecutive: 3},
		},
		{
			name: "initial delay before the first attempt", kind: Readiness, delay: 30, period: 7,
			script:  []string{"ok", "ok"},
			initial: Failure,
			notes:   []note{{Success, 1}},
			final:   Status{State: Success, Consecutive: 2},
		},
		{
			name: "liveness starts healthy and stops probing after failureThreshold", kind: Liveness, period: 10, fail: 2,
			script:   []string{"ok", "fail", "ok", "fail", "fail"},
			initial:  Success,
			notes:    []note{{Success, 1}, {Failure, 5}},
			final:    Status{State: Failure, Message: `command ["check"] exited with 1: unhealthy`, Consecutive: 2},
			finished: true,
		},
		{
			name: "liveness failureThreshold 1 restarts on the first failure", kind: Liveness, period: 1, fail: 1,
			script:   []string{"fail"},
			initial:  Success,
			notes:    []note{{Failure, 1}},
			final:    Status{State: Failure, Message: `command ["check"] exited with 1: unhealthy`, Consecutive: 1},
			finished: true,
		},
		{
			name: "startup unknown until success, then done", kind: Startup, period: 2, fail: 5,
			script:   []string{"fail", "fail", "ok"},
			initial:  Unknown,
			notes:    []note{{Success, 3}},
			final:    Status{State: Success, Consecutive: 1},
			finished: true,
		},
		{
			name: "startup gives up after failureThreshold", kind: Startup, period: 2, fail: 2,
			script:   []string{"fail", "fail"},
			initial:  Unknown,
			notes:    []note{{Failure, 2}},
			final:    Status{State: Failure, Message: `command ["check"] exited with 1: unhealthy`, Consecutive: 2},
			finished: true,
		},
		{
			name: "attempts that cannot run are not counted", kind: Liveness, period: 4, fail: 1,
			script:  []string{"err", "err", "ok", "err"},
			initial: Success,
			notes:   []note{{Success, 0}},
			final:   Status{State: Success, Message: `exec probe ["check"]: container not running`, Consecutive: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(start)
			sc := &scripted{steps: append([]string(nil), tc.script...)}
			p := &corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}},
				InitialDelaySeconds: tc.delay, PeriodSeconds: tc.period, SuccessThreshold: tc.success, FailureThreshold: tc.fail,
			}
			var mu sync.Mutex
			var got []Status
			w := NewWorker(tc.kind, p, Target{Exec: sc.exec}, func(s Status) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, s)
			}, WithClock(clock))
			if st := w.Status(); st.State != tc.initial || st.Kind != tc.kind || !st.Since.Equal(start) {
				t.Fatalf("initial Status() = %+v; want %s %s since %v", st, tc.kind, tc.initial, start)
			}
			w.Start(context.Background())
			defer w.Stop()

			period := time.Duration(tc.period) * time.Second
			if tc.delay > 0 {
				if d, _ := clock.waitAsk(t, w); d != time.Duration(tc.delay)*time.Second {
					t.Fatalf("first wait = %v; want initialDelaySeconds %ds", d, tc.delay)
				}
				clock.fire(t)
			}
			// Readiness retries sooner (100 ms doubling) until the container was first ready.
			early, elapsed, attemptAt := firstRetry, time.Duration(0), []time.Duration{}
			for i := range tc.script {
				attemptAt = append(attemptAt, elapsed)
				want := period
				if tc.kind == Readiness && early > 0 {
					if tc.script[i] == "ok" {
						early = 0
					} else if early < period {
						want, early = early, early*2
					}
				}
				d, finished := clock.waitAsk(t, w)
				if finished {
					if i != len(tc.script)-1 || !tc.finished {
						t.Fatalf("worker stopped after attempt %d of %d", i+1, len(tc.script))
					}
					break
				}
				if d != want {
					t.Fatalf("wait after attempt %d = %v; want %v", i+1, d, want)
				}
				elapsed += d
				if i == len(tc.script)-1 && tc.finished {
					t.Fatalf("worker still probing after attempt %d; want it stopped", i+1)
				}
				if i < len(tc.script)-1 {
					clock.fire(t)
				}
			}

			mu.Lock()
			defer mu.Unlock()
			if len(got) != len(tc.notes) {
				t.Fatalf("notified %+v; want %+v", got, tc.notes)
			}
			for i, n := range tc.notes {
				since := start
				if n.Attempt > 0 {
					since = start.Add(time.Duration(tc.delay)*time.Second + attemptAt[n.Attempt-1])
				}
				if got[i].State != n.State || got[i].Kind != tc.kind || !got[i].Since.Equal(since) {
					t.Errorf("notification %d = %+v; want %s since %v (attempt %d)", i, got[i], n.State, since, n.Attempt)
				}
			}
			st := w.Status()
			if st.State != tc.final.State || st.Message != tc.final.Message || st.Consecutive != tc.final.Consecutive {
				t.Errorf("final Status() = %+v; want %+v", st, tc.final)
			}
		})
	}
}

func TestWorkerStop(t *testing.T) {
	tests := []struct {
		name  string
		start bool
		steps []string
	}{
		{name: "stop before start", start: false},
		{name: "stop while waiting for the next period", start: true, steps: []string{"ok"}},
		{name: "stop during an attempt discards it", start: true, steps: []string{"hang"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(time.Unix(0, 0))
			sc := &scripted{steps: tc.steps}
			notified := make(chan Status, 10)
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}}, TimeoutSeconds: 60, PeriodSeconds: 1}
			w := NewWorker(Readiness, p, Target{Exec: sc.exec}, func(s Status) { notified <- s }, WithClock(clock))
			want := 0
			if tc.start {
				w.Start(context.Background())
				w.Start(context.Background()) // a second Start does nothing
				if tc.steps[0] == "ok" {
					want = 1
					clock.waitAsk(t, w)
				}
			}
			stopped := make(chan struct{})
			go func() { w.Stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("Stop did not return within 5s")
			}
			if len(notified) != want {
				t.Errorf("%d notifications after Stop; want %d", len(notified), want)
			}
			if st := w.Status(); (want == 1) != (st.State == Success) {
				t.Errorf("Status() after Stop = %+v", st)
			}
		})
	}
}

func TestWorkerRealClock(t *testing.T) {
	// One short run on the wall clock, against a real TCP listener, to check the default
	// clock wiring end to end.
	s := startServers(t)
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(s.tcpPort))}}}
	notified := make(chan Status, 1)
	w := NewWorker(Readiness, p, Target{PodIP: "127.0.0.1"}, func(st Status) { notified <- st })
	w.Start(context.Background())
	defer w.Stop()
	select {
	case st := <-notified:
		if st.State != Success {
			t.Errorf("first notification = %+v; want Success", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no notification within 5s; status %+v", w.Status())
	}
}
