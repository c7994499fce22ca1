// Command skiff is the whole product: `skiff agent` runs a node; every other subcommand
// talks to an agent.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/skiffhq/skiff/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Root().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		os.Exit(cli.ExitCode(err))
	}
}
