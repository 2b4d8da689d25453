package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// nodeCheckConcurrency is how many dry runs a node check keeps in flight.
const nodeCheckConcurrency = 8

// podVerdict is whether one pod of a node can move.
type podVerdict struct {
	namespace string
	pod       string
	// movable is "yes", "no" or "unknown" when the checks did not end.
	movable string
	target  string
	reason  string
	message string
}

func (o *checkOptions) runNode(ctx context.Context, namespaceExplicit bool) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	node := &corev1.Node{}
	if err := c.client.Get(ctx, types.NamespacedName{Name: o.nodeName}, node); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("node %q not found", o.nodeName)
		}
		return fmt.Errorf("failed to get Node %q: %w", o.nodeName, err)
	}

	pods, err := o.nodePods(ctx, c.client, namespaceExplicit)
	if err != nil {
		return err
	}
	out := o.root.streams.Out
	agentSummary, err := describeNodeAgent(ctx, c.client, o.nodeName)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(out, "Node %s: %s\n", o.nodeName, agentSummary)
	if len(pods) == 0 {
		_, _ = fmt.Fprintf(out, "No running pods on node %s.\n", o.nodeName)
		return nil
	}

	var verdicts []podVerdict
	if o.local {
		verdicts, err = o.localNodeVerdicts(ctx, c, pods)
		if err != nil {
			return err
		}
	} else {
		_, _ = fmt.Fprintf(out, "Running the preflight checks for %s...\n", plural(len(pods), "pod"))
		verdicts = o.dryRunNodeVerdicts(ctx, c, pods)
	}
	return writeNodeReport(out, o.nodeName, verdicts)
}

// nodePods lists the pods on the node that have not terminated, in the
// --namespace namespace when it was given, else in all namespaces.
func (o *checkOptions) nodePods(ctx context.Context, c client.Client, namespaceExplicit bool) ([]corev1.Pod, error) {
	opts := []client.ListOption{client.MatchingFieldsSelector{
		Selector: fields.OneTermEqualSelector("spec.nodeName", o.nodeName)}}
	if namespaceExplicit {
		ns, _, err := o.root.namespace()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	list := &corev1.PodList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("failed to list the pods of node %s: %w", o.nodeName, err)
	}

	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	return pods, nil
}

// describeNodeAgent summarises the NodeAgent of a node in one line.
func describeNodeAgent(ctx context.Context, c client.Client, nodeName string) (string, error) {
	agent := &lpmv1.NodeAgent{}
	if err := c.Get(ctx, types.NamespacedName{Name: nodeName}, agent); err != nil {
		if apierrors.IsNotFound(err) {
			return "no lpm agent reports for this node (no NodeAgent), so its pods cannot move", nil
		}
		return "", fmt.Errorf("failed to get NodeAgent %q: %w", nodeName, err)
	}
	conditions := agent.Status.Conditions
	state := func(conditionType, yes, no string) string {
		if meta.IsStatusConditionTrue(conditions, conditionType) {
			return yes
		}
		return no
	}
	summary := fmt.Sprintf("lpm agent %s, %s, %s",
		state(lpmv1.NodeAgentReady, "ready", "not ready"),
		state(lpmv1.NodeAgentCheckpointSupported, "checkpoint supported", "checkpoint not supported"),
		state(lpmv1.NodeAgentRestoreSupported, "restore supported", "restore not supported"))
	if caps := agent.Status.Capabilities; caps != nil {
		summary += fmt.Sprintf(" (%s %s, CRIU %s)", orNone(caps.RuntimeName), orNone(caps.RuntimeVersion),
			orNone(caps.CRIUVersion))
	}
	return summary, nil
}

// dryRunNodeVerdicts runs a dry run for each pod, nodeCheckConcurrency at a
// time, all within the check's timeout.
func (o *checkOptions) dryRunNodeVerdicts(ctx context.Context, c *clients, pods []corev1.Pod) []podVerdict {
	waitCtx, cancel := context.WithTimeoutCause(ctx, o.timeout, errWaitTimedOut)
	defer cancel()

	verdicts := make([]podVerdict, len(pods))
	slots := make(chan struct{}, nodeCheckConcurrency)
	var wg sync.WaitGroup
	for i := range pods {
		pod := &pods[i]
		wg.Go(func() {
			verdict := podVerdict{namespace: pod.Namespace, pod: pod.Name, movable: "unknown"}
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				verdict = verdictOf(pod, dryRun(waitCtx, o.root, c, pod.Namespace, pod.Name, o.targetNode))
			case <-waitCtx.Done():
				verdict.reason = "NotChecked"
				verdict.message = "the checks did not start before the timeout"
			}
			verdicts[i] = verdict
		})
	}
	wg.Wait()
	return verdicts
}

// verdictOf turns a pod's dry run into its verdict.
func verdictOf(pod *corev1.Pod, result dryRunResult) podVerdict {
	v := podVerdict{namespace: pod.Namespace, pod: pod.Name, movable: "unknown"}
	if result.err != nil {
		v.reason = "NotFinished"
		v.message = result.err.Error()
		if errors.Is(result.err, errWaitTimedOut) {
			v.message = fmt.Sprintf("the checks did not finish in time (%s)", pendingReason(result.migration))
		}
		return v
	}

	pm := result.migration
	v.target = pm.Status.TargetNode
	if pm.Status.Phase == lpmv1.PhaseSucceeded {
		v.movable = "yes"
		return v
	}
	reason, message := failureReason(pm)
	v.movable, v.reason, v.message = "no", string(reason), message
	return v
}

// writeNodeReport writes the table of a node check and a summary line, and
// returns a reported error unless every pod can move.
func writeNodeReport(out io.Writer, nodeName string, verdicts []podVerdict) error {
	w := printers.GetNewTabWriter(out)
	_, _ = fmt.Fprintln(w, "NAMESPACE\tPOD\tMOVABLE\tTARGET\tREASON\tMESSAGE")
	movable := 0
	for _, v := range verdicts {
		if v.movable == "yes" {
			movable++
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", v.namespace, v.pod, v.movable, orNone(v.target),
			orNone(v.reason), oneLine(v.message))
	}
	_ = w.Flush()

	_, _ = fmt.Fprintf(out, "%d of %s on node %s can move.\n", movable, plural(len(verdicts), "pod"), nodeName)
	if movable < len(verdicts) {
		return reportedError(ExitFailed, fmt.Errorf("%s of node %s cannot move",
			plural(len(verdicts)-movable, "pod"), nodeName))
	}
	return nil
}
