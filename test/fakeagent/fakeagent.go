// Package fakeagent is a test double of the lpm node agent. It plays the
// agent's part of the controller-agent contract in docs/design.md through
// the API only: it publishes NodeAgents and writes status.source and
// status.target of PodMigrations with merge patches, as the real agent
// does. It runs no container, calls no kubelet and builds no image. Knobs
// hold or fail any step, so tests can stop a migration in any phase.
//
// It also plays the kubelet of its nodes (kubelet.go), because the
// integration tests run a real API server without nodes.
package fakeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Step is one thing the agent, or the kubelet it replaces, does for a
// migration.
type Step string

// The steps, in the order of a migration.
const (
	StepPrepareSource Step = "PrepareSource"
	StepPrepareTarget Step = "PrepareTarget"
	StepCheckpoint    Step = "Checkpoint"
	StepServeImages   Step = "ServeImages"
	StepImportImages  Step = "ImportImages"
	// StepStartRestored is the kubelet starting the restored pod. Failing
	// it makes a container restart.
	StepStartRestored Step = "StartRestored"
	StepRestore       Step = "Restore"
	// StepKillSource is the source agent's SIGKILL to the frozen source
	// after verification; CleanUpSource follows once the pod is deleted.
	StepKillSource    Step = "KillSource"
	StepCleanUpSource Step = "CleanUpSource"
	StepCleanUpTarget Step = "CleanUpTarget"
	// StepRenewLease is the kubelet renewing its node's Lease. Holding it
	// plays nodes that stopped, whose pods the API server still shows
	// Ready.
	StepRenewLease Step = "RenewLease"
)

// Steps lists every step.
var Steps = []Step{
	StepPrepareSource, StepPrepareTarget, StepCheckpoint, StepServeImages, StepImportImages,
	StepStartRestored, StepRestore, StepKillSource, StepCleanUpSource, StepCleanUpTarget, StepRenewLease,
}

// failure is what a failed step reports.
type failure struct {
	reason  string
	message string
}

// Agent plays the lpm agent, and the kubelet, of a set of nodes.
type Agent struct {
	client client.Client
	// reader reads PodMigrations from the API server, not a cache, so the
	// agent never repeats a step it has reported, as the real agent's
	// state directory ensures.
	reader client.Reader
	clock  clock.PassiveClock
	nodes  map[string]bool

	mu          sync.Mutex
	heldSteps   map[Step]bool
	failedSteps map[Step]failure
	counts      map[Step]int
	// sourceReports are failures the source agent reports in whatever
	// phase it finds a migration in, by condition type.
	sourceReports map[string]failure

	migrationEvents chan event.GenericEvent
	podEvents       chan event.GenericEvent
}

// New returns a fake agent of nodes. It writes through c, reads migrations
// through reader and takes every time it writes from clk.
func New(c client.Client, reader client.Reader, clk clock.PassiveClock, nodes ...string) *Agent {
	a := &Agent{
		client: c, reader: reader, clock: clk, nodes: map[string]bool{},
		heldSteps: map[Step]bool{}, failedSteps: map[Step]failure{}, counts: map[Step]int{},
		sourceReports:   map[string]failure{},
		migrationEvents: make(chan event.GenericEvent, 1024),
		podEvents:       make(chan event.GenericEvent, 1024),
	}
	for _, n := range nodes {
		a.nodes[n] = true
	}
	return a
}

// Hold stops the agent before step until Proceed.
func (a *Agent) Hold(step Step) {
	a.mu.Lock()
	a.heldSteps[step] = true
	a.mu.Unlock()
}

// Fail makes step report failure with a typed reason.
func (a *Agent) Fail(step Step, reason lpmv1.Reason, message string) {
	a.mu.Lock()
	a.failedSteps[step] = failure{reason: string(reason), message: message}
	a.mu.Unlock()
	a.poke()
}

// FailSource makes the source agent report condition condType False with a
// typed reason in any phase after Pending and before verification, as the
// real agent reports LivenessProbeDeadline on ImagesServed when the
// kubelet may soon kill the frozen source.
func (a *Agent) FailSource(condType string, reason lpmv1.Reason, message string) {
	a.mu.Lock()
	a.sourceReports[condType] = failure{reason: string(reason), message: message}
	a.mu.Unlock()
	a.poke()
}

// Proceed lets step run normally again and wakes the agent.
func (a *Agent) Proceed(step Step) {
	a.mu.Lock()
	delete(a.heldSteps, step)
	delete(a.failedSteps, step)
	a.mu.Unlock()
	a.poke()
}

// Count returns how often step ran to completion.
func (a *Agent) Count(step Step) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[step]
}

