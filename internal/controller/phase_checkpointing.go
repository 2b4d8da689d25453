package controller

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// stepCheckpointing waits for the source agent's checkpoint and copies its
// figures into the controller's part of the status. failOnAgentReport has
// failed the migration already when the checkpoint failed.
func stepCheckpointing(o *outcome, w *world) {
	if !checkSourcePod(o, w) {
		return
	}
	copyCheckpointFigures(o)

	if isTrue(sourceCondition(o.m, lpmv1.AgentConditionCheckpointed)) {
		o.setCondition(lpmv1.ConditionCheckpointed, metav1.ConditionTrue, lpmv1.ReasonCheckpointed,
			fmt.Sprintf("every container of pod %s is checkpointed", o.m.Spec.PodName))
		o.setPhase(lpmv1.PhaseCheckpointComplete)
		o.normal(lpmv1.ReasonCheckpointed, string(lpmv1.PhaseCheckpointComplete),
			o.condition(lpmv1.ConditionCheckpointed).Message)
	}
}

// checkSourcePod fails the migration when the source pod was deleted or
// replaced while it ran, and reports whether the migration goes on.
func checkSourcePod(o *outcome, w *world) bool {
	switch {
	case w.pod == nil || w.pod.DeletionTimestamp != nil:
		o.fail(lpmv1.ReasonPodGone, fmt.Sprintf("pod %s was deleted during the migration", o.m.Spec.PodName))
		return false
	case string(w.pod.UID) != o.status.SourcePodUID:
		o.fail(lpmv1.ReasonSourceChanged,
			fmt.Sprintf("pod %s was replaced by another pod of the same name", o.m.Spec.PodName))
		return false
	}
	return true
}

// copyCheckpointFigures copies the cut time and each container's dump
// figures from the source agent's part of the status, keeping the restored
// flags the target agent reported.
func copyCheckpointFigures(o *outcome) {
	src := sourceStatus(o.m)
	if src.CutTime != nil {
		o.status.CutTime = src.CutTime.DeepCopy()
	}
	copyVolumeFigures(o)
	if len(src.Containers) == 0 {
		return
	}
	restored := map[string]bool{}
	for _, c := range targetStatus(o.m).Containers {
		restored[c.Name] = c.Restored
	}
	containers := make([]lpmv1.ContainerMigrationStatus, 0, len(src.Containers))
	for _, c := range src.Containers {
		containers = append(containers, lpmv1.ContainerMigrationStatus{
			Name:         c.Name,
			ArchiveBytes: c.ArchiveBytes,
			FreezingTime: c.FreezingTime.DeepCopy(),
			FrozenTime:   c.FrozenTime.DeepCopy(),
			PagesWritten: c.PagesWritten,
			Restored:     restored[c.Name],
		})
	}
	o.status.Containers = containers
}
