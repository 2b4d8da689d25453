package controller_test

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// At most five migrations run in the cluster and two leave one node, even
// with four reconciles at once. The rest wait in Pending with a reason and
// start when a slot frees.
func TestConcurrencyCaps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *options) {
		o.nodes = 4
		o.concurrency = 4
	})
	h.agent.Hold(fakeagent.StepCheckpoint)
	sources := map[string]int{h.nodes[0]: 3, h.nodes[1]: 2, h.nodes[2]: 2}
	var names []string
	for node, n := range sources {
		for i := range n {
			pod := fmt.Sprintf("%s-%d", node, i)
			h.createRunningPod(pod, node)
			names = append(names, pod)
		}
	}
	for _, pod := range names {
		h.migrate("move-"+pod, pod, h.nodes[3])
	}

	running := func() (int, map[string]int, int) {
		var list lpmv1.PodMigrationList
		h.must(admin.List(h.ctx, &list, client.InNamespace(h.ns)))
		total, waiting, perNode := 0, 0, map[string]int{}
		for _, m := range list.Items {
			switch m.Status.Phase {
			case lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages,
				lpmv1.PhaseRestoring:
				total++
				perNode[m.Status.SourceNode]++
			case lpmv1.PhasePending:
				c := meta.FindStatusCondition(m.Status.Conditions, lpmv1.ConditionSucceeded)
				if c != nil && c.Reason == string(lpmv1.ReasonWaitingForSlot) {
					waiting++
				}
			}
		}
		return total, perNode, waiting
	}
	h.waitFor("five running and two waiting", func() bool {
		total, perNode, waiting := running()
		if total > 5 {
			t.Fatalf("%d migrations running, want at most 5", total)
		}
		for node, n := range perNode {
			if n > 2 {
				t.Fatalf("%d migrations leaving %s, want at most 2", n, node)
			}
		}
		return total == 5 && waiting == 2
	})

	h.agent.Proceed(fakeagent.StepCheckpoint)
	for _, pod := range names {
		h.waitPhase("move-"+pod, lpmv1.PhaseSucceeded)
	}
}

// A second migration of a pod that is already moving fails before it
// touches anything; the first one goes on.
func TestSecondMigrationOfSamePod(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent.Hold(fakeagent.StepRestore)
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("first", "web", h.nodes[1])
	first := h.waitPhase("first", lpmv1.PhaseRestoring)
	h.waitFor("restored pod created", func() bool { return len(h.restoredPods(first)) == 1 })

	h.migrate("second", "web", h.nodes[2])
	second := h.waitFailed("second", lpmv1.ReasonMigrationInProgress)
	if c := condition(second, lpmv1.ConditionSucceeded); c.Message != "spec.podName: pod web is already being moved "+
		"by PodMigration first" {
		t.Errorf("message = %q", c.Message)
	}

	// The restored pod is the first migration's until it finishes.
	h.migrate("third", "web-restored", h.nodes[2])
	h.waitFailed("third", lpmv1.ReasonMigrationInProgress)

	h.agent.Proceed(fakeagent.StepRestore)
	first = h.waitPhase("first", lpmv1.PhaseSucceeded)
	assertMovedOnce(h, first, source)
	if got := h.get("second").Status.Phase; got != lpmv1.PhaseFailed {
		t.Errorf("second migration phase = %s", got)
	}

	// Once the pod has moved, its old name names no pod.
	h.migrate("fourth", "web", h.nodes[2])
	h.waitFailed("fourth", lpmv1.ReasonPodNotFound)
}
