package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/skiffhq/skiff/agent"
)

func newLogsCmd() *cobra.Command {
	var (
		ns, container        string
		follow, prev, tsFlag bool
		tail                 int
	)
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print a container's logs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if container != "" {
				q.Set("container", container)
			}
			q.Set("follow", strconv.FormatBool(follow))
			q.Set("previous", strconv.FormatBool(prev))
			q.Set("timestamps", strconv.FormatBool(tsFlag))
			if tail >= 0 {
				q.Set("tail", strconv.Itoa(tail))
			}
			resp, err := c.do(cmd.Context(), http.MethodGet, agent.PathLogs+url.PathEscape(ns)+"/"+url.PathEscape(args[0]), q, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			if cmd.Context().Err() != nil {
				return nil // interrupted while following
			}
			return err
		},
	}
	addNamespaceFlags(cmd, &ns, nil)
	cmd.Flags().StringVarP(&container, "container", "c", "", "container name (needed when the pod has several)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream new output until the container exits")
	cmd.Flags().BoolVarP(&prev, "previous", "p", false, "the logs of the previous instance of a restarted container")
	cmd.Flags().BoolVar(&tsFlag, "timestamps", false, "prefix each line with its timestamp")
	cmd.Flags().IntVar(&tail, "tail", -1, "only the last N lines")
	return cmd
}

func newExecCmd() *cobra.Command {
	var (
		ns, container string
		stdin, tty    bool
	)
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]",
		Short: "Run a command in a container",
		Example: `  skiff exec web-7c9f-abcde -- ls /
  skiff exec -it web-7c9f-abcde -- sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: skiff exec POD [flags] -- COMMAND [ARGS...]")
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			code, err := execute(cmd.Context(), c, ns, args[0], container, args[1:], stdin, tty,
				cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("command terminated with exit code %d", code)}
			}
			return nil
		},
	}
	addNamespaceFlags(cmd, &ns, nil)
	cmd.Flags().StringVarP(&container, "container", "c", "", "container name (needed when the pod has several)")
	cmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	return cmd
}

// execute runs a command in a container over an upgraded connection (see agent.handleExec
// for the framing) and returns its exit code.
func execute(ctx context.Context, c *client, ns, pod, container string, command []string, withStdin, tty bool,
	in io.Reader, out, errOut io.Writer) (int, error) {
	q := url.Values{"command": command}
	if container != "" {
		q.Set("container", container)
	}
	q.Set("stdin", strconv.FormatBool(withStdin))
	q.Set("tty", strconv.FormatBool(tty))
	u, err := url.Parse(c.base + agent.PathExec + url.PathEscape(ns) + "/" + url.PathEscape(pod) + "?" + q.Encode())
	if err != nil {
		return 0, err
	}
	var conn net.Conn
	var d net.Dialer
	if u.Scheme == "https" {
		td := &tls.Dialer{NetDialer: &d, Config: c.tls}
		conn, err = td.DialContext(ctx, "tcp", u.Host)
	} else {
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot reach the skiff agent at %s: %w", c.base, err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodPost, u.String(), nil)
	c.authorize(req)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agent.ExecUpgrade)
	if err := req.Write(conn); err != nil {
		return 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return 0, fmt.Errorf("%s", e.Error)
		}
		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if tty {
		if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			old, err := term.MakeRaw(int(f.Fd()))
			if err == nil {
				defer term.Restore(int(f.Fd()), old)
			}
		}
	}
	if withStdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					if agent.WriteFrame(conn, 0, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					_ = agent.WriteFrame(conn, 4, nil)
					return
				}
			}
		}()
	}
	code := -1
	err = agent.ReadFrames(br, func(id byte, p []byte) error {
		switch id {
		case 1:
			_, err := out.Write(p)
			return err
		case 2:
			_, err := errOut.Write(p)
			return err
		case 3:
			code, _ = strconv.Atoi(string(p))
			return io.EOF
		}
		return nil
	})
	if code < 0 {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("connection closed before the command finished")
		}
		return 0, err
	}
	return code, nil
}
