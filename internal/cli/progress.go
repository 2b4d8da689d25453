package cli

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// rateWindow is how far back the transfer rate looks.
const rateWindow = 5 * time.Second

// phaseEntry records when a migration entered a phase.
type phaseEntry struct {
	phase lpmv1.MigrationPhase
	// entered is the controller's time from status.phaseTransitions, with
	// microseconds. It is zero when the status does not record the phase.
	entered time.Time
	// observed is the local time at which a watch event first showed the
	// phase. It is zero for phases that the first observation already
	// contained, because their start was not seen.
	observed time.Time
}

// byteSample is a transfer progress reading at a local time.
type byteSample struct {
	at    time.Time
	bytes int64
}

// progressTracker turns the successive versions of a PodMigration into the
// figures the progress display shows: the phases with their durations, the
// bytes checkpointed and transferred, and the transfer rate.
//
// Durations of finished phases come from status.phaseTransitions, which
// the controller records with microseconds. The current phase's elapsed
// time comes from the local clock when the tracker saw the phase begin, so
// that local and server clocks are mixed in one difference only when it
// did not.
type progressTracker struct {
	// podContainers is the number of containers of the pod, or 0 when
	// unknown.
	podContainers int
	// started is the local time at which following began.
	started time.Time

	observedOnce bool
	entries      []phaseEntry
	samples      []byteSample
	latest       *lpmv1.PodMigration
}

func newProgressTracker(now time.Time, podContainers int) *progressTracker {
	return &progressTracker{started: now, podContainers: podContainers}
}

// observe records a version of the PodMigration seen at local time now.
func (t *progressTracker) observe(pm *lpmv1.PodMigration, now time.Time) {
	previousPhase := t.currentPhase()
	t.recordPhases(phaseHistory(pm), now)

	// The rate covers the transfer only, so the samples start anew with
	// each phase.
	done, _ := transferBytes(pm)
	switch {
	case t.currentPhase() != previousPhase:
		t.samples = []byteSample{{at: now, bytes: done}}
	case len(t.samples) == 0 || t.samples[len(t.samples)-1].bytes != done:
		t.samples = append(t.samples, byteSample{at: now, bytes: done})
	}
	t.latest = pm
	t.observedOnce = true
}

// recordPhases brings the entries in line with the phase history seen at
// local time now.
func (t *progressTracker) recordPhases(transitions []lpmv1.PhaseTransition, now time.Time) {
	firstNew := len(transitions)
	for i, tr := range transitions {
		if i < len(t.entries) && t.entries[i].phase == tr.Phase {
			if t.entries[i].entered.IsZero() {
				t.entries[i].entered = tr.Time.Time
			}
			continue
		}
		// A phase the tracker has not seen, or a history that differs
		// from the one recorded: keep what matches and take the rest anew.
		firstNew = i
		break
	}
	t.entries = t.entries[:min(firstNew, len(t.entries))]
	if firstNew == len(transitions) || !t.observedOnce {
		for _, tr := range transitions[firstNew:] {
			t.entries = append(t.entries, phaseEntry{phase: tr.Phase, entered: tr.Time.Time})
		}
		return
	}

	// Of several phases that one version reveals, only the last began
	// just now. Phases with the same recorded time began in the same
	// status write, so at the same moment. The others began earlier, at
	// a local time that no event showed.
	last := transitions[len(transitions)-1]
	for _, tr := range transitions[firstNew:] {
		entry := phaseEntry{phase: tr.Phase, entered: tr.Time.Time}
		if tr.Time.Equal(&last.Time) {
			entry.observed = now
		}
		t.entries = append(t.entries, entry)
	}
}

// currentPhase returns the phase of the last entry, or "".
func (t *progressTracker) currentPhase() lpmv1.MigrationPhase {
	if len(t.entries) == 0 {
		return ""
	}
	return t.entries[len(t.entries)-1].phase
}

// phaseHistory returns the phases the migration entered, in order: the
// recorded status.phaseTransitions, and status.phase when the list lacks it.
func phaseHistory(pm *lpmv1.PodMigration) []lpmv1.PhaseTransition {
	history := pm.Status.PhaseTransitions
	phase := pm.Status.Phase
	if phase == "" {
		return history
	}
	if len(history) == 0 || history[len(history)-1].Phase != phase {
		history = append(append([]lpmv1.PhaseTransition(nil), history...),
			lpmv1.PhaseTransition{Phase: phase})
	}
	return history
}

// phaseDuration returns how long the migration stayed in the phase of entry
// i: until the next phase, or until now for the current phase. ok is false
// when the records cannot tell.
func (t *progressTracker) phaseDuration(i int, now time.Time) (d time.Duration, ok bool) {
	start := t.entries[i]
	if i+1 < len(t.entries) {
		end := t.entries[i+1]
		switch {
		case !start.entered.IsZero() && !end.entered.IsZero():
			return end.entered.Sub(start.entered), true
		case !start.observed.IsZero() && !end.observed.IsZero():
			return end.observed.Sub(start.observed), true
		default:
			return 0, false
		}
	}

	switch {
	case !start.observed.IsZero():
		return now.Sub(start.observed), true
	case !start.entered.IsZero():
		// NOTE: this difference mixes the local and the server clock, so
		// clock skew shifts it. It only shows the current phase's elapsed
		// time when the watch began after the phase did.
		return max(now.Sub(start.entered), 0), true
	default:
		return 0, false
	}
}

// phaseDurationText formats phaseDuration for the display, "?" when
// unknown.
func (t *progressTracker) phaseDurationText(i int, now time.Time) string {
	d, ok := t.phaseDuration(i, now)
	if !ok {
		return "?"
	}
	return formatDuration(d)
}

