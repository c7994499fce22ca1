package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is everything an agent needs. Flags and the YAML config file (--config) both fill
// it; flags win. Field names are the config file's keys.
type Config struct {
	Name    string `json:"name"`    // node name, unique in the cluster (default: hostname)
	DataDir string `json:"dataDir"` // Raft log, snapshots, git worktrees, pod volumes

	// Git source.
	Repo              string          `json:"repo"`              // URL or local path (required)
	Ref               string          `json:"ref"`               // branch, tag or commit; "" = the remote's default branch
	Path              string          `json:"path"`              // directory of manifests in the repo
	Poll              metav1.Duration `json:"poll"`              // fetch period
	Depth             int             `json:"depth"`             // shallow fetch depth, 0 = full history
	GitSSHKeyFile     string          `json:"gitSSHKeyFile"`     // ssh private key
	GitKnownHostsFile string          `json:"gitKnownHostsFile"` // ssh known_hosts
	GitUsername       string          `json:"gitUsername"`       // https basic auth user
	GitPasswordFile   string          `json:"gitPasswordFile"`   // https basic auth password
	GitTokenFile      string          `json:"gitTokenFile"`      // https token
	WebhookSecretFile string          `json:"webhookSecretFile"` // shared secret for POST /hooks/git

	// Node.
	Podman  string `json:"podman"`  // Podman API socket URI
	Network string `json:"network"` // Podman network for pods (made by netplane unless NetPlane is off)
	// NetPlane programs this node's pod network (the Network, routes to other nodes' pods)
	// and the Service data plane (nftables). Off: pods use an existing Network as is and
	// Service cluster IPs are not reachable (for several agents sharing one machine).
	NetPlane      bool     `json:"netplane"`
	HostPathAllow []string `json:"hostPathAllow"` // hostPath prefixes pods may mount (default: none)

	// Listeners.
	API       string `json:"api"`       // HTTPS API host:port
	Raft      string `json:"raft"`      // Raft peer traffic host:port (mutual TLS)
	Advertise string `json:"advertise"` // address peers use to reach this node (default: a local address)

	// Services, DNS and ingress.
	DNS           string   `json:"dns"`           // cluster DNS listen host:port (default: the node address, port 53)
	DNSUpstream   []string `json:"dnsUpstream"`   // resolvers for other names (default: from /etc/resolv.conf)
	ClusterDomain string   `json:"clusterDomain"` // cluster DNS zone
	ServiceCIDR   string   `json:"serviceCIDR"`   // cluster IPs of Services
	PodCIDR       string   `json:"podCIDR"`       // pod addresses; each node gets a /24 of it
	NodePortRange string   `json:"nodePortRange"` // ports for NodePort Services
	HTTP          string   `json:"http"`          // ingress HTTP listen host:port
	HTTPS         string   `json:"https"`         // ingress HTTPS listen host:port
	IngressClass  string   `json:"ingressClass"`  // ingressClassName this node serves

	// Cluster.
	Bootstrap        bool            `json:"bootstrap"`        // start a new cluster (automatic without --join)
	Join             string          `json:"join"`             // https://member:port of any member, to join its cluster
	Token            string          `json:"token"`            // join token (prefer tokenFile: flags show in ps)
	TokenFile        string          `json:"tokenFile"`        // file holding the join token
	LeaveOnTerminate bool            `json:"leaveOnTerminate"` // leave the cluster (pods move away) on SIGTERM
	NodeGrace        metav1.Duration `json:"nodeGrace"`        // unreachable this long: the node is NotReady
	// UnreachableToleration is how long pods stay bound to a NotReady node before they are
	// rescheduled (a pod's own toleration for node.kubernetes.io/unreachable wins).
	UnreachableToleration metav1.Duration `json:"unreachableToleration"`
	MaxVoters             int             `json:"maxVoters"` // Raft voters; further members are non-voters
	// SnapshotThreshold is the number of log entries between Raft snapshots.
	SnapshotThreshold uint64 `json:"snapshotThreshold"`

	LogLevel string `json:"logLevel"` // debug, info, warn, error
}

// Default returns the configuration used for everything not set.
func Default() Config {
	name, _ := os.Hostname()
	return Config{
		Name:                  strings.ToLower(name),
		DataDir:               "/var/lib/skiff",
		Path:                  ".",
		Poll:                  metav1.Duration{Duration: 15 * time.Second},
		Podman:                "unix:///run/podman/podman.sock",
		Network:               "skiff",
		NetPlane:              true,
		API:                   "0.0.0.0:7480",
		Raft:                  "0.0.0.0:7481",
		NodeGrace:             metav1.Duration{Duration: 2 * time.Second},
		UnreachableToleration: metav1.Duration{Duration: 5 * time.Second},
		MaxVoters:             5,
		ClusterDomain:         "cluster.local",
		ServiceCIDR:           "10.43.0.0/16",
		PodCIDR:               "10.42.0.0/16",
		NodePortRange:         "30000-32767",
		HTTP:                  "0.0.0.0:80",
		HTTPS:                 "0.0.0.0:443",
		IngressClass:          "skiff",
		SnapshotThreshold:     4096,
		LogLevel:              "info",
	}
}

