package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/agent"
)

// DefaultServer is the agent API the CLI talks to without --server, SKIFF_SERVER or a
// config file.
const DefaultServer = "https://127.0.0.1:7480"

// DefaultConfig is where an agent with the default data dir writes the CLI's config.
const DefaultConfig = "/var/lib/skiff/" + agent.AdminConfig

// client talks to one agent's HTTP API.
type client struct {
	base  string
	token string
	tls   *tls.Config
	http  *http.Client
}

// newClient builds a client from --config/SKIFF_CONFIG (or the default config when it
// exists), with --server/SKIFF_SERVER and --token/SKIFF_TOKEN overriding it.
func newClient(cmd *cobra.Command) (*client, error) {
	var cc agent.ClientConfig
	path := flagOrEnv(cmd, "config", "SKIFF_CONFIG")
	if path == "" {
		if _, err := os.Stat(DefaultConfig); err == nil {
			path = DefaultConfig
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("client config: %w", err)
		}
		if err := yaml.Unmarshal(b, &cc); err != nil {
			return nil, fmt.Errorf("client config %s: %w", path, err)
		}
	}
	server := flagOrEnv(cmd, "server", "SKIFF_SERVER")
	if server == "" {
		server = cc.Server
	}
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not a URL like https://10.0.0.5:7480", server)
	}
	c := &client{base: strings.TrimRight(server, "/"), token: cc.Token}
	if t := flagOrEnv(cmd, "token", "SKIFF_TOKEN"); t != "" {
		c.token = t
	}
	insecure, _ := cmd.Flags().GetBool("insecure-skip-tls-verify")
	c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case insecure:
		c.tls.InsecureSkipVerify = true
	case cc.CA != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cc.CA)) {
			return nil, fmt.Errorf("client config %s: certificateAuthority is not PEM", path)
		}
		// Members are reached by any of their addresses: trust the cluster CA, not names.
		c.tls.InsecureSkipVerify = true
		c.tls.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("server sent no certificate")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("the server's certificate is not from this cluster's CA (%s): %w", path, err)
			}
			return nil
		}
	case u.Scheme == "https":
		return nil, fmt.Errorf("no cluster CA to check %s against: pass --config <data-dir>/%s (written by every agent), or --insecure-skip-tls-verify", server, agent.AdminConfig)
	}
	c.http = &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}}
	return c, nil
}

func flagOrEnv(cmd *cobra.Command, flag, env string) string {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return f.Value.String()
	}
	return os.Getenv(env)
}

// do sends a request and fails with the API's error message on a non-2xx answer.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the skiff agent at %s (set --server or SKIFF_SERVER): %w", c.base, unwrapURLError(err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func (c *client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func (c *client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// addServerFlags adds the connection flags to a command that talks to an agent.
func addServerFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().String("server", "", "agent API URL, any member (default: $SKIFF_SERVER, the config's server, or "+DefaultServer+")")
	cmd.PersistentFlags().String("config", "", "client config written by the agent (default: $SKIFF_CONFIG, or "+DefaultConfig+")")
	cmd.PersistentFlags().String("token", "", "admin token (default: $SKIFF_TOKEN or the config's)")
	cmd.PersistentFlags().Bool("insecure-skip-tls-verify", false, "do not check the server's certificate")
}