// transferRate returns the transfer rate over the last rateWindow in bytes
// per second, or 0 when it cannot be measured yet.
func (t *progressTracker) transferRate(now time.Time) float64 {
	if len(t.samples) < 2 {
		return 0
	}
	last := t.samples[len(t.samples)-1]
	first := last
	for i := len(t.samples) - 2; i >= 0; i-- {
		if now.Sub(t.samples[i].at) > rateWindow {
			break
		}
		first = t.samples[i]
	}
	elapsed := last.at.Sub(first.at).Seconds()
	if elapsed <= 0 || last.bytes <= first.bytes {
		return 0
	}
	return float64(last.bytes-first.bytes) / elapsed
}

// isTerminalPhase reports whether a migration in phase p has ended.
func isTerminalPhase(p lpmv1.MigrationPhase) bool {
	return p == lpmv1.PhaseSucceeded || p == lpmv1.PhaseFailed
}

// checkpointFigures returns the number of checkpointed containers and the
// sum of their archive sizes. The controller fills status.containers once
// the checkpoint ends. Before that, the source agent's list grows as each
// container is done.
func checkpointFigures(pm *lpmv1.PodMigration) (containers int, bytes int64) {
	if len(pm.Status.Containers) > 0 {
		for _, c := range pm.Status.Containers {
			containers++
			bytes += c.ArchiveBytes
		}
		return containers, bytes
	}
	if pm.Status.Source == nil {
		return 0, 0
	}
	for _, c := range pm.Status.Source.Containers {
		if c.ArchiveBytes > 0 {
			containers++
			bytes += c.ArchiveBytes
		}
	}
	return containers, bytes
}

// transferBytes returns the checkpoint image bytes received by the target
// node and the total to receive (0 while unknown). The target agent's own
// figures are the most recent, so the controller's copy in
// status.transferProgress is only the fallback.
func transferBytes(pm *lpmv1.PodMigration) (done, total int64) {
	if t := pm.Status.Target; t != nil && (t.BytesDone > 0 || t.BytesTotal > 0) {
		return t.BytesDone, t.BytesTotal
	}
	if p := pm.Status.TransferProgress; p != nil {
		return p.BytesDone, p.BytesTotal
	}
	return 0, 0
}

// summaryCondition returns the Succeeded condition, or nil.
func summaryCondition(pm *lpmv1.PodMigration) *metav1.Condition {
	return meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSucceeded)
}

// failureReason returns the reason and message of a failed migration: the
// Succeeded condition's, or else those of the first False condition.
func failureReason(pm *lpmv1.PodMigration) (lpmv1.Reason, string) {
	if c := summaryCondition(pm); c != nil && c.Status == metav1.ConditionFalse {
		return lpmv1.Reason(c.Reason), c.Message
	}
	for _, c := range pm.Status.Conditions {
		if c.Status == metav1.ConditionFalse && c.Type != lpmv1.ConditionSourceRemoved {
			return lpmv1.Reason(c.Reason), c.Message
		}
	}
	return "Unknown", "the PodMigration failed without a reason in its conditions"
}

// phaseDetail returns what the display adds to the line of phase p, from
// the latest version of the PodMigration. running is true while p is the
// current phase.
func (t *progressTracker) phaseDetail(p lpmv1.MigrationPhase, running bool) string {
	pm := t.latest
	switch p {
	case lpmv1.PhasePending:
		return pendingDetail(pm, running)
	case lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete:
		containers, bytes := checkpointFigures(pm)
		if containers == 0 {
			return ""
		}
		return fmt.Sprintf("%s, %s", plural(containers, "container"), formatBytes(bytes))
	case lpmv1.PhasePreparingImages:
		done, total := transferBytes(pm)
		switch {
		case done == 0 && total == 0:
			return ""
		case running:
			return "transferring"
		default:
			return formatBytes(done) + " transferred"
		}
	case lpmv1.PhaseRestoring:
		return restoringDetail(pm, running)
	}
	return ""
}

func pendingDetail(pm *lpmv1.PodMigration, running bool) string {
	target := ""
	if pm.Status.TargetNode != "" {
		target = "target " + pm.Status.TargetNode
	}
	if !running {
		return target
	}

	waiting := ""
	if c := summaryCondition(pm); c != nil {
		switch lpmv1.Reason(c.Reason) {
		case lpmv1.ReasonWaitingForAgents:
			waiting = "waiting for the agents' checks"
		case lpmv1.ReasonWaitingForSlot:
			waiting = "waiting for a free migration slot"
		}
	}
	if c := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionPreflightPassed); waiting == "" &&
		c != nil && c.Reason == string(lpmv1.ReasonWaitingForAgents) {
		waiting = "waiting for the agents' checks"
	}

	switch {
	case target != "" && waiting != "":
		return target + ", " + waiting
	case target != "":
		return target
	default:
		return waiting
	}
}

func restoringDetail(pm *lpmv1.PodMigration, running bool) string {
	detail := ""
	if pm.Status.RestoredPod != "" {
		detail = "pod " + pm.Status.RestoredPod
	}
	if !running {
		return detail
	}

	step := ""
	restored := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionRestored)
	removed := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSourceRemoved)
	switch {
	case removed != nil && removed.Reason == string(lpmv1.ReasonSourceDeleting):
		step = "removing the source pod"
	case restored != nil && restored.Status == metav1.ConditionTrue:
		step = "verified"
	case restored != nil && restored.Reason == string(lpmv1.ReasonSettling):
		step = "settling"
	case restored != nil && restored.Reason == string(lpmv1.ReasonWaitingForNodeLease):
		step = "waiting for the target node's Lease"
	}
	switch {
	case detail == "":
		return step
	case step == "":
		return detail
	default:
		return detail + ", " + step
	}
}
