// Package agent is the lpm node agent: it does every part of a migration
// that must happen on a node. On the source node it checkpoints the pod's
// containers through the kubelet, freezes the source, builds one
// checkpoint image per container and serves or pushes it; on the target
// node it fetches and imports the images and reports whether the runtime
// restored each container. It publishes the node's capabilities in a
// NodeAgent. docs/design.md is the contract with the controller; the
// agent's side of each phase is implemented in source.go and target.go.
package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// Annotations the controller puts on a restored pod.
const (
	annotationMigration    = "lpm.dev/migration"
	annotationMigrationUID = "lpm.dev/migration-uid"
)

// Image labels the agent sets on imported images.
const (
	labelMigrationUID = "lpm.dev/migration-uid"
	labelMigration    = "lpm.dev/migration"
)

// Checkpointer checkpoints one container and returns the archive's path
// on the node. The kubelet client implements it.
type Checkpointer interface {
	Checkpoint(ctx context.Context, namespace, pod, container string, timeout time.Duration) (string, error)
}

// Options configure the agent.
type Options struct {
	// NodeName is the node the agent runs on.
	NodeName string
	// TransferEndpoint is the host:port where peers reach this agent's
	// transfer server.
	TransferEndpoint string
	// CheckpointsDir is the kubelet's checkpoint directory as the node
	// sees it; LocalCheckpointsDir is the same directory as the agent sees
	// it. Archives outside it are rejected.
	CheckpointsDir      string
	LocalCheckpointsDir string
	// Snapshotter unpacks imported images; containerd's default if empty.
	Snapshotter string
	// Platform is the node's platform.
	Platform ocispec.Platform
	// DefaultCheckpointTimeout and DefaultTransferTimeout apply when the
	// PodMigration sets none.
	DefaultCheckpointTimeout time.Duration
	DefaultTransferTimeout   time.Duration
	// Version is the agent's version, published in the NodeAgent.
	Version string
	// ProcRoot is where the agent sees the node's /proc; /proc when empty.
	// The agent runs in the node's PID namespace.
	ProcRoot string
	// KubeletPodsDir is the kubelet's pods directory as the agent sees it
	// (/var/lib/kubelet/pods on the node), where it reads emptyDir volumes.
	KubeletPodsDir string
	// MaxVolumeDataBytes bounds the emptyDir contents one migration
	// carries; DefaultMaxVolumeDataBytes when zero.
	MaxVolumeDataBytes int64
	// VolumeCopierPath is the copier program put into volume data images.
	VolumeCopierPath string
	// LogMaxAge and LogMaxCount bound the CRIU log directories the agent
	// keeps of migrations that ended: none last written longer than
	// LogMaxAge ago, and at most the LogMaxCount most recent.
	// DefaultLogMaxAge and DefaultLogMaxCount apply when zero.
	LogMaxAge   time.Duration
	LogMaxCount int
}

// Agent reconciles PodMigrations that concern its node.
type Agent struct {
	client       client.Client
	reader       client.Reader
	runtime      *runtime.Runtime
	checkpointer Checkpointer
	store        *state.Store
	offers       *transfer.OfferSet
	fetcher      *transfer.Client
	pusher       *transfer.Pusher
	clock        clock.Clock
	opts         Options
	tasks        taskSet
	progress     progressThrottle
}

// Deps are the agent's collaborators.
type Deps struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// Reader reads from the API server directly: pods on other nodes and
	// Secrets are not in the cache.
	Reader       client.Reader
	Runtime      *runtime.Runtime
	Checkpointer Checkpointer
	Store        *state.Store
	Offers       *transfer.OfferSet
	Fetcher      *transfer.Client
	Pusher       *transfer.Pusher
	Clock        clock.Clock
}

// New returns an agent.
func New(deps Deps, opts Options) *Agent {
	if opts.DefaultCheckpointTimeout == 0 {
		opts.DefaultCheckpointTimeout = 2 * time.Minute
	}
	if opts.DefaultTransferTimeout == 0 {
		opts.DefaultTransferTimeout = 10 * time.Minute
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.MaxVolumeDataBytes == 0 {
		opts.MaxVolumeDataBytes = DefaultMaxVolumeDataBytes
	}
	if opts.LogMaxAge == 0 {
		opts.LogMaxAge = DefaultLogMaxAge
	}
	if opts.LogMaxCount == 0 {
		opts.LogMaxCount = DefaultLogMaxCount
	}
	return &Agent{client: deps.Client, reader: deps.Reader, runtime: deps.Runtime, checkpointer: deps.Checkpointer,
		store: deps.Store, offers: deps.Offers, fetcher: deps.Fetcher, pusher: deps.Pusher, clock: deps.Clock,
		opts: opts}
}

// SetupWithManager registers the agent's reconciler: PodMigrations whose
// source or target is this node, and pods on this node that a migration
// restored.
func (a *Agent) SetupWithManager(mgr ctrl.Manager) error {
	a.tasks.base = context.Background()
	if err := mgr.Add(&a.tasks); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("lpm-agent").
		For(&lpmv1.PodMigration{}, builder.WithPredicates(predicate.NewPredicateFuncs(a.concernsNode))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(a.migrationsOfPod)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(a)
}

// concernsNode selects the PodMigrations of this node, and those the agent
// still holds state for (their status may have lost the node's name only
// if someone rewrote it, which the agent does not trust).
func (a *Agent) concernsNode(obj client.Object) bool {
	pm, ok := obj.(*lpmv1.PodMigration)
	if !ok {
		return false
	}
	if pm.Status.SourceNode == a.opts.NodeName || pm.Status.TargetNode == a.opts.NodeName {
		return true
	}
	for _, role := range []state.Role{state.RoleSource, state.RoleTarget} {
		if rec, err := a.store.Load(string(pm.UID), role); err == nil && rec != nil {
			return true
		}
	}
	return false
}

// migrationsOfPod maps a pod on this node to the PodMigrations it matters
// to: the one that restored it, and those that move it from this node,
// whose source agent thaws the killed source once the pod is deleted.
func (a *Agent) migrationsOfPod(ctx context.Context, obj client.Object) []reconcile.Request {
	var requests []reconcile.Request
	if value := obj.GetAnnotations()[annotationMigration]; value != "" {
		if ns, name, ok := strings.Cut(value, "/"); ok {
			requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns,
				Name: name}})
		}
	}
	var list lpmv1.PodMigrationList
	if err := a.client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list PodMigrations for a pod event", "pod",
			client.ObjectKeyFromObject(obj))
		return requests
	}
	for _, pm := range list.Items {
		if pm.Spec.PodName == obj.GetName() && pm.Status.SourceNode == a.opts.NodeName {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pm)})
		}
	}
	return requests
}

