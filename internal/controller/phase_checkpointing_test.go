package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func checkpointed(m *lpmv1.PodMigration) {
	setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCheckpointed, metav1.ConditionTrue,
		"Checkpointed", "")
	m.Status.Source.CutTime = &metav1.MicroTime{Time: cutAt}
	m.Status.Source.Frozen = true
	m.Status.Source.Containers = []lpmv1.SourceContainerStatus{{
		Name: "app", ArchiveBytes: 4096, PagesWritten: 12,
		FreezingTime: &metav1.Duration{Duration: 3 * time.Millisecond},
		FrozenTime:   &metav1.Duration{Duration: 90 * time.Millisecond},
	}}
}

func TestStepCheckpointing(t *testing.T) {
	testCases := []struct {
		name         string
		migration    func(*lpmv1.PodMigration)
		world        func(*world)
		now          time.Time
		wantPhase    lpmv1.MigrationPhase
		wantReason   lpmv1.Reason
		wantRequeue  time.Duration
		wantFigures  bool
		wantEvents   []lpmv1.Reason
		wantCutTime  bool
		wantStageCon metav1.ConditionStatus
	}{
		{
			name: "still checkpointing",
			migration: func(m *lpmv1.PodMigration) {
				m.Spec.Timeouts = &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 30 * time.Second}}
			},
			wantPhase:   lpmv1.PhaseCheckpointing,
			wantRequeue: 30*time.Second + agentReportGrace - time.Second,
		},
		{
			name: "requeue when a heartbeat expires",
			world: func(w *world) {
				w.targetAgent.Status.HeartbeatTime = &metav1.Time{Time: w.now.Add(-90 * time.Second)}
			},
			wantPhase:   lpmv1.PhaseCheckpointing,
			wantRequeue: 30 * time.Second,
		},
		{
			name: "silent target agent fails",
			world: func(w *world) {
				w.targetAgent.Status.HeartbeatTime = &metav1.Time{Time: w.now.Add(-2*time.Minute - time.Second)}
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentUnavailable,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonAgentUnavailable},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:      "missing source agent fails",
			world:     func(w *world) { w.sourceAgent = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentUnavailable,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonAgentUnavailable},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:        "checkpoint done",
			migration:   checkpointed,
			wantPhase:   lpmv1.PhaseCheckpointComplete,
			wantFigures: true, wantCutTime: true,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointed},
			wantStageCon: metav1.ConditionTrue,
		},
		{
			name: "agent reports failure",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCheckpointed, metav1.ConditionFalse,
					"CheckpointAPIDisabled", "kubelet returned 404")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonCheckpointAPIDisabled,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointAPIDisabled},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name: "agent failure without reason",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCheckpointed, metav1.ConditionFalse,
					"", "")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonCheckpointFailed,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointFailed},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:      "source pod deleted",
			world:     func(w *world) { w.pod = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonPodGone,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonPodGone},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:      "source pod replaced",
			world:     func(w *world) { w.pod.UID = "new-uid" },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonSourceChanged,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonSourceChanged},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:      "checkpoint timed out",
			now:       t0.Add(DefaultCheckpointTimeout + agentReportGrace),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonCheckpointTimedOut,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointTimedOut},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name: "custom checkpoint timeout",
			migration: func(m *lpmv1.PodMigration) {
				m.Spec.Timeouts = &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 10 * time.Second}}
			},
			now:       t0.Add(10*time.Second + agentReportGrace),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonCheckpointTimedOut,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointTimedOut},
			wantStageCon: metav1.ConditionFalse,
		},
		{
			name:      "late success beats the timeout",
			migration: checkpointed,
			now:       t0.Add(DefaultCheckpointTimeout + agentReportGrace),
			wantPhase: lpmv1.PhaseCheckpointComplete, wantFigures: true, wantCutTime: true,
			wantEvents:   []lpmv1.Reason{lpmv1.ReasonCheckpointed},
			wantStageCon: metav1.ConditionTrue,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := inPhase(lpmv1.PhaseCheckpointing)
			if tc.migration != nil {
				tc.migration(m)
			}
			now := tc.now
			if now.IsZero() {
				now = t0.Add(time.Second)
			}
			w := fixtureWorld(now)
			if tc.world != nil {
				tc.world(w)
			}

			o := decide(m, w, NewSlots(5, 2))

			assertPhase(t, o, tc.wantPhase)
			if tc.wantReason != "" {
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, tc.wantReason)
				if !o.deleteRestored {
					t.Errorf("failure does not roll back the restored pod")
				}
			}
			if tc.wantStageCon != "" {
				if c := o.condition(lpmv1.ConditionCheckpointed); c == nil || c.Status != tc.wantStageCon {
					t.Errorf("Checkpointed = %+v, want status %s", c, tc.wantStageCon)
				}
			}
			if tc.wantRequeue != 0 && o.requeueAfter != tc.wantRequeue {
				t.Errorf("requeueAfter = %s, want %s", o.requeueAfter, tc.wantRequeue)
			}
			if diff := cmp.Diff(tc.wantEvents, eventReasons(o)); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
			if got := o.status.CutTime != nil; got != tc.wantCutTime {
				t.Errorf("cutTime = %v, want set %v", o.status.CutTime, tc.wantCutTime)
			}
			if tc.wantFigures {
				want := []lpmv1.ContainerMigrationStatus{{
					Name: "app", ArchiveBytes: 4096, PagesWritten: 12,
					FreezingTime: &metav1.Duration{Duration: 3 * time.Millisecond},
					FrozenTime:   &metav1.Duration{Duration: 90 * time.Millisecond},
				}}
				if diff := cmp.Diff(want, o.status.Containers); diff != "" {
					t.Errorf("container figures mismatch (-want +got):\n%s", diff)
				}
			}
			if o.status.Source == nil || len(o.status.Source.Conditions) == 0 {
				t.Errorf("the outcome lost the agent's part of the status")
			}
		})
	}
}

func TestStepCheckpointComplete(t *testing.T) {
	m := inPhase(lpmv1.PhaseCheckpointComplete)
	checkpointed(m)
	o := decide(m, fixtureWorld(t0.Add(time.Second)), NewSlots(5, 2))

	assertPhase(t, o, lpmv1.PhasePreparingImages)
	assertCondition(t, o, lpmv1.ConditionImagesReady, metav1.ConditionUnknown, lpmv1.ReasonInProgress)
	last := o.status.PhaseTransitions[len(o.status.PhaseTransitions)-1]
	if last.Phase != lpmv1.PhasePreparingImages || !last.Time.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("last transition = %+v, want PreparingImages at t0+1s", last)
	}
}
