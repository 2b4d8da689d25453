package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const (
	// defaultCheckTimeout bounds the wait for the preflight checks.
	defaultCheckTimeout = 2 * time.Minute
	// cleanupTimeout bounds the deletion of a check's dry-run PodMigration,
	// which runs even after the command's context has ended.
	cleanupTimeout = 10 * time.Second
)

// checkOptions are the settings of "kubectl migrate check".
type checkOptions struct {
	root       *rootOptions
	targetNode string
	timeout    time.Duration
	local      bool
	output     string

	// podName or nodeName, whichever the argument names.
	podName  string
	nodeName string
}

func newCheckCommand(root *rootOptions) *cobra.Command {
	o := &checkOptions{root: root}
	cmd := &cobra.Command{
		Use:   "check POD | node/NODE",
		Short: "Report whether a pod, or the pods of a node, can move",
		Long: `Report whether a pod can move, or which pods of a node can move and why not.

For a pod, check creates a PodMigration with dryRun set, waits until the
controller and the agents of the source and target nodes have run their
preflight checks, prints each check's result and deletes the PodMigration.
The pod is never touched.

For node/NODE, check does the same for every pod that runs on the node, in
all namespaces unless --namespace is given.

Exit status 0 means the pod, or every pod of the node, can move.`,
		Example: `  # Can pod web move, and to which node?
  kubectl migrate check web

  # Can pod web move to worker-2?
  kubectl migrate check web --to worker-2

  # Which pods of worker-1 can move?
  kubectl migrate check node/worker-1`,
		ValidArgsFunction: completeCheckTargets(root),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd, args); err != nil {
				return err
			}
			if o.nodeName != "" {
				return o.runNode(cmd.Context(), cmd.Flags().Changed("namespace"))
			}
			return o.runPod(cmd.Context())
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&o.targetNode, "to", "", "Check the move to this node. When empty, the controller picks one.")
	flags.DurationVar(&o.timeout, "timeout", defaultCheckTimeout, "Maximum time to wait for the checks.")
	flags.BoolVar(&o.local, "local", false,
		"Evaluate the API-level checks in this process without creating anything. "+
			"The agents' checks do not run.")
	flags.StringVarP(&o.output, "output", "o", "",
		"Print the dry-run PodMigration as json or yaml (pods only).")
	_ = cmd.RegisterFlagCompletionFunc("to", completeNodeNames(root))
	_ = cmd.RegisterFlagCompletionFunc("output", completeOutputFormats)
	return cmd
}

// parseCheckTarget splits the argument of check into a pod or a node name.
func parseCheckTarget(arg string) (podName, nodeName string, err error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		return arg, "", validateObjectName("pod name", arg)
	}
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		return name, "", validateObjectName("pod name", name)
	case "node", "nodes", "no":
		return "", name, validateObjectName("node name", name)
	default:
		return "", "", usageErrorf("invalid argument %q: expected POD, pod/POD or node/NODE", arg)
	}
}

func (o *checkOptions) complete(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 0:
		return usageErrorf("missing pod or node: run '%s POD' or '%s node/NODE'",
			cmd.CommandPath(), cmd.CommandPath())
	case 1:
	default:
		return usageErrorf("expected one pod or node/NODE, got %d arguments: %s",
			len(args), strings.Join(args, " "))
	}
	var err error
	if o.podName, o.nodeName, err = parseCheckTarget(args[0]); err != nil {
		return err
	}

	if o.targetNode != "" {
		if err := validateObjectName("--to", o.targetNode); err != nil {
			return err
		}
	}
	if o.timeout <= 0 {
		return usageErrorf("invalid --timeout %s: must be positive", o.timeout)
	}
	if err := validateOutput(o.output); err != nil {
		return err
	}
	if o.output != outputNone && (o.nodeName != "" || o.local) {
		return usageErrorf("--output works only for a pod check without --local")
	}
	return nil
}

// dryRunResult is the outcome of one dry-run PodMigration.
type dryRunResult struct {
	// migration is the last version seen, nil when none was created.
	migration *lpmv1.PodMigration
	// err is set when the checks did not end.
	err error
}

