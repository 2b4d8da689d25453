package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestStepCancel(t *testing.T) {
	testCases := []struct {
		name          string
		migration     func() *lpmv1.PodMigration
		wantPhase     lpmv1.MigrationPhase
		wantDelete    bool
		wantFinalizer bool
	}{
		{
			name:      "pending never touched nodes",
			migration: func() *lpmv1.PodMigration { return inPhase(lpmv1.PhasePending) },
			wantPhase: lpmv1.PhaseFailed, wantDelete: true, wantFinalizer: false,
		},
		{
			name:      "checkpointing waits for agents",
			migration: func() *lpmv1.PodMigration { return inPhase(lpmv1.PhaseCheckpointing) },
			wantPhase: lpmv1.PhaseFailed, wantDelete: true, wantFinalizer: true,
		},
		{
			name:      "restoring before verification",
			migration: func() *lpmv1.PodMigration { m := restoring(); return m },
			wantPhase: lpmv1.PhaseFailed, wantDelete: true, wantFinalizer: true,
		},
		{
			name: "after verification the migration finishes",
			migration: func() *lpmv1.PodMigration {
				m := restoring()
				verified(m)
				return m
			},
			wantPhase: lpmv1.PhaseRestoring, wantFinalizer: true,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.migration()
			m.DeletionTimestamp = &metav1.Time{Time: t0.Add(20 * time.Second)}
			w := fixtureWorld(t0.Add(20 * time.Second))
			w.restored = readyRestoredPod(t0.Add(4 * time.Second))

			o := decide(m, w, NewSlots(5, 2))

			assertPhase(t, o, tc.wantPhase)
			if tc.wantPhase == lpmv1.PhaseFailed {
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonCancelled)
			}
			if o.deleteRestored != tc.wantDelete {
				t.Errorf("deleteRestored = %v, want %v", o.deleteRestored, tc.wantDelete)
			}
			if o.deleteSource {
				t.Errorf("cancel deletes the source pod")
			}
			if got := !o.removeFinalizer; got != tc.wantFinalizer {
				t.Errorf("finalizer kept = %v, want %v", got, tc.wantFinalizer)
			}
		})
	}
}

func TestStepFinished(t *testing.T) {
	failedAt := t0.Add(time.Minute)
	failed := func(mutate ...func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
		m := inPhase(lpmv1.PhaseCheckpointing)
		m.Status.Phase = lpmv1.PhaseFailed
		m.Status.PhaseTransitions = append(m.Status.PhaseTransitions,
			lpmv1.PhaseTransition{Phase: lpmv1.PhaseFailed, Time: metav1.NewMicroTime(failedAt)})
		m.Status.CompletionTime = &metav1.Time{Time: failedAt}
		m.Status.RestoredPod = "web-restored"
		for _, f := range mutate {
			f(m)
		}
		return m
	}
	cleaned := func(m *lpmv1.PodMigration) {
		setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue, "CleanedUp", "")
		setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue, "CleanedUp", "")
	}
	testCases := []struct {
		name              string
		migration         *lpmv1.PodMigration
		restoredExists    bool
		now               time.Time
		wantDelete        bool
		wantRelease       bool
		wantRemove        bool
		wantRequeue       time.Duration
		wantEvents        []lpmv1.Reason
		wantStatusChanged bool
	}{
		{
			name: "failed waits for agents", migration: failed(), restoredExists: true,
			now: failedAt.Add(time.Second), wantDelete: true, wantRequeue: cleanupTimeout - time.Second,
		},
		{
			name: "failed and cleaned up", migration: failed(cleaned),
			now: failedAt.Add(time.Second), wantRemove: true,
		},
		{
			name: "failed cleanup timed out", migration: failed(),
			now: failedAt.Add(cleanupTimeout), wantRemove: true,
			wantEvents: []lpmv1.Reason{lpmv1.ReasonCleanupTimedOut},
		},
		{
			name: "succeeded releases the restored pod",
			migration: func() *lpmv1.PodMigration {
				m := restoring()
				m.Status.Phase = lpmv1.PhaseSucceeded
				return m
			}(),
			restoredExists: true, now: failedAt, wantRelease: true, wantRemove: true,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			w := fixtureWorld(tc.now)
			if tc.restoredExists {
				w.restored = readyRestoredPod(t0)
			}
			before := tc.migration.Status.DeepCopy()

			o := decide(tc.migration, w, NewSlots(5, 2))

			if o.deleteRestored != tc.wantDelete {
				t.Errorf("deleteRestored = %v, want %v", o.deleteRestored, tc.wantDelete)
			}
			if o.releaseRestored != tc.wantRelease {
				t.Errorf("releaseRestored = %v, want %v", o.releaseRestored, tc.wantRelease)
			}
			if o.removeFinalizer != tc.wantRemove {
				t.Errorf("removeFinalizer = %v, want %v", o.removeFinalizer, tc.wantRemove)
			}
			if tc.wantRequeue != 0 && o.requeueAfter != tc.wantRequeue {
				t.Errorf("requeueAfter = %s, want %s", o.requeueAfter, tc.wantRequeue)
			}
			if diff := cmp.Diff(tc.wantEvents, eventReasons(o)); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, o.status); diff != "" {
				t.Errorf("a finished migration's status changed (-before +after):\n%s", diff)
			}
		})
	}
}

