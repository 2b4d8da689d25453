package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const appImage = "localhost/lpm/shop/web-app:mig-uid"

func imagesReady(m *lpmv1.PodMigration) {
	setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionImagesServed, metav1.ConditionTrue,
		"ImagesServed", "")
	setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionImagesReady, metav1.ConditionTrue,
		"ImagesReady", "")
	m.Status.Target.Containers = []lpmv1.TargetContainerStatus{{Name: "app", Image: appImage}}
	m.Status.Target.BytesDone, m.Status.Target.BytesTotal = 8192, 8192
}

func TestStepPreparingImages(t *testing.T) {
	testCases := []struct {
		name         string
		migration    func(*lpmv1.PodMigration)
		world        func(*world)
		now          time.Time
		wantPhase    lpmv1.MigrationPhase
		wantReason   lpmv1.Reason
		wantPodName  string
		wantImages   map[string]string
		wantProgress *lpmv1.TransferProgress
	}{
		{
			name:      "images moving",
			migration: func(m *lpmv1.PodMigration) { m.Status.Target.BytesDone, m.Status.Target.BytesTotal = 100, 8192 },
			wantPhase: lpmv1.PhasePreparingImages, wantProgress: &lpmv1.TransferProgress{BytesDone: 100, BytesTotal: 8192},
		},
		{
			name:      "images ready creates restored pod",
			migration: imagesReady,
			wantPhase: lpmv1.PhaseRestoring, wantPodName: "web-restored",
			wantImages:   map[string]string{"app": appImage},
			wantProgress: &lpmv1.TransferProgress{BytesDone: 8192, BytesTotal: 8192},
		},
		{
			name:      "preferred name taken",
			migration: imagesReady,
			world:     func(w *world) { w.takenNames["web-restored"] = true },
			wantPhase: lpmv1.PhaseRestoring, wantPodName: "web-restored-migui",
			wantImages:   map[string]string{"app": appImage},
			wantProgress: &lpmv1.TransferProgress{BytesDone: 8192, BytesTotal: 8192},
		},
		{
			name:      "both names taken",
			migration: imagesReady,
			world: func(w *world) {
				w.takenNames["web-restored"] = true
				w.takenNames["web-restored-migui"] = true
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoredPodFailed,
			wantProgress: &lpmv1.TransferProgress{BytesDone: 8192, BytesTotal: 8192},
		},
		{
			name: "ready without image",
			migration: func(m *lpmv1.PodMigration) {
				imagesReady(m)
				m.Status.Target.Containers = nil
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonImportFailed,
			wantProgress: &lpmv1.TransferProgress{BytesDone: 8192, BytesTotal: 8192},
		},
		{
			name: "image build failed",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionImagesServed,
					metav1.ConditionFalse, "ImageBuildFailed", "disk full")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonImageBuildFailed,
		},
		{
			name: "digest mismatch",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionImagesReady,
					metav1.ConditionFalse, "DigestMismatch", "sha256:aa != sha256:bb")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonDigestMismatch,
		},
		{
			name:      "transfer timed out",
			now:       t0.Add(DefaultTransferTimeout),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonTransferTimedOut,
		},
		{
			name:      "source pod gone",
			world:     func(w *world) { w.pod = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonPodGone,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := inPhase(lpmv1.PhasePreparingImages)
			m.Status.PhaseTransitions = append(m.Status.PhaseTransitions[:2],
				lpmv1.PhaseTransition{Phase: lpmv1.PhaseCheckpointComplete, Time: metav1.NewMicroTime(t0)},
				lpmv1.PhaseTransition{Phase: lpmv1.PhasePreparingImages, Time: metav1.NewMicroTime(t0.Add(time.Second))})
			checkpointed(m)
			if tc.migration != nil {
				tc.migration(m)
			}
			now := tc.now
			if now.IsZero() {
				now = t0.Add(2 * time.Second)
			}
			w := fixtureWorld(now)
			if tc.world != nil {
				tc.world(w)
			}

			o := decide(m, w, NewSlots(5, 2))

			assertPhase(t, o, tc.wantPhase)
			if tc.wantReason != "" {
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, tc.wantReason)
				stage := lpmv1.ConditionImagesReady
				if tc.wantReason == lpmv1.ReasonRestoredPodFailed {
					// The images were ready; creating the pod failed.
					stage = lpmv1.ConditionRestored
				}
				assertCondition(t, o, stage, metav1.ConditionFalse, tc.wantReason)
				if o.createRestored != nil {
					t.Errorf("failed migration creates pod %s", o.createRestored.Name)
				}
			}
			if diff := cmp.Diff(tc.wantProgress, o.status.TransferProgress); diff != "" {
				t.Errorf("transfer progress mismatch (-want +got):\n%s", diff)
			}
			if tc.wantPodName == "" {
				return
			}
			assertCondition(t, o, lpmv1.ConditionImagesReady, metav1.ConditionTrue, lpmv1.ReasonImagesReady)
			if o.status.RestoredPod != tc.wantPodName {
				t.Errorf("restoredPod = %q, want %q", o.status.RestoredPod, tc.wantPodName)
			}
			if diff := cmp.Diff(tc.wantImages, o.status.CheckpointImages); diff != "" {
				t.Errorf("checkpoint images mismatch (-want +got):\n%s", diff)
			}
			pod := o.createRestored
			if pod == nil {
				t.Fatalf("no restored pod to create")
			}
			if pod.Name != tc.wantPodName || pod.Spec.NodeName != "node-b" || pod.Spec.Containers[0].Image != appImage ||
				pod.Spec.Containers[0].ImagePullPolicy != corev1.PullNever {
				t.Errorf("restored pod = %s on %s running %s (%s), want %s on node-b running %s (Never)", pod.Name,
					pod.Spec.NodeName, pod.Spec.Containers[0].Image, pod.Spec.Containers[0].ImagePullPolicy,
					tc.wantPodName, appImage)
			}
		})
	}
}
