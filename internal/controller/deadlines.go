package controller

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Defaults of spec.timeouts and spec.settle. They suit a pod of about 1 GiB
// of memory with a wide margin: by estimate, its checkpoint image of about
// 1 GiB moves in about ten seconds over a 1 Gbit/s link.
const (
	DefaultCheckpointTimeout = 2 * time.Minute
	DefaultTransferTimeout   = 10 * time.Minute
	DefaultRestoreTimeout    = 5 * time.Minute
	DefaultOverallTimeout    = 30 * time.Minute
	DefaultSettle            = 5 * time.Second
)

const (
	// agentReportGrace is added to the checkpoint timeout, which the agent
	// passes to the kubelet, so an agent that finishes right at the timeout
	// still has time to report.
	agentReportGrace = 15 * time.Second

	// cleanupTimeout bounds the wait for the agents' CleanedUp after a
	// failure, and for the source agent's CleanedUp before the controller
	// deletes the source pod.
	cleanupTimeout = 2 * time.Minute
)

func duration(d *metav1.Duration, fallback time.Duration) time.Duration {
	if d == nil {
		return fallback
	}
	return d.Duration
}

func timeouts(m *lpmv1.PodMigration) lpmv1.Timeouts {
	if m.Spec.Timeouts == nil {
		return lpmv1.Timeouts{}
	}
	return *m.Spec.Timeouts
}

func settle(m *lpmv1.PodMigration) time.Duration {
	return duration(m.Spec.Settle, DefaultSettle)
}

// deadline is the time by which a running migration must leave its stage,
// and the reason it fails with otherwise.
type deadline struct {
	at      time.Time
	reason  lpmv1.Reason
	message string
}

// overallDeadline returns the deadline of spec.timeouts.overall, which
// counts from the PodMigration's creation, so the time it waited for a
// controller counts too. ok is false when neither the creation time nor
// the start time is known.
func overallDeadline(m *lpmv1.PodMigration, status *lpmv1.PodMigrationStatus) (deadline, bool) {
	start := m.CreationTimestamp.Time
	if start.IsZero() && status.StartTime != nil {
		start = status.StartTime.Time
	}
	if start.IsZero() {
		return deadline{}, false
	}
	overall := duration(timeouts(m).Overall, DefaultOverallTimeout)
	return deadline{
		at:     start.Add(overall),
		reason: lpmv1.ReasonDeadlineExceeded,
		message: fmt.Sprintf("the migration did not finish within %s of its creation (spec.timeouts.overall)",
			overall),
	}, true
}

// deadlines returns the deadlines that apply to the migration now: the
// current stage's and the overall one. None applies once the restored pod
// is verified, because the source is gone from then on and the migration
// can only finish.
func deadlines(m *lpmv1.PodMigration, status *lpmv1.PodMigrationStatus) []deadline {
	if meta.IsStatusConditionTrue(status.Conditions, lpmv1.ConditionRestored) {
		return nil
	}
	var list []deadline
	if d, ok := overallDeadline(m, status); ok {
		list = append(list, d)
	}
	if status.StartTime == nil {
		return list
	}
	t := timeouts(m)
	entered := phaseEntered(status, status.Phase)
	switch status.Phase {
	case "", lpmv1.PhasePending:
		// The target agent pulls missing base images before it reports
		// Prepared, which can take as long as a transfer.
		c := meta.FindStatusCondition(status.Conditions, lpmv1.ConditionPreflightPassed)
		if c != nil && c.Status == metav1.ConditionUnknown {
			d := duration(t.Transfer, DefaultTransferTimeout)
			list = append(list, deadline{
				at:     c.LastTransitionTime.Add(d),
				reason: lpmv1.ReasonAgentUnavailable,
				message: fmt.Sprintf("the agents of nodes %s and %s did not both report Prepared within %s "+
					"(spec.timeouts.transfer). Check that the lpm agent runs on both nodes and that node %s "+
					"can pull the pod's images", status.SourceNode, status.TargetNode, d, status.TargetNode),
			})
		}
	case lpmv1.PhaseCheckpointing:
		d := duration(t.Checkpoint, DefaultCheckpointTimeout)
		list = append(list, deadline{
			at:     entered.Add(d + agentReportGrace),
			reason: lpmv1.ReasonCheckpointTimedOut,
			message: fmt.Sprintf("the checkpoint did not finish within %s (spec.timeouts.checkpoint). "+
				"A pod with much memory needs a longer timeout", d),
		})
	case lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages:
		d := duration(t.Transfer, DefaultTransferTimeout)
		list = append(list, deadline{
			at:     phaseEntered(status, lpmv1.PhaseCheckpointComplete).Add(d),
			reason: lpmv1.ReasonTransferTimedOut,
			message: fmt.Sprintf("the checkpoint images did not reach node %s within %s "+
				"(spec.timeouts.transfer)", status.TargetNode, d),
		})
	case lpmv1.PhaseRestoring:
		d := duration(t.Restore, DefaultRestoreTimeout)
		list = append(list, deadline{
			at:     entered.Add(d),
			reason: lpmv1.ReasonRestoreTimedOut,
			message: fmt.Sprintf("the restored pod %s was not verified within %s (spec.timeouts.restore)",
				status.RestoredPod, d),
		})
	}
	return list
}

// phaseEntered returns when the migration last entered phase, or its start
// time when no transition is recorded.
func phaseEntered(status *lpmv1.PodMigrationStatus, phase lpmv1.MigrationPhase) time.Time {
	for i := len(status.PhaseTransitions) - 1; i >= 0; i-- {
		if status.PhaseTransitions[i].Phase == phase {
			return status.PhaseTransitions[i].Time.Time
		}
	}
	if status.StartTime != nil {
		return status.StartTime.Time
	}
	return time.Time{}
}

// enforceDeadlines fails the migration when a deadline passed, and
// otherwise requests a reconcile at the next deadline.
func enforceDeadlines(o *outcome) {
	if o.status.Phase == lpmv1.PhaseFailed || o.status.Phase == lpmv1.PhaseSucceeded {
		return
	}
	for _, d := range deadlines(o.m, o.status) {
		if !o.now.Before(d.at) {
			o.fail(d.reason, d.message)
			return
		}
	}
	for _, d := range deadlines(o.m, o.status) {
		o.requeueAt(d.at)
	}
}
