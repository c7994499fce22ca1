package netplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrMissingTool is returned when nft or ip is not installed.
var ErrMissingTool = errors.New("netplane needs the nft (Debian: nftables) and ip (iproute2) commands")

// sys runs the host's network tools, in the network namespace at netns ("" = this
// process's; tests and simulated nodes use a named one).
type sys struct {
	netns string
}

func (s sys) run(ctx context.Context, stdin string, name string, args ...string) ([]byte, error) {
	if s.netns != "" {
		args = append([]string{"--net=" + s.netns, name}, args...)
		name = "nsenter"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.Bytes(), nil
}

// nft applies a script with `nft -f -` (one atomic transaction).
func (s sys) nft(ctx context.Context, script string) error {
	_, err := s.run(ctx, script, "nft", "-f", "-")
	return err
}

// ip runs an iproute2 command.
func (s sys) ip(ctx context.Context, args ...string) ([]byte, error) {
	return s.run(ctx, "", "ip", args...)
}

// sysctl writes a /proc/sys value (key like net/ipv4/ip_forward). ok is false when the
// key does not exist (br_netfilter not loaded, say).
func (s sys) sysctl(key, value string) (ok bool, err error) {
	path := filepath.Join("/proc/sys", key)
	err = inNetNS(s.netns, func() error {
		if _, err := os.Stat(path); err != nil {
			return err
		}
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func checkTools() error {
	for _, t := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%w: %s not found", ErrMissingTool, t)
		}
	}
	return nil
}

// inNetNS runs fn on an OS thread inside the network namespace at path ("" = run it
// here). Sockets fn creates belong to that namespace for their whole life; /proc/sys/net
// shows its settings.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked unless it is back in its own namespace: a goroutine
		// that exits locked takes its thread with it.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
