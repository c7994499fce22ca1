package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/fixtures/examples"
	"github.com/skiffhq/skiff/internal/gctune"
)

func newDemoCmd() *cobra.Command {
	var (
		o        demoOptions
		repoOnly bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local demo: an agent syncing an example repository it creates",
		Long: `Creates a git repository from the embedded example manifests, starts a Podman service
(unless --podman is given) and a one-node skiff cluster syncing that repository, and prints
what to try next. Needs the demo image localhost/skiff/demo:latest (make images builds it).
With --repo-only it only writes the repository (make demo uses that for its 3-node cluster).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repoOnly {
				return writeDemoRepo(cmd.OutOrStdout(), o.dir)
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", filepath.Join(os.TempDir(), "skiff-demo"), "work directory (repository, data dir, podman socket)")
	f.BoolVar(&repoOnly, "repo-only", false, "only create the example repository in DIR/repo and exit")
	f.StringVar(&o.podman, "podman", "", "use this Podman socket instead of starting a Podman service")
	f.StringVar(&o.api, "api", "127.0.0.1:7480", "agent API address")
	f.StringVar(&o.raft, "raft", "127.0.0.1:7481", "agent Raft address")
	f.StringVar(&o.dns, "dns", "127.0.0.1:10053", "cluster DNS address")
	f.StringVar(&o.https, "https", "127.0.0.1:18443", "ingress HTTPS address")
	f.StringVar(&o.http, "http", "127.0.0.1:18000", "ingress HTTP address")
	f.BoolVar(&o.keep, "keep", false, "leave the demo pods running on exit")
	return cmd
}

type demoOptions struct {
	dir, podman, api, raft, dns, http, https string
	keep                                     bool
}

// writeDemoRepo creates DIR/repo (replacing DIR) from the embedded example manifests.
func writeDemoRepo(out io.Writer, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	repoDir := filepath.Join(dir, "repo")
	commit, err := examples.WriteRepo(repoDir, examples.Demo())
	if err != nil {
		return fmt.Errorf("create demo repository: %w", err)
	}
	fmt.Fprintf(out, "demo repository %s at %s\n", repoDir, commit[:12])
	return nil
}

func runDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	if err := exec.Command("podman", "image", "exists", "localhost/skiff/demo:latest").Run(); err != nil {
		return fmt.Errorf("the demo image localhost/skiff/demo:latest is missing: run `make images` (fixtures/build-images.sh builds it)")
	}
	if err := writeDemoRepo(io.Discard, o.dir); err != nil {
		return err
	}
	repoDir := filepath.Join(o.dir, "repo")
	podmanURI := o.podman
	if podmanURI == "" {
		sock := filepath.Join(o.dir, "podman.sock")
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
	cfg.DataDir = filepath.Join(o.dir, "data")
	cfg.Repo = "file://" + repoDir
	cfg.Poll = metav1.Duration{Duration: 5 * time.Second}
	cfg.Podman = podmanURI
	// One node on a workstation: pods use Podman's default network as they are, and
	// the listeners stay on loopback, on unprivileged ports (make demo runs the full
	// pod network on a 3-node simulated cluster instead).
	cfg.NetPlane, cfg.Network = false, "podman"
	cfg.API, cfg.Raft, cfg.DNS, cfg.HTTP, cfg.HTTPS = o.api, o.raft, o.dns, o.http, o.https
	gctune.Apply()
	a, err := agent.New(cfg, newLogger("info"))
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	select {
	case <-a.Ready():
	case <-ctx.Done():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(out, "skiff demo: the node is not ready after 60 s; `skiff status` says why")
	}
	server := "https://" + o.api
	httpsPort := o.https[strings.LastIndex(o.https, ":")+1:]
	fmt.Fprintf(out, `
skiff demo is running: a one-node cluster syncing %s

Try, in another terminal:
  export SKIFF_CONFIG=%s
  bin/skiff status
  bin/skiff get pods -o wide
  bin/skiff get deployments,replicasets,services,endpoints,ingresses
  curl -k --resolve hello.skiff.local:%s:127.0.0.1 https://hello.skiff.local:%s/   # the Ingress
  curl http://127.0.0.1:18080/                                   # the edge Deployment's hostPort
  dig -p %s @127.0.0.1 +short hello.default.svc.cluster.local   # cluster DNS
  bin/skiff logs $(bin/skiff get pods -l app=hello -o name | head -1 | cut -d/ -f2)

Then change the repository and commit — the pods follow:
  cd %s
  sed -i 's/replicas: 3/replicas: 5/' 10-hello.yaml && git commit -qam "Scale hello to 5"
  curl -k -X POST %s/hooks/git           # or wait for the 5 s poll
  sed -i 's/image: /imag: /' 20-edge.yaml && git commit -qam "Break it"
  bin/skiff status                        # the bad commit is reported, the last good one keeps running

Press Ctrl-C to stop (demo pods are removed unless --keep).
`, cfg.Repo, filepath.Join(cfg.DataDir, agent.AdminConfig), httpsPort, httpsPort,
		o.dns[strings.LastIndex(o.dns, ":")+1:], repoDir, server)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping the demo...")
	err = a.Stop()
	if !o.keep {
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
