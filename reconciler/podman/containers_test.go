package podman_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/reconciler"
)

// TestContainerConfig: container configurations → what the process sees inside.
func TestContainerConfig(t *testing.T) {
	e := setup(t)
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "app.conf"), []byte("color=blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		cfg   reconciler.ContainerConfig
		check func(t *testing.T, e *env, c reconciler.Container)
	}{
		{
			name: "args alone keep the image ENTRYPOINT",
			cfg:  reconciler.ContainerConfig{Args: []string{"--some-arg"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				cmdlines := e.sh(c.ID, `for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <$f; echo; done`)
				if !strings.Contains(cmdlines, "/demo --some-arg \n") {
					t.Errorf("processes = %q; want /demo --some-arg", cmdlines)
				}
			},
		},
		{
			name: "command replaces ENTRYPOINT and CMD",
			cfg:  reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "echo started as $0 with $#; exec sleep 600"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				e.waitLogs(c.ID, "started as sh with 0\n")
			},
		},
		{
			name: "command and args",
			cfg:  reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "echo args: $0 $1; exec sleep 600"}, Args: []string{"a", "b"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				e.waitLogs(c.ID, "args: a b\n")
			},
		},
		{
			name: "working dir",
			cfg:  reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "pwd; exec sleep 600"}, WorkingDir: "/data"},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				e.waitLogs(c.ID, "/data\n")
			},
		},
		{
			name: "env",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, Env: []string{"GREETING=hello world", "EMPTY=", "EQ=a=b"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				if got := e.sh(c.ID, `echo "$GREETING|$EMPTY|${EMPTY+set}|$EQ"`); got != "hello world||set|a=b\n" {
					t.Errorf("env = %q; want %q", got, "hello world||set|a=b\n")
				}
			},
		},
		{
			name: "bind mounts read-only and read-write",
			cfg: reconciler.ContainerConfig{Entrypoint: sleeper, Mounts: []reconciler.Mount{
				{Source: ro, Destination: "/etc/app", ReadOnly: true},
				{Type: "bind", Source: rw, Destination: "/out"},
			}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				if got := e.sh(c.ID, "cat /etc/app/app.conf"); got != "color=blue\n" {
					t.Errorf("cat /etc/app/app.conf = %q", got)
				}
				if code, out := e.exec(c.ID, "touch", "/etc/app/x"); code == 0 {
					t.Errorf("touch in a read-only mount succeeded: %s", out)
				}
				e.sh(c.ID, "echo written > /out/result")
				if b, err := os.ReadFile(filepath.Join(rw, "result")); err != nil || string(b) != "written\n" {
					t.Errorf("host sees %q, %v; want written", b, err)
				}
			},
		},
		{
			name: "tmpfs with a size",
			cfg: reconciler.ContainerConfig{Entrypoint: sleeper, Mounts: []reconciler.Mount{
				{Type: "tmpfs", Destination: "/scratch", SizeBytes: 8 << 20},
			}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				line := e.sh(c.ID, "grep ' /scratch ' /proc/mounts")
				if !strings.HasPrefix(line, "tmpfs /scratch tmpfs rw") || !strings.Contains(line, "size=8192k") {
					t.Errorf("/proc/mounts: %q; want tmpfs rw size=8192k", line)
				}
			},
		},
		{
			name: "memory and cpu limits in the cgroup",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, MemoryLimit: 64 << 20, CPULimit: 500, CPURequest: 250},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				mem := e.sh(c.ID, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
				if strings.TrimSpace(mem) != "67108864" {
					t.Errorf("memory limit in cgroup = %q; want 67108864", mem)
				}
				cpu := e.sh(c.ID, "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; else "+
					"d=$(ls -d /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup/cpu 2>/dev/null | head -1); "+
					"echo $(cat $d/cpu.cfs_quota_us) $(cat $d/cpu.cfs_period_us) shares=$(cat $d/cpu.shares); fi")
				if !strings.HasPrefix(cpu, "50000 100000") {
					t.Errorf("cpu quota in cgroup = %q; want 50000 100000", cpu)
				}
				if strings.Contains(cpu, "shares=") && !strings.Contains(cpu, "shares=256") {
					t.Errorf("cpu shares in cgroup = %q; want 256", cpu)
				}
			},
		},
		{
			name: "user",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, User: "65534:65534"},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				if got := e.sh(c.ID, "id -u; id -g"); got != "65534\n65534\n" {
					t.Errorf("id = %q; want 65534 65534", got)
				}
			},
		},
		{
			name: "read-only root filesystem",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, ReadOnlyRootFS: true},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				for _, p := range []string{"/x", "/tmp/x"} {
					if code, out := e.exec(c.ID, "touch", p); code == 0 {
						t.Errorf("touch %s on a read-only root succeeded: %s", p, out)
					}
				}
			},
		},
		{
			name: "capabilities added and dropped",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"CHOWN"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				caps := capEff(t, e, c.ID)
				if caps&(1<<12) == 0 || caps&1 != 0 {
					t.Errorf("CapEff = %#x; want NET_ADMIN (bit 12) and no CHOWN (bit 0)", caps)
				}
			},
		},
		{
			name: "privileged",
			cfg:  reconciler.ContainerConfig{Entrypoint: sleeper, Privileged: true},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				if caps := capEff(t, e, c.ID); caps&(1<<21) == 0 {
					t.Errorf("CapEff = %#x; want SYS_ADMIN (bit 21)", caps)
				}
			},
		},
		{
			name: "tty",
			cfg:  reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "[ -t 1 ] && echo is a tty; exec sleep 600"}, TTY: true, Stdin: true},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				e.waitLogs(c.ID, "is a tty")
			},
		},
		{
			name: "labels",
			cfg: reconciler.ContainerConfig{Entrypoint: sleeper, Attempt: 3, Init: true, SpecHash: "abc123",
				Labels: map[string]string{"app": "web", reconciler.LabelManaged: "false"}},
			check: func(t *testing.T, e *env, c reconciler.Container) {
				got, err := e.rt.Container(e.ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != "c" || got.Attempt%100 != 3 || !got.Init || got.SpecHash != "abc123" || got.PodID == "" {
					t.Errorf("Container() = %+v; want name c, attempt 3, init, hash abc123", got)
				}
				for k, v := range map[string]string{
					"app": "web", reconciler.LabelManaged: "true", reconciler.LabelNode: node,
					reconciler.LabelNamespace: "test", reconciler.LabelContainer: "c", reconciler.LabelAttempt: strconv.Itoa(got.Attempt),
					reconciler.LabelInit: "true", reconciler.LabelSpecHash: "abc123",
				} {
					if got.Labels[k] != v {
						t.Errorf("label %s = %q; want %q", k, got.Labels[k], v)
					}
				}
				if got.Labels[reconciler.LabelPodUID] == "" || got.Labels[reconciler.LabelPodName] == "" {
					t.Errorf("labels %v lack the pod UID or name", got.Labels)
				}
			},
		},
	}
	// One pod for all cases (a pod creation costs more than a container's): only one case
	// runs the demo server, the others sleep.
	p := e.pod(reconciler.PodConfig{})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.with(t)
			cfg := tc.cfg
			cfg.Name = "c"
			cfg.Attempt += 100 * i // a unique container name in the shared pod
			c := e.run(p, cfg)
			t.Cleanup(func() { _ = e.rt.RemoveContainer(context.Background(), c.ID) })
			tc.check(t, e, c)
		})
	}
}

