package controller

import (
	"cmp"
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// queue is the controller's work queue.
type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// wakeWaiting returns the handler that reconciles migrations waiting for a
// slot as soon as one frees: when a migration that held a slot finishes or
// is deleted. Without it a waiting migration would see the free slot only
// at its next poll (slotPollInterval), which stays as the fallback.
func (r *PodMigrationReconciler) wakeWaiting() handler.EventHandler {
	return handler.Funcs{
		UpdateFunc: func(ctx context.Context, e crevent.UpdateEvent, q queue) {
			before, ok1 := e.ObjectOld.(*lpmv1.PodMigration)
			after, ok2 := e.ObjectNew.(*lpmv1.PodMigration)
			if ok1 && ok2 && holdsSlot(before) && !holdsSlot(after) {
				r.enqueueWaiting(ctx, after.Status.SourceNode, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e crevent.DeleteEvent, q queue) {
			if m, ok := e.Object.(*lpmv1.PodMigration); ok && holdsSlot(m) {
				r.enqueueWaiting(ctx, m.Status.SourceNode, q)
			}
		},
	}
}

// enqueueWaiting adds to the queue the oldest migrations that wait for a
// slot: as many as the cluster has slots, and as many again of those that
// leave node, whose per-node slot may be the one that freed. The rest keep
// polling, so a burst of finished migrations does not reconcile every
// waiting migration each time.
func (r *PodMigrationReconciler) enqueueWaiting(ctx context.Context, node string, q queue) {
	var list lpmv1.PodMigrationList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list PodMigrations waiting for a slot")
		return
	}
	for _, m := range waitingForSlot(list.Items, node, r.Slots.MaxRunning) {
		q.Add(requestFor(m))
	}
}

// waitingForSlot returns, oldest first, up to n migrations that wait for a
// slot, followed by up to n more of those whose source is node.
func waitingForSlot(all []lpmv1.PodMigration, node string, n int) []*lpmv1.PodMigration {
	var waiting []*lpmv1.PodMigration
	for i := range all {
		m := &all[i]
		c := meta.FindStatusCondition(m.Status.Conditions, string(lpmv1.ConditionSucceeded))
		if m.Status.Phase == lpmv1.PhasePending && m.DeletionTimestamp.IsZero() && c != nil &&
			c.Reason == string(lpmv1.ReasonWaitingForSlot) {
			waiting = append(waiting, m)
		}
	}
	slices.SortStableFunc(waiting, func(a, b *lpmv1.PodMigration) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})

	picked := slices.Clone(waiting[:min(n, len(waiting))])
	fromNode := 0
	for _, m := range waiting[len(picked):] {
		if fromNode == n {
			break
		}
		if m.Status.SourceNode == node {
			picked = append(picked, m)
			fromNode++
		}
	}
	return picked
}
