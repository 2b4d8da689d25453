package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// defaultOverallTimeout is the CRD's default for spec.timeouts.overall.
const defaultOverallTimeout = 30 * time.Minute

// podOptions are the settings of "kubectl migrate pod".
type podOptions struct {
	root    *rootOptions
	request migrationRequest
	noWait  bool
	output  string

	spec      lpmv1.PodMigrationSpec
	namespace string
}

func newPodCommand(root *rootOptions) *cobra.Command {
	o := &podOptions{root: root}
	cmd := &cobra.Command{
		Use:   "pod NAME [--to NODE]",
		Short: "Move a running pod to another node",
		Long: `Move a running pod to another node.

Creates a PodMigration for the pod and follows it until it ends. On a terminal
the progress is redrawn in place: one line per phase with its duration, a bar
for the bytes checkpointed and transferred, and the downtime at the end. Other
output gets one plain line per phase transition. On failure the command prints
the reason, the controller's message and what to do.

Interrupting the command (Ctrl-C) stops the wait only: the migration goes on,
and the command prints how to cancel it.`,
		Example: `  # Move pod web to a node that the controller picks
  kubectl migrate pod web

  # Move pod web to node worker-2 and print the finished PodMigration as YAML
  kubectl migrate pod web --to worker-2 -o yaml

  # Copy the pod instead of moving it: the source pod keeps running
  kubectl migrate pod web --to worker-2 --keep

  # Carry the checkpoint images through a registry
  kubectl migrate pod web --transfer registry --registry registry.example.com/ops/checkpoints \
      --pull-secret registry-credentials

  # Run the preflight checks only
  kubectl migrate pod web --dry-run`,
		ValidArgsFunction: completePodNames(root),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd, args); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}

	flags := cmd.Flags()
	flags.StringVar(&o.request.targetNode, "to", "",
		"Node to move the pod to. When empty, the controller picks a node the pod fits on.")
	flags.BoolVar(&o.request.keep, "keep", false,
		"Keep the source pod running after the restored pod is verified, which copies the pod.")
	flags.BoolVar(&o.request.dryRun, "dry-run", false,
		"Run the preflight checks only, the agents' checks included, without touching the pod.")
	flags.DurationVar(&o.request.timeout, "timeout", 0,
		"Maximum duration of the whole migration, between 1s and 12h (spec.timeouts.overall, default 30m). "+
			"The command waits this long plus 30s for the result.")
	flags.StringVar(&o.request.transfer, "transfer", "",
		"How the checkpoint images reach the target node: direct (agent to agent, the default) or registry.")
	flags.StringVar(&o.request.registry, "registry", "",
		"Image repository for --transfer registry, for example registry.example.com/team/checkpoints.")
	flags.StringVar(&o.request.pullSecret, "pull-secret", "",
		"Name of a kubernetes.io/dockerconfigjson Secret in the pod's namespace with the registry's credentials.")
	flags.DurationVar(&o.request.settle, "settle", 0,
		"How long the restored pod must stay Ready without a container restart before the source pod is "+
			"removed, between 0s and 10m (default 5s).")
	flags.BoolVar(&o.noWait, "no-wait", false,
		"Create the PodMigration and exit without following it.")
	flags.StringVarP(&o.output, "output", "o", "",
		"Print the final PodMigration as json or yaml. Progress then goes to standard error.")

	_ = cmd.RegisterFlagCompletionFunc("to", completeNodeNames(root))
	_ = cmd.RegisterFlagCompletionFunc("transfer", cobra.FixedCompletions(
		[]string{"direct", "registry"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("pull-secret", completeSecretNames(root))
	_ = cmd.RegisterFlagCompletionFunc("output", completeOutputFormats)
	return cmd
}

// complete reads and validates the arguments and flags. It fails before any
// request to the API server.
func (o *podOptions) complete(cmd *cobra.Command, args []string) error {
	podName, err := podNameFromArgs(args, cmd.CommandPath())
	if err != nil {
		return err
	}
	o.request.podName = podName
	o.request.timeoutSet = cmd.Flags().Changed("timeout")
	o.request.settleSet = cmd.Flags().Changed("settle")

	if err := validateOutput(o.output); err != nil {
		return err
	}
	o.spec, err = o.request.buildSpec()
	if err != nil {
		return err
	}

	o.namespace, _, err = o.root.namespace()
	return err
}

// progressOut returns the stream for progress: standard output, unless -o
// reserves it for the printed object.
func (o *podOptions) progressOut() io.Writer {
	if o.output != outputNone {
		return o.root.streams.ErrOut
	}
	return o.root.streams.Out
}

func (o *podOptions) run(ctx context.Context) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}

	// The pod's container count sizes the checkpoint bar. A missing pod
	// fails here, before anything is created.
	pod := &corev1.Pod{}
	podContainers := 0
	err = c.client.Get(ctx, types.NamespacedName{Namespace: o.namespace, Name: o.spec.PodName}, pod)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("pod %q not found in namespace %q", o.spec.PodName, o.namespace)
	case apierrors.IsForbidden(err):
		// The user may not read pods but may still create PodMigrations,
		// and the controller checks the pod.
	case err != nil:
		return fmt.Errorf("failed to get pod %s/%s: %w", o.namespace, o.spec.PodName, err)
	default:
		podContainers = len(pod.Spec.Containers)
	}

	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.namespace, GenerateName: o.spec.PodName + "-"},
		Spec:       o.spec,
	}
	if err := c.client.Create(ctx, pm); err != nil {
		return fmt.Errorf("failed to create a PodMigration for pod %s/%s: %w", o.namespace, o.spec.PodName, err)
	}
	out := o.progressOut()
	_, _ = fmt.Fprintf(out, "podmigration.lpm.dev/%s created\n", pm.Name)

	if o.noWait {
		if o.output != outputNone {
			return printObject(o.root.streams.Out, o.output, pm)
		}
		_, _ = fmt.Fprintf(out, "Follow it with: kubectl migrate status %s -n %s\n", pm.Name, pm.Namespace)
		return nil
	}

	waitFor := defaultOverallTimeout
	if o.spec.Timeouts != nil && o.spec.Timeouts.Overall != nil {
		waitFor = o.spec.Timeouts.Overall.Duration
	}
	waitFor += o.root.deps.WaitGrace

	final, err := followWithProgress(ctx, o.root, c, pm, podContainers, out, waitFor)
	if err != nil {
		return err
	}
	if o.output != outputNone {
		if err := printObject(o.root.streams.Out, o.output, final); err != nil {
			return err
		}
	}
	if final.Status.Phase == lpmv1.PhaseFailed {
		reason, _ := failureReason(final)
		return reportedError(ExitFailed, fmt.Errorf("migration %s failed: %s", final.Name, reason))
	}
	return nil
}

