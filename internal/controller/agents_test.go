package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestAgentFailureInAnyPhase(t *testing.T) {
	// Each phase's migration as the agents left it when they moved on.
	phases := []struct {
		phase   lpmv1.MigrationPhase
		prepare func(*lpmv1.PodMigration)
	}{
		{lpmv1.PhaseCheckpointing, func(*lpmv1.PodMigration) {}},
		{lpmv1.PhaseCheckpointComplete, checkpointed},
		{lpmv1.PhasePreparingImages, checkpointed},
		{lpmv1.PhaseRestoring, func(m *lpmv1.PodMigration) {
			checkpointed(m)
			imagesReady(m)
			m.Status.RestoredPod = "web-restored"
			m.Status.CheckpointImages = map[string]string{"app": appImage}
		}},
	}
	reports := []struct {
		name       string
		source     bool
		condType   string
		reason     string
		wantReason lpmv1.Reason
	}{
		{name: "source liveness deadline", source: true, condType: lpmv1.AgentConditionImagesServed,
			reason: string(lpmv1.ReasonLivenessProbeDeadline), wantReason: lpmv1.ReasonLivenessProbeDeadline},
		{name: "source checkpoint", source: true, condType: lpmv1.AgentConditionCheckpointed,
			reason: string(lpmv1.ReasonKubeletUnavailable), wantReason: lpmv1.ReasonKubeletUnavailable},
		{name: "source prepare with an invalid reason", source: true, condType: lpmv1.AgentConditionPrepared,
			reason: "not a reason", wantReason: lpmv1.ReasonUnsupportedProcessState},
		{name: "target import", condType: lpmv1.AgentConditionImagesReady,
			reason: string(lpmv1.ReasonDigestMismatch), wantReason: lpmv1.ReasonDigestMismatch},
		{name: "target restore with an invalid reason", condType: lpmv1.AgentConditionRestored,
			reason: "", wantReason: lpmv1.ReasonNotRestored},
	}
	for _, p := range phases {
		for _, r := range reports {
			t.Run(string(p.phase)+"/"+r.name, func(t *testing.T) {
				m := inPhase(p.phase)
				p.prepare(m)
				conditions := &m.Status.Target.Conditions
				if r.source {
					conditions = &m.Status.Source.Conditions
				}
				setAgentCondition(conditions, r.condType, metav1.ConditionFalse, r.reason, "the agent gave up")
				w := fixtureWorld(t0)
				w.restored = readyRestoredPod(readyAt)

				o := decide(m, w, NewSlots(5, 2))

				assertPhase(t, o, lpmv1.PhaseFailed)
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, r.wantReason)
				if !o.deleteRestored || o.deleteSource || o.createRestored != nil {
					t.Errorf("deleteRestored, deleteSource, createRestored = %v, %v, %v; want a rollback",
						o.deleteRestored, o.deleteSource, o.createRestored != nil)
				}
			})
		}
	}
}

func TestAgentFailureAfterVerification(t *testing.T) {
	// Once verified, the source is gone soon: a late report of the source
	// agent cannot roll the migration back.
	m := restoring()
	verified(m)
	setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionImagesServed, metav1.ConditionFalse,
		string(lpmv1.ReasonLivenessProbeDeadline), "the kubelet may kill the frozen source")
	w := fixtureWorld(t0.Add(11 * time.Second))
	w.restored = readyRestoredPod(readyAt)

	o := decide(m, w, NewSlots(5, 2))

	assertPhase(t, o, lpmv1.PhaseRestoring)
	assertCondition(t, o, lpmv1.ConditionRestored, metav1.ConditionTrue, lpmv1.ReasonVerified)
	if o.deleteRestored {
		t.Errorf("deleteRestored = true after verification")
	}
}
