package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/fixtures/examples"
)

func newDemoCmd() *cobra.Command {
	var (
		dir, podmanURI, api, raftAddr string
		keep                          bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local demo: an agent syncing an example repository it creates",
		Long: `Creates a git repository from the embedded example manifests, starts a Podman service
(unless --podman is given) and a skiff agent syncing that repository, and prints what to
try next. Needs the demo image localhost/skiff/demo:latest (make demo builds it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), dir, podmanURI, api, raftAddr, keep)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", filepath.Join(os.TempDir(), "skiff-demo"), "work directory (repository, data dir, podman socket)")
	cmd.Flags().StringVar(&podmanURI, "podman", "", "use this Podman socket instead of starting a Podman service")
	cmd.Flags().StringVar(&api, "api", "127.0.0.1:7480", "agent API address")
	cmd.Flags().StringVar(&raftAddr, "raft", "127.0.0.1:7481", "agent Raft address")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the demo pods running on exit")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, dir, podmanURI, api, raftAddr string, keep bool) error {
	if err := exec.Command("podman", "image", "exists", "localhost/skiff/demo:latest").Run(); err != nil {
		return fmt.Errorf("the demo image localhost/skiff/demo:latest is missing: run `make demo` (it builds it with fixtures/build-images.sh)")
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	repoDir := filepath.Join(dir, "repo")
	if _, err := examples.WriteRepo(repoDir, examples.Demo()); err != nil {
		return fmt.Errorf("create demo repository: %w", err)
	}
	if podmanURI == "" {
		sock := filepath.Join(dir, "podman.sock")
		svc := exec.Command("podman", "system", "service", "--time=0", "unix://"+sock)
		svc.Stderr = os.Stderr
		svc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := svc.Start(); err != nil {
			return fmt.Errorf("start podman service: %w", err)
		}
		defer func() { _ = svc.Process.Signal(syscall.SIGTERM); _ = svc.Wait() }()
		podmanURI = "unix://" + sock
		if err := waitFor(ctx, 20*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
			return fmt.Errorf("podman service did not come up at %s", sock)
		}
	}
	cfg := agent.Default()
	cfg.Name = "demo-1"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Repo = "file://" + repoDir
	cfg.Poll = metav1.Duration{Duration: 5 * time.Second}
	cfg.Podman = podmanURI
	cfg.API, cfg.Raft = api, raftAddr
	a, err := agent.New(cfg, newLogger("info"))
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	server := "http://" + api
	_ = waitFor(ctx, 60*time.Second, func() bool {
		resp, err := http.Get(server + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	fmt.Fprintf(out, `
skiff demo is running: one node syncing %s

Try, in another terminal:
  export SKIFF_SERVER=%s
  bin/skiff status
  bin/skiff get pods -o wide
  bin/skiff get deployments,replicasets
  curl http://127.0.0.1:18080/            # the edge Deployment's hostPort
  bin/skiff logs -n default $(bin/skiff get pods -l app=hello -o name | head -1 | cut -d/ -f2)

Then change the repository and push (commit) — the pods follow:
  cd %s
  sed -i 's/replicas: 3/replicas: 5/' 10-hello.yaml && git commit -qam "Scale hello to 5"
  curl -X POST %s/hooks/git              # or wait for the 5 s poll
  sed -i 's/image: /imag: /' 20-edge.yaml && git commit -qam "Break it"
  bin/skiff status                        # the bad commit is reported, the last good one keeps running

Press Ctrl-C to stop (demo pods are removed unless --keep).
`, cfg.Repo, server, repoDir, server)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping the demo...")
	err = a.Stop()
	if !keep {
		clean := exec.Command("sh", "-c", "podman pod ps -q --filter label=io.skiff.node=demo-1 | xargs -r podman pod rm -f")
		if out, cerr := clean.CombinedOutput(); cerr != nil {
			fmt.Fprintf(os.Stderr, "skiff: removing demo pods: %v: %s\n", cerr, out)
		}
	}
	return err
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return context.DeadlineExceeded
}
