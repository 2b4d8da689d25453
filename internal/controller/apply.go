package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// act makes the changes to pods that the outcome requests before the status
// write. A restored pod that exists already is adopted when this migration
// created it. Deletions wait for the status write, in actAfterStatus.
func (r *PodMigrationReconciler) act(ctx context.Context, o *outcome, w *world) error {
	log := ctrl.LoggerFrom(ctx)
	if pod := o.createRestored; pod != nil {
		if err := r.createRestored(ctx, o, pod); err != nil {
			return err
		}
	}
	if o.releaseRestored && w.restored != nil {
		pod := w.restored.DeepCopy()
		patch := client.MergeFromWithOptions(w.restored, client.MergeFromWithOptimisticLock{})
		pod.OwnerReferences = restoredpod.WithoutOwner(pod.OwnerReferences, o.m.UID)
		if err := r.Patch(ctx, pod, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("failed to remove the owner reference from pod %s: %w", pod.Name, err)
		}
		log.V(1).Info("Released restored pod", "pod", klog.KObj(pod))
	}
	return nil
}

// actAfterStatus deletes the pods the outcome requests once the status that
// explains the deletion is written. A deletion before a write that meets a
// conflict would stay, and the next reconcile would find the pod deleted
// without the decision behind it. It would then report a failed
// migration's deleted restored pod as the failure, or never emit the event
// of the source's deletion.
func (r *PodMigrationReconciler) actAfterStatus(ctx context.Context, o *outcome, w *world) error {
	if o.deleteRestored && o.status.RestoredPod != "" {
		if err := r.deleteRestored(ctx, o); err != nil {
			return err
		}
	}
	if o.deleteSource && w.pod != nil {
		uid := w.pod.UID
		if err := r.Delete(ctx, w.pod, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("failed to delete source pod %s: %w", w.pod.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted source pod", "pod", klog.KObj(w.pod))
	}
	return nil
}

func (r *PodMigrationReconciler) createRestored(ctx context.Context, o *outcome, pod *corev1.Pod) error {
	err := r.Create(ctx, pod)
	if err == nil {
		ctrl.LoggerFrom(ctx).Info("Created restored pod", "pod", klog.KObj(pod), "node", pod.Spec.NodeName)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create restored pod %s: %w", pod.Name, err)
	}
	existing := &corev1.Pod{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(pod), existing); err != nil {
		return fmt.Errorf("failed to get restored pod %s: %w", pod.Name, err)
	}
	if !ownedByMigration(existing, o.m) {
		o.fail(lpmv1.ReasonRestoredPodFailed,
			fmt.Sprintf("pod %s exists and was not created by this migration", pod.Name))
	}
	return nil
}

// deleteRestored deletes the restored pod, reading it from the API server so
// that a pod of the same name that this migration did not create is never
// deleted.
func (r *PodMigrationReconciler) deleteRestored(ctx context.Context, o *outcome) error {
	pod := &corev1.Pod{}
	key := types.NamespacedName{Namespace: o.m.Namespace, Name: o.status.RestoredPod}
	if err := r.APIReader.Get(ctx, key, pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !ownedByMigration(pod, o.m) || pod.DeletionTimestamp != nil {
		return nil
	}
	uid := pod.UID
	if err := r.Delete(ctx, pod, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("failed to delete restored pod %s: %w", pod.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted restored pod", "pod", klog.KObj(pod))
	return nil
}

// controllerStatus returns the part of the status the controller writes:
// everything except the agents' parts.
func controllerStatus(status *lpmv1.PodMigrationStatus) *lpmv1.PodMigrationStatus {
	own := status.DeepCopy()
	own.Source = nil
	own.Target = nil
	return own
}

// statusPatch returns the JSON merge patch that writes the controller's
// part of the status. It leaves status.source and status.target out, so it
// never overwrites what the agents write at the same time. It carries the
// resourceVersion the reconcile read, so the API server rejects it with a
// conflict when that copy was stale, instead of letting it overwrite a
// newer status, such as the reason of a failure.
func statusPatch(status *lpmv1.PodMigrationStatus, resourceVersion string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": resourceVersion},
		"status":   controllerStatus(status),
	})
}

// writeStatus writes the controller's part of the status when it changed.
func (r *PodMigrationReconciler) writeStatus(ctx context.Context, m *lpmv1.PodMigration,
	status *lpmv1.PodMigrationStatus) error {
	if equality.Semantic.DeepEqual(controllerStatus(&m.Status), controllerStatus(status)) {
		return nil
	}
	body, err := statusPatch(status, m.ResourceVersion)
	if err != nil {
		return fmt.Errorf("failed to encode the status of PodMigration %s: %w", m.Name, err)
	}
	if err := r.Status().Patch(ctx, m, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("failed to patch the status of PodMigration %s: %w", m.Name, err)
	}
	return nil
}

func (r *PodMigrationReconciler) addFinalizer(ctx context.Context, m *lpmv1.PodMigration) error {
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(m, lpmv1.FinalizerRollback)
	if err := r.Patch(ctx, m, patch); err != nil {
		return fmt.Errorf("failed to add finalizer to PodMigration %s: %w", m.Name, err)
	}
	return nil
}

// removeFinalizer removes the controller's finalizer with a JSON patch that
// tests the entry it removes, so it needs no resourceVersion and cannot
// drop a finalizer that another controller added meanwhile.
func (r *PodMigrationReconciler) removeFinalizer(ctx context.Context, m *lpmv1.PodMigration) error {
	i := slices.Index(m.Finalizers, lpmv1.FinalizerRollback)
	if i < 0 {
		return nil
	}
	path := fmt.Sprintf("/metadata/finalizers/%d", i)
	body, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": lpmv1.FinalizerRollback},
		{"op": "remove", "path": path},
	})
	if err != nil {
		return fmt.Errorf("failed to encode the finalizer patch of PodMigration %s: %w", m.Name, err)
	}
	if err := r.Patch(ctx, m, client.RawPatch(types.JSONPatchType, body)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		// The API server rejects a failed test with 422 Unprocessable Entity
		// when the stored finalizers differ from this copy's, because an
		// earlier reconcile removed the entry or another controller changed
		// the list. Either way a newer version exists, and its watch event
		// reconciles the migration again.
		if apierrors.IsInvalid(err) {
			ctrl.LoggerFrom(ctx).V(1).Info("Finalizers changed since the read, waiting for the newer version",
				"reason", err.Error())
			return nil
		}
		return fmt.Errorf("failed to remove finalizer from PodMigration %s: %w", m.Name, err)
	}
	return nil
}

// emit sends the outcome's events. It runs after the status write, so an
// event never announces a state the API does not show.
func (r *PodMigrationReconciler) emit(m *lpmv1.PodMigration, list []event) {
	for _, e := range list {
		r.Recorder.Eventf(m, nil, e.eventType, string(e.reason), e.action, "%s", e.note)
	}
}