func capEff(t *testing.T, e *env, id string) uint64 {
	t.Helper()
	out := e.sh(id, "grep CapEff /proc/1/status")
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("CapEff line %q", out)
	}
	v, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestExitStates: how containers end → the state the runtime reports.
func TestExitStates(t *testing.T) {
	e := setup(t)
	cases := []struct {
		name     string
		cfg      reconciler.ContainerConfig
		trigger  string // run in the container once it runs, "" for none
		wantCode int
		wantOOM  bool
	}{
		{name: "exit 0", cfg: reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "exit 0"}}},
		{name: "exit 3", cfg: reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "exit 3"}}, wantCode: 3},
		{name: "killed by SIGKILL", cfg: reconciler.ContainerConfig{Entrypoint: []string{"sh", "-c", "kill -9 $$"}}, wantCode: 137},
		{name: "demo /exit?code=42", trigger: "wget -qO- http://127.0.0.1:8080/exit?code=42 || true", wantCode: 42},
		{
			name:     "OOM killed over the memory limit",
			cfg:      reconciler.ContainerConfig{MemoryLimit: 32 << 20},
			trigger:  "wget -qO- http://127.0.0.1:8080/alloc?mb=100 || true",
			wantCode: 137, wantOOM: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.with(t)
			p := e.pod(reconciler.PodConfig{})
			c := e.run(p, tc.cfg)
			if tc.trigger != "" {
				e.fetch(c.ID, "http://127.0.0.1:8080/healthz")
				// The container may stop under the exec: its outcome does not matter.
				_, _ = e.rt.Exec(e.ctx, c.ID, reconciler.ExecOptions{Cmd: []string{"sh", "-c", tc.trigger}})
			}
			got := e.waitExited(c.ID)
			if got.ExitCode != tc.wantCode || got.OOMKilled != tc.wantOOM {
				t.Errorf("exited with code %d, OOMKilled %v; want %d, %v", got.ExitCode, got.OOMKilled, tc.wantCode, tc.wantOOM)
			}
			// Podman records StartedAt after runc returns: a process that exits at once can
			// finish a moment "before" it started.
			if got.StartedAt.IsZero() || got.FinishedAt.Before(got.StartedAt.Add(-time.Second)) {
				t.Errorf("started %v, finished %v", got.StartedAt, got.FinishedAt)
			}
			// Pods() must agree with Container().
			for _, lc := range findPod(t, e, got.Labels[reconciler.LabelPodUID]).Containers {
				if lc.ID == c.ID && (lc.State != got.State || lc.ExitCode != got.ExitCode || lc.OOMKilled != got.OOMKilled) {
					t.Errorf("Pods() has %s %d oom=%v; Container() %s %d oom=%v", lc.State, lc.ExitCode, lc.OOMKilled, got.State, got.ExitCode, got.OOMKilled)
				}
			}
			// An exited container starts again (the node loop's restart).
			if err := e.rt.StartContainer(e.ctx, c.ID); err != nil {
				t.Errorf("StartContainer(exited) = %v", err)
			}
		})
	}
}

