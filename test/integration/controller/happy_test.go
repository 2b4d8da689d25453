package controller_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

var allPhases = []lpmv1.MigrationPhase{
	lpmv1.PhasePending, lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete,
	lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring, lpmv1.PhaseSucceeded,
}

func phases(m *lpmv1.PodMigration) []lpmv1.MigrationPhase {
	var list []lpmv1.MigrationPhase
	for _, t := range m.Status.PhaseTransitions {
		list = append(list, t.Phase)
	}
	return list
}

// A user moves a standalone pod to another node: the restored pod runs
// there from the checkpoint, the source is gone, and the restored pod has
// no owner.
func TestMoveHappyPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move-web", "web", h.nodes[1])

	m := h.waitPhase("move-web", lpmv1.PhaseSucceeded)

	if diff := cmp.Diff(allPhases, phases(m)); diff != "" {
		t.Errorf("phases mismatch (-want +got):\n%s", diff)
	}
	for _, c := range []string{lpmv1.ConditionPreflightPassed, lpmv1.ConditionCheckpointed,
		lpmv1.ConditionImagesReady, lpmv1.ConditionRestored, lpmv1.ConditionSourceRemoved, lpmv1.ConditionSucceeded} {
		got := condition(m, c)
		if got == nil || got.Status != metav1.ConditionTrue || got.ObservedGeneration != m.Generation {
			t.Errorf("condition %s = %+v, want True at generation %d", c, got, m.Generation)
		}
	}
	if m.Status.SourceNode != h.nodes[0] || m.Status.TargetNode != h.nodes[1] || m.Status.RestoredPod != "web-restored" {
		t.Errorf("source, target, restored pod = %s, %s, %s; want %s, %s, web-restored",
			m.Status.SourceNode, m.Status.TargetNode, m.Status.RestoredPod, h.nodes[0], h.nodes[1])
	}
	if m.Status.Downtime == nil || m.Status.CutTime == nil || m.Status.StartTime == nil || m.Status.CompletionTime == nil {
		t.Errorf("times missing: downtime %v, cut %v, start %v, completion %v", m.Status.Downtime,
			m.Status.CutTime, m.Status.StartTime, m.Status.CompletionTime)
	}
	wantImage := "localhost/lpm/" + h.ns + "/web-app:" + string(m.UID)[:8]
	if diff := cmp.Diff(map[string]string{"app": wantImage}, m.Status.CheckpointImages); diff != "" {
		t.Errorf("checkpoint images mismatch (-want +got):\n%s", diff)
	}
	if len(m.Status.Containers) != 1 || m.Status.Containers[0].ArchiveBytes != fakeagent.ArchiveBytes ||
		!m.Status.Containers[0].Restored || m.Status.Containers[0].FrozenTime == nil {
		t.Errorf("container figures = %+v, want the agent's figures and restored", m.Status.Containers)
	}

	// The source pod is gone and the restored pod runs on the target
	// without an owner.
	h.waitGone(source)
	restored := h.restoredPods(m)
	if len(restored) != 1 {
		t.Fatalf("%d restored pods, want 1", len(restored))
	}
	pod := restored[0]
	if pod.Spec.NodeName != h.nodes[1] || pod.Spec.Containers[0].Image != wantImage ||
		pod.Spec.Containers[0].ImagePullPolicy != corev1.PullNever || pod.Spec.Hostname != "web" {
		t.Errorf("restored pod runs %s (%s) on %s with hostname %q", pod.Spec.Containers[0].Image,
			pod.Spec.Containers[0].ImagePullPolicy, pod.Spec.NodeName, pod.Spec.Hostname)
	}
	if len(pod.OwnerReferences) != 0 {
		t.Errorf("restored pod still has owners %v", pod.OwnerReferences)
	}
	if pod.Labels["app"] != "web" || pod.Annotations[lpmv1.AnnotationSourceNode] != h.nodes[0] {
		t.Errorf("restored pod labels %v, annotations %v", pod.Labels, pod.Annotations)
	}
	if n := h.agent.Count(fakeagent.StepCheckpoint); n != 1 {
		t.Errorf("%d checkpoints, want 1", n)
	}

	// The migration left no finalizer, so deleting it is instant and
	// leaves the workload alone.
	h.waitFor("finalizer removed", func() bool { return len(h.get("move-web").Finalizers) == 0 })
	h.must(admin.Delete(h.ctx, m))
	h.waitGone(m)
	h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(&pod), &pod))

	// Events tell the story after each status write.
	h.waitFor("events", func() bool {
		reasons := eventReasons(h, m)
		return reasons[string(lpmv1.ReasonMigrationComplete)] && reasons[string(lpmv1.ReasonVerified)] &&
			reasons[string(lpmv1.ReasonCheckpointed)]
	})
}