// followWithProgress follows pm until it ends, shows its progress on out and
// then how it ended. When the wait ends first, it explains what happens to
// the migration and returns an error with the matching exit status.
func followWithProgress(ctx context.Context, root *rootOptions, c *clients, pm *lpmv1.PodMigration,
	podContainers int, out io.Writer, waitFor time.Duration) (*lpmv1.PodMigration, error) {
	key := types.NamespacedName{Namespace: pm.Namespace, Name: pm.Name}
	tracker := newProgressTracker(root.deps.Clock.Now(), podContainers)
	display := newProgressDisplay(out, root.deps, tracker)

	waitCtx, cancel := context.WithTimeoutCause(ctx, waitFor, errWaitTimedOut)
	defer cancel()
	f := &follower{
		client: c.client,
		clock:  root.deps.Clock,
		key:    key,
		observe: func(pm *lpmv1.PodMigration) bool {
			display.update(pm)
			return isTerminalPhase(pm.Status.Phase)
		},
		tick:         display.tick,
		tickInterval: root.deps.RefreshInterval,
	}
	final, err := f.run(waitCtx)
	display.finish()
	if final == nil {
		final = pm
	}

	if err != nil {
		return final, explainStoppedWait(out, final, waitFor, err)
	}
	total, known := tracker.totalDuration(final)
	for _, line := range resultLines(final, total, known) {
		_, _ = fmt.Fprintln(out, line)
	}
	return final, nil
}

// explainStoppedWait writes why following pm stopped before it ended and
// how to go on, and returns the error with the matching exit status.
func explainStoppedWait(out io.Writer, pm *lpmv1.PodMigration, waitFor time.Duration, err error) error {
	phase := string(pm.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	follow := fmt.Sprintf("To follow it: kubectl migrate status %s -n %s", pm.Name, pm.Namespace)
	cancelHint := fmt.Sprintf("To cancel it: kubectl migrate cancel %s -n %s", pm.Name, pm.Namespace)

	switch {
	case errors.Is(err, errMigrationDeleted):
		_, _ = fmt.Fprintf(out, "PodMigration %s was deleted before it ended, which cancels it. "+
			"lpm rolls the migration back.\n", pm.Name)
		return reportedError(ExitFailed, fmt.Errorf("PodMigration %s was deleted", pm.Name))
	case errors.Is(err, errWaitTimedOut):
		_, _ = fmt.Fprintf(out, "Stopped waiting after %s. PodMigration %s is still in phase %s and goes on.\n%s\n%s\n",
			formatDuration(waitFor), pm.Name, phase, follow, cancelHint)
		return reportedError(ExitWaitTimedOut, fmt.Errorf("timed out waiting for PodMigration %s", pm.Name))
	case errors.Is(err, ErrInterrupted) || errors.Is(err, context.Canceled):
		_, _ = fmt.Fprintf(out, "Stopped watching. PodMigration %s is in phase %s and goes on.\n%s\n%s\n",
			pm.Name, phase, follow, cancelHint)
		return reportedError(ExitInterrupted, fmt.Errorf("stopped watching PodMigration %s", pm.Name))
	default:
		return err
	}
}
