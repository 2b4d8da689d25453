package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

func TestStepPendingFirstPass(t *testing.T) {
	m := fixtureMigration()
	o := decide(m, fixtureWorld(t0), NewSlots(5, 2))

	assertPhase(t, o, lpmv1.PhasePending)
	assertCondition(t, o, lpmv1.ConditionPreflightPassed, metav1.ConditionUnknown, lpmv1.ReasonWaitingForAgents)
	assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionUnknown, lpmv1.ReasonWaitingForAgents)
	want := []string{sourceUID, "node-a", "node-b"}
	got := []string{o.status.SourcePodUID, o.status.SourceNode, o.status.TargetNode}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded source and target mismatch (-want +got):\n%s", diff)
	}
	if o.status.StartTime == nil || !o.status.StartTime.Time.Equal(t0) {
		t.Errorf("startTime = %v, want %v", o.status.StartTime, t0)
	}
	wantTransitions := []lpmv1.PhaseTransition{{Phase: lpmv1.PhasePending, Time: metav1.NewMicroTime(t0)}}
	if diff := cmp.Diff(wantTransitions, o.status.PhaseTransitions); diff != "" {
		t.Errorf("phase transitions mismatch (-want +got):\n%s", diff)
	}
	if o.requeueAfter != DefaultTransferTimeout {
		t.Errorf("requeueAfter = %s, want the agents' deadline %s", o.requeueAfter, DefaultTransferTimeout)
	}
}

func TestStepPendingPicksTarget(t *testing.T) {
	m := fixtureMigration()
	m.Spec.TargetNode = ""
	w := fixtureWorld(t0)
	w.targetAgent, w.targetNode = nil, nil
	o := decide(m, w, NewSlots(5, 2))

	assertPhase(t, o, lpmv1.PhasePending)
	if o.status.TargetNode != "node-b" {
		t.Errorf("targetNode = %q, want node-b", o.status.TargetNode)
	}
}

