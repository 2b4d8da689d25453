package controller

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// outcome is the decision of one reconcile: the controller's part of the
// status it writes, the changes it makes to other objects and the events
// it emits after the status write. The phase steps fill it in without
// calling the API server, so each step is tested as a pure function.
type outcome struct {
	m      *lpmv1.PodMigration
	now    time.Time
	status *lpmv1.PodMigrationStatus

	createRestored  *corev1.Pod
	deleteRestored  bool
	releaseRestored bool
	deleteSource    bool
	removeFinalizer bool

	events       []event
	requeueAfter time.Duration
	// terminal is set when the migration failed on input that can never
	// succeed, so the reconcile returns a terminal error.
	terminal error
}

// event is an event emitted after the status write.
type event struct {
	eventType string
	reason    lpmv1.Reason
	action    string
	note      string
}

func newOutcome(m *lpmv1.PodMigration, now time.Time) *outcome {
	return &outcome{m: m, now: now, status: m.Status.DeepCopy()}
}

// setPhase moves the migration to phase and records when it did.
func (o *outcome) setPhase(phase lpmv1.MigrationPhase) {
	if o.status.Phase == phase {
		return
	}
	o.status.Phase = phase
	o.status.PhaseTransitions = append(o.status.PhaseTransitions,
		lpmv1.PhaseTransition{Phase: phase, Time: metav1.NewMicroTime(o.now)})
}

// setCondition sets a condition with the injected clock's time, because
// meta.SetStatusCondition would read the wall clock.
func (o *outcome) setCondition(t string, status metav1.ConditionStatus, reason lpmv1.Reason, message string) {
	meta.SetStatusCondition(&o.status.Conditions, metav1.Condition{
		Type:               t,
		Status:             status,
		ObservedGeneration: o.m.Generation,
		LastTransitionTime: metav1.NewTime(o.now),
		Reason:             string(reason),
		Message:            message,
	})
}

// condition returns the condition of type t in the status being built.
func (o *outcome) condition(t string) *metav1.Condition {
	return meta.FindStatusCondition(o.status.Conditions, t)
}

func (o *outcome) progress(reason lpmv1.Reason, message string) {
	o.setCondition(lpmv1.ConditionSucceeded, metav1.ConditionUnknown, reason, message)
}

func (o *outcome) normal(reason lpmv1.Reason, action, note string) {
	o.events = append(o.events, event{corev1.EventTypeNormal, reason, action, note})
}

func (o *outcome) warning(reason lpmv1.Reason, action, note string) {
	o.events = append(o.events, event{corev1.EventTypeWarning, reason, action, note})
}

// requeue requests another reconcile after d at the latest.
func (o *outcome) requeue(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if o.requeueAfter == 0 || d < o.requeueAfter {
		o.requeueAfter = d
	}
}

// requeueAt requests another reconcile at t at the latest.
func (o *outcome) requeueAt(t time.Time) {
	o.requeue(t.Sub(o.now))
}

// stageConditions maps each running phase to the condition of its stage,
// which a failure in that phase sets to False.
var stageConditions = map[lpmv1.MigrationPhase]string{
	"":                       lpmv1.ConditionPreflightPassed,
	lpmv1.PhasePending:       lpmv1.ConditionPreflightPassed,
	lpmv1.PhaseCheckpointing: lpmv1.ConditionCheckpointed,
	// Checkpointed is already True in CheckpointComplete; the images
	// stage starts with it.
	lpmv1.PhaseCheckpointComplete: lpmv1.ConditionImagesReady,
	lpmv1.PhasePreparingImages:    lpmv1.ConditionImagesReady,
	lpmv1.PhaseRestoring:          lpmv1.ConditionRestored,
}

// fail ends the migration in Failed and starts the rollback: the restored
// pod is deleted, and the agents see the phase and clean up their nodes.
func (o *outcome) fail(reason lpmv1.Reason, message string) {
	if t, ok := stageConditions[o.status.Phase]; ok {
		if c := o.condition(t); c == nil || c.Status != metav1.ConditionTrue {
			o.setCondition(t, metav1.ConditionFalse, reason, message)
		}
	}
	o.setCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, reason, message)
	o.setPhase(lpmv1.PhaseFailed)
	o.status.CompletionTime = &metav1.Time{Time: o.now}
	o.deleteRestored = true
	o.warning(reason, "Rollback", message)
}

// succeed ends the migration in Succeeded.
func (o *outcome) succeed(reason lpmv1.Reason, message string) {
	o.setCondition(lpmv1.ConditionSucceeded, metav1.ConditionTrue, reason, message)
	o.setPhase(lpmv1.PhaseSucceeded)
	o.status.CompletionTime = &metav1.Time{Time: o.now}
	o.normal(reason, string(lpmv1.PhaseSucceeded), message)
}
