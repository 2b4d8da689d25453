package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// An agent that fails any step rolls the migration back: the restored pod
// is deleted, the source pod runs on untouched, the agents clean up and
// the finalizer goes.
func TestAgentFailureInEveryPhase(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		step       fakeagent.Step
		reason     lpmv1.Reason
		wantReason lpmv1.Reason
	}{
		{fakeagent.StepPrepareSource, lpmv1.ReasonUnsupportedProcessState, lpmv1.ReasonUnsupportedProcessState},
		{fakeagent.StepPrepareTarget, lpmv1.ReasonBaseImageUnavailable, lpmv1.ReasonBaseImageUnavailable},
		{fakeagent.StepCheckpoint, lpmv1.ReasonCheckpointAPIDisabled, lpmv1.ReasonCheckpointAPIDisabled},
		{fakeagent.StepServeImages, lpmv1.ReasonImageBuildFailed, lpmv1.ReasonImageBuildFailed},
		{fakeagent.StepImportImages, lpmv1.ReasonDigestMismatch, lpmv1.ReasonDigestMismatch},
		{fakeagent.StepStartRestored, "", lpmv1.ReasonContainerRestarted},
		{fakeagent.StepRestore, lpmv1.ReasonNotRestored, lpmv1.ReasonNotRestored},
	}
	for _, tc := range testCases {
		t.Run(string(tc.step), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			reason := tc.reason
			if reason == "" {
				reason = "Failed"
			}
			h.agent.Fail(tc.step, reason, "the fake agent was told to fail "+string(tc.step))
			source := h.createRunningPod("web", h.nodes[0])
			h.migrate("move", "web", h.nodes[1])

			m := h.waitFailed("move", tc.wantReason)

			h.assertRolledBack(m, source)
			h.waitFor("finalizer removed", func() bool { return len(h.get("move").Finalizers) == 0 })
			if m.Status.CompletionTime == nil {
				t.Errorf("completionTime not set")
			}
			if c := condition(m, lpmv1.ConditionSucceeded); c.Message == "" {
				t.Errorf("failure has no message")
			}
		})
	}
}

// Every stage has its deadline; none waits forever.
func TestStageTimeouts(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name       string
		hold       fakeagent.Step
		phase      lpmv1.MigrationPhase
		timeouts   *lpmv1.Timeouts
		wait       time.Duration
		wantReason lpmv1.Reason
	}{
		{
			name: "agents never prepare", hold: fakeagent.StepPrepareTarget, phase: lpmv1.PhasePending,
			wait: 10 * time.Minute, wantReason: lpmv1.ReasonAgentUnavailable,
		},
		{
			name: "agents never prepare within the transfer timeout", hold: fakeagent.StepPrepareTarget,
			phase:    lpmv1.PhasePending,
			timeouts: &lpmv1.Timeouts{Transfer: &metav1.Duration{Duration: 3 * time.Minute}},
			wait:     3 * time.Minute, wantReason: lpmv1.ReasonAgentUnavailable,
		},
		{
			name: "checkpoint", hold: fakeagent.StepCheckpoint, phase: lpmv1.PhaseCheckpointing,
			timeouts: &lpmv1.Timeouts{Checkpoint: &metav1.Duration{Duration: 30 * time.Second}},
			wait:     45 * time.Second, wantReason: lpmv1.ReasonCheckpointTimedOut,
		},
		{
			name: "transfer", hold: fakeagent.StepImportImages, phase: lpmv1.PhasePreparingImages,
			wait: 10 * time.Minute, wantReason: lpmv1.ReasonTransferTimedOut,
		},
		{
			name: "restore", hold: fakeagent.StepRestore, phase: lpmv1.PhaseRestoring,
			wait: 5 * time.Minute, wantReason: lpmv1.ReasonRestoreTimedOut,
		},
		{
			name: "overall", hold: fakeagent.StepCheckpoint, phase: lpmv1.PhaseCheckpointing,
			timeouts: &lpmv1.Timeouts{
				Checkpoint: &metav1.Duration{Duration: time.Hour},
				Overall:    &metav1.Duration{Duration: 90 * time.Second},
			},
			wait: 90 * time.Second, wantReason: lpmv1.ReasonDeadlineExceeded,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.agent.Hold(tc.hold)
			source := h.createRunningPod("web", h.nodes[0])
			h.migrate("move", "web", h.nodes[1], func(m *lpmv1.PodMigration) { m.Spec.Timeouts = tc.timeouts })
			h.waitPhase("move", tc.phase)
			if tc.phase == lpmv1.PhasePending {
				h.waitFor("controller checks done", func() bool { return h.get("move").Status.TargetNode != "" })
			}

			h.advance(tc.wait-time.Second, "move")
			time.Sleep(200 * time.Millisecond)
			if got := h.get("move").Status.Phase; got != tc.phase {
				t.Fatalf("phase = %s one second before the deadline, want %s", got, tc.phase)
			}
			h.step(time.Second, "move")
			m := h.waitFailed("move", tc.wantReason)

			h.agent.Proceed(tc.hold)
			h.assertRolledBack(m, source)
		})
	}
}

