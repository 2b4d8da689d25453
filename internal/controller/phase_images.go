package controller

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// stepCheckpointComplete starts the images stage. The source agent builds
// the images right after the checkpoint without waiting for this phase.
func stepCheckpointComplete(o *outcome, w *world) {
	if !checkSourcePod(o, w) {
		return
	}
	o.setPhase(lpmv1.PhasePreparingImages)
	o.setCondition(lpmv1.ConditionImagesReady, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
		fmt.Sprintf("the checkpoint images move to node %s", o.status.TargetNode))
	o.progress(lpmv1.ReasonInProgress, "preparing the checkpoint images")
	o.normal(lpmv1.ReasonInProgress, string(lpmv1.PhasePreparingImages),
		o.condition(lpmv1.ConditionImagesReady).Message)
}

// stepPreparingImages follows the image build on the source node and the
// import on the target node. Once every image is ready it moves to
// Restoring and creates the restored pod in the same reconcile.
func stepPreparingImages(o *outcome, w *world) {
	if !checkSourcePod(o, w) {
		return
	}
	copyCheckpointFigures(o)
	target := targetStatus(o.m)
	if target.BytesTotal > 0 || target.BytesDone > 0 {
		o.status.TransferProgress = &lpmv1.TransferProgress{BytesDone: target.BytesDone, BytesTotal: target.BytesTotal}
	}

	if !isTrue(targetCondition(o.m, lpmv1.AgentConditionImagesReady)) {
		return
	}

	images, missing := checkpointImages(o.m, restoredpod.CheckpointedContainers(w.pod))
	if missing != "" {
		o.fail(lpmv1.ReasonImportFailed, fmt.Sprintf("the agent of node %s reported ImagesReady without an "+
			"image for container %q", o.status.TargetNode, missing))
		return
	}
	if msg := missingVolumeData(o.m, o.status.TargetNode); msg != "" {
		o.fail(lpmv1.ReasonImportFailed, msg)
		return
	}
	o.status.CheckpointImages = images
	o.setCondition(lpmv1.ConditionImagesReady, metav1.ConditionTrue, lpmv1.ReasonImagesReady,
		fmt.Sprintf("every checkpoint image is available on node %s", o.status.TargetNode))
	o.setPhase(lpmv1.PhaseRestoring)
	o.setCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
		"creating the restored pod")
	o.progress(lpmv1.ReasonInProgress, "restoring")
	o.normal(lpmv1.ReasonImagesReady, string(lpmv1.PhaseRestoring), o.condition(lpmv1.ConditionImagesReady).Message)
	ensureRestoredPod(o, w)
}

// checkpointImages returns the image the target agent reported for each
// checkpointed container, or the name of a container without one.
func checkpointImages(m *lpmv1.PodMigration, containers []string) (map[string]string, string) {
	reported := map[string]string{}
	for _, c := range targetStatus(m).Containers {
		reported[c.Name] = c.Image
	}
	images := map[string]string{}
	for _, name := range containers {
		if reported[name] == "" {
			return nil, name
		}
		images[name] = reported[name]
	}
	return images, ""
}
