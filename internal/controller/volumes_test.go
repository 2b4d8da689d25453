package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

func TestVolumeDataParameters(t *testing.T) {
	packed := &lpmv1.VolumeDataStatus{ImageDigest: "sha256:01", DataBytes: 7, Volumes: []string{"cache"}}
	for _, tc := range []struct {
		name        string
		source      *lpmv1.VolumeDataStatus
		targetImage string
		want        *restoredpod.VolumeData
		wantMissing bool
	}{
		{name: "no emptyDir data"},
		{name: "imported", source: packed, targetImage: "localhost/lpm/ns/web-lpm-volume-restore:01",
			want: &restoredpod.VolumeData{Image: "localhost/lpm/ns/web-lpm-volume-restore:01",
				Volumes: []string{"cache"}}},
		{name: "not imported", source: packed, wantMissing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &lpmv1.PodMigration{Status: lpmv1.PodMigrationStatus{
				Source: &lpmv1.SourceAgentStatus{VolumeData: tc.source},
				Target: &lpmv1.TargetAgentStatus{VolumeDataImage: tc.targetImage},
			}}

			if diff := cmp.Diff(tc.want, volumeData(m)); diff != "" {
				t.Errorf("volumeData() mismatch (-want +got):\n%s", diff)
			}
			if got := missingVolumeData(m, "node-b") != ""; got != tc.wantMissing {
				t.Errorf("missingVolumeData() reports missing %t, want %t", got, tc.wantMissing)
			}
		})
	}
}

func TestVolumeRestoreFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     corev1.ContainerStatus
		wantReason lpmv1.Reason
	}{
		{name: "running", status: corev1.ContainerStatus{Name: "lpm-volume-restore",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		{name: "completed", status: corev1.ContainerStatus{Name: "lpm-volume-restore",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
		{name: "failed", wantReason: lpmv1.ReasonRestoredPodFailed, status: corev1.ContainerStatus{
			Name: "lpm-volume-restore", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Message: "failed to restore the emptyDir volumes"}}}},
		{name: "failed before a restart", wantReason: lpmv1.ReasonRestoredPodFailed, status: corev1.ContainerStatus{
			Name: "lpm-volume-restore", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}},
		{name: "other init container", status: corev1.ContainerStatus{Name: "setup",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-restored"},
				Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{tc.status}}}

			reason, msg := volumeRestoreFailure(pod)

			if reason != tc.wantReason {
				t.Errorf("reason = %q (%s), want %q", reason, msg, tc.wantReason)
			}
		})
	}
}
