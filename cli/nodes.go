package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/skiffhq/skiff/agent"
)

func newNodesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the cluster's members: role, readiness, pods, resources, heartbeat, version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			var nodes []agent.NodeInfo
			if err := c.getJSON(cmd.Context(), agent.PathNodes, nil, &nodes); err != nil {
				return err
			}
			if output == "json" {
				b, _ := json.MarshalIndent(nodes, "", "  ")
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tROLE\tSTATUS\tPODS\tCPU (REQ/ALLOC)\tMEMORY (REQ/ALLOC)\tLAST HEARTBEAT\tVERSION")
			for _, n := range nodes {
				status := "Ready"
				if !n.Ready {
					status = "NotReady"
				}
				if n.Cordoned {
					status += ",SchedulingDisabled"
				}
				hb := duration.HumanDuration(time.Since(n.LastHeartbeat)) + " ago"
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s/%s\t%s/%s\t%s\t%s\n", n.Name, n.Address, orNone(n.Role), status, n.Pods,
					resource.NewMilliQuantity(n.CPU.Requested, resource.DecimalSI), resource.NewMilliQuantity(n.CPU.Allocatable, resource.DecimalSI),
					humanBytes(n.Memory.Requested), humanBytes(n.Memory.Allocatable), hb, n.Version)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func humanBytes(b int64) string {
	const mi = 1 << 20
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGi", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%dMi", b/mi)
}

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node cordon|uncordon|drain|remove NAME",
		Short: "Cordon, uncordon, drain or remove a node",
		Example: `  skiff node drain pi3      # cordon and move its pods elsewhere
  skiff node remove pi3     # take it out of the cluster (Raft and scheduling)`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"cordon", "uncordon", "drain", "remove"},
		RunE: func(cmd *cobra.Command, args []string) error {
			op, name := args[0], args[1]
			switch op {
			case "cordon", "uncordon", "drain", "remove":
			default:
				return fmt.Errorf("unknown operation %q: want cordon, uncordon, drain or remove", op)
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodPost, agent.PathNodeOp+url.PathEscape(name)+"/"+op, nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&out)
			fmt.Fprintln(cmd.OutOrStdout(), out["message"])
			return nil
		},
	}
	return cmd
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens"}
	var ttl string
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a new join token for `skiff agent --join ... --token-file`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), http.MethodPost, agent.PathTokens, url.Values{"ttl": {ttl}}, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out["token"])
			exp := "never expires"
			if out["expires"] != "" {
				exp = "expires " + out["expires"]
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "join with: skiff agent --name NAME --join %s --token-file FILE   (token %s)\n", out["join"], exp)
			return nil
		},
	}
	create.Flags().StringVar(&ttl, "ttl", "24h", "how long the token is valid (0: never expires)")
	cmd.AddCommand(create)
	return cmd
}