// dryRun creates a dry-run PodMigration for a pod, follows it until the
// checks end or ctx ends, and deletes it.
func dryRun(ctx context.Context, root *rootOptions, c *clients, ns, podName, targetNode string) dryRunResult {
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: podName + "-check-"},
		Spec:       lpmv1.PodMigrationSpec{PodName: podName, TargetNode: targetNode, DryRun: true},
	}
	if err := c.client.Create(ctx, pm); err != nil {
		return dryRunResult{err: fmt.Errorf("failed to create a dry-run PodMigration for pod %s/%s: %w",
			ns, podName, err)}
	}
	defer deleteDryRun(ctx, c.client, pm)

	f := &follower{
		client:  c.client,
		clock:   root.deps.Clock,
		key:     types.NamespacedName{Namespace: ns, Name: pm.Name},
		observe: func(pm *lpmv1.PodMigration) bool { return isTerminalPhase(pm.Status.Phase) },
	}
	last, err := f.run(ctx)
	if last == nil {
		last = pm
	}
	return dryRunResult{migration: last, err: err}
}

// deleteDryRun deletes a check's PodMigration, with a context of its own so
// that the object goes away even when the command was interrupted.
func deleteDryRun(ctx context.Context, c client.Client, pm *lpmv1.PodMigration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := c.Delete(ctx, pm, client.Preconditions{UID: &pm.UID}); client.IgnoreNotFound(err) != nil {
		klog.FromContext(ctx).Error(err, "Failed to delete the dry-run PodMigration", "podMigration",
			klog.KObj(pm))
	}
}

func (o *checkOptions) runPod(ctx context.Context) error {
	if o.local {
		return o.runLocalPod(ctx)
	}
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	ns, _, err := o.root.namespace()
	if err != nil {
		return err
	}
	if err := getPod(ctx, c.client, ns, o.podName, &corev1.Pod{}); err != nil {
		return err
	}

	out := o.root.streams.Out
	if o.output != outputNone {
		out = o.root.streams.ErrOut
	}
	_, _ = fmt.Fprintf(out, "Running the preflight checks for pod %s/%s...\n", ns, o.podName)
	waitCtx, cancel := context.WithTimeoutCause(ctx, o.timeout, errWaitTimedOut)
	defer cancel()
	result := dryRun(waitCtx, o.root, c, ns, o.podName, o.targetNode)
	if result.err != nil {
		return explainUnfinishedCheck(out, result, o.timeout)
	}

	writeCheckReport(out, result.migration)
	if o.output != outputNone {
		if err := printObject(o.root.streams.Out, o.output, result.migration); err != nil {
			return err
		}
	}
	if result.migration.Status.Phase != lpmv1.PhaseSucceeded {
		reason, _ := failureReason(result.migration)
		return reportedError(ExitFailed, fmt.Errorf("pod %s/%s cannot move: %s", ns, o.podName, reason))
	}
	return nil
}