func eventReasons(h *harness, m *lpmv1.PodMigration) map[string]bool {
	var list eventsv1.EventList
	h.must(admin.List(h.ctx, &list, client.InNamespace(h.ns)))
	reasons := map[string]bool{}
	for _, e := range list.Items {
		if e.Regarding.UID == m.UID {
			reasons[e.Reason] = true
		}
	}
	return reasons
}

// A pod moved A -> B -> A keeps its name: web, web-restored, web.
func TestMoveThereAndBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.createRunningPod("web", h.nodes[0])
	h.migrate("there", "web", h.nodes[1])
	there := h.waitPhase("there", lpmv1.PhaseSucceeded)
	h.waitFor("restored pod running", func() bool {
		pods := h.restoredPods(there)
		return len(pods) == 1 && pods[0].Status.Phase == corev1.PodRunning
	})

	h.migrate("back", "web-restored", h.nodes[0])
	back := h.waitPhase("back", lpmv1.PhaseSucceeded)

	if back.Status.RestoredPod != "web" {
		t.Errorf("second hop restored pod = %q, want web", back.Status.RestoredPod)
	}
	pods := h.restoredPods(back)
	if len(pods) != 1 || pods[0].Spec.NodeName != h.nodes[0] || pods[0].Spec.Hostname != "web" {
		t.Errorf("pods after the second hop = %+v, want web on %s with hostname web", pods, h.nodes[0])
	}
}

// A clone keeps the source running and needs no downtime.
func TestCloneKeepsSource(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("clone", "web", h.nodes[1], func(m *lpmv1.PodMigration) { m.Spec.SourcePolicy = lpmv1.SourcePolicyKeep })

	m := h.waitPhase("clone", lpmv1.PhaseSucceeded)

	if c := condition(m, lpmv1.ConditionSourceRemoved); c == nil || c.Status != metav1.ConditionFalse ||
		c.Reason != string(lpmv1.ReasonSourceKept) {
		t.Errorf("SourceRemoved = %+v, want False/SourceKept", c)
	}
	if m.Status.Downtime != nil {
		t.Errorf("downtime = %s, want none for a clone", m.Status.Downtime.Duration)
	}
	h.assertSourceUntouched(source)
	if len(h.restoredPods(m)) != 1 {
		t.Errorf("want one restored pod")
	}
}

// With no target named, the controller picks the node the pod fits on.
func TestMovePicksTarget(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The first other node is cordoned, so only the last one fits.
	node := &corev1.Node{}
	h.must(admin.Get(h.ctx, client.ObjectKey{Name: h.nodes[1]}, node))
	node.Spec.Unschedulable = true
	h.must(admin.Update(h.ctx, node))
	h.createRunningPod("web", h.nodes[0], func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{"lpm.dev/story": h.ns}
	})

	h.migrate("auto", "web", "")
	m := h.waitPhase("auto", lpmv1.PhaseSucceeded)

	if m.Status.TargetNode != h.nodes[2] {
		t.Errorf("targetNode = %q, want %s", m.Status.TargetNode, h.nodes[2])
	}
}

// A dry run runs every check and changes nothing.
func TestDryRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("dry", "web", h.nodes[1], func(m *lpmv1.PodMigration) { m.Spec.DryRun = true })

	m := h.waitPhase("dry", lpmv1.PhaseSucceeded)

	if c := condition(m, lpmv1.ConditionSucceeded); c.Reason != string(lpmv1.ReasonDryRun) {
		t.Errorf("Succeeded reason = %s, want DryRun", c.Reason)
	}
	if h.agent.Count(fakeagent.StepPrepareSource) != 1 || h.agent.Count(fakeagent.StepPrepareTarget) != 1 {
		t.Errorf("the agents' checks did not run")
	}
	if n := h.agent.Count(fakeagent.StepCheckpoint); n != 0 {
		t.Errorf("dry run checkpointed %d times", n)
	}
	h.assertSourceUntouched(source)
	if len(h.restoredPods(m)) != 0 {
		t.Errorf("dry run created a pod")
	}
}

