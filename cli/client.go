package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultServer is the agent API the CLI talks to without --server or SKIFF_SERVER.
const DefaultServer = "http://127.0.0.1:7480"

// client talks to one agent's HTTP API.
type client struct {
	base string
	http *http.Client
}

func newClient(cmd *cobra.Command) (*client, error) {
	server, _ := cmd.Flags().GetString("server")
	if server == "" {
		server = os.Getenv("SKIFF_SERVER")
	}
	if server == "" {
		server = DefaultServer
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not a URL like http://127.0.0.1:7480", server)
	}
	return &client{base: strings.TrimRight(server, "/"), http: &http.Client{}}, nil
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

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// addServerFlag adds --server to a command that talks to an agent.
func addServerFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().String("server", "", "agent API URL (default $SKIFF_SERVER or "+DefaultServer+")")
}
