// Package controller drives PodMigrations through their phases. Each phase
// is a step in its own file that turns what a reconcile observed into an
// outcome. The reconciler applies the outcome, writes the status once and
// emits events. docs/design.md describes the contract with the node agents.
package controller

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// slotPollInterval is how often a migration that waits for a free slot
// checks again.
const slotPollInterval = 5 * time.Second

// PodMigrationReconciler reconciles PodMigrations.
type PodMigrationReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	client.Client
	// APIReader reads from the API server directly, for the few reads that
	// must not see a stale cache.
	APIReader client.Reader
	// Clock is the source of every time the controller compares or writes.
	Clock clock.PassiveClock
	// Recorder emits events.k8s.io events.
	Recorder events.EventRecorder
	// Slots enforces the concurrency caps.
	Slots *Slots
	// Defaults fill the timeouts that a PodMigration leaves empty.
	Defaults Defaults
}

// +kubebuilder:rbac:groups=lpm.dev,resources=podmigrations,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=lpm.dev,resources=podmigrations/status,verbs=get;patch
// The restored pod's owner reference blocks the owner's deletion, which
// needs update on the owner's finalizers.
// +kubebuilder:rbac:groups=lpm.dev,resources=podmigrations/finalizers,verbs=update
// +kubebuilder:rbac:groups=lpm.dev,resources=nodeagents,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// Verification reads the target node's Lease in kube-node-lease. The cache
// watches no other namespace's Leases.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile observes the migration and the cluster, decides the next step
// and applies it. It keeps nothing in memory between calls except the
// admissions in Slots.
func (r *PodMigrationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	m := &lpmv1.PodMigration{}
	if err := r.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			forgetMetrics(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log = log.WithValues("pod", klog.KRef(m.Namespace, m.Spec.PodName))
	ctx = ctrl.LoggerInto(ctx, log)
	r.Defaults.apply(m)

	// The finalizer comes first, so that deleting the migration at any later
	// point rolls it back.
	if m.DeletionTimestamp.IsZero() && !isFinished(m.Status.Phase) && !hasFinalizer(m) {
		if err := r.addFinalizer(ctx, m); err != nil {
			return ctrl.Result{}, err
		}
	}

	w, err := r.observe(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	o := decide(m, w, r.Slots)

	// Changes to other objects come before the status write, so the status
	// never names a restored pod that does not exist yet. Deletions come
	// after it.
	if err := r.act(ctx, o, w); err != nil {
		return ctrl.Result{}, err
	}
	// A slot admitted here stays taken when the write fails: the next
	// reconcile of this migration admits it again. The write replaces m's
	// status with the API server's, so the phase it left is kept before.
	read := m.DeepCopy()
	if err := r.writeStatus(ctx, m, o.status); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.actAfterStatus(ctx, o, w); err != nil {
		return ctrl.Result{}, err
	}
	if read.Status.Phase != o.status.Phase {
		log.Info("Phase changed", "from", read.Status.Phase, "to", o.status.Phase,
			"sourceNode", o.status.SourceNode, "targetNode", o.status.TargetNode)
		recordTransitions(read, o.status)
	}
	if o.removeFinalizer && hasFinalizer(m) {
		if err := r.removeFinalizer(ctx, m); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.emit(m, o.events)
	r.emitOnPods(m, o, w)

	if o.terminal != nil {
		return ctrl.Result{}, reconcile.TerminalError(o.terminal)
	}
	return ctrl.Result{RequeueAfter: o.requeueAfter}, nil
}

// decide runs the step for the migration's state and returns its outcome.
func decide(m *lpmv1.PodMigration, w *world, slots *Slots) *outcome {
	o := newOutcome(m, w.now)
	switch {
	case isFinished(m.Status.Phase):
		stepFinished(o, w)
		return o
	case !m.DeletionTimestamp.IsZero():
		stepCancel(o, w)
	default:
		stepActive(o, w, slots)
	}
	if isFinished(o.status.Phase) {
		stepFinished(o, w)
	}
	return o
}

// stepActive runs the step of a migration that is neither finished nor
// deleted, then checks its deadlines unless the step moved it on.
func stepActive(o *outcome, w *world, slots *Slots) {
	phase := o.status.Phase
	// Pending turns an agent's failed check into a failed preflight.
	if phase != "" && phase != lpmv1.PhasePending && !restoredVerified(o) && failOnAgentReport(o) {
		return
	}
	switch phase {
	case "", lpmv1.PhasePending:
		stepPending(o, w, slots)
	case lpmv1.PhaseCheckpointing:
		stepCheckpointing(o, w)
	case lpmv1.PhaseCheckpointComplete:
		stepCheckpointComplete(o, w)
	case lpmv1.PhasePreparingImages:
		stepPreparingImages(o, w)
	case lpmv1.PhaseRestoring:
		stepRestoring(o, w)
	}
	if o.status.Phase == phase || o.status.Phase == lpmv1.PhasePending {
		enforceDeadlines(o)
	}
	if o.status.Phase == phase && phase != "" && phase != lpmv1.PhasePending && !restoredVerified(o) {
		failOnAgentLoss(o, w)
	}
	if o.status.Phase == lpmv1.PhaseFailed && o.createRestored != nil {
		o.createRestored = nil
	}
}

func isFinished(phase lpmv1.MigrationPhase) bool {
	return phase == lpmv1.PhaseSucceeded || phase == lpmv1.PhaseFailed
}