// getPod gets a pod and turns NotFound into a message that names the
// namespace.
func getPod(ctx context.Context, c client.Client, ns, name string, pod *corev1.Pod) error {
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("pod %q not found in namespace %q", name, ns)
		}
		return fmt.Errorf("failed to get pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// explainUnfinishedCheck writes why a pod's checks did not end and returns
// the error with the matching exit status.
func explainUnfinishedCheck(out io.Writer, result dryRunResult, timeout time.Duration) error {
	switch {
	case errors.Is(result.err, errWaitTimedOut):
		phase := "Pending"
		if result.migration != nil && result.migration.Status.Phase != "" {
			phase = string(result.migration.Status.Phase)
		}
		_, _ = fmt.Fprintf(out, "The checks did not finish within %s (phase %s). %s\n",
			formatDuration(timeout), phase, adviceFor(pendingReason(result.migration), nil))
		return reportedError(ExitWaitTimedOut, errors.New("timed out waiting for the preflight checks"))
	case errors.Is(result.err, ErrInterrupted) || errors.Is(result.err, context.Canceled):
		_, _ = fmt.Fprintln(out, "Stopped. The dry-run PodMigration was deleted.")
		return reportedError(ExitInterrupted, errors.New("interrupted"))
	default:
		return result.err
	}
}

// pendingReason returns the reason a migration that has not ended waits
// for: the Succeeded condition's reason, or Pending.
func pendingReason(pm *lpmv1.PodMigration) lpmv1.Reason {
	if pm != nil {
		if c := summaryCondition(pm); c != nil && c.Reason != "" {
			return lpmv1.Reason(c.Reason)
		}
	}
	return lpmv1.ReasonPending
}

// checkRow is one line of a pod's preflight report.
type checkRow struct {
	check   string
	node    string
	result  string
	reason  string
	message string
}

// checkRows turns a finished dry run into one row for the controller's
// API-level checks and one for each agent's checks.
func checkRows(pm *lpmv1.PodMigration) []checkRow {
	var sourceConditions, targetConditions []metav1.Condition
	if pm.Status.Source != nil {
		sourceConditions = pm.Status.Source.Conditions
	}
	if pm.Status.Target != nil {
		targetConditions = pm.Status.Target.Conditions
	}
	source := agentCheckRow("source agent", pm.Status.SourceNode, sourceConditions)
	target := agentCheckRow("target agent", pm.Status.TargetNode, targetConditions)

	// The agents check only after the controller's checks passed and named
	// both nodes, so an agent's report means the controller's checks passed.
	api := checkRow{check: "pod and nodes (controller)", node: "-"}
	preflight := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionPreflightPassed)
	agentsRan := source.result != "not run" || target.result != "not run"
	switch {
	case agentsRan || (preflight != nil && preflight.Status == metav1.ConditionTrue):
		api.result = "passed"
	case preflight != nil && preflight.Status == metav1.ConditionFalse:
		api.result, api.reason, api.message = "failed", preflight.Reason, preflight.Message
	case pm.Status.Phase == lpmv1.PhaseFailed:
		reason, message := failureReason(pm)
		api.result, api.reason, api.message = "failed", string(reason), message
	default:
		api.result = "not run"
	}
	return []checkRow{api, source, target}
}

func agentCheckRow(check, node string, conditions []metav1.Condition) checkRow {
	row := checkRow{check: check, node: orNone(node), result: "not run"}
	c := meta.FindStatusCondition(conditions, lpmv1.AgentConditionPrepared)
	if c == nil {
		return row
	}
	row.reason, row.message = c.Reason, c.Message
	switch c.Status {
	case metav1.ConditionTrue:
		row.result = "passed"
	case metav1.ConditionFalse:
		row.result = "failed"
	default:
		row.result = "running"
	}
	return row
}

// writeCheckReport writes the preflight report of a finished dry run.
func writeCheckReport(out io.Writer, pm *lpmv1.PodMigration) {
	pod := pm.Namespace + "/" + pm.Spec.PodName
	w := printers.GetNewTabWriter(out)
	_, _ = fmt.Fprintln(w, "CHECK\tNODE\tRESULT\tREASON\tMESSAGE")
	for _, r := range checkRows(pm) {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.check, r.node, r.result, orNone(r.reason),
			oneLine(r.message))
	}
	_ = w.Flush()

	if pm.Status.Phase == lpmv1.PhaseSucceeded {
		_, _ = fmt.Fprintf(out, "Pod %s can move from %s to %s.\n", pod,
			orNone(pm.Status.SourceNode), orNone(pm.Status.TargetNode))
		return
	}
	reason, message := failureReason(pm)
	_, _ = fmt.Fprintf(out, "Pod %s cannot move: %s\n", pod, reason)
	if message != "" {
		_, _ = fmt.Fprintf(out, "  %s\n", oneLine(message))
	}
	// The dry run's PodMigration is deleted once the report is written.
	_, _ = fmt.Fprintf(out, "What to do: %s\n", adviceFor(reason, nil))
}
