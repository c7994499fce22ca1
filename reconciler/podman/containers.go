package podman

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containers/podman/v4/libpod/define"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	"github.com/containers/podman/v4/pkg/bindings/images"
	"github.com/containers/podman/v4/pkg/bindings/pods"
	"github.com/containers/podman/v4/pkg/domain/entities"
	"github.com/containers/podman/v4/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/reconciler"
)

const (
	cfsPeriod    = 100000           // µs, the kernel's default CFS period
	logSizeLimit = 10 * 1024 * 1024 // bytes of k8s-file log per container: SD cards wear out
)

// EnsureImage makes image present according to policy and returns its ID. With
// PullAlways a failed pull falls back to a local copy (edge nodes are often offline and
// load images locally); a missing image that cannot be pulled wraps ErrImageNotFound.
func (r *Runtime) EnsureImage(ctx context.Context, image string, policy reconciler.PullPolicy) (string, error) {
	c := r.ctx(ctx)
	local := func() (string, bool, error) {
		data, err := images.GetImage(c, image, nil)
		if isNotFound(err) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("inspect image %s: %w", image, err)
		}
		return data.ID, true, nil
	}
	if policy != reconciler.PullAlways {
		id, ok, err := local()
		if err != nil || ok {
			return id, err
		}
		if policy == reconciler.PullNever {
			return "", fmt.Errorf("image %s: %w: not present on the node and imagePullPolicy is Never", image, reconciler.ErrImageNotFound)
		}
	}
	_, pullErr := images.Pull(c, image, new(images.PullOptions).WithQuiet(true).WithPolicy("always"))
	if pullErr == nil && ctx.Err() != nil {
		pullErr = ctx.Err() // the binding returns no error when cancelled mid-stream
	}
	id, ok, err := local()
	if err != nil {
		return "", err
	}
	if ok {
		return id, nil
	}
	if pullErr == nil {
		pullErr = errors.New("pull reported success but the image is not present")
	}
	return "", fmt.Errorf("pull %s: %w: %s", image, reconciler.ErrImageNotFound, strings.TrimSpace(pullErr.Error()))
}

// ContainerName is the Podman name of one attempt of a Kubernetes container.
func ContainerName(podName, container string, attempt int) string {
	return sanitize(fmt.Sprintf("%s_%s_%d", podName, container, attempt))
}

// CreateContainer creates (does not start) a container in the sandbox podID.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg reconciler.ContainerConfig) (reconciler.Container, error) {
	c := r.ctx(ctx)
	meta, podName, err := r.podLabels(c, podID)
	if err != nil {
		return reconciler.Container{}, err
	}
	s, err := containerSpec(podID, podName, meta, cfg)
	if err != nil {
		return reconciler.Container{}, fmt.Errorf("container %s: %w", cfg.Name, err)
	}
	resp, err := containers.CreateWithSpec(c, s, nil)
	if err != nil && strings.Contains(err.Error(), "already in use") && r.removeStale(c, s.Name, podID) {
		resp, err = containers.CreateWithSpec(c, s, nil)
	}
	if err != nil {
		if msg := err.Error(); strings.Contains(msg, "no such image") || strings.Contains(msg, "image not known") {
			err = fmt.Errorf("%w: %v", reconciler.ErrImageNotFound, err)
		}
		return reconciler.Container{}, fmt.Errorf("create container %s in pod %s: %w", cfg.Name, podName, err)
	}
	r.markManaged(resp.ID)
	return r.Container(ctx, resp.ID)
}

// removeStale removes a container left over with the name a new one needs: a skiff
// container of the same pod that is not running (an attempt whose creation was not
// recorded, say, before the agent restarted). It reports whether it removed one.
func (r *Runtime) removeStale(ctx context.Context, name, podID string) bool {
	data, err := containers.Inspect(ctx, name, nil)
	if err != nil || data.Config == nil || !isManaged(data.Config.Labels) || data.Pod != podID ||
		data.State == nil || data.State.Running {
		return false
	}
	if _, err := containers.Remove(ctx, data.ID, new(containers.RemoveOptions).WithForce(true)); err != nil {
		return false
	}
	r.forget(data.ID)
	return true
}