// TestStartError: a command that does not exist fails with a reason. With catatonit as
// PID 1 the start itself succeeds; the container then exits non-zero at once and its log
// says why.
func TestStartError(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := e.pod(reconciler.PodConfig{})
	c := e.create(p, reconciler.ContainerConfig{Entrypoint: []string{"/no/such/binary"}})
	if err := e.rt.StartContainer(e.ctx, c.ID); err != nil {
		if !strings.Contains(err.Error(), "/no/such/binary") {
			t.Errorf("StartContainer error %q does not name the binary", err)
		}
		return
	}
	got := e.waitExited(c.ID)
	logs := e.logs(c.ID, reconciler.LogOptions{})
	if got.ExitCode == 0 || !strings.Contains(logs+got.Error, "No such file or directory") {
		t.Errorf("missing binary: exit %d, Error %q, logs %q; want non-zero and the reason", got.ExitCode, got.Error, logs)
	}
}

// TestCreateContainerAgain: creating the same attempt twice replaces a leftover that is
// not running, and refuses to replace a running one; a missing image is ErrImageNotFound.
func TestCreateContainerAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := e.pod(reconciler.PodConfig{})
	cfg := reconciler.ContainerConfig{Name: "again", Entrypoint: sleeper, Image: e.img}
	first := e.create(p, cfg)
	second, err := e.rt.CreateContainer(e.ctx, p.ID, cfg)
	if err != nil || second.ID == first.ID {
		t.Fatalf("CreateContainer over a created leftover = %v, %v; want a new container", second.ID, err)
	}
	if _, err := e.rt.Container(e.ctx, first.ID); !errors.Is(err, reconciler.ErrNotFound) {
		t.Errorf("leftover %s still there: %v", first.ID, err)
	}
	if err := e.rt.StartContainer(e.ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.CreateContainer(e.ctx, p.ID, cfg); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("CreateContainer over a running container = %v; want a name conflict", err)
	}
	cfg.Name, cfg.Image = "noimage", "localhost/skiff/no-such-image:1"
	if _, err := e.rt.CreateContainer(e.ctx, p.ID, cfg); !errors.Is(err, reconciler.ErrImageNotFound) {
		t.Errorf("CreateContainer with a missing image = %v; want ErrImageNotFound", err)
	}
}

