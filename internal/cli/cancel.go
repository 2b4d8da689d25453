package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// defaultCancelWait bounds the wait for a rollback. The controller removes
// its finalizer when both agents have cleaned up, or at the latest when its
// two-minute cleanup deadline passes.
const defaultCancelWait = 3 * time.Minute

// cancelOptions are the settings of "kubectl migrate cancel".
type cancelOptions struct {
	root    *rootOptions
	name    string
	wait    bool
	timeout time.Duration
}

func newCancelCommand(root *rootOptions) *cobra.Command {
	o := &cancelOptions{root: root}
	cmd := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a PodMigration and roll it back",
		Long: `Cancel a PodMigration by deleting it. lpm rolls back a migration that has not
succeeded: it deletes the restored pod, thaws the source pod once the restored
pod is gone and removes the checkpoints. With --wait the command
waits until the rollback has finished and the PodMigration is gone.

A migration that succeeded cannot be rolled back, and cancel rejects it.`,
		Example: `  # Cancel migration web-x7k2p
  kubectl migrate cancel web-x7k2p

  # Cancel it and wait up to 5 minutes for the rollback to finish
  kubectl migrate cancel web-x7k2p --wait --timeout 5m`,
		ValidArgsFunction: completeMigrationNames(root),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := migrationNameFromArgs(args, cmd.CommandPath())
			if err != nil {
				return err
			}
			if o.timeout <= 0 {
				return usageErrorf("invalid --timeout %s: must be positive", o.timeout)
			}
			o.name = name
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.wait, "wait", false, "Wait until the rollback has finished.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", defaultCancelWait,
		"Maximum time to wait for the rollback with --wait.")
	return cmd
}

func (o *cancelOptions) run(ctx context.Context) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	ns, _, err := o.root.namespace()
	if err != nil {
		return err
	}
	pm, err := getMigration(ctx, c.client, ns, o.name)
	if err != nil {
		return err
	}
	out := o.root.streams.Out

	if pm.Status.Phase == lpmv1.PhaseSucceeded && !pm.Spec.DryRun {
		return fmt.Errorf("PodMigration %s already succeeded and cannot be rolled back: pod %s/%s runs on %s. "+
			"To delete the record only, run: kubectl delete podmigration %s -n %s",
			pm.Name, pm.Namespace, pm.Spec.PodName, orNone(pm.Status.TargetNode), pm.Name, pm.Namespace)
	}

	if pm.DeletionTimestamp != nil {
		_, _ = fmt.Fprintf(out, "PodMigration %s is already being cancelled.\n", pm.Name)
	} else {
		err := c.client.Delete(ctx, pm, client.Preconditions{UID: &pm.UID})
		switch {
		case apierrors.IsNotFound(err):
			_, _ = fmt.Fprintf(out, "PodMigration %s is already gone.\n", pm.Name)
			return nil
		case err != nil:
			return fmt.Errorf("failed to delete PodMigration %s/%s: %w", pm.Namespace, pm.Name, err)
		}
		_, _ = fmt.Fprintf(out, "podmigration.lpm.dev/%s cancelled\n", pm.Name)
	}

	if !o.wait {
		if pm.Spec.DryRun || pm.Status.Phase == "" {
			return nil
		}
		_, _ = fmt.Fprintf(out, "lpm rolls the migration back. To wait for it: %s %s -n %s --wait\n",
			"kubectl migrate cancel", pm.Name, pm.Namespace)
		return nil
	}
	return o.waitForRollback(ctx, c, pm, out)
}

// waitForRollback follows pm until it is gone, and writes a line each time
// an agent reports that it cleaned up.
func (o *cancelOptions) waitForRollback(ctx context.Context, c *clients, pm *lpmv1.PodMigration, out io.Writer) error {
	_, _ = fmt.Fprintf(out, "Waiting for the rollback of %s to finish...\n", pm.Name)
	reported := map[string]bool{}
	waitCtx, cancel := context.WithTimeoutCause(ctx, o.timeout, errWaitTimedOut)
	defer cancel()

	f := &follower{
		client: c.client,
		clock:  o.root.deps.Clock,
		key:    types.NamespacedName{Namespace: pm.Namespace, Name: pm.Name},
		observe: func(current *lpmv1.PodMigration) bool {
			if current.UID != pm.UID {
				// A new PodMigration of the same name: the old one is gone.
				return true
			}
			for _, line := range cleanupLines(current, reported) {
				_, _ = fmt.Fprintln(out, line)
			}
			return false
		},
	}
	last, err := f.run(waitCtx)
	if last == nil {
		last = pm
	}

	switch {
	case err == nil || errors.Is(err, errMigrationDeleted):
		_, _ = fmt.Fprintf(out, "Rollback finished: pod %s/%s runs on %s.\n",
			pm.Namespace, pm.Spec.PodName, orNone(last.Status.SourceNode))
		return nil
	case errors.Is(err, errWaitTimedOut):
		_, _ = fmt.Fprintf(out, "Stopped waiting after %s. The rollback of %s goes on, and "+
			"the controller removes the PodMigration once both agents have cleaned up.\n",
			formatDuration(o.timeout), pm.Name)
		return reportedError(ExitWaitTimedOut, fmt.Errorf("timed out waiting for the rollback of %s", pm.Name))
	case errors.Is(err, ErrInterrupted) || errors.Is(err, context.Canceled):
		_, _ = fmt.Fprintf(out, "Stopped watching. The rollback of %s goes on.\n", pm.Name)
		return reportedError(ExitInterrupted, fmt.Errorf("stopped watching the rollback of %s", pm.Name))
	default:
		return err
	}
}

// cleanupLines returns a line for each agent that reports CleanedUp and is
// not yet in reported, which it updates.
func cleanupLines(pm *lpmv1.PodMigration, reported map[string]bool) []string {
	var lines []string
	check := func(role, node string, conditions []metav1.Condition) {
		if reported[role] || !meta.IsStatusConditionTrue(conditions, lpmv1.AgentConditionCleanedUp) {
			return
		}
		reported[role] = true
		lines = append(lines, fmt.Sprintf("The %s agent on %s cleaned up.", role, orNone(node)))
	}
	if pm.Status.Source != nil {
		check("source", pm.Status.SourceNode, pm.Status.Source.Conditions)
	}
	if pm.Status.Target != nil {
		check("target", pm.Status.TargetNode, pm.Status.Target.Conditions)
	}
	return lines
}