// podLabels returns the skiff labels of a managed pod (cached) and its Podman name.
func (r *Runtime) podLabels(ctx context.Context, podID string) (map[string]string, string, error) {
	rep, err := pods.Inspect(ctx, podID, nil)
	if err != nil {
		return nil, "", notFound("pod", podID, err)
	}
	if !isManaged(rep.Labels) {
		return nil, "", fmt.Errorf("pod %s: %w", rep.Name, ErrNotManaged)
	}
	r.rememberPodMeta(rep.ID, rep.Labels)
	r.mu.Lock()
	meta := r.podMeta[rep.ID]
	r.mu.Unlock()
	return meta, rep.Name, nil
}

func containerSpec(podID, podName string, podMeta map[string]string, cfg reconciler.ContainerConfig) (*specgen.SpecGenerator, error) {
	s := specgen.NewSpecGenerator(cfg.Image, false)
	s.Name = ContainerName(podName, cfg.Name, cfg.Attempt)
	s.Pod = podID
	s.Labels = map[string]string{}
	for k, v := range cfg.Labels {
		s.Labels[k] = v
	}
	for k, v := range podMeta {
		s.Labels[k] = v
	}
	s.Labels[reconciler.LabelManaged] = "true"
	s.Labels[reconciler.LabelContainer] = cfg.Name
	s.Labels[reconciler.LabelAttempt] = strconv.Itoa(cfg.Attempt)
	s.Labels[reconciler.LabelSpecHash] = cfg.SpecHash
	if cfg.Init {
		s.Labels[reconciler.LabelInit] = "true"
	}

	// k8s command replaces ENTRYPOINT (and drops CMD); args replace CMD. Podman's
	// generator does exactly that with nil meaning "the image's".
	if len(cfg.Entrypoint) > 0 {
		s.Entrypoint = cfg.Entrypoint
	}
	if len(cfg.Args) > 0 {
		s.Command = cfg.Args
	}
	s.WorkDir = cfg.WorkingDir
	if len(cfg.Env) > 0 {
		s.Env = map[string]string{}
		for _, kv := range cfg.Env {
			k, v, _ := strings.Cut(kv, "=")
			if k == "" {
				return nil, fmt.Errorf("env %q: empty name", kv)
			}
			s.Env[k] = v
		}
	}
	for _, m := range cfg.Mounts {
		mnt, err := ociMount(m)
		if err != nil {
			return nil, err
		}
		s.Mounts = append(s.Mounts, mnt)
	}

	var res spec.LinuxResources
	if cfg.MemoryLimit > 0 {
		limit := cfg.MemoryLimit
		res.Memory = &spec.LinuxMemory{Limit: &limit}
	}
	if cfg.CPULimit > 0 || cfg.CPURequest > 0 {
		res.CPU = &spec.LinuxCPU{}
		if cfg.CPULimit > 0 {
			period := uint64(cfsPeriod)
			quota := cfg.CPULimit * cfsPeriod / 1000
			if quota < 1000 {
				quota = 1000 // the kernel's minimum quota (1 ms)
			}
			res.CPU.Period, res.CPU.Quota = &period, &quota
		}
		if cfg.CPURequest > 0 {
			shares := uint64(cfg.CPURequest * 1024 / 1000) // the kubelet's formula
			if shares < 2 {
				shares = 2
			}
			res.CPU.Shares = &shares
		}
	}
	if res.Memory != nil || res.CPU != nil {
		s.ResourceLimits = &res
	}

	if cfg.StopSignal != "" {
		sig, err := parseSignal(cfg.StopSignal)
		if err != nil {
			return nil, err
		}
		s.StopSignal = &sig
	}
	timeout := seconds(cfg.StopTimeout)
	s.StopTimeout = &timeout
	s.Init = true // catatonit as PID 1: signals are forwarded, zombies reaped, stops prompt
	s.RestartPolicy = "no"
	s.Terminal = cfg.TTY
	s.Stdin = cfg.Stdin
	s.User = cfg.User
	s.Privileged = cfg.Privileged
	s.ReadOnlyFilesystem = cfg.ReadOnlyRootFS
	s.CapAdd = append(s.CapAdd, cfg.CapAdd...)
	s.CapDrop = append(s.CapDrop, cfg.CapDrop...)
	s.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file", Size: logSizeLimit}
	return s, nil
}

