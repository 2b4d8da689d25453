package controller

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// The overall timeout counts from the PodMigration's creation, so a
// migration that waited for a controller past its deadline fails in
// Pending and never reaches Checkpointing, which freezes the pod.
func TestOverallDeadlineFromCreation(t *testing.T) {
	overall := 5 * time.Second
	testCases := []struct {
		name       string
		migration  func(*lpmv1.PodMigration)
		now        time.Time
		wantPhase  lpmv1.MigrationPhase
		wantReason lpmv1.Reason
	}{
		{
			name: "first look after the deadline",
			migration: func(m *lpmv1.PodMigration) {
				m.Status = lpmv1.PodMigrationStatus{}
			},
			now:       t0.Add(15 * time.Second),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonDeadlineExceeded,
		},
		{
			name:      "agents prepared after the deadline",
			now:       t0.Add(overall),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonDeadlineExceeded,
		},
		{
			// The controller's first look came 4 seconds after the creation:
			// a start time counted from then would leave 4 more seconds.
			name: "started late, deadline from creation",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.StartTime = &metav1.Time{Time: t0.Add(4 * time.Second)}
			},
			now:       t0.Add(overall),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonDeadlineExceeded,
		},
		{
			name:      "before the deadline",
			now:       t0.Add(overall - time.Millisecond),
			wantPhase: lpmv1.PhaseCheckpointing, wantReason: lpmv1.ReasonInProgress,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := inPhase(lpmv1.PhasePending)
			m.Spec.Timeouts = &lpmv1.Timeouts{Overall: &metav1.Duration{Duration: overall}}
			if tc.migration != nil {
				tc.migration(m)
			}
			w := fixtureWorld(tc.now)
			if m.Status.Source == nil {
				// The agents found the migration before the controller did.
				m.Status.Source = inPhase(lpmv1.PhasePending).Status.Source
				m.Status.Target = inPhase(lpmv1.PhasePending).Status.Target
			}

			o := decide(m, w, NewSlots(5, 2))

			assertPhase(t, o, tc.wantPhase)
			assertCondition(t, o, lpmv1.ConditionSucceeded, summaryStatus(tc.wantPhase), tc.wantReason)
			if tc.wantPhase == lpmv1.PhaseFailed {
				if c := o.condition(lpmv1.ConditionSucceeded); !strings.Contains(c.Message, "of its creation") {
					t.Errorf("message = %q, want it to say the timeout counts from the creation", c.Message)
				}
				if touchedNodes(o.status) {
					t.Errorf("phase transitions %v include Checkpointing", o.status.PhaseTransitions)
				}
			}
		})
	}
}

func TestOverallDeadlineAt(t *testing.T) {
	m := fixtureMigration()
	m.Spec.Timeouts = &lpmv1.Timeouts{Overall: &metav1.Duration{Duration: time.Minute}}
	status := &lpmv1.PodMigrationStatus{StartTime: &metav1.Time{Time: t0.Add(time.Hour)}}

	d, ok := overallDeadline(m, status)

	if !ok || !d.at.Equal(t0.Add(time.Minute)) {
		t.Errorf("overall deadline = %s (ok %v), want %s: creation plus spec.timeouts.overall", d.at, ok,
			t0.Add(time.Minute))
	}
}
