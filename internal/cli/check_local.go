package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

// localCheck is the result of one API-level preflight check evaluated in
// this process. failure is nil when the check passed.
type localCheck struct {
	name    string
	failure *preflight.Failure
	// target is the node the target check accepted or picked.
	target string
}

// localCluster is the part of the cluster that the API-level checks read.
type localCluster struct {
	preflight.Cluster
	migrations []lpmv1.PodMigration
}

// loadLocalCluster lists the nodes, pods, NodeAgents and PodMigrations of
// the cluster. Like the controller's target selection, it needs to list
// pods in all namespaces.
func loadLocalCluster(ctx context.Context, c client.Client) (*localCluster, error) {
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes); err != nil {
		return nil, fmt.Errorf("failed to list Nodes: %w", err)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("failed to list Pods in all namespaces: %w", err)
	}
	agents := &lpmv1.NodeAgentList{}
	if err := c.List(ctx, agents); err != nil {
		return nil, fmt.Errorf("failed to list NodeAgents: %w", err)
	}
	migrations := &lpmv1.PodMigrationList{}
	if err := c.List(ctx, migrations); err != nil {
		return nil, fmt.Errorf("failed to list PodMigrations in all namespaces: %w", err)
	}

	cluster := &localCluster{
		Cluster: preflight.Cluster{
			Nodes:      nodes.Items,
			PodsByNode: map[string][]corev1.Pod{},
			Agents:     map[string]*lpmv1.NodeAgent{},
		},
		migrations: migrations.Items,
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			cluster.PodsByNode[p.Spec.NodeName] = append(cluster.PodsByNode[p.Spec.NodeName], p)
		}
	}
	for i := range agents.Items {
		cluster.Agents[agents.Items[i].Name] = &agents.Items[i]
	}
	return cluster, nil
}

// targetCheckName names the target node's check in the report.
const targetCheckName = "target node"

// evaluateLocalChecks runs every API-level check on pod, in the controller's
// order, as a PodMigration created at now with the given target would meet
// them, and returns each check's result. Unlike the controller, which stops
// at the first failure, it runs every check, so that the report shows all
// that must change. It assumes sourcePolicy Delete.
func evaluateLocalChecks(pod *corev1.Pod, cluster *localCluster, targetNode string, now time.Time) []localCheck {
	sourceNode := pod.Spec.NodeName
	checks := []localCheck{{name: "pod", failure: preflight.CheckPod(pod)}}

	candidate := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, CreationTimestamp: metav1.NewTime(now)},
		Spec:       lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: targetNode},
	}
	checks = append(checks, localCheck{name: "other migrations",
		failure: preflight.CheckOtherMigrations(candidate, cluster.migrations)})

	target := evaluateLocalTarget(pod, cluster, targetNode, now)
	checks = append(checks, target)

	sourceAgent := cluster.Agents[sourceNode]
	sourceCheck := localCheck{name: "source agent", target: sourceNode}
	if sourceNode != "" {
		sourceCheck.failure = preflight.CheckAgent(sourceAgent, sourceNode, preflight.RoleSource, now)
	}
	return append(checks, sourceCheck,
		localCheck{name: "non-root processes", target: sourceNode, failure: preflight.CheckNonRoot(pod, sourceAgent)})
}

// localTarget returns the target node that the checks accepted or picked.
func localTarget(checks []localCheck) string {
	for _, c := range checks {
		if c.name == targetCheckName {
			return c.target
		}
	}
	return ""
}

// evaluateLocalTarget checks the requested target node, or picks one as the
// controller would.
func evaluateLocalTarget(pod *corev1.Pod, cluster *localCluster, targetNode string, now time.Time) localCheck {
	check := localCheck{name: targetCheckName, target: targetNode}
	if targetNode == "" {
		check.target, check.failure = preflight.SelectTarget(pod, &cluster.Cluster, now)
		return check
	}

	if f := preflight.CheckTargetName(lpmv1.SourcePolicyDelete, pod.Spec.NodeName, targetNode); f != nil {
		check.failure = f
		return check
	}
	for i := range cluster.Nodes {
		if node := &cluster.Nodes[i]; node.Name == targetNode {
			check.failure = preflight.CheckTarget(pod, node, &cluster.Cluster, now)
			return check
		}
	}
	check.failure = &preflight.Failure{Reason: lpmv1.ReasonTargetNotFound, Field: "spec.targetNode",
		Message: fmt.Sprintf("node %s not found", targetNode)}
	return check
}

// firstFailure returns the first failed check, or nil.
func firstFailure(checks []localCheck) *preflight.Failure {
	for _, c := range checks {
		if c.failure != nil {
			return c.failure
		}
	}
	return nil
}

func (o *checkOptions) runLocalPod(ctx context.Context) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	ns, _, err := o.root.namespace()
	if err != nil {
		return err
	}
	pod := &corev1.Pod{}
	if err := getPod(ctx, c.client, ns, o.podName, pod); err != nil {
		return err
	}
	cluster, err := loadLocalCluster(ctx, c.client)
	if err != nil {
		return err
	}

	checks := evaluateLocalChecks(pod, cluster, o.targetNode, o.root.deps.Clock.Now())
	out := o.root.streams.Out
	writeLocalReport(out, pod, checks)
	if f := firstFailure(checks); f != nil {
		return reportedError(ExitFailed, fmt.Errorf("pod %s/%s cannot move: %s", ns, o.podName, f.Reason))
	}
	return nil
}

// writeLocalReport writes the result of the API-level checks on one pod.
func writeLocalReport(out io.Writer, pod *corev1.Pod, checks []localCheck) {
	w := printers.GetNewTabWriter(out)
	_, _ = fmt.Fprintln(w, "CHECK\tNODE\tRESULT\tREASON\tMESSAGE")
	for _, c := range checks {
		result, reason, message := "passed", "", ""
		if c.failure != nil {
			result, reason, message = "failed", string(c.failure.Reason), c.failure.Error()
		}
		node := "-"
		if c.target != "" {
			node = c.target
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.name, node, result, orNone(reason), oneLine(message))
	}
	_ = w.Flush()

	name := pod.Namespace + "/" + pod.Name
	f := firstFailure(checks)
	if f == nil {
		target := localTarget(checks)
		_, _ = fmt.Fprintf(out, "Pod %s passes the API-level checks for a move from %s to %s. "+
			"The agents' checks did not run: run check without --local for them.\n",
			name, orNone(pod.Spec.NodeName), orNone(target))
		return
	}
	_, _ = fmt.Fprintf(out, "Pod %s cannot move: %s\nWhat to do: %s\n", name, f.Reason, adviceFor(f.Reason, nil))
}

// localNodeVerdicts evaluates the API-level checks for each pod of a node.
func (o *checkOptions) localNodeVerdicts(ctx context.Context, c *clients, pods []corev1.Pod) ([]podVerdict, error) {
	cluster, err := loadLocalCluster(ctx, c.client)
	if err != nil {
		return nil, err
	}
	now := o.root.deps.Clock.Now()
	verdicts := make([]podVerdict, 0, len(pods))
	for i := range pods {
		pod := &pods[i]
		checks := evaluateLocalChecks(pod, cluster, o.targetNode, now)
		v := podVerdict{namespace: pod.Namespace, pod: pod.Name, movable: "yes",
			target: localTarget(checks)}
		if f := firstFailure(checks); f != nil {
			v.movable, v.reason, v.message = "no", string(f.Reason), f.Error()
		}
		verdicts = append(verdicts, v)
	}
	return verdicts, nil
}