func ociMount(m reconciler.Mount) (spec.Mount, error) {
	if m.Destination == "" || !strings.HasPrefix(m.Destination, "/") {
		return spec.Mount{}, fmt.Errorf("mount %q: destination must be an absolute path", m.Destination)
	}
	mode := "rw"
	if m.ReadOnly {
		mode = "ro"
	}
	switch m.Type {
	case "", "bind":
		if m.Source == "" {
			return spec.Mount{}, fmt.Errorf("mount %s: empty source", m.Destination)
		}
		return spec.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, Options: []string{"rbind", mode}}, nil
	case "tmpfs":
		opts := []string{mode, "nosuid", "nodev"}
		if m.SizeBytes > 0 {
			opts = append(opts, "size="+strconv.FormatInt(m.SizeBytes, 10))
		}
		return spec.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Destination, Options: opts}, nil
	default:
		return spec.Mount{}, fmt.Errorf("mount %s: unknown type %q", m.Destination, m.Type)
	}
}

// parseSignal accepts "SIGTERM", "TERM", "sigterm" and "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown stop signal %q", s)
}

// checkManaged makes sure id is a skiff container, inspecting it unless known already.
func (r *Runtime) checkManaged(ctx context.Context, id string) (*define.InspectContainerData, error) {
	if r.knownManaged(id) {
		return nil, nil
	}
	data, err := containers.Inspect(ctx, id, nil)
	if err != nil {
		return nil, notFound("container", id, err)
	}
	if data.Config == nil || !isManaged(data.Config.Labels) {
		return nil, fmt.Errorf("container %s (%s): %w", data.Name, id, ErrNotManaged)
	}
	r.markManaged(id, data.ID)
	return data, nil
}

// StartContainer starts a created or exited container.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	c := r.ctx(ctx)
	if _, err := r.checkManaged(c, id); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := containers.Start(c, id, nil); err != nil && httpCode(err) != 304 {
		return notFound("start container", id, err)
	}
	return nil
}

// StopContainer sends the stop signal and kills after grace.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	c := r.ctx(ctx)
	if _, err := r.checkManaged(c, id); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	err := containers.Stop(c, id, new(containers.StopOptions).WithTimeout(seconds(grace)))
	if err != nil && httpCode(err) != 304 {
		return notFound("stop container", id, err)
	}
	return nil
}

// RemoveContainer stops (with its own stop timeout) and removes a container.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	c := r.ctx(ctx)
	if _, err := r.checkManaged(c, id); err != nil {
		if errors.Is(err, reconciler.ErrNotFound) {
			r.forget(id)
			return nil
		}
		return fmt.Errorf("remove: %w", err)
	}
	_, err := containers.Remove(c, id, new(containers.RemoveOptions).WithForce(true).WithIgnore(true))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	r.forget(id)
	return nil
}

// Container returns the current state of one skiff container.
func (r *Runtime) Container(ctx context.Context, id string) (reconciler.Container, error) {
	c := r.ctx(ctx)
	data, err := containers.Inspect(c, id, nil)
	if err != nil {
		return reconciler.Container{}, notFound("container", id, err)
	}
	if data.Config == nil || !isManaged(data.Config.Labels) {
		return reconciler.Container{}, fmt.Errorf("container %s (%s): %w", data.Name, id, ErrNotManaged)
	}
	r.markManaged(id, data.ID)
	ctr := fromInspect(data)
	r.addOOM(&ctr)
	return ctr, nil
}

