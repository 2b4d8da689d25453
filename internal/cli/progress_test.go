package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// t0 is the creation time of the migrations in these tests.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// phasesAt returns phase transitions, each phase entered at t0 plus the
// duration that follows it.
func phasesAt(pairs ...any) []lpmv1.PhaseTransition {
	var transitions []lpmv1.PhaseTransition
	for i := 0; i < len(pairs); i += 2 {
		transitions = append(transitions, lpmv1.PhaseTransition{
			Phase: pairs[i].(lpmv1.MigrationPhase),
			Time:  metav1.NewMicroTime(at(pairs[i+1].(time.Duration))),
		})
	}
	return transitions
}

// newMigration returns a PodMigration of pod web in namespace shop, with
// status changed by each mutate.
func newMigration(mutate ...func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop", CreationTimestamp: metav1.NewTime(t0)},
		Spec:       lpmv1.PodMigrationSpec{PodName: "web"},
	}
	for _, m := range mutate {
		m(pm)
	}
	return pm
}

func withPhases(pairs ...any) func(*lpmv1.PodMigration) {
	return func(pm *lpmv1.PodMigration) {
		pm.Status.PhaseTransitions = phasesAt(pairs...)
		pm.Status.Phase = pm.Status.PhaseTransitions[len(pm.Status.PhaseTransitions)-1].Phase
	}
}

func withNodes(source, target string) func(*lpmv1.PodMigration) {
	return func(pm *lpmv1.PodMigration) {
		pm.Status.SourceNode, pm.Status.TargetNode = source, target
	}
}

func withCondition(conditionType string, status metav1.ConditionStatus, reason lpmv1.Reason,
	message string) func(*lpmv1.PodMigration) {
	return func(pm *lpmv1.PodMigration) {
		pm.Status.Conditions = append(pm.Status.Conditions, metav1.Condition{
			Type: conditionType, Status: status, Reason: string(reason), Message: message,
			LastTransitionTime: metav1.NewTime(t0),
		})
	}
}

func withArchives(sizes ...int64) func(*lpmv1.PodMigration) {
	return func(pm *lpmv1.PodMigration) {
		for i, size := range sizes {
			pm.Status.Containers = append(pm.Status.Containers, lpmv1.ContainerMigrationStatus{
				Name: []string{"app", "sidecar", "third"}[i], ArchiveBytes: size})
		}
	}
}

func withTargetBytes(done, total int64) func(*lpmv1.PodMigration) {
	return func(pm *lpmv1.PodMigration) {
		pm.Status.Target = &lpmv1.TargetAgentStatus{BytesDone: done, BytesTotal: total}
	}
}

const mib = 1024 * 1024

func TestTrackerTransitionLines(t *testing.T) {
	tracker := newProgressTracker(at(0), 2)
	// The watch shows each version some time after the controller wrote
	// it. The durations come from the recorded times, which have
	// microseconds, not from when the versions arrived.
	pending := []any{lpmv1.PhasePending, 1100 * time.Millisecond}
	checkpointing := slices.Concat(pending, []any{lpmv1.PhaseCheckpointing, 1900 * time.Millisecond})
	// One status write entered CheckpointComplete and PreparingImages.
	preparing := slices.Concat(checkpointing, []any{lpmv1.PhaseCheckpointComplete, 2700 * time.Millisecond,
		lpmv1.PhasePreparingImages, 2700 * time.Millisecond})
	restoring := slices.Concat(preparing, []any{lpmv1.PhaseRestoring, 4900 * time.Millisecond})
	observations := []struct {
		now time.Time
		pm  *lpmv1.PodMigration
	}{
		{at(0), newMigration()},
		{at(1300 * time.Millisecond), newMigration(withPhases(pending...))},
		{at(2150 * time.Millisecond), newMigration(withNodes("node-a", "node-b"), withPhases(checkpointing...))},
		{at(2800 * time.Millisecond), newMigration(withNodes("node-a", "node-b"), withArchives(32*mib, 16*mib),
			withPhases(preparing...))},
		{at(5 * time.Second), newMigration(withNodes("node-a", "node-b"), withArchives(32*mib, 16*mib),
			withTargetBytes(48*mib, 48*mib), withPhases(restoring...))},
	}

	var got []string
	printed := 0
	for _, o := range observations {
		tracker.observe(o.pm, o.now)
		got = append(got, tracker.transitionLines(printed, o.now)...)
		printed = len(tracker.entries)
	}

	want := []string{
		"-> Pending",
		"Pending -> Checkpointing after 800ms (target node-b)",
		"Checkpointing -> CheckpointComplete after 800ms (2 containers, 48.0 MiB)",
		"CheckpointComplete -> PreparingImages after 0ms (2 containers, 48.0 MiB)",
		"PreparingImages -> Restoring after 2.2s (48.0 MiB transferred)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transition lines mismatch (-want +got):\n%s", diff)
	}
}

