package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

// volumeData returns the volume data image the target agent imported and
// the volumes the source agent packed into it, or nil when the migration
// carries no emptyDir contents.
func volumeData(m *lpmv1.PodMigration) *restoredpod.VolumeData {
	src, image := sourceStatus(m).VolumeData, targetStatus(m).VolumeDataImage
	if src == nil || image == "" {
		return nil
	}
	return &restoredpod.VolumeData{Image: image, Volumes: src.Volumes}
}

// missingVolumeData returns why the images are not complete when the
// source agent packed the emptyDir volumes and the target agent reported
// ImagesReady without importing them, or "".
func missingVolumeData(m *lpmv1.PodMigration, targetNode string) string {
	src := sourceStatus(m).VolumeData
	if src == nil || src.ImageDigest == "" || targetStatus(m).VolumeDataImage != "" {
		return ""
	}
	return fmt.Sprintf("the agent of node %s reported ImagesReady without the volume data image of the "+
		"emptyDir volumes %v", targetNode, src.Volumes)
}

// copyVolumeFigures copies the carried emptyDir bytes from the source
// agent's part of the status.
func copyVolumeFigures(o *outcome) {
	if vd := sourceStatus(o.m).VolumeData; vd != nil {
		o.status.VolumeDataBytes = vd.DataBytes
	}
}

// volumeRestoreFailure returns a failure when the restored pod's init
// container could not restore the emptyDir volumes, with its termination
// message, or an empty reason.
func volumeRestoreFailure(pod *corev1.Pod) (lpmv1.Reason, string) {
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name != volumedata.ContainerName {
			continue
		}
		if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
			return lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("init container %s of the restored pod %s "+
				"failed with exit code %d: %s", s.Name, pod.Name, t.ExitCode, t.Message)
		}
		if t := s.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 {
			return lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("init container %s of the restored pod %s "+
				"failed with exit code %d: %s", s.Name, pod.Name, t.ExitCode, t.Message)
		}
	}
	return "", ""
}