// addOOM marks an exited container OOMKilled when the kernel log says so (see oomWatcher).
func (r *Runtime) addOOM(ctr *reconciler.Container) {
	if ctr.State == reconciler.StateExited && !ctr.OOMKilled {
		ctr.OOMKilled = r.oom.killed(ctr.ID, ctr.StartedAt)
	}
}

func fromInspect(d *define.InspectContainerData) reconciler.Container {
	ctr := reconciler.Container{
		ID:      d.ID,
		PodID:   d.Pod,
		Image:   d.ImageName,
		ImageID: d.Image,
		Created: d.Created,
	}
	if d.Config != nil {
		setLabels(&ctr, d.Config.Labels)
	}
	if st := d.State; st != nil {
		ctr.State = state(st.Status)
		ctr.ExitCode = int(st.ExitCode)
		ctr.OOMKilled = st.OOMKilled
		ctr.Error = st.Error
		ctr.StartedAt = st.StartedAt
		if ctr.State == reconciler.StateExited {
			ctr.FinishedAt = st.FinishedAt
		}
		if ctr.State != reconciler.StateExited {
			ctr.ExitCode = 0
		}
	}
	return ctr
}

func setLabels(ctr *reconciler.Container, labels map[string]string) {
	ctr.Labels = labels
	ctr.Name = labels[reconciler.LabelContainer]
	ctr.Attempt, _ = strconv.Atoi(labels[reconciler.LabelAttempt])
	ctr.Init = labels[reconciler.LabelInit] == "true"
	ctr.SpecHash = labels[reconciler.LabelSpecHash]
}

// state maps Podman's container states onto the reconciler's three.
func state(s string) reconciler.ContainerState {
	switch strings.ToLower(s) {
	case "created", "configured", "initialized":
		return reconciler.StateCreated
	case "running", "paused", "stopping":
		return reconciler.StateRunning
	case "exited", "stopped":
		return reconciler.StateExited
	default:
		return reconciler.StateUnknown
	}
}

// fromList converts a list entry, adding what only an inspect tells (OOMKilled, errors,
// precise times) from a cache that a change of the list's state invalidates.
func (r *Runtime) fromList(ctx context.Context, lc entities.ListContainer) (reconciler.Container, error) {
	ctr := reconciler.Container{
		ID:      lc.ID,
		PodID:   lc.Pod,
		Image:   lc.Image,
		ImageID: lc.ImageID,
		State:   state(lc.State),
		Created: lc.Created,
	}
	setLabels(&ctr, lc.Labels)
	key := fmt.Sprintf("%s/%d/%d/%d", lc.State, lc.StartedAt, lc.ExitedAt, lc.ExitCode)
	r.mu.Lock()
	det, ok := r.details[lc.ID]
	r.managed[lc.ID] = true
	r.mu.Unlock()
	if !ok || det.key != key {
		data, err := containers.Inspect(ctx, lc.ID, nil)
		if err != nil {
			return ctr, err
		}
		full := fromInspect(data)
		det = containerDetails{
			key: key, oomKilled: full.OOMKilled, errMsg: full.Error, exitCode: full.ExitCode,
			startedAt: full.StartedAt, finishedAt: full.FinishedAt,
			tty: data.Config != nil && data.Config.Tty,
		}
		ctr.State = full.State // the fresher of the two
		r.mu.Lock()
		r.details[lc.ID] = det
		r.mu.Unlock()
	}
	ctr.OOMKilled, ctr.Error, ctr.StartedAt, ctr.FinishedAt = det.oomKilled, det.errMsg, det.startedAt, det.finishedAt
	if ctr.State == reconciler.StateExited {
		ctr.ExitCode = det.exitCode
	} else {
		ctr.FinishedAt = time.Time{}
	}
	r.addOOM(&ctr)
	return ctr, nil
}
