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
	Podman        string   `json:"podman"`        // Podman API socket URI
	Network       string   `json:"network"`       // Podman network for pods ("" = podman's default)
	HostPathAllow []string `json:"hostPathAllow"` // hostPath prefixes pods may mount (default: none)

	// Listeners.
	API       string `json:"api"`       // HTTP API host:port
	Raft      string `json:"raft"`      // Raft peer traffic host:port
	Advertise string `json:"advertise"` // address peers use to reach this node (default: from --raft)

	LogLevel string `json:"logLevel"` // debug, info, warn, error
}

// Default returns the configuration used for everything not set.
func Default() Config {
	name, _ := os.Hostname()
	return Config{
		Name:     strings.ToLower(name),
		DataDir:  "/var/lib/skiff",
		Path:     ".",
		Poll:     metav1.Duration{Duration: 15 * time.Second},
		Podman:   "unix:///run/podman/podman.sock",
		API:      "127.0.0.1:7480",
		Raft:     "127.0.0.1:7481",
		LogLevel: "info",
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
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// RaftAdvertise is the address peers dial: Advertise with the Raft port, or the Raft bind
// address itself.
func (c *Config) RaftAdvertise() string {
	if c.Advertise == "" {
		return c.Raft
	}
	_, port, _ := net.SplitHostPort(c.Raft)
	return net.JoinHostPort(c.Advertise, port)
}

// APIAdvertise is the URL other nodes and the CLI use to reach this node's API.
func (c *Config) APIAdvertise() string {
	host, port, _ := net.SplitHostPort(c.API)
	if c.Advertise != "" {
		host = c.Advertise
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
