// Package cli implements kubectl-migrate, the kubectl plugin that moves a
// running pod to another node through a PodMigration and follows it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// defaultWaitGrace is how long a wait lasts beyond the migration's overall
// timeout, so that the controller has time to report the DeadlineExceeded
// failure before the wait gives up.
const defaultWaitGrace = 30 * time.Second

// Deps are the parts of the environment that the commands use and tests
// replace.
type Deps struct {
	// Clock is the source of the current time and of the display's ticks.
	Clock clock.WithTicker
	// IsTerminal reports whether a stream is an interactive terminal that
	// accepts cursor movement.
	IsTerminal func(w io.Writer) bool
	// TerminalWidth returns the width of a terminal stream in columns, or 0
	// when unknown.
	TerminalWidth func(w io.Writer) int
	// WaitGrace is added to a migration's overall timeout to bound the wait
	// for its end.
	WaitGrace time.Duration
	// RefreshInterval is how often the live progress display redraws.
	RefreshInterval time.Duration
}

// DefaultDeps returns the dependencies of the real program.
func DefaultDeps() Deps {
	return Deps{
		Clock:           clock.RealClock{},
		IsTerminal:      isTerminal,
		TerminalWidth:   terminalWidth,
		WaitGrace:       defaultWaitGrace,
		RefreshInterval: 200 * time.Millisecond,
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	return os.Getenv("TERM") != "dumb"
}

func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// rootOptions are the settings that every command shares.
type rootOptions struct {
	configFlags *genericclioptions.ConfigFlags
	streams     genericiooptions.IOStreams
	deps        Deps
	clients     *clients
}

// NewRootCommand builds the kubectl-migrate command tree.
func NewRootCommand(streams genericiooptions.IOStreams, deps Deps) *cobra.Command {
	o := &rootOptions{
		configFlags: genericclioptions.NewConfigFlags(true).WithWarningPrinter(streams),
		streams:     streams,
		deps:        deps,
	}

	cmd := &cobra.Command{
		Use:   "kubectl-migrate",
		Short: "Move running pods to another node with lpm",
		Long: `Move a running pod, with its processes' memory, to another node.

kubectl migrate creates a PodMigration, which the lpm controller and node
agents carry out: they checkpoint the pod's containers, carry the checkpoints
to the target node and restore them there in a new pod.

Exit status:
  0    the command succeeded (for pod and check: the migration or the checks too)
  1    the migration or the preflight checks failed, or an API request failed
  2    invalid arguments or flags; nothing was created
  3    the wait timed out; the migration goes on
  130  the wait was interrupted; the migration goes on`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl migrate",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.SetIn(streams.In)

	flags := cmd.PersistentFlags()
	o.configFlags.AddFlags(flags)
	addKlogVerbosityFlag(cmd)
	registerConfigFlagCompletion(cmd, o)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%w\nSee '%s --help' for usage", err, c.CommandPath())
	})

	cmd.AddCommand(
		newPodCommand(o),
		newListCommand(o),
		newStatusCommand(o),
		newCancelCommand(o),
		newCheckCommand(o),
		newVersionCommand(o),
	)
	addCompletionHelp(cmd)
	return cmd
}

// addCompletionHelp adds cobra's completion command now, rather than at
// execution, to extend its help with the kubectl side of plugin completion.
func addCompletionHelp(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Long += `
kubectl completes the arguments of "kubectl migrate" when an executable
named kubectl_complete-migrate is on the PATH. Create it with:

  cat > kubectl_complete-migrate <<'SCRIPT'
  #!/usr/bin/env sh
  exec kubectl-migrate __complete "$@"
  SCRIPT
  chmod +x kubectl_complete-migrate

The scripts this command generates complete "kubectl-migrate" when it runs
on its own.
`
	}
}

// addKlogVerbosityFlag adds kubectl's -v flag, which sets the verbosity of
// client-go's request logging.
func addKlogVerbosityFlag(cmd *cobra.Command) {
	goFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(goFlags)
	v := goFlags.Lookup("v")
	if v == nil {
		return
	}
	cmd.PersistentFlags().AddGoFlag(v)
}

// Run executes the command line args and returns the exit status. It prints
// an error that the command did not already explain to streams.ErrOut.
func Run(ctx context.Context, streams genericiooptions.IOStreams, deps Deps, args []string) int {
	cmd := NewRootCommand(streams, deps)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}

	var exitErr *exitError
	if !errors.As(err, &exitErr) || !exitErr.reported {
		_, _ = fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
	}
	if exitErr == nil && isCobraUsageError(err) {
		return ExitUsage
	}
	return exitCode(err)
}

// isCobraUsageError reports whether err is cobra's own error for an unknown
// command, which cobra returns as a plain error.
func isCobraUsageError(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}
