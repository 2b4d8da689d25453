package cli

import (
	"fmt"
	"time"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// totalDuration returns how long the migration took: by the local clock
// when the tracker saw it start and end, else by the server's timestamps.
func (t *progressTracker) totalDuration(pm *lpmv1.PodMigration) (time.Duration, bool) {
	if n := len(t.entries); n > 0 && !t.entries[n-1].observed.IsZero() && isTerminalPhase(t.entries[n-1].phase) {
		return t.entries[n-1].observed.Sub(t.started), true
	}
	if pm.Status.CompletionTime != nil && !pm.CreationTimestamp.IsZero() {
		return pm.Status.CompletionTime.Sub(pm.CreationTimestamp.Time), true
	}
	return 0, false
}

// resultLines explains how a finished migration ended and, on failure, what
// to do next.
func resultLines(pm *lpmv1.PodMigration, total time.Duration, totalKnown bool) []string {
	pod := pm.Namespace + "/" + pm.Spec.PodName
	took := ""
	if totalKnown {
		took = " in " + formatDuration(total)
	}

	if pm.Status.Phase == lpmv1.PhaseSucceeded {
		return successLines(pm, pod, took)
	}

	reason, message := failureReason(pm)
	if totalKnown {
		took = " after " + formatDuration(total)
	}
	lines := []string{fmt.Sprintf("Failed%s: %s", took, reason)}
	if message != "" {
		lines = append(lines, "  "+oneLine(message))
	}
	lines = append(lines, "What to do: "+adviceFor(reason, pm))

	switch {
	case pm.Spec.DryRun:
		lines = append(lines, fmt.Sprintf("The dry run changed nothing: pod %s was not touched.", pod))
	case !touchedSource(pm):
		lines = append(lines, fmt.Sprintf("Pod %s was not touched.", pod))
	default:
		lines = append(lines, fmt.Sprintf("lpm rolls the migration back: pod %s on %s stays frozen until the "+
			"restored pod is gone, then runs on.", pod, orNone(pm.Status.SourceNode)))
	}
	lines = append(lines, fmt.Sprintf("Details: kubectl migrate status %s -n %s", pm.Name, pm.Namespace))
	return lines
}

func successLines(pm *lpmv1.PodMigration, pod, took string) []string {
	if pm.Spec.DryRun {
		return []string{fmt.Sprintf("Dry run passed%s: pod %s can move from %s to %s.",
			took, pod, orNone(pm.Status.SourceNode), orNone(pm.Status.TargetNode))}
	}

	summary := "Succeeded" + took + "."
	if pm.Status.Downtime != nil {
		summary += " Downtime " + formatDuration(pm.Status.Downtime.Duration) + "."
	}
	lines := []string{summary}
	if pm.Spec.SourcePolicy == lpmv1.SourcePolicyKeep {
		lines = append(lines, fmt.Sprintf("Pod %s was copied to %s as pod %s. The source pod still runs on %s.",
			pod, orNone(pm.Status.TargetNode), orNone(pm.Status.RestoredPod), orNone(pm.Status.SourceNode)))
		return lines
	}
	return append(lines, fmt.Sprintf("Pod %s runs on %s now, as pod %s.",
		pod, orNone(pm.Status.TargetNode), orNone(pm.Status.RestoredPod)))
}

// touchedSource reports whether the migration got as far as the checkpoint,
// the first step that acts on the source pod.
func touchedSource(pm *lpmv1.PodMigration) bool {
	for _, tr := range pm.Status.PhaseTransitions {
		if tr.Phase != lpmv1.PhasePending && tr.Phase != lpmv1.PhaseFailed {
			return true
		}
	}
	return pm.Status.CutTime != nil
}
