package fake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/reconciler"
	"github.com/skiffhq/skiff/reconciler/fake"
)

func TestEnsureImage(t *testing.T) {
	r := fake.New("present:1")
	r.AddPullable("registry/pullable:1")
	cases := []struct {
		image   string
		policy  reconciler.PullPolicy
		wantErr error
	}{
		{"present:1", reconciler.PullIfNotPresent, nil},
		{"present:1", reconciler.PullNever, nil},
		{"present:1", reconciler.PullAlways, nil},
		{"missing:1", reconciler.PullNever, reconciler.ErrImageNotFound},
		{"missing:1", reconciler.PullIfNotPresent, reconciler.ErrImageNotFound},
		{"registry/pullable:1", reconciler.PullNever, reconciler.ErrImageNotFound},
		{"registry/pullable:1", reconciler.PullIfNotPresent, nil},
	}
	for _, tc := range cases {
		id, err := r.EnsureImage(context.Background(), tc.image, tc.policy)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && id == "") {
			t.Errorf("EnsureImage(%s, %s) = %q, %v; want %v", tc.image, tc.policy, id, err, tc.wantErr)
		}
	}
	if !r.HasImage("registry/pullable:1") {
		t.Error("a pulled image is not present afterwards")
	}
}

// TestLifecycle walks one pod through what the node loop does, checking states, events
// and the recorded calls.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	r := fake.New("app:1")
	events, err := r.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.CreatePod(ctx, reconciler.PodConfig{UID: "u1", Namespace: "ns", Name: "web-0", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := r.CreatePod(ctx, reconciler.PodConfig{UID: "u1"})
	host, _ := r.CreatePod(ctx, reconciler.PodConfig{UID: "u2", HostNetwork: true})
	second, _ := r.CreatePod(ctx, reconciler.PodConfig{UID: "u3"})
	if p.IP != "10.88.0.2" || again.ID != p.ID || host.IP != "" || second.IP != "10.88.0.3" {
		t.Errorf("pod IPs %q, %q (host), %q; same UID again gave %s (want %s)", p.IP, host.IP, second.IP, again.ID, p.ID)
	}
	if _, err := r.CreateContainer(ctx, p.ID, reconciler.ContainerConfig{Name: "x", Image: "nope:1"}); !errors.Is(err, reconciler.ErrImageNotFound) {
		t.Errorf("CreateContainer with a missing image = %v; want ErrImageNotFound", err)
	}
	c, err := r.CreateContainer(ctx, p.ID, reconciler.ContainerConfig{Name: "app", Image: "app:1", Attempt: 2, SpecHash: "h"})
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name      string
		do        func() error
		wantState reconciler.ContainerState
		wantCode  int
		wantOOM   bool
		wantEv    []reconciler.EventKind
	}{
		{"created", func() error { return nil }, reconciler.StateCreated, 0, false, nil},
		{"start", func() error { return r.StartContainer(ctx, c.ID) }, reconciler.StateRunning, 0, false, []reconciler.EventKind{reconciler.EventStarted}},
		{"exit 3", func() error { return r.Exit(c.ID, 3) }, reconciler.StateExited, 3, false, []reconciler.EventKind{reconciler.EventDied}},
		{"exit again fails", func() error {
			if r.Exit(c.ID, 1) == nil {
				return errors.New("Exit of an exited container succeeded")
			}
			return nil
		}, reconciler.StateExited, 3, false, nil},
		{"restart", func() error { return r.StartContainer(ctx, c.ID) }, reconciler.StateRunning, 0, false, []reconciler.EventKind{reconciler.EventStarted}},
		{"OOM", func() error { return r.OOM(c.ID) }, reconciler.StateExited, 137, true, []reconciler.EventKind{reconciler.EventOOM, reconciler.EventDied}},
		{"start and stop", func() error {
			if err := r.StartContainer(ctx, c.ID); err != nil {
				return err
			}
			return r.StopContainer(ctx, c.ID, time.Second)
		}, reconciler.StateExited, 0, false, []reconciler.EventKind{reconciler.EventStarted, reconciler.EventDied}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := r.Container(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != st.wantState || got.ExitCode != st.wantCode || got.OOMKilled != st.wantOOM {
			t.Errorf("%s: %s code %d oom %v; want %s %d %v", st.name, got.State, got.ExitCode, got.OOMKilled, st.wantState, st.wantCode, st.wantOOM)
		}
		for _, want := range st.wantEv {
			select {
			case ev := <-events:
				if ev.Kind != want || ev.ContainerID != c.ID || ev.PodUID != "u1" {
					t.Errorf("%s: event %+v; want %s of %s in u1", st.name, ev, want, c.ID)
				}
			default:
				t.Errorf("%s: no %s event", st.name, want)
			}
		}
	}

	ps, _ := r.Pods(ctx)
	if len(ps) != 3 || len(ps[0].Containers) != 1 || ps[0].Containers[0].Labels[reconciler.LabelAttempt] != "2" {
		t.Errorf("Pods() = %+v; want 3 pods, the first with its one container (attempt 2)", ps)
	}
	if found, ok := r.Find("u1", "app"); !ok || found.ID != c.ID {
		t.Errorf("Find(u1, app) = %v, %v", found.ID, ok)
	}
	if err := r.RemovePod(ctx, p.ID, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Container(ctx, c.ID); !errors.Is(err, reconciler.ErrNotFound) {
		t.Errorf("Container after RemovePod = %v; want ErrNotFound", err)
	}
	stops := r.Calls("StopContainer", "RemovePod")
	if len(stops) != 2 || stops[0].Arg != time.Second || stops[1].Arg != 2*time.Second {
		t.Errorf("recorded stops = %+v; want StopContainer 1s then RemovePod 2s", stops)
	}
}

func TestInjectedErrors(t *testing.T) {
	ctx := context.Background()
	r := fake.New("app:1")
	boom := errors.New("boom")
	r.FailNext("CreatePod", boom)
	if _, err := r.CreatePod(ctx, reconciler.PodConfig{UID: "u"}); !errors.Is(err, boom) {
		t.Errorf("first CreatePod = %v; want boom", err)
	}
	if _, err := r.CreatePod(ctx, reconciler.PodConfig{UID: "u"}); err != nil {
		t.Errorf("second CreatePod = %v; want nil (FailNext is one call)", err)
	}
	r.Fail("Pods", boom)
	for i := 0; i < 2; i++ {
		if _, err := r.Pods(ctx); !errors.Is(err, boom) {
			t.Errorf("Pods #%d = %v; want boom until cleared", i, err)
		}
	}
	r.Fail("Pods", nil)
	if _, err := r.Pods(ctx); err != nil {
		t.Errorf("Pods after clearing = %v", err)
	}
}

func TestExecAndLogs(t *testing.T) {
	ctx := context.Background()
	r := fake.New("app:1")
	p, _ := r.CreatePod(ctx, reconciler.PodConfig{UID: "u"})
	c, _ := r.CreateContainer(ctx, p.ID, reconciler.ContainerConfig{Name: "app", Image: "app:1"})
	if _, err := r.Exec(ctx, c.ID, reconciler.ExecOptions{Cmd: []string{"true"}}); err == nil {
		t.Error("Exec in a created container succeeded; want an error")
	}
	_ = r.StartContainer(ctx, c.ID)
	r.SetExec(func(c reconciler.Container, o reconciler.ExecOptions) (int, error) {
		fmt.Fprintf(o.Stdout, "%s ran %v", c.Name, o.Cmd)
		return 4, nil
	})
	var out bytes.Buffer
	code, err := r.Exec(ctx, c.ID, reconciler.ExecOptions{Cmd: []string{"probe"}, Stdout: &out})
	if code != 4 || err != nil || out.String() != "app ran [probe]" {
		t.Errorf("Exec = %d, %v, %q", code, err, out.String())
	}

	r.WriteLog(c.ID, "one\n")
	var logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- r.Logs(ctx, c.ID, reconciler.LogOptions{Follow: true}, &logs) }()
	r.WriteLog(c.ID, "two\n")
	deadline := time.Now().Add(5 * time.Second)
	for logs.String() != "one\ntwo\n" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = r.Exit(c.ID, 0)
	select {
	case err := <-done:
		if err != nil || logs.String() != "one\ntwo\n" {
			t.Errorf("Logs(follow) = %q, %v; want one, two", logs.String(), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs(follow) did not return after the container exited")
	}
}

func TestEventsClose(t *testing.T) {
	r := fake.New()
	ctx, cancel := context.WithCancel(context.Background())
	a, _ := r.Events(ctx)
	b, _ := r.Events(context.Background())
	cancel()
	r.BreakEvents()
	for name, ch := range map[string]<-chan reconciler.Event{"cancelled": a, "broken": b} {
		select {
		case _, ok := <-ch:
			if ok {
				t.Errorf("%s subscription delivered an event; want closed", name)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s subscription not closed", name)
		}
	}
}

// TestConcurrent: the runtime is safe for concurrent use (run with -race).
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	r := fake.New("app:1")
	ev, _ := r.Events(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _ := r.CreatePod(ctx, reconciler.PodConfig{UID: fmt.Sprint("u", i)})
			c, _ := r.CreateContainer(ctx, p.ID, reconciler.ContainerConfig{Name: "app", Image: "app:1"})
			_ = r.StartContainer(ctx, c.ID)
			_, _ = r.Pods(ctx)
			_ = r.Exit(c.ID, 0)
			_ = r.RemovePod(ctx, p.ID, 0)
		}()
	}
	wg.Wait()
	if ps, _ := r.Pods(ctx); len(ps) != 0 {
		t.Errorf("%d pods left; want 0", len(ps))
	}
	if n := len(r.Calls("StartContainer")); n != 8 {
		t.Errorf("%d StartContainer calls recorded; want 8", n)
	}
	if len(ev) != 16 {
		t.Errorf("%d events; want 16 (8 started, 8 died)", len(ev))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