// Reconcile observes one PodMigration and acts for this node's part.
func (a *Agent) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	pm := &lpmv1.PodMigration{}
	if err := a.client.Get(ctx, req.NamespacedName, pm); err != nil {
		if apierrors.IsNotFound(err) {
			// The garbage collector finishes what a vanished migration left.
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	log = log.WithValues("pod", klog.KRef(pm.Namespace, pm.Spec.PodName))
	ctx = logf.IntoContext(ctx, log)
	uid := string(pm.UID)
	var results []reconcile.Result
	var errs []error
	for _, role := range []state.Role{state.RoleSource, state.RoleTarget} {
		rec, err := a.store.Load(uid, role)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		node := pm.Status.SourceNode
		if role == state.RoleTarget {
			node = pm.Status.TargetNode
		}
		if node != a.opts.NodeName && rec == nil {
			continue
		}
		var res reconcile.Result
		if role == state.RoleSource {
			res, err = a.reconcileSource(ctx, pm, rec)
		} else {
			res, err = a.reconcileTarget(ctx, pm, rec)
		}
		results = append(results, res)
		if err != nil {
			log.V(3).Info("Step failed; retrying", "role", role, "error", err.Error())
			errs = append(errs, err)
		}
	}
	return earliest(results), errors.Join(errs...)
}

func earliest(results []reconcile.Result) reconcile.Result {
	var out reconcile.Result
	for _, r := range results {
		if r.RequeueAfter > 0 && (out.RequeueAfter == 0 || r.RequeueAfter < out.RequeueAfter) {
			out.RequeueAfter = r.RequeueAfter
		}
	}
	return out
}

// taskSet runs the long steps (checkpoint, build, transfer, import) in the
// background, one per migration and role, so a reconcile never blocks on
// them and a cancelled migration can stop them.
type taskSet struct {
	mu    sync.Mutex
	base  context.Context
	tasks map[string]*task
}

type task struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// errTaskStopped is the cause of a task's cancellation when the agent stops
// it because its migration failed, ended or was deleted, as opposed to the
// agent itself stopping.
var errTaskStopped = errors.New("the migration ended or was deleted")

// Start records the manager's lifetime; tasks end with it.
func (s *taskSet) Start(ctx context.Context) error {
	s.mu.Lock()
	s.base = ctx
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

// run starts fn under key unless a task of that key runs, and reports
// whether it started one.
func (s *taskSet) run(key string, fn func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks == nil {
		s.tasks = map[string]*task{}
	}
	if t, ok := s.tasks[key]; ok {
		select {
		case <-t.done:
		default:
			return false
		}
	}
	base := s.base
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancelCause(base)
	t := &task{cancel: cancel, done: make(chan struct{})}
	s.tasks[key] = t
	go func() {
		defer close(t.done)
		defer cancel(nil)
		fn(ctx)
	}()
	return true
}

// running reports whether a task of key runs.
func (s *taskSet) running(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[key]
	if !ok {
		return false
	}
	select {
	case <-t.done:
		return false
	default:
		return true
	}
}

// stop cancels the task of key and waits for it to end.
func (s *taskSet) stop(key string) {
	s.mu.Lock()
	t, ok := s.tasks[key]
	s.mu.Unlock()
	if !ok {
		return
	}
	t.cancel(errTaskStopped)
	<-t.done
}

// NeedLeaderElection is false: every agent works on its own node.
func (s *taskSet) NeedLeaderElection() bool { return false }

func taskKey(uid string, role state.Role) string { return uid + "/" + string(role) }

// progressThrottle limits transfer progress writes to one every two
// seconds per migration.
type progressThrottle struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (p *progressThrottle) allow(uid string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[string]time.Time{}
	}
	if now.Sub(p.last[uid]) < 2*time.Second {
		return false
	}
	p.last[uid] = now
	return true
}

func (p *progressThrottle) forget(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, uid)
}
