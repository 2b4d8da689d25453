package controller

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// recordingRecorder keeps each event as "regarding/related reason: note".
type recordingRecorder struct {
	events []string
}

func (r *recordingRecorder) Eventf(regarding, related runtime.Object, _, reason, _, note string, args ...any) {
	name := func(o runtime.Object) string {
		if o == nil {
			return "-"
		}
		m, err := meta.Accessor(o)
		if err != nil {
			return "?"
		}
		return m.GetName()
	}
	r.events = append(r.events, fmt.Sprintf("%s/%s %s: %s", name(regarding), name(related), reason,
		fmt.Sprintf(note, args...)))
}

func TestEmitOnPods(t *testing.T) {
	testCases := []struct {
		name       string
		migration  func(*lpmv1.PodMigration)
		world      func(*world)
		outcome    func(*outcome)
		wantEvents []string
	}{
		{
			name: "source pod",
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name:      "source pod before the checks recorded it",
			migration: func(m *lpmv1.PodMigration) { m.Status.SourcePodUID = "" },
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name:  "source pod replaced",
			world: func(w *world) { w.pod.UID = "other-uid" },
		},
		{
			name:  "source pod gone",
			world: func(w *world) { w.pod = nil },
		},
		{
			name:  "restored pod",
			world: func(w *world) { w.restored = readyRestoredPod(t0) },
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
				"web-restored/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name: "restored pod just created",
			outcome: func(o *outcome) {
				o.createRestored = readyRestoredPod(t0)
			},
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
				"web-restored/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name: "restored pod create found it",
			outcome: func(o *outcome) {
				o.createRestored = readyRestoredPod(t0)
				o.createRestored.UID = ""
			},
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name: "pod of the restored name from elsewhere",
			world: func(w *world) {
				w.restored = readyRestoredPod(t0)
				w.restored.Annotations = nil
			},
			wantEvents: []string{
				"web/move-web InProgress: PodMigration move-web: checkpointing",
			},
		},
		{
			name:    "no events",
			outcome: func(o *outcome) { o.events = nil },
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := inPhase(lpmv1.PhaseCheckpointing)
			if tc.migration != nil {
				tc.migration(m)
			}
			w := fixtureWorld(t0)
			if tc.world != nil {
				tc.world(w)
			}
			o := newOutcome(m, t0)
			o.normal(lpmv1.ReasonInProgress, "Checkpointing", "checkpointing")
			if tc.outcome != nil {
				tc.outcome(o)
			}
			recorder := &recordingRecorder{}
			r := &PodMigrationReconciler{Recorder: recorder}

			r.emitOnPods(m, o, w)

			if diff := cmp.Diff(tc.wantEvents, recorder.events); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