func TestTrackerServerTimesForPhasesSeenFirst(t *testing.T) {
	// The watch began after the migration had reached Checkpointing.
	// Finished phases take their durations from the recorded transitions,
	// and the current phase its elapsed time from the local clock.
	tracker := newProgressTracker(at(10*time.Second), 0)
	tracker.observe(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second,
		lpmv1.PhaseCheckpointing, 3250*time.Millisecond)), at(10*time.Second))
	tracker.observe(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second,
		lpmv1.PhaseCheckpointing, 3250*time.Millisecond, lpmv1.PhaseCheckpointComplete, 11*time.Second)),
		at(11500*time.Millisecond))

	tests := []struct {
		index     int
		wantValue time.Duration
		wantText  string
	}{
		{index: 0, wantValue: 3250 * time.Millisecond, wantText: "3.2s"},
		// Checkpointing began before the watch and ended after it: the
		// recorded times apply.
		{index: 1, wantValue: 7750 * time.Millisecond, wantText: "7.8s"},
		{index: 2, wantValue: 500 * time.Millisecond, wantText: "500ms"},
	}
	for _, tc := range tests {
		d, ok := tracker.phaseDuration(tc.index, at(12*time.Second))
		if !ok || d != tc.wantValue {
			t.Errorf("phaseDuration(%d) = %s, %t, want %s, true", tc.index, d, ok, tc.wantValue)
		}
		if text := tracker.phaseDurationText(tc.index, at(12*time.Second)); text != tc.wantText {
			t.Errorf("phaseDurationText(%d) = %q, want %q", tc.index, text, tc.wantText)
		}
	}
}

func TestTrackerRewrittenHistory(t *testing.T) {
	tracker := newProgressTracker(at(0), 0)
	tracker.observe(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second,
		lpmv1.PhaseCheckpointing, time.Second)), at(time.Second))
	tracker.observe(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second,
		lpmv1.PhaseFailed, 2*time.Second)), at(2*time.Second))

	var got []lpmv1.MigrationPhase
	for _, e := range tracker.entries {
		got = append(got, e.phase)
	}
	want := []lpmv1.MigrationPhase{lpmv1.PhasePending, lpmv1.PhaseFailed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries mismatch (-want +got):\n%s", diff)
	}
}