// Agents that never report CleanedUp hold the finalizer for two minutes at
// most, and a warning event reports the timeout.
func TestCleanupTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepCleanUpSource)
	h.agent.Fail(fakeagent.StepImportImages, lpmv1.ReasonImportFailed, "no space left on device")
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	m := h.waitFailed("move", lpmv1.ReasonImportFailed)

	time.Sleep(200 * time.Millisecond)
	if len(h.get("move").Finalizers) == 0 {
		t.Fatalf("finalizer removed before the source agent cleaned up")
	}
	h.step(2*time.Minute, "move")
	h.waitFor("finalizer removed", func() bool { return len(h.get("move").Finalizers) == 0 })
	h.waitFor("CleanupTimedOut event", func() bool {
		return eventReasons(h, m)[string(lpmv1.ReasonCleanupTimedOut)]
	})
	h.assertRolledBack(m, source)
}

// A failure that an agent reports after its step's own phase still rolls
// the migration back, in every phase before verification. The source agent
// reports LivenessProbeDeadline on ImagesServed whenever the kubelet may
// soon kill the frozen source, which can be while the restored pod is
// being verified.
func TestLateSourceFailureInEveryPhase(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		hold  fakeagent.Step
		phase lpmv1.MigrationPhase
	}{
		{fakeagent.StepCheckpoint, lpmv1.PhaseCheckpointing},
		// CheckpointComplete lasts one reconcile: the story stops the
		// controller right after it to report the failure there.
		{"", lpmv1.PhaseCheckpointComplete},
		{fakeagent.StepImportImages, lpmv1.PhasePreparingImages},
		{fakeagent.StepRestore, lpmv1.PhaseRestoring},
	}
	for _, tc := range testCases {
		t.Run(string(tc.phase), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			source := h.createRunningPod("web", h.nodes[0])
			if tc.phase == lpmv1.PhaseCheckpointComplete {
				stopInCheckpointComplete(h, "web")
			} else {
				h.agent.Hold(tc.hold)
				m := h.migrate("move", "web", h.nodes[1])
				h.waitPhase("move", tc.phase)
				if tc.phase == lpmv1.PhaseRestoring {
					h.waitFor("restored pod created", func() bool { return len(h.restoredPods(m)) == 1 })
				}
			}

			h.agent.FailSource(lpmv1.AgentConditionImagesServed, lpmv1.ReasonLivenessProbeDeadline,
				"the kubelet may kill the frozen source soon")
			if tc.phase == lpmv1.PhaseCheckpointComplete {
				h.waitFor("the source agent's report", func() bool {
					src := h.get("move").Status.Source
					c := meta.FindStatusCondition(src.Conditions, lpmv1.AgentConditionImagesServed)
					return c != nil && c.Status == metav1.ConditionFalse
				})
				h.startController()
			}
			m := h.waitFailed("move", lpmv1.ReasonLivenessProbeDeadline)

			if got := phases(m); len(got) < 2 || got[len(got)-2] != tc.phase {
				t.Errorf("phases %v, want Failed right after %s", got, tc.phase)
			}
			if tc.hold != "" {
				h.agent.Proceed(tc.hold)
			}
			h.assertRolledBack(m, source)
			h.waitFor("finalizer removed", func() bool { return len(h.get("move").Finalizers) == 0 })
		})
	}
}

// stopInCheckpointComplete starts a migration of pod to the second node
// and leaves it in CheckpointComplete with no controller running.
func stopInCheckpointComplete(h *harness, pod string) {
	h.t.Helper()
	h.agent.Hold(fakeagent.StepCheckpoint)
	h.migrate("move", pod, h.nodes[1])
	h.waitPhase("move", lpmv1.PhaseCheckpointing)
	h.stopController()
	h.agent.Proceed(fakeagent.StepCheckpoint)
	h.waitFor("checkpoint reported", func() bool {
		src := h.get("move").Status.Source
		return src != nil && meta.IsStatusConditionTrue(src.Conditions, lpmv1.AgentConditionCheckpointed)
	})
	if _, err := h.reconcileOnce("move"); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	if got := h.get("move").Status.Phase; got != lpmv1.PhaseCheckpointComplete {
		h.t.Fatalf("phase after one reconcile = %s, want CheckpointComplete", got)
	}
}