// The source is removed only after the restored pod stayed up for the
// settle window.
func TestSettleWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("settle", "web", h.nodes[1], func(m *lpmv1.PodMigration) {
		m.Spec.Settle = &metav1.Duration{Duration: 30 * time.Second}
	})

	h.waitFor("Restored Settling", func() bool {
		c := condition(h.get("settle"), lpmv1.ConditionRestored)
		return c != nil && c.Reason == string(lpmv1.ReasonSettling)
	})
	h.assertSourceUntouched(source)

	h.step(29*time.Second, "settle")
	time.Sleep(200 * time.Millisecond)
	if c := condition(h.get("settle"), lpmv1.ConditionRestored); c.Reason != string(lpmv1.ReasonSettling) {
		t.Errorf("Restored = %s before the window ended", c.Reason)
	}
	h.step(time.Second, "settle")
	h.waitPhase("settle", lpmv1.PhaseSucceeded)
	h.waitGone(source)
}

// The cut time, the phase transitions, the restored pod's Ready time and
// the downtime keep their microseconds through the API server.
func TestTimesKeepMicroseconds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepCheckpoint)
	h.agent.Hold(fakeagent.StepStartRestored)
	h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitPhase("move", lpmv1.PhaseCheckpointing)

	start := h.clock.Now()
	h.clock.Step(250 * time.Millisecond)
	h.agent.Proceed(fakeagent.StepCheckpoint)
	h.waitPhase("move", lpmv1.PhaseRestoring)
	h.clock.Step(1500*time.Millisecond + 123*time.Microsecond)
	h.agent.Proceed(fakeagent.StepStartRestored)
	m := h.waitPhase("move", lpmv1.PhaseSucceeded)

	cut := start.Add(250 * time.Millisecond)
	ready := cut.Add(1500*time.Millisecond + 123*time.Microsecond)
	if m.Status.CutTime == nil || !m.Status.CutTime.Time.Equal(cut) {
		t.Errorf("cutTime = %v, want %s", m.Status.CutTime, cut.Format(time.RFC3339Nano))
	}
	if m.Status.RestoredReadyTime == nil || !m.Status.RestoredReadyTime.Time.Equal(ready) {
		t.Errorf("restoredReadyTime = %v, want %s", m.Status.RestoredReadyTime, ready.Format(time.RFC3339Nano))
	}
	if want := 1500*time.Millisecond + 123*time.Microsecond; m.Status.Downtime == nil ||
		m.Status.Downtime.Duration != want {
		t.Errorf("downtime = %v, want %s", m.Status.Downtime, want)
	}
	entered := map[lpmv1.MigrationPhase]time.Time{}
	for _, tr := range m.Status.PhaseTransitions {
		entered[tr.Phase] = tr.Time.Time
	}
	if got := entered[lpmv1.PhaseCheckpointComplete].Sub(entered[lpmv1.PhaseCheckpointing]); got != 250*time.Millisecond {
		t.Errorf("Checkpointing lasted %s by the recorded transitions, want 250ms", got)
	}
}

// After verification the controller deletes the source pod only once the
// source agent has killed the frozen source, and the agent cleans up only
// once the pod is being deleted: the killed processes die when it thaws
// them, and the kubelet does not restart a container of a terminating pod.
func TestSourceKilledBeforeDeletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepKillSource)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitFor("Restored True", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Status == metav1.ConditionTrue
	})

	time.Sleep(300 * time.Millisecond)
	h.assertSourceUntouched(source)
	m := h.get("move")
	if c := condition(m, lpmv1.ConditionSourceRemoved); c == nil || c.Reason != string(lpmv1.ReasonInProgress) {
		t.Errorf("SourceRemoved = %+v, want InProgress while the source agent has not killed the source", c)
	}
	if src := m.Status.Source; meta.IsStatusConditionTrue(src.Conditions, lpmv1.AgentConditionCleanedUp) {
		t.Errorf("source agent cleaned up before the source pod was deleted")
	}

	h.agent.Proceed(fakeagent.StepKillSource)
	m = h.waitPhase("move", lpmv1.PhaseSucceeded)
	h.waitGone(source)
	h.waitFor("source CleanedUp", func() bool {
		return meta.IsStatusConditionTrue(h.get("move").Status.Source.Conditions, lpmv1.AgentConditionCleanedUp)
	})
	if c := condition(m, lpmv1.ConditionSourceRemoved); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("SourceRemoved = %+v, want True", c)
	}
}

// A source agent that never reports Killed holds the source pod for two
// minutes at most; then the controller deletes it with a warning event.
func TestSourceKillTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepKillSource)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])
	h.waitFor("Restored True", func() bool {
		c := condition(h.get("move"), lpmv1.ConditionRestored)
		return c != nil && c.Status == metav1.ConditionTrue
	})

	h.step(2*time.Minute, "move")
	m := h.waitPhase("move", lpmv1.PhaseSucceeded)
	h.waitGone(source)
	h.waitFor("CleanupTimedOut event", func() bool {
		return eventReasons(h, m)[string(lpmv1.ReasonCleanupTimedOut)]
	})
}
