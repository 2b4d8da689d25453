package controller

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// DefaultMaxConcurrentReconciles is the default number of PodMigrations
// reconciled at once. A reconcile spends most of its time waiting for the
// API server, so workers beyond the CPU count still add throughput. With
// 500 PodMigrations created at once on 2 CPUs (test/bench/scale), the last
// of them reached Pending 9 s after the first with 4 workers, and 5 to 7 s
// after it with 16.
const DefaultMaxConcurrentReconciles = 16

// Options tune the controller.
type Options struct {
	// MaxConcurrentReconciles is how many migrations are reconciled at once.
	MaxConcurrentReconciles int
	// SkipNameValidation lets tests start the controller more than once in
	// one process.
	SkipNameValidation bool
}

// SetupWithManager registers the field indexes and the controller with the
// manager. Besides PodMigrations, it watches the pods a migration moves or
// creates, the nodes and NodeAgents that preflight reads, and the node
// Leases that verification reads. The manager's cache must contain the
// Leases of kube-node-lease (CacheByObject).
func (r *PodMigrationReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := IndexFields(ctx, mgr); err != nil {
		return err
	}
	activeMigrations.use(mgr.GetCache())
	return ctrl.NewControllerManagedBy(mgr).
		For(&lpmv1.PodMigration{}).
		Watches(&lpmv1.PodMigration{}, r.wakeWaiting()).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.migrationsForPod)).
		Watches(&lpmv1.NodeAgent{}, handler.EnqueueRequestsFromMapFunc(r.migrationsForNode)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.migrationsForNode)).
		Watches(&coordinationv1.Lease{}, handler.EnqueueRequestsFromMapFunc(r.migrationsRestoringOn)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(opts.MaxConcurrentReconciles, 1),
			SkipNameValidation:      &opts.SkipNameValidation,
		}).
		Named("podmigration").
		Complete(conflictsAwaitEvent{r})
}

// IndexFields registers the cache indexes the controller looks up.
func IndexFields(ctx context.Context, mgr ctrl.Manager) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &lpmv1.PodMigration{}, indexPodName, func(o client.Object) []string {
		return []string{o.(*lpmv1.PodMigration).Spec.PodName}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &lpmv1.PodMigration{}, indexRestoredPod, func(o client.Object) []string {
		if name := o.(*lpmv1.PodMigration).Status.RestoredPod; name != "" {
			return []string{name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &lpmv1.PodMigration{}, indexTargetNode, func(o client.Object) []string {
		if node := o.(*lpmv1.PodMigration).Status.TargetNode; node != "" {
			return []string{node}
		}
		return nil
	}); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &corev1.Pod{}, indexNodeName, func(o client.Object) []string {
		if node := o.(*corev1.Pod).Spec.NodeName; node != "" {
			return []string{node}
		}
		return nil
	})
}

// migrationsForPod maps a pod to the migrations that move it or restored it.
func (r *PodMigrationReconciler) migrationsForPod(ctx context.Context, o client.Object) []reconcile.Request {
	var requests []reconcile.Request
	for _, index := range []string{indexPodName, indexRestoredPod} {
		var list lpmv1.PodMigrationList
		err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()})
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Failed to list PodMigrations for pod", "pod", client.ObjectKeyFromObject(o))
			continue
		}
		for i := range list.Items {
			requests = append(requests, requestFor(&list.Items[i]))
		}
	}
	return requests
}

// migrationsForNode maps a node or its NodeAgent to the unfinished
// migrations that involve the node, and to those that have no target yet.
func (r *PodMigrationReconciler) migrationsForNode(ctx context.Context, o client.Object) []reconcile.Request {
	var list lpmv1.PodMigrationList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list PodMigrations for node", "node", o.GetName())
		return nil
	}
	var requests []reconcile.Request
	for i := range list.Items {
		m := &list.Items[i]
		if isFinished(m.Status.Phase) {
			continue
		}
		if m.Status.SourceNode == o.GetName() || m.Status.TargetNode == o.GetName() || m.Status.TargetNode == "" {
			requests = append(requests, requestFor(m))
		}
	}
	return requests
}

// migrationsRestoringOn maps a node's Lease, which has the node's name, to
// the migrations that restore a pod on that node. A renewal can complete
// their verification. It wakes no other migration, because every kubelet
// renews its Lease every 10 seconds by default.
func (r *PodMigrationReconciler) migrationsRestoringOn(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() != corev1.NamespaceNodeLease {
		return nil
	}
	var list lpmv1.PodMigrationList
	if err := r.List(ctx, &list, client.MatchingFields{indexTargetNode: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list PodMigrations for node Lease", "node", o.GetName())
		return nil
	}
	var requests []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Status.Phase == lpmv1.PhaseRestoring {
			requests = append(requests, requestFor(&list.Items[i]))
		}
	}
	return requests
}

func requestFor(m *lpmv1.PodMigration) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}}
}
