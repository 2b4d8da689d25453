// Package controller_test runs the controller's user stories against a
// real etcd and kube-apiserver started by envtest, with the fake agent in
// place of the node agents and kubelets.
package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	// admin reads and writes the API server directly, without a cache.
	admin client.Client
	// testID makes the names of each test's namespace and nodes unique.
	testID atomic.Int32
)

// waitTimeout bounds every wait of a story. A step that does not happen
// within it fails the test.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run these tests with hack/test.sh, "+
			"which points it at the etcd and kube-apiserver that hack/components.sh builds")
		os.Exit(1)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to start etcd and kube-apiserver: %v\n", err)
		os.Exit(1)
	}
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to stop the test API server: %v\n", err)
	}
	os.Exit(code)
}

// zapLevel keeps the controllers quiet unless LPM_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("LPM_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// discardRecorder drops events, for the controller of reconcileOnce.
type discardRecorder struct{}

func (discardRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {
}

// options change a harness before it starts.
type options struct {
	maxMigrations, maxOutbound, concurrency int
	nodes                                   int
	// asServiceAccount runs the controller as its service account, with
	// only the RBAC rules in config/rbac/controller.
	asServiceAccount bool
}

// harness is one story's world: a namespace, nodes with a fake agent and
// kubelet, and a controller that the story can stop and start again.
type harness struct {
	t     *testing.T
	ctx   context.Context
	ns    string
	nodes []string
	clock *clocktesting.FakeClock
	agent *fakeagent.Agent
	opts  options

	mu       sync.Mutex
	stopCtrl func()
}

func newHarness(t *testing.T, mutate ...func(*options)) *harness {
	t.Helper()
	opts := options{maxMigrations: 5, maxOutbound: 2, concurrency: 2, nodes: 3}
	for _, m := range mutate {
		m(&opts)
	}
	id := testID.Add(1)
	h := &harness{
		t: t, ctx: t.Context(), ns: fmt.Sprintf("story-%d", id), opts: opts,
		clock: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)),
	}
	for i := range opts.nodes {
		h.nodes = append(h.nodes, fmt.Sprintf("s%d-node-%c", id, 'a'+i))
	}
	h.must(admin.Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}}))
	for _, n := range h.nodes {
		h.createNode(n)
	}

	mgr := h.newManager()
	h.agent = fakeagent.New(mgr.GetClient(), mgr.GetAPIReader(), h.clock, h.nodes...)
	h.must(h.agent.SetupWithManager(mgr, h.ns))
	h.run(mgr)
	h.must(h.agent.PublishNodeAgents(h.ctx, nil))
	h.must(h.agent.RenewLeases(h.ctx))
	h.startController()
	t.Cleanup(h.stopController)
	return h
}

// newManager returns a manager whose cache contains only the story's
// namespace, so stories that run in parallel do not act on each other's objects.
func (h *harness) newManager() ctrl.Manager {
	return h.newManagerAs("")
}

// newManagerAs returns a manager that acts as user, or as the test's
// administrator when user is empty.
func (h *harness) newManagerAs(user string) ctrl.Manager {
	h.t.Helper()
	config := rest.CopyConfig(cfg)
	config.Impersonate.UserName = user
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{h.ns: {}},
			DefaultTransform:  cache.TransformStripManagedFields(),
			ByObject:          controller.CacheByObject(),
		},
	})
	h.must(err)
	return mgr
}

// run starts mgr until the story ends and returns a function that stops it
// and waits until it stopped.
func (h *harness) run(mgr ctrl.Manager) func() {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			h.t.Errorf("manager stopped with an error: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	h.t.Cleanup(stop)
	return stop
}

// startController starts a new controller process: a new manager, cache,
// reconciler and Slots, with nothing carried over from the last one.
func (h *harness) startController() {
	h.t.Helper()
	mgr := h.newManager()
	if h.opts.asServiceAccount {
		mgr = h.newManagerAs(controllerUser(h.t))
	}
	r := &controller.PodMigrationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Clock:     h.clock,
		Recorder:  mgr.GetEventRecorder("lpm-controller"),
		Slots:     controller.NewSlots(h.opts.maxMigrations, h.opts.maxOutbound),
	}
	h.must(r.SetupWithManager(h.ctx, mgr, controller.Options{
		MaxConcurrentReconciles: h.opts.concurrency,
		SkipNameValidation:      true,
	}))
	stop := h.run(mgr)
	h.mu.Lock()
	h.stopCtrl = stop
	h.mu.Unlock()
}

