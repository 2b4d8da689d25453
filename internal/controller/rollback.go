package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// stepCancel handles a PodMigration deleted before it finished. Before the
// restored pod is verified the migration rolls back like a failure; after
// it, the source is already gone, so the migration finishes instead.
func stepCancel(o *outcome, w *world) {
	if restoredVerified(o) {
		stepRestoring(o, w)
		return
	}
	o.fail(lpmv1.ReasonCancelled, "the PodMigration was deleted before it finished, so lpm rolls the migration back")
}

// stepFinished completes a finished migration. After a failure it deletes
// the restored pod and keeps the finalizer until the agents cleaned up.
// After a success it removes the migration's owner reference from the
// restored pod.
func stepFinished(o *outcome, w *world) {
	if o.status.Phase == lpmv1.PhaseSucceeded {
		if w.restored != nil && hasOwnerReference(w.restored, o.m) {
			o.releaseRestored = true
		}
		o.removeFinalizer = true
		return
	}

	if w.restored != nil && ownedByMigration(w.restored, o.m) {
		o.deleteRestored = true
	}
	reportFrozenSource(o, w)
	if !touchedNodes(o.status) {
		o.removeFinalizer = true
		return
	}
	source := isTrue(sourceCondition(o.m, lpmv1.AgentConditionCleanedUp))
	target := isTrue(targetCondition(o.m, lpmv1.AgentConditionCleanedUp))
	if source && target {
		o.removeFinalizer = true
		return
	}
	completed := o.now
	if o.status.CompletionTime != nil {
		completed = o.status.CompletionTime.Time
	}
	deadline := completed.Add(cleanupTimeout)
	if o.now.Before(deadline) {
		o.requeueAt(deadline)
		return
	}
	o.removeFinalizer = true
	if hasFinalizer(o.m) {
		o.warning(lpmv1.ReasonCleanupTimedOut, "Cleanup", fmt.Sprintf("the agents did not report CleanedUp within %s "+
			"(source: %t, target: %t). Their garbage collection removes what is left", cleanupTimeout, source, target))
	}
}

// touchedNodes reports whether the agents may have changed anything on
// their nodes: only from Checkpointing on do they pause containers and
// write archives and images.
func touchedNodes(status *lpmv1.PodMigrationStatus) bool {
	return slices.ContainsFunc(status.PhaseTransitions, func(t lpmv1.PhaseTransition) bool {
		return t.Phase == lpmv1.PhaseCheckpointing
	})
}

func hasFinalizer(m *lpmv1.PodMigration) bool {
	return slices.Contains(m.Finalizers, lpmv1.FinalizerRollback)
}

// restoredPodGoneGrace is how long after its grace period the controller
// waits for a deleted restored pod to go before it reports how to release
// the frozen source. A kubelet that runs removes the pod within
// seconds of the grace period.
const restoredPodGoneGrace = 15 * time.Second

// reportFrozenSource writes in the Succeeded condition and a warning event
// that a rolled-back source stays frozen while the restored pod is
// terminating, and how to release it. The source agent thaws the source only once the
// restored pod is gone, because a restored pod on a node that the control
// plane cannot reach may still run. Only a forced deletion removes a pod of
// a dead node. Once the restored pod is gone, the message says so.
func reportFrozenSource(o *outcome, w *world) {
	c := o.condition(lpmv1.ConditionSucceeded)
	if c == nil || o.m.Spec.SourcePolicy == lpmv1.SourcePolicyKeep || !touchedNodes(o.status) {
		return
	}
	base, _, reported := strings.Cut(c.Message, frozenSourcePrefix(o))
	restored := w.restored
	if restored == nil || !ownedByMigration(restored, o.m) {
		if reported {
			setSummaryMessage(o, c, fmt.Sprintf("%s Pod %s is gone, so the agent of node %s thaws pod %s",
				base, o.status.RestoredPod, o.status.SourceNode, o.m.Spec.PodName))
		}
		return
	}
	if reported || restored.DeletionTimestamp == nil ||
		isTrue(sourceCondition(o.m, lpmv1.AgentConditionCleanedUp)) {
		return
	}
	overdue := restored.DeletionTimestamp.Add(restoredPodGoneGrace)
	if o.now.Before(overdue) {
		o.requeueAt(overdue)
		return
	}
	advice := fmt.Sprintf("%s%s is gone, so that two copies never run at once. Pod %s is still terminating. "+
		"If node %s is down, `kubectl delete pod %s -n %s --force --grace-period=0` removes it and releases "+
		"the source", frozenSourcePrefix(o), restored.Name, restored.Name, o.status.TargetNode, restored.Name,
		o.m.Namespace)
	setSummaryMessage(o, c, strings.TrimSuffix(base, ".")+"."+advice)
	o.warning(lpmv1.Reason(c.Reason), "Rollback", advice[1:])
}

// frozenSourcePrefix starts the sentence that reportFrozenSource appends
// to the failure message, so a later reconcile finds and replaces it.
func frozenSourcePrefix(o *outcome) string {
	return fmt.Sprintf(" Pod %s stays frozen until pod ", o.m.Spec.PodName)
}

// setSummaryMessage replaces the message of the Succeeded condition and
// keeps its status, reason and transition time.
func setSummaryMessage(o *outcome, c *metav1.Condition, message string) {
	o.setCondition(lpmv1.ConditionSucceeded, c.Status, lpmv1.Reason(c.Reason), message)
}
