package podman

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/blang/semver/v4"
	dockerTypes "github.com/docker/docker/api/types"
	dockerEvents "github.com/docker/docker/api/types/events"

	"github.com/containers/podman/v4/pkg/api/handlers"
	"github.com/containers/podman/v4/pkg/bindings"
	"github.com/containers/podman/v4/pkg/bindings/containers"
	"github.com/containers/podman/v4/pkg/domain/entities"

	"github.com/skiffhq/skiff/reconciler"
)

// Logs writes the container's stdout and stderr, interleaved as they were written, to w.
// It uses the bindings' connection directly rather than containers.Logs because that
// binding cannot read the unframed stream of a TTY container.
func (r *Runtime) Logs(ctx context.Context, id string, opts reconciler.LogOptions, w io.Writer) error {
	c := r.ctx(ctx)
	data, err := containers.Inspect(c, id, nil)
	if err != nil {
		return notFound("logs: container", id, err)
	}
	if data.Config == nil || !isManaged(data.Config.Labels) {
		return fmt.Errorf("logs: container %s: %w", data.Name, ErrNotManaged)
	}
	conn, err := bindings.GetClient(c)
	if err != nil {
		return err
	}
	params := url.Values{}
	params.Set("stdout", "true")
	params.Set("stderr", "true")
	params.Set("follow", strconv.FormatBool(opts.Follow))
	params.Set("timestamps", strconv.FormatBool(opts.Timestamps))
	if !opts.Since.IsZero() {
		params.Set("since", strconv.FormatInt(opts.Since.Unix(), 10))
	}
	if opts.TailLines > 0 {
		params.Set("tail", strconv.Itoa(opts.TailLines))
	}
	resp, err := conn.DoRequest(c, nil, http.MethodGet, "/containers/%s/logs", params, nil, id)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("logs %s: %w", id, err))
	}
	defer resp.Body.Close()
	if !resp.IsSuccess() {
		return notFound("logs: container", id, resp.Process(nil))
	}
	if data.Config.Tty {
		_, err = io.Copy(w, resp.Body)
	} else {
		err = demux(resp.Body, w, w)
	}
	return ctxErr(ctx, err)
}

// ctxErr reports a stream cut by the caller's context as the context's error, and a
// stream that simply ended as success.
func ctxErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// demux copies Docker's multiplexed stream (8-byte header: stream, 0, 0, 0, big-endian
// length) to stdout and stderr.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	buf := make([]byte, 32*1024)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[4:]))
		var dst io.Writer
		switch hdr[0] {
		case 0, 1:
			dst = stdout
		case 2:
			dst = stderr
		case 3:
			msg, _ := io.ReadAll(io.LimitReader(r, int64(n)))
			return fmt.Errorf("podman: %s", msg)
		default:
			return fmt.Errorf("podman stream: unknown stream %d", hdr[0])
		}
		for n > 0 {
			chunk := min(n, len(buf))
			if _, err := io.ReadFull(r, buf[:chunk]); err != nil {
				return err
			}
			if _, err := dst.Write(buf[:chunk]); err != nil {
				return err
			}
			n -= chunk
		}
	}
}

