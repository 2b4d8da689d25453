package controller

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Defaults are the stage timeouts of a PodMigration that sets none in
// spec.timeouts. A zero field keeps the built-in default (for example
// DefaultCheckpointTimeout). The node agents take the checkpoint and
// transfer defaults from flags of their own, so an install sets both to
// the same values.
type Defaults struct {
	CheckpointTimeout time.Duration
	TransferTimeout   time.Duration
	RestoreTimeout    time.Duration
	OverallTimeout    time.Duration
}

// Validate returns an error when a timeout is outside the range that the
// PodMigration API accepts for the same field.
func (d Defaults) Validate() error {
	limits := []struct {
		name          string
		value, lo, hi time.Duration
	}{
		{"checkpoint", d.CheckpointTimeout, time.Second, time.Hour},
		{"transfer", d.TransferTimeout, time.Second, 6 * time.Hour},
		{"restore", d.RestoreTimeout, time.Second, time.Hour},
		{"overall", d.OverallTimeout, time.Second, 12 * time.Hour},
	}
	for _, l := range limits {
		if l.value != 0 && (l.value < l.lo || l.value > l.hi) {
			return fmt.Errorf("invalid default %s timeout %s: must be between %s and %s", l.name, l.value, l.lo, l.hi)
		}
	}
	return nil
}

// apply fills the timeouts that m leaves empty with the configured
// defaults. It changes only the in-memory copy that one reconcile works on:
// the controller never writes a PodMigration's spec.
func (d Defaults) apply(m *lpmv1.PodMigration) {
	if d == (Defaults{}) {
		return
	}
	if m.Spec.Timeouts == nil {
		m.Spec.Timeouts = &lpmv1.Timeouts{}
	}
	t := m.Spec.Timeouts
	fill := func(field **metav1.Duration, value time.Duration) {
		if *field == nil && value != 0 {
			*field = &metav1.Duration{Duration: value}
		}
	}
	fill(&t.Checkpoint, d.CheckpointTimeout)
	fill(&t.Transfer, d.TransferTimeout)
	fill(&t.Restore, d.RestoreTimeout)
	fill(&t.Overall, d.OverallTimeout)
}

// MarshalLog returns the timeouts as Go duration strings, so that a log
// line shows "2m0s" rather than nanoseconds. It implements logr.Marshaler.
func (d Defaults) MarshalLog() any {
	return map[string]string{
		"checkpoint": d.CheckpointTimeout.String(),
		"transfer":   d.TransferTimeout.String(),
		"restore":    d.RestoreTimeout.String(),
		"overall":    d.OverallTimeout.String(),
	}
}
