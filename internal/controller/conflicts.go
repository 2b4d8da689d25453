package controller

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// podMigrationsResource is the resource name that the API server puts in
// the details of an error about a PodMigration.
const podMigrationsResource = "podmigrations"

// conflictsAwaitEvent wraps the reconciler for the work queue. A reconcile
// whose write of the PodMigration met a conflict returns no error, because
// the API server stores a newer version than the copy the reconcile read,
// and the watch event of that version queues the migration again. As an
// error, each conflict would also take a token from the overall bucket of
// the queue's rate limiter (client-go DefaultTypedControllerRateLimiter,
// 10 per second with a burst of 100), which the retries of every migration
// share. With 100 PodMigrations created at once, the controller met about
// 200 conflicts, most of them on its own write that its cache did not
// show yet.
type conflictsAwaitEvent struct {
	reconcile.TypedReconciler[reconcile.Request]
}

// Reconcile runs the wrapped reconciler and drops a conflict on the
// PodMigration from its result.
func (c conflictsAwaitEvent) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	result, err := c.TypedReconciler.Reconcile(ctx, req)
	if isMigrationConflict(err) {
		ctrl.LoggerFrom(ctx).V(1).Info("PodMigration changed during the reconcile, waiting for its event",
			"reason", err.Error())
		return ctrl.Result{}, nil
	}
	return result, err
}

// isMigrationConflict reports whether err is the API server's conflict on
// a write of a PodMigration. A conflict on another object, such as a pod
// deleted with a UID precondition, returns false.
func isMigrationConflict(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsConflict(err) || !errors.As(err, &status) {
		return false
	}
	details := status.Status().Details
	return details != nil && details.Group == lpmv1.GroupVersion.Group && details.Kind == podMigrationsResource
}