func TestTransferRate(t *testing.T) {
	tests := []struct {
		name    string
		samples []byteSample
		now     time.Time
		want    float64
	}{
		{name: "no samples", now: at(0), want: 0},
		{name: "one sample", samples: []byteSample{{at(0), 10}}, now: at(time.Second), want: 0},
		{
			name:    "steady",
			samples: []byteSample{{at(0), 0}, {at(2 * time.Second), 20 * mib}, {at(4 * time.Second), 40 * mib}},
			now:     at(4 * time.Second),
			want:    10 * mib,
		},
		{
			name: "old samples ignored",
			samples: []byteSample{{at(0), 0}, {at(10 * time.Second), 10 * mib}, {at(12 * time.Second), 14 * mib},
				{at(14 * time.Second), 18 * mib}},
			now:  at(14 * time.Second),
			want: 2 * mib,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tracker := &progressTracker{samples: tc.samples}
			if got := tracker.transferRate(tc.now); got != tc.want {
				t.Errorf("transferRate() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLiveFrame(t *testing.T) {
	pending := withPhases(lpmv1.PhasePending, 0*time.Second)
	tests := []struct {
		name string
		// observations are applied at one second intervals from t0.
		observations  []*lpmv1.PodMigration
		podContainers int
		now           time.Time
		spinner       int
		wantFinal     []string
		wantLive      []string
	}{
		{
			name:         "waiting for the controller",
			observations: []*lpmv1.PodMigration{newMigration()},
			now:          at(5 * time.Second),
		},
		{
			name:         "no controller after the hint delay",
			observations: []*lpmv1.PodMigration{newMigration()},
			now:          at(controllerHintAfter),
			wantLive:     []string{"  " + controllerHint},
		},
		{
			name: "pending waits for a slot",
			observations: []*lpmv1.PodMigration{newMigration(), newMigration(pending, withNodes("node-a", "node-b"),
				withCondition(lpmv1.ConditionSucceeded, metav1.ConditionUnknown, lpmv1.ReasonWaitingForSlot, ""))},
			now:      at(3500 * time.Millisecond),
			spinner:  1,
			wantLive: []string{"  / Pending                2.5s  target node-b, waiting for a free migration slot"},
		},
		{
			name: "checkpoint bar",
			observations: []*lpmv1.PodMigration{newMigration(), newMigration(withNodes("node-a", "node-b"),
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseCheckpointing, time.Second),
				func(pm *lpmv1.PodMigration) {
					pm.Status.Source = &lpmv1.SourceAgentStatus{Containers: []lpmv1.SourceContainerStatus{
						{Name: "app", ArchiveBytes: 20 * mib}, {Name: "sidecar"}}}
				})},
			podContainers: 2,
			now:           at(1500 * time.Millisecond),
			wantFinal:     []string{"  ✓ Pending                1.0s  target node-b"},
			wantLive: []string{
				"  | Checkpointing         500ms  1 container, 20.0 MiB",
				"    [===========>            ]  1/2 containers  20.0 MiB checkpointed",
			},
		},
		{
			name: "transfer bar with rate",
			observations: []*lpmv1.PodMigration{
				newMigration(),
				newMigration(withPhases(lpmv1.PhasePending, 0*time.Second)),
				newMigration(withArchives(64*mib), withTargetBytes(0, 64*mib),
					withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhasePreparingImages, 2*time.Second)),
				newMigration(withArchives(64*mib), withTargetBytes(16*mib, 64*mib),
					withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhasePreparingImages, 2*time.Second)),
			},
			now:       at(3 * time.Second),
			wantFinal: []string{"  ✓ Pending                2.0s"},
			wantLive: []string{
				"  | PreparingImages        1.0s  transferring",
				"    [=====>                  ]  16.0 MiB / 64.0 MiB  25%  16.0 MiB/s",
			},
		},
		{
			name: "restoring settles",
			observations: []*lpmv1.PodMigration{newMigration(), newMigration(
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseRestoring, time.Second),
				withCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonSettling, ""),
				func(pm *lpmv1.PodMigration) { pm.Status.RestoredPod = "web-restored" })},
			now:       at(4 * time.Second),
			wantFinal: []string{"  ✓ Pending                1.0s"},
			wantLive:  []string{"  | Restoring              3.0s  pod web-restored, settling"},
		},
		{
			name: "succeeded",
			observations: []*lpmv1.PodMigration{newMigration(), newMigration(
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseRestoring, time.Second,
					lpmv1.PhaseSucceeded, 2*time.Second),
				func(pm *lpmv1.PodMigration) { pm.Status.RestoredPod = "web-restored" })},
			now:       at(9 * time.Second),
			wantFinal: []string{"  ✓ Pending                1.0s", "  ✓ Restoring              1.0s  pod web-restored"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tracker := newProgressTracker(t0, tc.podContainers)
			for i, pm := range tc.observations {
				tracker.observe(pm, at(time.Duration(i)*time.Second))
			}
			final, live := tracker.liveFrame(tc.now, tc.spinner)
			if diff := cmp.Diff(tc.wantFinal, final); diff != "" {
				t.Errorf("final lines mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantLive, live); diff != "" {
				t.Errorf("live lines mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLiveDisplayRedrawsInPlace(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	var out bytes.Buffer
	display := &liveDisplay{out: &out, clock: clock, tracker: newProgressTracker(t0, 0), width: func() int { return 0 }}

	display.update(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second)))
	first := out.String()
	out.Reset()
	clock.Step(time.Second)
	display.update(newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseCheckpointing, time.Second)))
	second := out.String()

	if strings.Contains(first, "\x1b[") {
		t.Errorf("first frame %q moves the cursor, but nothing was drawn before it", first)
	}
	wantSecondPrefix := "\x1b[1A\r\x1b[J  ✓ Pending"
	if !strings.HasPrefix(second, wantSecondPrefix) {
		t.Errorf("second frame = %q, want it to start with %q", second, wantSecondPrefix)
	}
	if !strings.Contains(second, "Checkpointing") {
		t.Errorf("second frame = %q, want the Checkpointing line", second)
	}
}

