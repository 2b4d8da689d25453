// Command kubectl-migrate is the kubectl plugin of lpm: "kubectl migrate pod
// NAME" moves a running pod to another node and follows the migration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/lpm-dev/lpm/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	// The first SIGINT or SIGTERM stops a wait, which then prints how to
	// cancel the migration. A second one ends the process at once.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		signal.Stop(signals)
		cancel(cli.ErrInterrupted)
	}()

	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	return cli.Run(ctx, streams, cli.DefaultDeps(), os.Args[1:])
}