// staleClient returns a saved copy of one PodMigration, as a cache that
// has not yet seen the controller's last write does, and reads everything
// else from the API server.
type staleClient struct {
	client.Client
	stale *lpmv1.PodMigration
}

func (c staleClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object,
	opts ...client.GetOption) error {
	if pm, ok := obj.(*lpmv1.PodMigration); ok && key == client.ObjectKeyFromObject(c.stale) {
		c.stale.DeepCopyInto(pm)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// A reconcile that reads a stale copy of the PodMigration must not
// overwrite the newer status. Here the restore timed out and the restored
// pod was deleted, while the stale copy, still in Restoring and read
// before the timeout, would make the migration fail for another reason or
// go on.
func TestStaleReadKeepsNewerStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepRestore)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitPhase("move", lpmv1.PhaseRestoring)
	h.waitFor("restored pod created", func() bool { return len(h.restoredPods(h.get("move"))) == 1 })
	h.stopController()
	stale := h.get("move")
	// A finalizer keeps the deleted restored pod terminating, as a kubelet
	// that takes its time does.
	restored := h.restoredPods(stale)[0]
	patch := client.MergeFrom(restored.DeepCopy())
	restored.Finalizers = append(restored.Finalizers, "story.lpm.dev/hold")
	h.must(admin.Patch(h.ctx, &restored, patch))
	staleClock := clocktesting.NewFakeClock(h.clock.Now())

	h.clock.Step(5 * time.Minute)
	if _, err := h.reconcileOnce("move"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	failed := h.waitFailed("move", lpmv1.ReasonRestoreTimedOut)

	r := &controller.PodMigrationReconciler{
		Client:    staleClient{Client: admin, stale: stale},
		APIReader: admin,
		Clock:     staleClock,
		Recorder:  discardRecorder{},
		Slots:     controller.NewSlots(h.opts.maxMigrations, h.opts.maxOutbound),
	}
	_, err := r.Reconcile(h.ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(stale)})
	if !apierrors.IsConflict(err) {
		t.Errorf("reconcile of a stale copy error = %v, want a conflict", err)
	}

	m := h.get("move")
	if m.Status.Phase != lpmv1.PhaseFailed {
		t.Errorf("phase after a stale reconcile = %s, want Failed", m.Status.Phase)
	}
	if c := condition(m, lpmv1.ConditionSucceeded); c == nil || c.Reason != string(lpmv1.ReasonRestoreTimedOut) {
		t.Errorf("Succeeded after a stale reconcile = %+v, want reason RestoreTimedOut", c)
	}
	if diff := cmp.Diff(phases(failed), phases(m)); diff != "" {
		t.Errorf("phases after a stale reconcile mismatch (-want +got):\n%s", diff)
	}
	h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(&restored), &restored))
	patch = client.MergeFrom(restored.DeepCopy())
	restored.Finalizers = nil
	h.must(admin.Patch(h.ctx, &restored, patch))
	h.startController()
	h.agent.Proceed(fakeagent.StepRestore)
	h.assertRolledBack(m, source)
}

// A target node that dies in the settle window renews no Lease, while the
// API server still shows its restored pod Ready until the node controller
// notices. The migration must not count that pod verified: it waits for a
// renewal after the window, and the restore timeout rolls it back with
// the source kept.
func TestTargetLeaseStaleAfterSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1], func(m *lpmv1.PodMigration) {
		m.Spec.Settle = &metav1.Duration{Duration: 30 * time.Second}
		m.Spec.Timeouts = &lpmv1.Timeouts{Restore: &metav1.Duration{Duration: time.Minute}}
	})
	h.waitFor("Restored Settling", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Reason == string(lpmv1.ReasonSettling)
	})

	h.agent.Hold(fakeagent.StepRenewLease)
	h.step(31*time.Second, "move")
	h.waitFor("Restored waiting for the target's Lease", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && strings.Contains(c.Message, "renew its Lease")
	})
	if c := condition(h.get("move"), lpmv1.ConditionRestored); c.Status != metav1.ConditionUnknown {
		t.Errorf("Restored = %s/%s without a Lease renewal after the settle window", c.Status, c.Reason)
	}
	if n := h.agent.Count(fakeagent.StepKillSource); n != 0 {
		t.Errorf("the source agent killed the source %d times before verification", n)
	}

	h.step(30*time.Second, "move")
	m := h.waitFailed("move", lpmv1.ReasonRestoreTimedOut)
	h.assertRolledBack(m, source)
	if n := h.agent.Count(fakeagent.StepKillSource); n != 0 {
		t.Errorf("the source agent killed the source %d times", n)
	}
}