// stopController stops the running controller, as a crash would.
func (h *harness) stopController() {
	h.mu.Lock()
	stop := h.stopCtrl
	h.stopCtrl = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// reconcileOnce runs one reconcile of a fresh controller that reads the API
// server directly, as a controller that crashes right after one reconcile.
// A reconcile whose status write met a conflict, because an agent wrote in
// between, changed nothing and runs again.
func (h *harness) reconcileOnce(name string) (ctrl.Result, error) {
	r := &controller.PodMigrationReconciler{
		Client:    admin,
		APIReader: admin,
		Clock:     h.clock,
		Recorder:  discardRecorder{},
		Slots:     controller.NewSlots(h.opts.maxMigrations, h.opts.maxOutbound),
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.ns, Name: name}}
	for attempt := 1; ; attempt++ {
		res, err := r.Reconcile(h.ctx, req)
		if !apierrors.IsConflict(err) || attempt == 10 {
			return res, err
		}
	}
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) createNode(name string) {
	h.t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"kubernetes.io/hostname": name, "lpm.dev/story": h.ns},
	}}
	h.must(admin.Create(h.ctx, node))
	node.Status = corev1.NodeStatus{
		Allocatable: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("4Gi"),
			corev1.ResourcePods:   resource.MustParse("20"),
		},
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("4Gi"),
			corev1.ResourcePods:   resource.MustParse("20"),
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	h.must(admin.Status().Update(h.ctx, node))

	// The API server taints a new node not-ready; in a cluster the node
	// lifecycle controller removes the taint once the node reports Ready.
	h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(node), node))
	node.Spec.Taints = nil
	h.must(admin.Update(h.ctx, node))
}

// pod returns a plain movable pod bound to node.
func (h *harness) pod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/counter:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
			}},
		},
	}
}

// createRunningPod creates a pod on node and waits until the fake kubelet
// reports it Ready.
func (h *harness) createRunningPod(name, node string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	h.t.Helper()
	pod := h.pod(name, node)
	for _, m := range mutate {
		m(pod)
	}
	h.must(admin.Create(h.ctx, pod))
	if pod.Annotations[fakeagent.ManualStatusAnnotation] != "" {
		return pod
	}
	h.waitFor("pod "+name+" Ready", func() bool {
		h.must(client.IgnoreNotFound(admin.Get(h.ctx, client.ObjectKeyFromObject(pod), pod)))
		return pod.Status.Phase == corev1.PodRunning
	})
	return pod
}

// migrate creates a PodMigration of podName to target.
func (h *harness) migrate(name, podName, target string, mutate ...func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
	h.t.Helper()
	m := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: lpmv1.PodMigrationSpec{
			PodName: podName, TargetNode: target,
			Settle: &metav1.Duration{Duration: 0},
		},
	}
	for _, f := range mutate {
		if f != nil {
			f(m)
		}
	}
	h.must(admin.Create(h.ctx, m))
	// The overall timeout counts from the creation time, which the API
	// server sets by its clock. The controller's clock is the fake one, so
	// it is moved on to the creation when it is behind.
	if created := m.CreationTimestamp.Time; created.After(h.clock.Now()) {
		h.clock.SetTime(created)
	}
	return m
}

func (h *harness) get(name string) *lpmv1.PodMigration {
	h.t.Helper()
	m := &lpmv1.PodMigration{}
	h.must(admin.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, m))
	return m
}

// waitPhase waits until the migration reaches phase and returns it.
func (h *harness) waitPhase(name string, phase lpmv1.MigrationPhase) *lpmv1.PodMigration {
	h.t.Helper()
	var m *lpmv1.PodMigration
	h.waitFor(fmt.Sprintf("PodMigration %s in phase %s", name, phase), func() bool {
		m = h.get(name)
		return m.Status.Phase == phase
	})
	return m
}