func TestStepPending(t *testing.T) {
	testCases := []struct {
		name         string
		migration    func(*lpmv1.PodMigration)
		world        func(*world)
		slots        *Slots
		now          time.Time
		wantPhase    lpmv1.MigrationPhase
		wantReason   lpmv1.Reason
		wantTerminal bool
		wantMessage  string
	}{
		{
			name:      "agents prepared starts checkpoint",
			wantPhase: lpmv1.PhaseCheckpointing, wantReason: lpmv1.ReasonInProgress,
		},
		{
			name:      "dry run ends after checks",
			migration: func(m *lpmv1.PodMigration) { m.Spec.DryRun = true },
			wantPhase: lpmv1.PhaseSucceeded, wantReason: lpmv1.ReasonDryRun,
		},
		{
			name: "source agent not prepared yet",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.Source = nil
				m.Status.Conditions = nil
			},
			wantPhase: lpmv1.PhasePending, wantReason: lpmv1.ReasonWaitingForAgents,
		},
		{
			name: "source agent rejects",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionPrepared, metav1.ConditionFalse,
					"NonRootUnsupported", "process 42 runs as user 1000")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonNonRootUnsupported, wantTerminal: true,
			wantMessage: "status.source: source agent on node node-a: process 42 runs as user 1000",
		},
		{
			name: "target agent rejects with invalid reason",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionPrepared, metav1.ConditionFalse,
					"not pascal", "image missing")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonBaseImageUnavailable, wantTerminal: true,
		},
		{
			name:      "no slot in the cluster",
			slots:     NewSlots(0, 2),
			wantPhase: lpmv1.PhasePending, wantReason: lpmv1.ReasonWaitingForSlot,
		},
		{
			name:      "pod missing",
			world:     func(w *world) { w.pod = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonPodNotFound, wantTerminal: true,
			wantMessage: "spec.podName: pod web not found in namespace shop",
		},
		{
			name:      "pod replaced",
			world:     func(w *world) { w.pod.UID = "other" },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonSourceChanged, wantTerminal: true,
		},
		{
			name:      "pod not ready",
			world:     func(w *world) { w.pod.Status.Conditions[0].Status = corev1.ConditionFalse },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonPodNotReady, wantTerminal: true,
		},
		{
			name:      "target missing",
			world:     func(w *world) { w.targetNode = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonTargetNotFound, wantTerminal: true,
		},
		{
			name:      "target is source",
			migration: func(m *lpmv1.PodMigration) { m.Spec.TargetNode = "node-a"; m.Status.TargetNode = "node-a" },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonTargetIsSource, wantTerminal: true,
		},
		{
			name:      "target agent missing",
			world:     func(w *world) { delete(w.cluster.Agents, "node-b") },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentMissing, wantTerminal: true,
		},
		{
			name:      "source agent missing",
			world:     func(w *world) { w.sourceAgent = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentMissing, wantTerminal: true,
		},
		{
			name: "another migration of the pod",
			world: func(w *world) {
				other := fixtureMigration()
				other.Name, other.UID = "earlier", "earlier-uid"
				other.CreationTimestamp = metav1.NewTime(t0.Add(-time.Minute))
				w.migrations = []lpmv1.PodMigration{*other}
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonMigrationInProgress, wantTerminal: true,
		},
		{
			name: "target agent still pulling images",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.Target = nil
				m.Status.Conditions[0].Status = metav1.ConditionUnknown
			},
			now:       t0.Add(DefaultTransferTimeout - time.Second),
			wantPhase: lpmv1.PhasePending, wantReason: lpmv1.ReasonWaitingForAgents,
		},
		{
			name: "agents too slow",
			migration: func(m *lpmv1.PodMigration) {
				m.Status.Target = nil
				m.Status.Conditions[0].Status = metav1.ConditionUnknown
			},
			now:       t0.Add(DefaultTransferTimeout),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentUnavailable,
		},
		{
			name: "agents too slow for the transfer timeout",
			migration: func(m *lpmv1.PodMigration) {
				m.Spec.Timeouts = &lpmv1.Timeouts{Transfer: &metav1.Duration{Duration: 3 * time.Minute}}
				m.Status.Target = nil
				m.Status.Conditions[0].Status = metav1.ConditionUnknown
			},
			now:       t0.Add(3 * time.Minute),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonAgentUnavailable,
		},
		{
			name:      "waiting for a slot past the overall deadline",
			slots:     NewSlots(0, 2),
			now:       t0.Add(DefaultOverallTimeout),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonDeadlineExceeded,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := inPhase(lpmv1.PhasePending)
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
			slots := tc.slots
			if slots == nil {
				slots = NewSlots(5, 2)
			}

			o := decide(m, w, slots)

			assertPhase(t, o, tc.wantPhase)
			assertCondition(t, o, lpmv1.ConditionSucceeded, summaryStatus(tc.wantPhase), tc.wantReason)
			if got := o.terminal != nil; got != tc.wantTerminal {
				t.Errorf("terminal = %v, want %v", o.terminal, tc.wantTerminal)
			}
			var f *preflight.Failure
			if tc.wantTerminal && !errors.As(o.terminal, &f) {
				t.Errorf("terminal error %v is not a preflight failure", o.terminal)
			}
			if tc.wantMessage != "" {
				if got := o.condition(lpmv1.ConditionSucceeded).Message; got != tc.wantMessage {
					t.Errorf("message = %q, want %q", got, tc.wantMessage)
				}
			}
			if tc.wantTerminal {
				assertCondition(t, o, lpmv1.ConditionPreflightPassed, metav1.ConditionFalse, tc.wantReason)
			}
			if tc.wantPhase == lpmv1.PhaseFailed {
				if !o.removeFinalizer {
					t.Errorf("a migration that failed before Checkpointing keeps its finalizer")
				}
			}
		})
	}
}

func summaryStatus(phase lpmv1.MigrationPhase) metav1.ConditionStatus {
	switch phase {
	case lpmv1.PhaseSucceeded:
		return metav1.ConditionTrue
	case lpmv1.PhaseFailed:
		return metav1.ConditionFalse
	}
	return metav1.ConditionUnknown
}
