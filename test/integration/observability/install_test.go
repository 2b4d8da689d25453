package observability_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/internal/manifests"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

const (
	installNamespace = "lpm-system"
	controllerUser   = "system:serviceaccount:lpm-system:lpm-controller"
	// waitTimeout bounds every wait of the test.
	waitTimeout = 30 * time.Second
)

// cluster is the test's installed lpm: the controller running as its
// service account, the fake agent of two nodes, and the story's namespace.
type cluster struct {
	t           *testing.T
	ns          string
	nodes       []string
	agent       *fakeagent.Agent
	metricsAddr string
}

// install applies the objects of config/default except the CRDs, which
// envtest installed, and the workloads, which no kubelet would run. It
// then starts the controller as lpm-controller with the manager options of
// lpm-controller, and the fake agent.
func install(t *testing.T) *cluster {
	t.Helper()
	objects, err := tools(t).Build(t.Context(), repoRoot+"/config/default")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objects {
		switch obj.GetKind() {
		case "CustomResourceDefinition", "Deployment", "DaemonSet":
			continue
		}
		err := admin.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(obj),
			client.FieldOwner("lpm-observability-test"), client.ForceOwnership)
		if err != nil {
			t.Fatalf("failed to apply %s: %v", manifests.Key(obj), err)
		}
	}

	c := &cluster{t: t, ns: "story", nodes: []string{"node-a", "node-b"}}
	must(t, admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}))
	for _, n := range c.nodes {
		createNode(t, n)
	}
	c.startAgent()
	c.startController()
	return c
}

func (c *cluster) startController() {
	t := c.t
	config := rest.CopyConfig(cfg)
	config.Impersonate.UserName = controllerUser
	c.metricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	opts := controller.ManagerOptions(scheme, controller.ManagerConfig{
		MetricsAddr: c.metricsAddr, ProbeAddr: "0", LeaderElection: true,
		// In a pod the manager reads its service account's namespace.
		LeaderElectionNamespace: installNamespace,
	})
	mgr, err := ctrl.NewManager(config, opts)
	must(t, err)
	r := &controller.PodMigrationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Clock:     clock.RealClock{},
		Recorder:  mgr.GetEventRecorder("lpm-controller"),
		Slots:     controller.NewSlots(controller.DefaultMaxMigrations, controller.DefaultMaxOutboundPerNode),
	}
	must(t, r.SetupWithManager(t.Context(), mgr, controller.Options{MaxConcurrentReconciles: 2}))
	runManager(t, mgr)
}

func (c *cluster) startAgent() {
	t := c.t
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{c.ns: {}}},
	})
	must(t, err)
	c.agent = fakeagent.New(mgr.GetClient(), mgr.GetAPIReader(), clock.RealClock{}, c.nodes...)
	must(t, c.agent.SetupWithManager(mgr, "observability"))
	runManager(t, mgr)
	must(t, c.agent.PublishNodeAgents(t.Context(), nil))
}

// runManager starts mgr until the test ends.
func runManager(t *testing.T, mgr ctrl.Manager) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func createNode(t *testing.T, name string) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"kubernetes.io/hostname": name}}}
	must(t, admin.Create(t.Context(), node))
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"),
		corev1.ResourcePods:   resource.MustParse("20"),
	}
	node.Status = corev1.NodeStatus{
		Allocatable: capacity,
		Capacity:    capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	must(t, admin.Status().Update(t.Context(), node))
	// The API server taints a new node not-ready, and no node lifecycle
	// controller runs here to remove the taint.
	must(t, admin.Get(t.Context(), client.ObjectKeyFromObject(node), node))
	node.Spec.Taints = nil
	must(t, admin.Update(t.Context(), node))
}

// runningPod creates a pod on node and waits until the fake kubelet runs it.
func (c *cluster) runningPod(name, node string) *corev1.Pod {
	c.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/counter:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
			}},
		}}},
	}
	must(c.t, admin.Create(c.t.Context(), pod))
	waitFor(c.t, "pod "+name+" running", func() bool {
		must(c.t, admin.Get(c.t.Context(), client.ObjectKeyFromObject(pod), pod))
		return pod.Status.Phase == corev1.PodRunning
	})
	return pod
}

// migrate creates a PodMigration of pod to target.
func (c *cluster) migrate(name, pod, target string) *lpmv1.PodMigration {
	c.t.Helper()
	m := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: lpmv1.PodMigrationSpec{PodName: pod, TargetNode: target,
			Settle: &metav1.Duration{Duration: 0}},
	}
	must(c.t, admin.Create(c.t.Context(), m))
	return m
}

// waitPhase waits until the PodMigration reaches phase.
func (c *cluster) waitPhase(name string, phase lpmv1.MigrationPhase) *lpmv1.PodMigration {
	c.t.Helper()
	m := &lpmv1.PodMigration{}
	waitFor(c.t, fmt.Sprintf("PodMigration %s in phase %s", name, phase), func() bool {
		must(c.t, admin.Get(c.t.Context(), types.NamespacedName{Namespace: c.ns, Name: name}, m))
		return m.Status.Phase == phase
	})
	return m
}

// leaseHolder returns the holder of the controller's Lease, or "".
func leaseHolder(t *testing.T) string {
	t.Helper()
	lease := &coordinationv1.Lease{}
	err := admin.Get(t.Context(), types.NamespacedName{Namespace: installNamespace,
		Name: controller.LeaderElectionID}, lease)
	if apierrors.IsNotFound(err) || lease.Spec.HolderIdentity == nil {
		return ""
	}
	must(t, err)
	return *lease.Spec.HolderIdentity
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