// TestStop: stop signal and grace period → how long a stop takes and how it ends.
func TestStop(t *testing.T) {
	e := setup(t)
	// Maxima leave room for a loaded machine; what they tell apart is a prompt stop from
	// one that waits out the 10 s grace period.
	trapUSR1 := []string{"sh", "-c", `trap "echo got USR1; exit 7" USR1; while true; do sleep 0.1; done`}
	cases := []struct {
		name     string
		cfg      reconciler.ContainerConfig
		grace    time.Duration
		min, max time.Duration
		wantCode int
		viaPod   bool // RemovePod instead of StopContainer
	}{
		{name: "SIGTERM stops the demo promptly", grace: 10 * time.Second, max: 5 * time.Second},
		{name: "ignored SIGTERM: killed after the grace period", cfg: reconciler.ContainerConfig{Env: []string{"IGNORE_SIGTERM=1"}},
			grace: 2 * time.Second, min: 2 * time.Second, max: 8 * time.Second, wantCode: 137},
		{name: "grace 0 kills at once", cfg: reconciler.ContainerConfig{Env: []string{"IGNORE_SIGTERM=1"}},
			max: 4 * time.Second, wantCode: 137},
		{name: "stop signal", cfg: reconciler.ContainerConfig{Entrypoint: trapUSR1, StopSignal: "SIGUSR1"},
			grace: 10 * time.Second, max: 5 * time.Second, wantCode: 7},
		{name: "RemovePod honours the grace period", cfg: reconciler.ContainerConfig{Env: []string{"IGNORE_SIGTERM=1"}},
			grace: 2 * time.Second, min: 2 * time.Second, max: 9 * time.Second, viaPod: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.with(t)
			p := e.pod(reconciler.PodConfig{})
			c := e.run(p, tc.cfg)
			if tc.cfg.Entrypoint == nil {
				e.fetch(c.ID, "http://127.0.0.1:8080/healthz") // signal handlers installed
			}
			start := time.Now()
			var err error
			if tc.viaPod {
				err = e.rt.RemovePod(e.ctx, p.ID, tc.grace)
			} else {
				err = e.rt.StopContainer(e.ctx, c.ID, tc.grace)
			}
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if took < tc.min || took > tc.max {
				t.Errorf("stop took %v; want between %v and %v", took, tc.min, tc.max)
			}
			if tc.viaPod {
				return
			}
			got, err := e.rt.Container(e.ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != reconciler.StateExited || got.ExitCode != tc.wantCode {
				t.Errorf("after stop: %s, code %d; want exited, %d", got.State, got.ExitCode, tc.wantCode)
			}
			if err := e.rt.StopContainer(e.ctx, c.ID, 0); err != nil {
				t.Errorf("StopContainer(stopped) = %v; want nil", err)
			}
		})
	}
}

