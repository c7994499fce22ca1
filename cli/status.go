package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/skiffhq/skiff/agent"
)

func newStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which commit is live, what failed to apply and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			var st agent.Status
			if err := c.getJSON(cmd.Context(), agent.PathStatus, nil, &st); err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), &st, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newSyncCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Fetch git now and apply the newest commit (exit code 2 when it was refused)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodPost, agent.PathSync, nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var st agent.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return err
			}
			if err := printStatus(cmd.OutOrStdout(), &st, output); err != nil {
				return err
			}
			if st.Failed != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("the newest commit was not applied; %s stays live", shortHash(liveHash(&st)))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func liveHash(st *agent.Status) string {
	if st.Live == nil {
		return "nothing"
	}
	return st.Live.Hash
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return duration.HumanDuration(time.Since(t)) + " ago"
}

func printStatus(out io.Writer, st *agent.Status, output string) error {
	switch output {
	case "json":
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
		return nil
	case "":
	default:
		return fmt.Errorf("unknown output format %q (want json)", output)
	}
	ref := st.Ref
	if ref == "" {
		ref = "(default branch)"
	}
	fmt.Fprintf(out, "Node:      %s (leader: %s)\n", st.Node, orNone(st.Leader))
	fmt.Fprintf(out, "Source:    %s @ %s, path %s\n", st.Repo, ref, st.Path)
	if st.Live != nil {
		fmt.Fprintf(out, "Live:      %s %q by %s, applied %s\n", shortHash(st.Live.Hash), st.Live.Subject, st.Live.Author, ago(st.Live.AppliedAt))
	} else {
		fmt.Fprintf(out, "Live:      nothing applied yet\n")
	}
	if f := st.Fetch; f != nil {
		line := fmt.Sprintf("Fetch:     last %s", ago(f.LastFetch))
		if f.Duration != "" {
			line += " (took " + f.Duration + ")"
		}
		if f.Error != "" {
			line += ", FAILING: " + f.Error
		}
		fmt.Fprintln(out, line)
	}
	if f := st.Failed; f != nil {
		what := "the fetch"
		if f.Commit.Hash != "" {
			what = fmt.Sprintf("commit %s %q", shortHash(f.Commit.Hash), f.Commit.Subject)
		}
		fmt.Fprintf(out, "Failed:    %s was NOT applied (%s); the live commit keeps running\n", what, ago(f.At))
		if f.Error != "" {
			fmt.Fprintf(out, "  %s\n", f.Error)
		}
		for _, p := range f.Problems {
			fmt.Fprintf(out, "  %s\n", p.String())
		}
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintf(out, "Unsupported (ignored) in the live commit:\n")
		for _, p := range st.Warnings {
			fmt.Fprintf(out, "  %s\n", p.String())
		}
	}
	printIngress(out, st)
	fmt.Fprintf(out, "Objects:   %s\n", countString(st.Objects))
	fmt.Fprintf(out, "Pods:      %s\n", countString(st.Pods))
	if len(st.Nodes) > 0 {
		var ns []string
		for _, n := range st.Nodes {
			r := "Ready"
			if !n.Ready {
				r = "NotReady"
			}
			ns = append(ns, fmt.Sprintf("%s (%s, %s)", n.Name, n.Role, r))
		}
		fmt.Fprintf(out, "Nodes:     %s\n", strings.Join(ns, ", "))
	}
	return nil
}

// printIngress lists the hosts this node's ingress serves, their certificates and problems.
func printIngress(out io.Writer, st *agent.Status) {
	var lines []string
	for _, h := range st.Ingress {
		if h.Host == "*" && len(h.Routes) == 0 && len(h.Problems) == 0 {
			continue
		}
		line := fmt.Sprintf("  %s", h.Host)
		if h.Certificate != "" {
			line += fmt.Sprintf(": certificate from %s", h.Certificate)
			if !h.NotAfter.IsZero() {
				line += fmt.Sprintf(", expires %s", h.NotAfter.Format("2006-01-02"))
			}
		}
		if h.Redirect {
			line += ", http → https"
		}
		lines = append(lines, line)
		for _, p := range h.Problems {
			lines = append(lines, "    ! "+p)
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(out, "Ingress:")
		for _, l := range lines {
			fmt.Fprintln(out, l)
		}
	}
}

func countString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