// LoadFile reads a YAML config file over c (fields absent from the file keep their value).
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Validate checks the configuration and names the offending setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Repo == "" {
		bad("repo", "required: the git repository to sync (URL or local path)")
	}
	if msgs := validation.IsDNS1123Subdomain(c.Name); len(msgs) > 0 {
		bad("name", "%q is not a valid node name: %s", c.Name, strings.Join(msgs, "; "))
	}
	if c.DataDir == "" {
		bad("data-dir", "required")
	} else if !filepath.IsAbs(c.DataDir) {
		if abs, err := filepath.Abs(c.DataDir); err == nil {
			c.DataDir = abs
		}
	}
	if c.Poll.Duration < time.Second {
		bad("poll", "%s is too short (minimum 1s)", c.Poll.Duration)
	}
	if c.Depth < 0 {
		bad("depth", "must be >= 0")
	}
	for _, a := range []struct{ name, v string }{{"api", c.API}, {"raft", c.Raft}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad(a.name, "%q is not host:port: %v", a.v, err)
		}
	}
	if !strings.HasPrefix(c.Podman, "unix://") && !strings.HasPrefix(c.Podman, "tcp://") {
		bad("podman", "%q must be unix:///path.sock or tcp://host:port", c.Podman)
	}
	for _, p := range c.HostPathAllow {
		if !filepath.IsAbs(p) {
			bad("host-path-allow", "%q is not an absolute path", p)
		}
	}
	if c.Bootstrap && c.Join != "" {
		bad("bootstrap", "--bootstrap starts a new cluster and --join joins one: choose one")
	}
	if c.Join != "" && !strings.HasPrefix(c.Join, "https://") {
		bad("join", "%q must be an https:// URL of a member's API", c.Join)
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("token", "give --token or --token-file, not both")
	}
	if c.NodeGrace.Duration < 500*time.Millisecond {
		bad("node-grace", "%s is too short (minimum 500ms)", c.NodeGrace.Duration)
	}
	if c.UnreachableToleration.Duration < 0 {
		bad("unreachable-toleration", "must be >= 0")
	}
	if c.MaxVoters < 1 || c.MaxVoters%2 == 0 {
		bad("max-voters", "%d: use an odd number (1, 3, 5, 7): an even count adds no fault tolerance", c.MaxVoters)
	}
	if c.Advertise != "" && net.ParseIP(c.Advertise) == nil {
		bad("advertise", "%q is not an IP address", c.Advertise)
	}
	for _, x := range []struct{ name, v string }{{"service-cidr", c.ServiceCIDR}, {"pod-cidr", c.PodCIDR}} {
		if _, n, err := net.ParseCIDR(x.v); err != nil {
			bad(x.name, "%q is not a CIDR: %v", x.v, err)
		} else if ones, bits := n.Mask.Size(); bits-ones < 8 {
			bad(x.name, "%q is too small (at least a /24)", x.v)
		}
	}
	for _, x := range []struct{ name, v string }{{"dns", c.DNS}, {"http", c.HTTP}, {"https", c.HTTPS}} {
		if x.v == "" || x.v == "off" {
			continue
		}
		if _, _, err := net.SplitHostPort(x.v); err != nil {
			bad(x.name, "%q is not host:port (or off): %v", x.v, err)
		}
	}
	if msgs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(msgs) > 0 {
		bad("cluster-domain", "%q: %s", c.ClusterDomain, strings.Join(msgs, "; "))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// AdvertiseIP is the address other nodes reach this one at: --advertise, else the host of
// --raft when it is a specific address, else the first non-loopback address of the machine.
func (c *Config) AdvertiseIP() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	if host, _, err := net.SplitHostPort(c.Raft); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return host
		}
	}
	return localIP()
}

// RaftAdvertise is the Raft address peers dial.
func (c *Config) RaftAdvertise() string {
	_, port, _ := net.SplitHostPort(c.Raft)
	return net.JoinHostPort(c.AdvertiseIP(), port)
}

// APIAdvertise is the URL other nodes and the CLI use to reach this node's API.
func (c *Config) APIAdvertise() string {
	host, port, _ := net.SplitHostPort(c.API)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = c.AdvertiseIP()
	}
	return "https://" + net.JoinHostPort(host, port)
}

// DNSAddr is where cluster DNS listens: --dns, or port 53 on the node address.
func (c *Config) DNSAddr() string {
	if c.DNS != "" {
		return c.DNS
	}
	return net.JoinHostPort(c.AdvertiseIP(), "53")
}

// localIP returns the first non-loopback IPv4 address, or 127.0.0.1.
func localIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