// Exec runs opts.Cmd in a running container and returns its exit code.
//
// The session is created with containers.ExecCreate and read back with ExecInspect, but
// started over a connection of its own instead of containers.ExecStartAndAttach: that
// binding swaps the Transport of the shared connection (a data race with every concurrent
// call, and stdin may be written to another request's socket), and puts the calling
// process's own terminal into raw mode for TTY sessions.
func (r *Runtime) Exec(ctx context.Context, id string, opts reconciler.ExecOptions) (int, error) {
	c := r.ctx(ctx)
	if len(opts.Cmd) == 0 {
		return -1, errors.New("exec: empty command")
	}
	if _, err := r.checkManaged(c, id); err != nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	cfg := &handlers.ExecCreateConfig{ExecConfig: dockerTypes.ExecConfig{
		Cmd:          opts.Cmd,
		Env:          opts.Env,
		Tty:          opts.TTY,
		AttachStdin:  opts.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	}}
	session, err := containers.ExecCreate(c, id, cfg)
	if err != nil {
		return -1, notFound("exec in container", id, err)
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if opts.TTY {
		stderr = stdout
	}
	if err := r.execStart(c, session, opts.TTY, opts.Stdin, stdout, stderr); err != nil {
		return -1, ctxErr(ctx, fmt.Errorf("exec %v in %s: %w", opts.Cmd, id, err))
	}
	// The stream ends when the process exits; the exit code can lag behind by a moment.
	for {
		info, err := containers.ExecInspect(c, session, nil)
		if err != nil {
			if strings.Contains(err.Error(), "no such exec session") {
				// Podman drops a container's exec sessions when it stops.
				return -1, fmt.Errorf("exec %v in %s: the container stopped before the command's exit code was read", opts.Cmd, id)
			}
			return -1, fmt.Errorf("exec %v in %s: inspect: %w", opts.Cmd, id, err)
		}
		if !info.Running {
			r.execRemove(c, session)
			return info.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// execRemove drops a finished exec session from the container's state. Podman keeps
// every session until the container stops, and only 4.8 and newer can remove one through
// the API: on older services (Debian bookworm's 4.3) each exec, and so each exec probe,
// leaves a record behind until then.
func (r *Runtime) execRemove(ctx context.Context, session string) {
	if r.version.LT(execRemoveVersion) {
		return
	}
	_ = containers.ExecRemove(ctx, session, nil)
}

var execRemoveVersion = semver.MustParse("4.8.0")

// execStart starts an exec session attached over a hijacked connection: the response is
// the raw (TTY) or multiplexed output stream, and stdin is written to the same socket.
func (r *Runtime) execStart(ctx context.Context, session string, tty bool, stdin io.Reader, stdout, stderr io.Writer) error {
	conn, err := bindings.GetClient(ctx)
	if err != nil {
		return err
	}
	sock, err := conn.GetDialer(ctx)
	if err != nil {
		return err
	}
	defer sock.Close()
	stop := context.AfterFunc(ctx, func() { sock.Close() })
	defer stop()

	body, _ := json.Marshal(handlers.ExecStartConfig{Detach: false, Tty: tty})
	req, err := http.NewRequest(http.MethodPost, "http://d/v4.0.0/libpod/exec/"+url.PathEscape(session)+"/start", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(sock); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(sock), req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("start exec session: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(sock, stdin)
			if cw, ok := sock.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
	if tty {
		_, err = io.Copy(stdout, resp.Body)
	} else {
		err = demux(resp.Body, stdout, stderr)
	}
	if errors.Is(err, net.ErrClosed) && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Events streams start, died and OOM events of skiff containers. The channel closes when
// ctx ends or the stream breaks.
func (r *Runtime) Events(ctx context.Context) (<-chan reconciler.Event, error) {
	c := r.ctx(ctx)
	conn, err := bindings.GetClient(c)
	if err != nil {
		return nil, err
	}
	filters, _ := json.Marshal(map[string][]string{
		"type":  {"container"},
		"event": {"start", "died", "oom"},
		"label": {reconciler.LabelManaged + "=true"},
	})
	params := url.Values{}
	params.Set("stream", "true")
	params.Set("filters", string(filters))
	resp, err := conn.DoRequest(c, nil, http.MethodGet, "/events", params, nil)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if !resp.IsSuccess() {
		defer resp.Body.Close()
		return nil, fmt.Errorf("events: %w", resp.Process(nil))
	}
	out := make(chan reconciler.Event, 64)
	raw := make(chan dockerEvents.Message, 64)
	go func() { // the decoder: ends when the stream breaks or ctx closes the body
		defer close(raw)
		dec := json.NewDecoder(resp.Body)
		for {
			var e entities.Event
			if err := dec.Decode(&e); err != nil {
				return
			}
			select {
			case raw <- e.Message:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Podman's own oom event needs conmon to catch the cgroup notification; the kernel
	// log always has it (see oomWatcher).
	ooms, unsubscribe := r.oom.subscribe()
	go func() {
		defer close(out)
		defer resp.Body.Close()
		defer unsubscribe()
		stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
		defer stop()
		for {
			var ev reconciler.Event
			select {
			case m, ok := <-raw:
				if !ok {
					return
				}
				var keep bool
				if ev, keep = toEvent(m); !keep {
					continue
				}
			case id := <-ooms:
				data, err := containers.Inspect(c, id, nil)
				if err != nil || data.Config == nil || !isManaged(data.Config.Labels) {
					continue
				}
				ev = reconciler.Event{Kind: reconciler.EventOOM, ContainerID: data.ID,
					PodUID: data.Config.Labels[reconciler.LabelPodUID], Time: time.Now()}
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func toEvent(m dockerEvents.Message) (reconciler.Event, bool) {
	if m.Type != "container" && m.Type != "" || !isManaged(m.Actor.Attributes) {
		return reconciler.Event{}, false
	}
	ev := reconciler.Event{
		ContainerID: m.Actor.ID,
		PodUID:      m.Actor.Attributes[reconciler.LabelPodUID],
		Time:        time.Unix(0, m.TimeNano),
	}
	action := m.Action
	if action == "" {
		action = m.Status
	}
	switch action {
	case "start":
		ev.Kind = reconciler.EventStarted
	case "died":
		ev.Kind = reconciler.EventDied
	case "oom":
		ev.Kind = reconciler.EventOOM
	default:
		ev.Kind = reconciler.EventOther
	}
	if m.TimeNano == 0 {
		ev.Time = time.Unix(m.Time, 0)
	}
	return ev, true
}
