package controller

import (
	"fmt"
	"slices"

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
	o.fail(lpmv1.ReasonCancelled, "the PodMigration was deleted before it finished. The source pod keeps running")
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
