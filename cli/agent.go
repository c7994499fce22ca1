package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/internal/gctune"
)

// agentFlags binds every agent flag to a Config field; a flag given on the command line
// wins over the config file, which wins over the defaults.
func agentFlags(fs *pflag.FlagSet, c *agent.Config) {
	d := agent.Default()
	fs.StringVar(&c.Name, "name", d.Name, "node name, unique in the cluster")
	fs.StringVar(&c.DataDir, "data-dir", d.DataDir, "directory for the Raft log, git worktrees and pod volumes")
	fs.StringVar(&c.Repo, "repo", "", "git repository to sync: URL (file://, git://, http(s)://, ssh://) or local path (required)")
	fs.StringVar(&c.Ref, "ref", "", "branch, tag or commit to sync (default: the remote's default branch)")
	fs.StringVar(&c.Path, "path", d.Path, "directory of manifests in the repository")
	fs.DurationVar(&c.Poll.Duration, "poll", d.Poll.Duration, "how often to fetch (webhooks fetch at once)")
	fs.IntVar(&c.Depth, "depth", 0, "shallow fetch depth (0: full history)")
	fs.StringVar(&c.GitSSHKeyFile, "git-ssh-key-file", "", "ssh private key for ssh:// repositories")
	fs.StringVar(&c.GitKnownHostsFile, "git-known-hosts-file", "", "known_hosts for ssh:// repositories")
	fs.StringVar(&c.GitUsername, "git-username", "", "https basic auth user")
	fs.StringVar(&c.GitPasswordFile, "git-password-file", "", "file holding the https basic auth password")
	fs.StringVar(&c.GitTokenFile, "git-token-file", "", "file holding an https access token")
	fs.StringVar(&c.WebhookSecretFile, "webhook-secret-file", "", "file holding the shared secret of POST /hooks/git (HMAC or token)")
	fs.StringVar(&c.Podman, "podman", d.Podman, "Podman API socket")
	fs.StringVar(&c.Network, "network", d.Network, "Podman network for pods (netplane makes it with this node's pod subnet)")
	fs.BoolVar(&c.NetPlane, "netplane", d.NetPlane, "program the pod network and the Service data plane (off: pods use --network as is, no cluster IPs)")
	fs.StringSliceVar(&c.HostPathAllow, "host-path-allow", nil, "path prefix hostPath volumes may use (repeatable; default: none)")
	fs.StringVar(&c.API, "api", d.API, "HTTP API listen address")
	fs.StringVar(&c.Raft, "raft", d.Raft, "Raft peer listen address")
	fs.StringVar(&c.Advertise, "advertise", "", "address other nodes use to reach this one (default: the --raft host)")
	fs.StringVar(&c.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.DNS, "dns", "", "cluster DNS listen address (default: port 53 on the node address; off to disable)")
	fs.StringSliceVar(&c.DNSUpstream, "dns-upstream", nil, "resolvers for names outside the cluster (default: from /etc/resolv.conf)")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", d.ClusterDomain, "cluster DNS domain")
	fs.StringVar(&c.ServiceCIDR, "service-cidr", d.ServiceCIDR, "range of Service cluster IPs")
	fs.StringVar(&c.PodCIDR, "pod-cidr", d.PodCIDR, "range of pod IPs; each node gets a /24 of it")
	fs.StringVar(&c.NodePortRange, "node-port-range", d.NodePortRange, "ports for NodePort Services")
	fs.StringVar(&c.HTTP, "http", d.HTTP, "ingress HTTP listen address (off to disable)")
	fs.StringVar(&c.HTTPS, "https", d.HTTPS, "ingress HTTPS listen address (off to disable)")
	fs.StringVar(&c.IngressClass, "ingress-class", d.IngressClass, "ingressClassName this cluster serves")
	fs.BoolVar(&c.Bootstrap, "bootstrap", false, "start a new cluster (the default when --join is not given)")
	fs.StringVar(&c.Join, "join", "", "join the cluster of this member: https://HOST:PORT of any member's API")
	fs.StringVar(&c.Token, "token", "", "join token (visible in ps: prefer --token-file)")
	fs.StringVar(&c.TokenFile, "token-file", "", "file holding the join token")
	fs.BoolVar(&c.LeaveOnTerminate, "leave-on-terminate", false, "on SIGTERM, move this node's pods away and leave the cluster")
	fs.DurationVar(&c.NodeGrace.Duration, "node-grace", d.NodeGrace.Duration, "a node unreachable this long is NotReady")
	fs.DurationVar(&c.UnreachableToleration.Duration, "unreachable-toleration", d.UnreachableToleration.Duration,
		"how long pods stay bound to a NotReady node before they are rescheduled (a pod's tolerationSeconds wins)")
	fs.IntVar(&c.MaxVoters, "max-voters", d.MaxVoters, "Raft voters; further members replicate as non-voters")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", d.SnapshotThreshold, "Raft log entries between snapshots")
}

func newAgentCmd() *cobra.Command {
	var (
		flagCfg    agent.Config
		configFile string
	)
	cmd := &cobra.Command{
		Use:   "agent --repo URL [flags]",
		Short: "Run a skiff node",
		Long: `Run a skiff node: it forms (or is) a Raft group, syncs the manifests in git, runs the
pods placed on it with Podman and serves the HTTP API.`,
		Example: `  skiff agent --name pi1 --repo https://git.lan/shop/deploy.git --path prod
  skiff agent --config /etc/skiff/agent.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := agent.Default()
			if configFile != "" {
				if err := cfg.LoadFile(configFile); err != nil {
					return err
				}
			}
			if err := applyChanged(cmd.Flags(), &cfg); err != nil { // flags override the file
				return err
			}

			log := newLogger(cfg.LogLevel)
			gctune.Apply()
			a, err := agent.New(cfg, log)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return a.Run(cmd.Context())
		},
	}
	agentFlags(cmd.Flags(), &flagCfg)
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config file (keys: name, dataDir, repo, ref, path, poll, ...); flags override it")
	return cmd
}

// applyChanged sets, on cfg, every flag given on the command line: the flags are bound to
// cfg through a fresh flag set, so no flag can be forgotten here.
func applyChanged(given *pflag.FlagSet, cfg *agent.Config) error {
	onto := pflag.NewFlagSet("config", pflag.ContinueOnError)
	loaded := *cfg
	agentFlags(onto, cfg) // binding writes each flag's default into cfg...
	*cfg = loaded         // ...so put back what the defaults and the file said
	var err error
	given.Visit(func(f *pflag.Flag) {
		target := onto.Lookup(f.Name)
		if target == nil || err != nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = target.Value.(pflag.SliceValue).Replace(sv.GetSlice())
			return
		}
		err = target.Value.Set(f.Value.String())
	})
	return err
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			a.Value = slog.StringValue(a.Value.Time().Format(time.TimeOnly + ".000"))
		}
		return a
	}}))
}