func TestPlainDisplayControllerHint(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	var out bytes.Buffer
	display := &plainDisplay{out: &out, clock: clock, tracker: newProgressTracker(t0, 0)}

	display.update(newMigration())
	display.tick()
	if out.Len() != 0 {
		t.Fatalf("output before the hint delay = %q, want none", out.String())
	}
	clock.Step(controllerHintAfter)
	display.tick()
	display.tick()
	if got, want := out.String(), controllerHint+"\n"; got != want {
		t.Errorf("output = %q, want the hint once: %q", got, want)
	}
}

func TestResultLines(t *testing.T) {
	downtime := func(pm *lpmv1.PodMigration) { pm.Status.Downtime = &metav1.Duration{Duration: 1500 * time.Millisecond} }
	restored := func(pm *lpmv1.PodMigration) { pm.Status.RestoredPod = "web-restored" }
	tests := []struct {
		name string
		pm   *lpmv1.PodMigration
		want []string
	}{
		{
			name: "moved",
			pm: newMigration(withNodes("node-a", "node-b"), downtime, restored,
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseSucceeded, 9*time.Second)),
			want: []string{
				"Succeeded in 12s. Downtime 1.5s.",
				"Pod shop/web runs on node-b now, as pod web-restored.",
			},
		},
		{
			name: "copied",
			pm: newMigration(withNodes("node-a", "node-b"), downtime, restored,
				func(pm *lpmv1.PodMigration) { pm.Spec.SourcePolicy = lpmv1.SourcePolicyKeep },
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseSucceeded, 9*time.Second)),
			want: []string{
				"Succeeded in 12s. Downtime 1.5s.",
				"Pod shop/web was copied to node-b as pod web-restored. The source pod still runs on node-a.",
			},
		},
		{
			name: "dry run passed",
			pm: newMigration(withNodes("node-a", "node-b"), func(pm *lpmv1.PodMigration) { pm.Spec.DryRun = true },
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseSucceeded, time.Second)),
			want: []string{"Dry run passed in 12s: pod shop/web can move from node-a to node-b."},
		},
		{
			name: "preflight failure",
			pm: newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second),
				withCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonHostNamespace,
					"spec.hostNetwork: pod web uses the node's network namespace")),
			want: []string{
				"Failed after 12s: HostNamespace",
				"  spec.hostNetwork: pod web uses the node's network namespace",
				"What to do: " + adviceByReason[lpmv1.ReasonHostNamespace],
				"Pod shop/web was not touched.",
				"Details: kubectl migrate status web-x7k2p -n shop",
			},
		},
		{
			name: "failure after the checkpoint",
			pm: newMigration(withNodes("node-a", "node-b"),
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseCheckpointing, time.Second,
					lpmv1.PhaseFailed, 5*time.Second),
				withCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonTransferFailed,
					"connection\nreset \x1b[31mby peer")),
			want: []string{
				"Failed after 12s: TransferFailed",
				"  connection reset ^[[31mby peer",
				"What to do: " + adviceByReason[lpmv1.ReasonTransferFailed],
				"lpm rolls the migration back: pod shop/web on node-a stays frozen until the restored pod is gone, " +
					"then runs on.",
				"Details: kubectl migrate status web-x7k2p -n shop",
			},
		},
		{
			name: "failure without a reason",
			pm:   newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second)),
			want: []string{
				"Failed after 12s: Unknown",
				"  the PodMigration failed without a reason in its conditions",
				"What to do: Read the message above, and the details with kubectl migrate status web-x7k2p -n shop.",
				"Pod shop/web was not touched.",
				"Details: kubectl migrate status web-x7k2p -n shop",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := resultLines(tc.pm, 12*time.Second, true)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("resultLines() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
