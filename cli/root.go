// Package cli is skiff's command line: `skiff agent` runs a node, the other commands talk
// to an agent's HTTP API in kubectl's style.
package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/internal/version"
)

// Root returns the skiff command tree.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "GitOps for small edge clusters: git push, every node converges",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the skiff version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "skiff", version.Version)
		},
	})
	for _, c := range []*cobra.Command{newGetCmd(), newDescribeCmd(), newLogsCmd(), newExecCmd(), newStatusCmd(),
		newSyncCmd(), newNodesCmd(), newNodeCmd(), newTokenCmd()} {
		addServerFlags(c)
		root.AddCommand(c)
	}
	root.AddCommand(newAgentCmd(), newDemoCmd(), newCheckCmd(), newSupportCmd())
	return root
}