// waitFailed waits until the migration failed and checks the reason.
func (h *harness) waitFailed(name string, reason lpmv1.Reason) *lpmv1.PodMigration {
	h.t.Helper()
	m := h.waitPhase(name, lpmv1.PhaseFailed)
	c := meta.FindStatusCondition(m.Status.Conditions, lpmv1.ConditionSucceeded)
	if c == nil || c.Reason != string(reason) {
		h.t.Fatalf("PodMigration %s failed with %+v, want reason %s", name, c, reason)
	}
	return m
}

// waitGone waits until the object no longer exists.
func (h *harness) waitGone(obj client.Object) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%T %s gone", obj, obj.GetName()), func() bool {
		err := admin.Get(h.ctx, client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err)
	})
}

// waitFor polls cond until it holds or waitTimeout passes.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// step moves the fake clock on, renews the agents' heartbeats and the
// node Leases at the new time, and touches the migration, so the controller
// reconciles it at the new time at once instead of at its requeue time.
func (h *harness) step(d time.Duration, name string) {
	h.t.Helper()
	h.clock.Step(d)
	h.must(h.agent.PublishNodeAgents(h.ctx, nil))
	h.must(h.agent.RenewLeases(h.ctx))
	h.touch(name)
}

// advance moves the fake clock on by d in steps of at most a minute, so the
// agents' heartbeats never look older than the two minutes after which the
// controller counts an agent unavailable.
func (h *harness) advance(d time.Duration, name string) {
	h.t.Helper()
	for d > 0 {
		s := min(d, time.Minute)
		h.step(s, name)
		d -= s
	}
}

// touch changes an annotation of the migration, which triggers a reconcile.
func (h *harness) touch(name string) {
	h.t.Helper()
	m := h.get(name)
	patch := client.MergeFrom(m.DeepCopy())
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations["story.lpm.dev/touched"] = h.clock.Now().Format(time.RFC3339Nano)
	h.must(client.IgnoreNotFound(admin.Patch(h.ctx, m, patch)))
}

// restoredPods lists the pods that the migration created.
func (h *harness) restoredPods(m *lpmv1.PodMigration) []corev1.Pod {
	h.t.Helper()
	var pods corev1.PodList
	h.must(admin.List(h.ctx, &pods, client.InNamespace(h.ns)))
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Annotations[lpmv1.AnnotationMigrationUID] == string(m.UID) {
			out = append(out, p)
		}
	}
	return out
}

// assertSourceUntouched checks that the source pod still exists, is the
// same pod and was not changed.
func (h *harness) assertSourceUntouched(before *corev1.Pod) {
	h.t.Helper()
	now := &corev1.Pod{}
	if err := admin.Get(h.ctx, client.ObjectKeyFromObject(before), now); err != nil {
		h.t.Fatalf("source pod %s: %v", before.Name, err)
	}
	deleted := now.DeletionTimestamp != nil && before.DeletionTimestamp == nil
	if now.UID != before.UID || now.ResourceVersion != before.ResourceVersion || deleted {
		h.t.Errorf("source pod %s changed: uid %s -> %s, resourceVersion %s -> %s, deletionTimestamp %v",
			before.Name, before.UID, now.UID, before.ResourceVersion, now.ResourceVersion, now.DeletionTimestamp)
	}
}

// assertRolledBack checks the end state of a failed or cancelled migration:
// no restored pod, the source pod intact, no second checkpoint.
func (h *harness) assertRolledBack(m *lpmv1.PodMigration, source *corev1.Pod) {
	h.t.Helper()
	h.waitFor("restored pods of "+m.Name+" gone", func() bool { return len(h.restoredPods(m)) == 0 })
	h.assertSourceUntouched(source)
	if n := h.agent.Count(fakeagent.StepCheckpoint); n > 1 {
		h.t.Errorf("the source was checkpointed %d times, want at most once", n)
	}
}

func condition(m *lpmv1.PodMigration, t string) *metav1.Condition {
	return meta.FindStatusCondition(m.Status.Conditions, t)
}
