package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestDefaultsApply(t *testing.T) {
	d := Defaults{CheckpointTimeout: 5 * time.Minute, TransferTimeout: time.Hour, RestoreTimeout: 7 * time.Minute,
		OverallTimeout: 2 * time.Hour}
	testCases := []struct {
		name     string
		defaults Defaults
		timeouts *lpmv1.Timeouts
		want     *lpmv1.Timeouts
	}{
		{
			name:     "no timeouts set",
			defaults: d,
			want: &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 5 * time.Minute},
				Transfer: &metav1.Duration{Duration: time.Hour}, Restore: &metav1.Duration{Duration: 7 * time.Minute},
				Overall: &metav1.Duration{Duration: 2 * time.Hour}},
		},
		{
			name:     "spec wins",
			defaults: d,
			timeouts: &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 10 * time.Second}},
			want: &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 10 * time.Second},
				Transfer: &metav1.Duration{Duration: time.Hour}, Restore: &metav1.Duration{Duration: 7 * time.Minute},
				Overall: &metav1.Duration{Duration: 2 * time.Hour}},
		},
		{
			name:     "zero defaults change nothing",
			defaults: Defaults{},
		},
		{
			name:     "zero field keeps built-in default",
			defaults: Defaults{RestoreTimeout: time.Minute},
			want:     &lpmv1.Timeouts{Restore: &metav1.Duration{Duration: time.Minute}},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := fixtureMigration()
			m.Spec.Timeouts = tc.timeouts.DeepCopy()

			tc.defaults.apply(m)

			if diff := cmp.Diff(tc.want, m.Spec.Timeouts); diff != "" {
				t.Errorf("timeouts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A configured default is the deadline the controller enforces.
func TestDefaultsSetDeadline(t *testing.T) {
	m := inPhase(lpmv1.PhaseCheckpointing)
	Defaults{CheckpointTimeout: 10 * time.Second}.apply(m)

	o := decide(m, fixtureWorld(t0.Add(10*time.Second+agentReportGrace)), NewSlots(5, 2))

	assertPhase(t, o, lpmv1.PhaseFailed)
	assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonCheckpointTimedOut)
}

func TestDefaultsValidate(t *testing.T) {
	testCases := []struct {
		name     string
		defaults Defaults
		wantErr  bool
	}{
		{name: "built-in", defaults: Defaults{CheckpointTimeout: DefaultCheckpointTimeout,
			TransferTimeout: DefaultTransferTimeout, RestoreTimeout: DefaultRestoreTimeout,
			OverallTimeout: DefaultOverallTimeout}},
		{name: "zero", defaults: Defaults{}},
		{name: "upper bounds", defaults: Defaults{CheckpointTimeout: time.Hour, TransferTimeout: 6 * time.Hour,
			RestoreTimeout: time.Hour, OverallTimeout: 12 * time.Hour}},
		{name: "checkpoint too long", defaults: Defaults{CheckpointTimeout: 2 * time.Hour}, wantErr: true},
		{name: "transfer too short", defaults: Defaults{TransferTimeout: time.Millisecond}, wantErr: true},
		{name: "negative restore", defaults: Defaults{RestoreTimeout: -time.Second}, wantErr: true},
		{name: "overall too long", defaults: Defaults{OverallTimeout: 13 * time.Hour}, wantErr: true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.defaults.Validate()
			if (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultsMarshalLog(t *testing.T) {
	d := Defaults{CheckpointTimeout: 2 * time.Minute, TransferTimeout: time.Hour}
	want := map[string]string{"checkpoint": "2m0s", "transfer": "1h0m0s", "restore": "0s", "overall": "0s"}

	if diff := cmp.Diff(want, d.MarshalLog()); diff != "" {
		t.Errorf("MarshalLog mismatch (-want +got):\n%s", diff)
	}
}
