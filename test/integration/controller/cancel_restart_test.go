package controller_test

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// stops lists where a story holds the agent to stop a migration in a phase.
var stops = []struct {
	name  string
	hold  fakeagent.Step
	phase lpmv1.MigrationPhase
}{
	{"Pending", fakeagent.StepPrepareTarget, lpmv1.PhasePending},
	{"Checkpointing", fakeagent.StepCheckpoint, lpmv1.PhaseCheckpointing},
	{"PreparingImages", fakeagent.StepImportImages, lpmv1.PhasePreparingImages},
	{"Restoring", fakeagent.StepRestore, lpmv1.PhaseRestoring},
}

// Deleting a PodMigration that has not succeeded cancels it and rolls it
// back, in every phase.
func TestCancelInEveryPhase(t *testing.T) {
	t.Parallel()
	for _, tc := range stops {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.agent.Hold(tc.hold)
			h.agent.Hold(fakeagent.StepCleanUpSource)
			source := h.createRunningPod("web", h.nodes[0])
			h.migrate("move", "web", h.nodes[1])
			m := h.waitPhase("move", tc.phase)
			if tc.phase == lpmv1.PhaseRestoring {
				h.waitFor("restored pod created", func() bool { return len(h.restoredPods(m)) == 1 })
			}

			h.must(admin.Delete(h.ctx, m))

			if tc.phase != lpmv1.PhasePending {
				// The finalizer holds the PodMigration until the source agent
				// has thawed the pod, so the cancelled state is visible.
				m = h.waitFailed("move", lpmv1.ReasonCancelled)
				h.agent.Proceed(fakeagent.StepCleanUpSource)
			}
			h.waitGone(m)
			h.assertRolledBack(m, source)
		})
	}
}

// Deleting a PodMigration after the restored pod was verified cannot bring
// the source back, so the migration finishes before it goes, and the
// restored pod survives.
func TestCancelAfterVerification(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepKillSource)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitFor("Restored True", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	m := h.get("move")

	h.must(admin.Delete(h.ctx, m))
	h.agent.Proceed(fakeagent.StepKillSource)

	h.waitGone(m)
	h.waitGone(source)
	pods := h.restoredPods(m)
	if len(pods) != 1 || pods[0].DeletionTimestamp != nil || len(pods[0].OwnerReferences) != 0 {
		t.Errorf("restored pods after cancel = %+v, want one without owner", pods)
	}
}

// Killing the controller in any phase and starting it again finishes the
// migration without a second checkpoint, a second restored pod or a lost
// source.
func TestControllerRestartInEveryPhase(t *testing.T) {
	t.Parallel()
	cases := slices.Clone(stops)
	cases = append(cases, struct {
		name  string
		hold  fakeagent.Step
		phase lpmv1.MigrationPhase
	}{"RestoringVerified", fakeagent.StepKillSource, lpmv1.PhaseRestoring})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.agent.Hold(tc.hold)
			source := h.createRunningPod("web", h.nodes[0])
			h.migrate("move", "web", h.nodes[1])
			m := h.waitPhase("move", tc.phase)
			if tc.phase == lpmv1.PhaseRestoring {
				h.waitFor("restored pod created", func() bool { return len(h.restoredPods(m)) == 1 })
			}
			if tc.hold == fakeagent.StepKillSource {
				h.waitFor("Restored True", func() bool {
					c := condition(h.get("move"), lpmv1.ConditionRestored)
					return c != nil && c.Status == metav1.ConditionTrue
				})
			}

			// The agent moves on while no controller runs.
			h.stopController()
			h.agent.Proceed(tc.hold)
			time.Sleep(300 * time.Millisecond)
			h.startController()

			m = h.waitPhase("move", lpmv1.PhaseSucceeded)
			assertMovedOnce(h, m, source)
		})
	}
}

// CheckpointComplete lasts one reconcile. A controller that dies right
// after writing it is replaced by one that finishes the migration.
func TestControllerRestartInCheckpointComplete(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepCheckpoint)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitPhase("move", lpmv1.PhaseCheckpointing)
	h.stopController()
	h.agent.Proceed(fakeagent.StepCheckpoint)
	h.waitFor("checkpoint reported", func() bool {
		src := h.get("move").Status.Source
		return src != nil && len(src.Containers) == 1
	})

	if _, err := h.reconcileOnce("move"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if got := h.get("move").Status.Phase; got != lpmv1.PhaseCheckpointComplete {
		t.Fatalf("phase after one reconcile = %s, want CheckpointComplete", got)
	}
	h.startController()

	m := h.waitPhase("move", lpmv1.PhaseSucceeded)
	assertMovedOnce(h, m, source)
}

// A controller that crashes after every single reconcile still finishes
// the migration, through every phase, with one checkpoint and one pod.
func TestControllerCrashAfterEveryReconcile(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stopController()
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])

	deadline := time.Now().Add(waitTimeout)
	for h.get("move").Status.Phase != lpmv1.PhaseSucceeded {
		if time.Now().After(deadline) {
			t.Fatalf("migration stuck in %s", h.get("move").Status.Phase)
		}
		before := h.get("move").ResourceVersion
		if _, err := h.reconcileOnce("move"); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		// Give the agent and the kubelet time to act.
		h.waitFor("a change", func() bool { return h.get("move").ResourceVersion != before || sleepTrue() })
	}

	m := h.get("move")
	if len(m.Status.PhaseTransitions) != len(allPhases) {
		t.Errorf("phases %v, want each of %v once", phases(m), allPhases)
	}
	assertMovedOnce(h, m, source)
}

func sleepTrue() bool {
	time.Sleep(100 * time.Millisecond)
	return true
}

// assertMovedOnce checks the end state of a move: one checkpoint, one
// restored pod without an owner, the source gone.
func assertMovedOnce(h *harness, m *lpmv1.PodMigration, source *corev1.Pod) {
	h.t.Helper()
	if n := h.agent.Count(fakeagent.StepCheckpoint); n != 1 {
		h.t.Errorf("%d checkpoints, want 1", n)
	}
	if n := h.agent.Count(fakeagent.StepImportImages); n != 1 {
		h.t.Errorf("%d imports, want 1", n)
	}
	pods := h.restoredPods(m)
	if len(pods) != 1 {
		h.t.Fatalf("%d restored pods, want 1", len(pods))
	}
	h.waitFor("owner reference removed", func() bool {
		h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(&pods[0]), &pods[0]))
		return len(pods[0].OwnerReferences) == 0
	})
	h.waitGone(source)
}