// TestLogs: output of a container that wrote five lines to each stream.
func TestLogs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := e.pod(reconciler.PodConfig{})
	script := "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
	done := e.run(p, reconciler.ContainerConfig{Name: "done", Entrypoint: []string{"sh", "-c", script}})
	e.waitExited(done.ID)

	all := strings.Split(strings.TrimSuffix(e.logs(done.ID, reconciler.LogOptions{}), "\n"), "\n")
	cases := []struct {
		opts      reconciler.LogOptions
		wantLines int
		check     func(lines []string) bool
	}{
		{reconciler.LogOptions{}, 10, func(l []string) bool {
			return inOrder(l, "out1", "out2", "out3", "out4", "out5") && inOrder(l, "err1", "err5")
		}},
		{reconciler.LogOptions{TailLines: 2}, 2, func(l []string) bool { return len(all) == 10 && l[0] == all[8] && l[1] == all[9] }},
		{reconciler.LogOptions{Timestamps: true}, 10, func(l []string) bool {
			for _, line := range l {
				ts, _, _ := strings.Cut(line, " ")
				if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
					return false
				}
			}
			return true
		}},
		{reconciler.LogOptions{Since: time.Now().Add(time.Hour)}, 0, func([]string) bool { return true }},
		{reconciler.LogOptions{Follow: true}, 10, func([]string) bool { return true }}, // returns: exited
	}
	for _, tc := range cases {
		out := e.logs(done.ID, tc.opts)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out == "" {
			lines = nil
		}
		if len(lines) != tc.wantLines || !tc.check(lines) {
			t.Errorf("Logs(%+v) = %q; want %d matching lines", tc.opts, out, tc.wantLines)
		}
	}

	// Follow streams a running container's output and returns when it exits.
	live := e.run(p, reconciler.ContainerConfig{Name: "live", Entrypoint: []string{"sh", "-c", "echo first; sleep 1; echo second"}})
	var out bytes.Buffer
	start := time.Now()
	if err := e.rt.Logs(e.ctx, live.ID, reconciler.LogOptions{Follow: true}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "first\nsecond\n" || time.Since(start) > 10*time.Second {
		t.Errorf("Logs(follow) = %q after %v; want first, second when the container exits", out.String(), time.Since(start))
	}
}

func inOrder(lines []string, want ...string) bool {
	i := 0
	for _, l := range lines {
		if i < len(want) && l == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestExec: commands run in a container → exit code and output streams.
func TestExec(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := e.pod(reconciler.PodConfig{})
	c := e.run(p, reconciler.ContainerConfig{Entrypoint: sleeper, Env: []string{"FROM_CTR=ctr"}})
	cases := []struct {
		opts       reconciler.ExecOptions
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{reconciler.ExecOptions{Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}}, 5, "out\n", "err\n"},
		{reconciler.ExecOptions{Cmd: []string{"cat"}, Stdin: strings.NewReader("from stdin\n")}, 0, "from stdin\n", ""},
		{reconciler.ExecOptions{Cmd: []string{"sh", "-c", "echo $FROM_CTR $EXTRA"}, Env: []string{"EXTRA=x"}}, 0, "ctr x\n", ""},
		{reconciler.ExecOptions{Cmd: []string{"sh", "-c", "[ -t 1 ] && echo tty; echo e >&2"}, TTY: true}, 0, "tty\r\ne\r\n", ""},
		{reconciler.ExecOptions{Cmd: []string{"/no/such/binary"}}, 127, "", ""},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		tc.opts.Stdout, tc.opts.Stderr = &stdout, &stderr
		code, err := e.rt.Exec(e.ctx, c.ID, tc.opts)
		if err != nil {
			t.Errorf("Exec(%v): %v", tc.opts.Cmd, err)
			continue
		}
		if code != tc.wantCode || stdout.String() != tc.wantStdout || (tc.wantCode != 127 && stderr.String() != tc.wantStderr) {
			t.Errorf("Exec(%v) = %d, %q, %q; want %d, %q, %q", tc.opts.Cmd, code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
		}
	}
}