// A Lease renewal after the settle window completes the verification.
func TestTargetLeaseRenewedAfterSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1], func(m *lpmv1.PodMigration) {
		m.Spec.Settle = &metav1.Duration{Duration: 30 * time.Second}
	})
	h.waitFor("Restored Settling", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Reason == string(lpmv1.ReasonSettling)
	})

	h.agent.Hold(fakeagent.StepRenewLease)
	h.step(31*time.Second, "move")
	h.waitFor("Restored waiting for the target's Lease", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && strings.Contains(c.Message, "renew its Lease")
	})
	h.agent.Proceed(fakeagent.StepRenewLease)
	h.must(h.agent.RenewLeases(h.ctx))

	h.waitPhase("move", lpmv1.PhaseSucceeded)
	h.waitGone(source)
}

// A restored pod on a dead node stays Terminating after the rollback, and
// the source stays frozen until it is gone. The failure message and an
// event on the source pod say so and give the forced deletion, and the
// message says when the pod is gone.
func TestRollbackWithRestoredPodStuck(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1], func(m *lpmv1.PodMigration) {
		m.Spec.Settle = &metav1.Duration{Duration: 30 * time.Second}
		m.Spec.Timeouts = &lpmv1.Timeouts{Restore: &metav1.Duration{Duration: time.Minute}}
	})
	h.waitFor("Restored Settling", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Reason == string(lpmv1.ReasonSettling)
	})

	// The node dies: it renews no Lease, and its kubelet never confirms the
	// deletion of the restored pod, which a finalizer plays here.
	restored := &h.restoredPods(h.get("move"))[0]
	patch := client.MergeFrom(restored.DeepCopy())
	restored.Finalizers = append(restored.Finalizers, "story.lpm.dev/node-down")
	h.must(admin.Patch(h.ctx, restored, patch))
	h.agent.Hold(fakeagent.StepRenewLease)
	h.step(31*time.Second, "move")
	h.step(30*time.Second, "move")
	m := h.waitFailed("move", lpmv1.ReasonRestoreTimedOut)
	h.waitFor("restored pod terminating", func() bool {
		h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(restored), restored))
		return restored.DeletionTimestamp != nil
	})

	h.step(time.Minute, "move")
	force := fmt.Sprintf("kubectl delete pod %s -n %s --force --grace-period=0", restored.Name, h.ns)
	h.waitFor("advice in the failure message", func() bool {
		return strings.Contains(condition(h.get("move"), lpmv1.ConditionSucceeded).Message, force)
	})
	if c := condition(h.get("move"), lpmv1.ConditionSucceeded); !strings.Contains(c.Message, "Pod web stays frozen") {
		t.Errorf("failure message = %q, want it to say that the source stays frozen", c.Message)
	}
	h.waitFor("advice event on the source pod", func() bool {
		var list eventsv1.EventList
		h.must(admin.List(h.ctx, &list, client.InNamespace(h.ns)))
		for _, e := range list.Items {
			if e.Regarding.UID == source.UID && strings.Contains(e.Note, force) {
				return true
			}
		}
		return false
	})
	if c := sourceCondition(h.get("move"), lpmv1.AgentConditionCleanedUp); c != nil {
		t.Errorf("source agent reported %s while the restored pod exists", c.Type)
	}

	// The forced deletion.
	h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(restored), restored))
	patch = client.MergeFrom(restored.DeepCopy())
	restored.Finalizers = nil
	h.must(admin.Patch(h.ctx, restored, patch))
	h.waitFor("failure message says the restored pod is gone", func() bool {
		return strings.Contains(condition(h.get("move"), lpmv1.ConditionSucceeded).Message,
			"is gone, so the agent of node "+h.nodes[0]+" thaws pod web")
	})
	h.assertRolledBack(m, source)
}

func sourceCondition(m *lpmv1.PodMigration, t string) *metav1.Condition {
	if m.Status.Source == nil {
		return nil
	}
	return meta.FindStatusCondition(m.Status.Source.Conditions, t)
}
