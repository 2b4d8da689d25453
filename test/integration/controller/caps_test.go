package controller_test

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
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

// olderListClient reads from the API server, except that it lists the
// PodMigrations from a copy taken earlier, as a cache that lags behind.
type olderListClient struct {
	client.Client
	older []lpmv1.PodMigration
}

func (c olderListClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if l, ok := list.(*lpmv1.PodMigrationList); ok {
		l.Items = nil
		for i := range c.older {
			l.Items = append(l.Items, *c.older[i].DeepCopy())
		}
		return nil
	}
	return c.Client.List(ctx, list, opts...)
}

// Reconciles that run at once list the PodMigrations from the cache at
// different moments. A reconcile whose list is older than the one an
// earlier reconcile saw, and still shows a running migration Pending, must
// not admit another migration past the cap.
func TestCapHoldsWithOlderList(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *options) {
		o.maxMigrations = 1
		o.maxOutbound = 1
	})
	h.stopController()
	h.agent.Hold(fakeagent.StepCheckpoint)
	h.createRunningPod("a", h.nodes[0])
	h.createRunningPod("b", h.nodes[1])
	h.migrate("move-a", "a", h.nodes[2])
	h.migrate("move-b", "b", h.nodes[2])

	// The stories share one API server, so the reconciles list only this
	// story's namespace, as the controller's cache does.
	fresh := client.NewNamespacedClient(admin, h.ns)
	slots := controller.NewSlots(h.opts.maxMigrations, h.opts.maxOutbound)
	reconcile := func(c client.Client, name string) {
		t.Helper()
		r := &controller.PodMigrationReconciler{Client: c, APIReader: admin, Clock: h.clock,
			Recorder: discardRecorder{}, Slots: slots}
		req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.ns, Name: name}}
		for attempt := 1; ; attempt++ {
			_, err := r.Reconcile(h.ctx, req)
			if err == nil {
				return
			}
			if !apierrors.IsConflict(err) || attempt == 10 {
				t.Fatalf("reconcile %s: %v", name, err)
			}
		}
	}
	prepared := func(m *lpmv1.PodMigration) bool {
		return m.Status.Source != nil && m.Status.Target != nil &&
			meta.IsStatusConditionTrue(m.Status.Source.Conditions, lpmv1.AgentConditionPrepared) &&
			meta.IsStatusConditionTrue(m.Status.Target.Conditions, lpmv1.AgentConditionPrepared)
	}
	reconcile(fresh, "move-a")
	reconcile(fresh, "move-b")
	h.waitFor("both agents Prepared for both migrations", func() bool {
		return prepared(h.get("move-a")) && prepared(h.get("move-b"))
	})
	var older lpmv1.PodMigrationList
	h.must(admin.List(h.ctx, &older, client.InNamespace(h.ns)))

	reconcile(fresh, "move-a")
	if got := h.get("move-a").Status.Phase; got != lpmv1.PhaseCheckpointing {
		t.Fatalf("move-a phase = %s, want Checkpointing", got)
	}
	reconcile(fresh, "move-b")
	reconcile(olderListClient{Client: fresh, older: older.Items}, "move-b")

	b := h.get("move-b")
	if b.Status.Phase != lpmv1.PhasePending {
		t.Errorf("move-b phase = %s, want Pending while move-a holds the only slot", b.Status.Phase)
	}
	c := meta.FindStatusCondition(b.Status.Conditions, lpmv1.ConditionSucceeded)
	if c == nil || c.Reason != string(lpmv1.ReasonWaitingForSlot) {
		t.Errorf("move-b Succeeded condition = %+v, want reason WaitingForSlot", c)
	}
}