// After a rollback the source stays frozen until the restored pod is gone.
// A restored pod on a dead node stays Terminating, and the failure message
// and a warning event then say how to release the source.
func TestReportFrozenSource(t *testing.T) {
	failedAt := t0.Add(time.Minute)
	deleteBy := failedAt.Add(30 * time.Second)
	const failure = "the restored pod web-restored was not verified within 5m0s (spec.timeouts.restore)"
	advice := "Pod web stays frozen until pod web-restored is gone, so that two copies never run at once. " +
		"Pod web-restored is still terminating. If node node-b is down, " +
		"`kubectl delete pod web-restored -n shop --force --grace-period=0` removes it and releases the source"
	testCases := []struct {
		name        string
		migration   func(*lpmv1.PodMigration)
		world       func(*world)
		now         time.Time
		wantMessage string
		wantWarning bool
		wantRequeue time.Duration
	}{
		{
			name:        "restored pod within its grace period",
			now:         deleteBy.Add(restoredPodGoneGrace - time.Second),
			wantMessage: failure,
			wantRequeue: time.Second,
		},
		{
			name:        "restored pod terminating past its grace period",
			now:         deleteBy.Add(restoredPodGoneGrace),
			wantMessage: failure + ". " + advice,
			wantWarning: true,
		},
		{
			name: "advice already given",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.Conditions[len(m.Status.Conditions)-1].Message = failure + ". " + advice
			},
			now:         deleteBy.Add(time.Hour),
			wantMessage: failure + ". " + advice,
		},
		{
			name: "restored pod gone after the advice",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.Conditions[len(m.Status.Conditions)-1].Message = failure + ". " + advice
			},
			world:       func(w *world) { w.restored = nil },
			now:         deleteBy.Add(time.Hour),
			wantMessage: failure + ". Pod web-restored is gone, so the agent of node node-a thaws pod web",
		},
		{
			name: "source agent cleaned up",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
					"CleanedUp", "")
			},
			now:         deleteBy.Add(time.Hour),
			wantMessage: failure,
		},
		{
			name:        "source never frozen with Keep",
			migration:   func(m *lpmv1.PodMigration) { m.Spec.SourcePolicy = lpmv1.SourcePolicyKeep },
			now:         deleteBy.Add(time.Hour),
			wantMessage: failure,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := restoring()
			m.Status.Phase = lpmv1.PhaseFailed
			m.Status.CompletionTime = &metav1.Time{Time: failedAt}
			m.Status.Conditions = append(m.Status.Conditions, metav1.Condition{
				Type: lpmv1.ConditionSucceeded, Status: metav1.ConditionFalse, ObservedGeneration: 1,
				Reason: string(lpmv1.ReasonRestoreTimedOut), Message: failure, LastTransitionTime: metav1.NewTime(failedAt),
			})
			if tc.migration != nil {
				tc.migration(m)
			}
			w := fixtureWorld(tc.now)
			w.restored = readyRestoredPod(readyAt)
			w.restored.DeletionTimestamp = &metav1.Time{Time: deleteBy}
			if tc.world != nil {
				tc.world(w)
			}

			o := decide(m, w, NewSlots(5, 2))

			c := o.condition(lpmv1.ConditionSucceeded)
			if diff := cmp.Diff(tc.wantMessage, c.Message); diff != "" {
				t.Errorf("Succeeded message (-want +got):\n%s", diff)
			}
			if c.Reason != string(lpmv1.ReasonRestoreTimedOut) || !c.LastTransitionTime.Time.Equal(failedAt) {
				t.Errorf("Succeeded = %s at %s, want the failure's reason and time kept", c.Reason, c.LastTransitionTime)
			}
			var warned bool
			for _, e := range o.events {
				warned = warned || (e.reason == lpmv1.ReasonRestoreTimedOut && e.note == advice)
			}
			if warned != tc.wantWarning {
				t.Errorf("advice event = %v, want %v (events %v)", warned, tc.wantWarning, o.events)
			}
			if tc.wantRequeue != 0 && o.requeueAfter != tc.wantRequeue {
				t.Errorf("requeueAfter = %s, want %s", o.requeueAfter, tc.wantRequeue)
			}
		})
	}
}
