package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// listOptions are the settings of "kubectl migrate list".
type listOptions struct {
	root          *rootOptions
	allNamespaces bool
	podName       string
	output        string
}

func newListCommand(root *rootOptions) *cobra.Command {
	o := &listOptions{root: root}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List PodMigrations",
		Long: `List the PodMigrations of the namespace, or of every namespace with -A, with
the pod, source and target nodes, phase, downtime and age of each.`,
		Example: `  # List the migrations of the current namespace
  kubectl migrate list

  # List every migration of pod web
  kubectl migrate list --pod web

  # List the migrations of all namespaces
  kubectl migrate list -A`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("list takes no arguments, got %q", args)
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(o.output); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false,
		"List the PodMigrations of all namespaces.")
	cmd.Flags().StringVar(&o.podName, "pod", "", "List only the PodMigrations of this pod.")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Print the list as json or yaml.")
	_ = cmd.RegisterFlagCompletionFunc("pod", completeFlagNames(root, listPodNames))
	_ = cmd.RegisterFlagCompletionFunc("output", completeOutputFormats)
	return cmd
}

func (o *listOptions) run(ctx context.Context) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	ns, _, err := o.root.namespace()
	if err != nil {
		return err
	}

	var opts []client.ListOption
	if !o.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	if o.podName != "" {
		// spec.podName is a selectable field of the CRD.
		opts = append(opts, client.MatchingFieldsSelector{
			Selector: fields.OneTermEqualSelector("spec.podName", o.podName)})
	}
	list := &lpmv1.PodMigrationList{}
	if err := c.client.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("failed to list PodMigrations: %w", err)
	}
	sortMigrations(list.Items)

	if o.output != outputNone {
		return printObject(o.root.streams.Out, o.output, list)
	}
	if len(list.Items) == 0 {
		if o.allNamespaces {
			_, _ = fmt.Fprintln(o.root.streams.ErrOut, "No PodMigrations found.")
		} else {
			_, _ = fmt.Fprintf(o.root.streams.ErrOut, "No PodMigrations found in namespace %s.\n", ns)
		}
		return nil
	}
	return writeMigrationTable(o.root.streams.Out, list.Items, o.allNamespaces, o.root.deps.Clock.Now())
}

// sortMigrations orders migrations by namespace, then newest first.
func sortMigrations(items []lpmv1.PodMigration) {
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		ti, tj := items[i].CreationTimestamp, items[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return items[i].Name < items[j].Name
	})
}

// writeMigrationTable writes the table of "kubectl migrate list".
func writeMigrationTable(out io.Writer, items []lpmv1.PodMigration, withNamespace bool, now time.Time) error {
	w := printers.GetNewTabWriter(out)
	if withNamespace {
		_, _ = fmt.Fprint(w, "NAMESPACE\t")
	}
	_, _ = fmt.Fprintln(w, "NAME\tPOD\tSOURCE\tTARGET\tPHASE\tDOWNTIME\tAGE")
	for i := range items {
		pm := &items[i]
		if withNamespace {
			_, _ = fmt.Fprintf(w, "%s\t", pm.Namespace)
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			pm.Name,
			pm.Spec.PodName,
			orNone(pm.Status.SourceNode),
			orNone(targetNodeOf(pm)),
			listPhase(pm),
			listDowntime(pm),
			formatAge(pm.CreationTimestamp, now))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("failed to write the table: %w", err)
	}
	return nil
}

// targetNodeOf returns the node the pod moves to: the one the controller
// recorded, or else the one the user requested.
func targetNodeOf(pm *lpmv1.PodMigration) string {
	if pm.Status.TargetNode != "" {
		return pm.Status.TargetNode
	}
	return pm.Spec.TargetNode
}

// listPhase returns the PHASE column: the phase, with the reason after a
// colon for a failed migration ("Failed:TransferFailed") and a dry run that
// passed ("Succeeded:DryRun"), or "Cancelling" for a deleted migration that
// still rolls back. The column has no spaces, so tools can split the table.
func listPhase(pm *lpmv1.PodMigration) string {
	phase := string(pm.Status.Phase)
	switch {
	case pm.DeletionTimestamp != nil && pm.Status.Phase != lpmv1.PhaseSucceeded:
		return "Cancelling"
	case phase == "":
		return string(lpmv1.PhasePending)
	case pm.Status.Phase == lpmv1.PhaseFailed:
		reason, _ := failureReason(pm)
		return "Failed:" + string(reason)
	case pm.Status.Phase == lpmv1.PhaseSucceeded && pm.Spec.DryRun:
		return "Succeeded:DryRun"
	}
	return phase
}

func listDowntime(pm *lpmv1.PodMigration) string {
	if pm.Status.Downtime == nil {
		return "<none>"
	}
	return formatDuration(pm.Status.Downtime.Duration)
}
