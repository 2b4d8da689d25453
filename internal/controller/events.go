package controller

import (
	corev1 "k8s.io/api/core/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// emitOnPods repeats the outcome's events on the pods the migration moves,
// with the PodMigration as the related object, so that `kubectl describe
// pod` shows the migration's transitions and failures too. The pods are
// the source pod (unless another pod of the same name replaced it) and the
// restored pod once it exists.
func (r *PodMigrationReconciler) emitOnPods(m *lpmv1.PodMigration, o *outcome, w *world) {
	if len(o.events) == 0 {
		return
	}
	var pods []*corev1.Pod
	if w.pod != nil && (o.status.SourcePodUID == "" || string(w.pod.UID) == o.status.SourcePodUID) {
		pods = append(pods, w.pod)
	}
	restored := w.restored
	if restored == nil {
		restored = o.createRestored
	}
	// A pod that the create did not return has no UID, and an event
	// without one does not show in `kubectl describe pod`.
	if restored != nil && restored.UID != "" && ownedByMigration(restored, m) {
		pods = append(pods, restored)
	}
	for _, pod := range pods {
		for _, e := range o.events {
			r.Recorder.Eventf(pod, m, e.eventType, string(e.reason), e.action, "PodMigration %s: %s", m.Name, e.note)
		}
	}
}