// run decides a step: it returns false while the step is held, and the
// failure when the step is set to fail. A step that runs is counted.
func (a *Agent) run(step Step) (bool, *failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.heldSteps[step] {
		return false, nil
	}
	if f, ok := a.failedSteps[step]; ok {
		return true, &f
	}
	a.counts[step]++
	return true, nil
}

// poke makes both of the agent's controllers look at every object again,
// as the real agent does after its own state changes.
func (a *Agent) poke() {
	ctx := context.Background()
	var migrations lpmv1.PodMigrationList
	if err := a.client.List(ctx, &migrations); err == nil {
		for i := range migrations.Items {
			a.migrationEvents <- event.GenericEvent{Object: &migrations.Items[i]}
		}
	}
	var pods corev1.PodList
	if err := a.client.List(ctx, &pods); err == nil {
		for i := range pods.Items {
			if a.nodes[pods.Items[i].Spec.NodeName] {
				a.podEvents <- event.GenericEvent{Object: &pods.Items[i]}
			}
		}
	}
}

// SetupWithManager registers the agent's and the kubelet's controllers.
func (a *Agent) SetupWithManager(mgr ctrl.Manager, name string) error {
	skip := true
	err := ctrl.NewControllerManagedBy(mgr).
		Named(name+"-agent").
		For(&lpmv1.PodMigration{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(a.migrationsForPod)).
		WatchesRawSource(source.Channel(a.migrationEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controllerOptions(&skip)).
		Complete(reconcileFunc(a.reconcileMigration))
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(a.renewLeasesPeriodically)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(name + "-kubelet").
		For(&corev1.Pod{}).
		WatchesRawSource(source.Channel(a.podEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controllerOptions(&skip)).
		Complete(reconcileFunc(a.reconcilePod))
}

// migrationsForPod wakes the migrations whose restored pod changed, as the
// real target agent watches the pods on its node.
func (a *Agent) migrationsForPod(ctx context.Context, o client.Object) []ctrl.Request {
	var list lpmv1.PodMigrationList
	if err := a.client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var requests []ctrl.Request
	for _, m := range list.Items {
		if m.Status.RestoredPod == o.GetName() || m.Spec.PodName == o.GetName() {
			requests = append(requests, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&m)})
		}
	}
	return requests
}

func (a *Agent) reconcileMigration(ctx context.Context, req ctrl.Request) error {
	m := &lpmv1.PodMigration{}
	if err := a.reader.Get(ctx, req.NamespacedName, m); err != nil {
		return client.IgnoreNotFound(err)
	}
	if a.nodes[m.Status.SourceNode] {
		src := m.Status.Source.DeepCopy()
		if src == nil {
			src = &lpmv1.SourceAgentStatus{}
		}
		before := src.DeepCopy()
		if err := a.actAsSource(ctx, m, src); err != nil {
			return err
		}
		if !equality.Semantic.DeepEqual(before, src) {
			if err := a.patch(ctx, m, "source", src); err != nil {
				return err
			}
		}
	}
	if a.nodes[m.Status.TargetNode] {
		dst := m.Status.Target.DeepCopy()
		if dst == nil {
			dst = &lpmv1.TargetAgentStatus{}
		}
		before := dst.DeepCopy()
		if err := a.actAsTarget(ctx, m, dst); err != nil {
			return err
		}
		if !equality.Semantic.DeepEqual(before, dst) {
			return a.patch(ctx, m, "target", dst)
		}
	}
	return nil
}

// patch writes the agent's part of the status with a JSON merge patch that
// contains only that part, as docs/design.md prescribes.
func (a *Agent) patch(ctx context.Context, m *lpmv1.PodMigration, field string, part any) error {
	body, err := json.Marshal(map[string]any{"status": map[string]any{field: part}})
	if err != nil {
		return err
	}
	if err := a.client.Status().Patch(ctx, m, client.RawPatch(types.MergePatchType, body)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to patch status.%s of PodMigration %s: %w", field, m.Name, err)
	}
	return nil
}

// setCondition sets an agent condition with the fake clock's time.
func (a *Agent) setCondition(conditions *[]metav1.Condition, t string, f *failure, reason string) {
	c := metav1.Condition{
		Type: t, Status: metav1.ConditionTrue, Reason: reason,
		LastTransitionTime: metav1.NewTime(a.clock.Now()),
	}
	if f != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, f.reason, f.message
	}
	meta.SetStatusCondition(conditions, c)
}

func has(conditions []metav1.Condition, t string) bool {
	return meta.FindStatusCondition(conditions, t) != nil
}

func isTrue(conditions []metav1.Condition, t string) bool {
	return meta.IsStatusConditionTrue(conditions, t)
}
