// Package scale measures lpm's controller under many migrations at once:
// the real lpm-controller binary runs against a real etcd and
// kube-apiserver (started by envtest), and a fake agent (test/fakeagent)
// plays every node's agent and kubelet, answering each step at once. It
// records when each migration's status changed, by a watch, and derives
// how long the controller took for each of its steps, whether the
// concurrency caps held throughout, and the controller's CPU time and
// peak resident memory.
package scale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/test/bench/results"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// Namespace holds the benchmark's pods and migrations.
const Namespace = "lpm-scale"

// Options configure the benchmark.
type Options struct {
	// RepoDir is the repository root, for config/crd.
	RepoDir string
	// Controller is the lpm-controller binary, from BuildController.
	Controller  string
	Migrations  int
	Nodes       int
	Concurrency int
	// Timeout bounds the wait for every migration to finish.
	Timeout time.Duration
	Log     func(format string, args ...any)
}

// Run runs the benchmark. KUBEBUILDER_ASSETS must name a directory with
// etcd and kube-apiserver.
func Run(ctx context.Context, opts Options) *results.Scale {
	out := &results.Scale{Migrations: opts.Migrations, Nodes: opts.Nodes, Concurrency: opts.Concurrency,
		MaxMigrations: controller.DefaultMaxMigrations, MaxOutbound: controller.DefaultMaxOutboundPerNode,
		Steps: map[string][]float64{}, Phases: map[string][]float64{}}
	if err := run(ctx, opts, out); err != nil {
		out.Error = err.Error()
	}
	return out
}

func run(ctx context.Context, opts Options, out *results.Scale) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set: point it at a directory with etcd and kube-apiserver, " +
			"as hack/test.sh does")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		return err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(opts.RepoDir, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("failed to start etcd and kube-apiserver: %w", err)
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 500, 1000
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nodes, err := createWorld(ctx, admin, opts)
	if err != nil {
		return err
	}
	agent, err := startFakeAgent(ctx, cfg, scheme, nodes)
	if err != nil {
		return err
	}
	go keepHeartbeats(ctx, agent)
	if err := createPods(ctx, admin, nodes, opts.Migrations); err != nil {
		return err
	}

	kubeconfig, err := writeKubeconfig(env, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(kubeconfig) }()
	ctrlProc, err := startController(ctx, opts, kubeconfig)
	if err != nil {
		return err
	}
	defer func() {
		_ = ctrlProc.Process.Kill()
		_ = ctrlProc.Wait()
	}()

	rec, err := startRecorder(ctx, cfg, scheme)
	if err != nil {
		return err
	}
	sampler := startSampler(ctx, ctrlProc.Process.Pid)
	start := time.Now()
	if err := createMigrations(ctx, admin, opts.Migrations); err != nil {
		return err
	}
	opts.logf("created %d PodMigrations in %.2fs", opts.Migrations, time.Since(start).Seconds())
	succeeded, failed, err := waitDone(ctx, admin, opts)
	out.WallSeconds = time.Since(start).Seconds()
	out.Succeeded, out.Failed = succeeded, failed
	samples := sampler.stop()
	out.RSS, out.CPU = samples.rss, samples.cpu
	out.PeakRSSMiB, out.CPUSeconds = samples.peakRSSMiB, samples.cpuSeconds
	if err != nil {
		return err
	}
	rec.stop()
	analyze(rec.events(), out, start)
	opts.logf("controller: %d succeeded, %d failed in %.1fs; CPU %.1fs, peak RSS %.1f MiB", succeeded, failed,
		out.WallSeconds, out.CPUSeconds, out.PeakRSSMiB)
	return nil
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// createWorld creates the namespace and nodes that report Ready with room
// for every pod. Each node allows all the benchmark's pods at once. The
// controller picks targets from the pods in its cache, so migrations that
// pick at the same time see the same free room and may all pick one node.
func createWorld(ctx context.Context, c client.Client, opts Options) ([]string, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return nil, err
	}
	maxPods := resource.NewQuantity(int64(max(110, 2*opts.Migrations)), resource.DecimalSI)
	var nodes []string
	for i := range opts.Nodes {
		name := fmt.Sprintf("scale-node-%03d", i)
		nodes = append(nodes, name)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name}}}
		if err := c.Create(ctx, node); err != nil {
			return nil, err
		}
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   *maxPods,
		}
		now := metav1.Now()
		node.Status = corev1.NodeStatus{Allocatable: capacity, Capacity: capacity,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}}
		if err := c.Status().Update(ctx, node); err != nil {
			return nil, err
		}
		// The API server taints a new node not-ready; the node lifecycle
		// controller, which does not run here, would remove the taint.
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return nil, err
		}
		node.Spec.Taints = nil
		if err := c.Update(ctx, node); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// startFakeAgent runs the fake agent of every node in a manager of its
// own, with the real clock.
func startFakeAgent(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, nodes []string) (
	*fakeagent.Agent, error) {
	mgr, err := ctrl.NewManager(rest.CopyConfig(cfg), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{Namespace: {}},
			DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return nil, err
	}
	agent := fakeagent.New(mgr.GetClient(), mgr.GetAPIReader(), clock.RealClock{}, nodes...)
	if err := agent.SetupWithManager(mgr, "scale"); err != nil {
		return nil, err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "fake agent stopped: %v\n", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("fake agent's cache did not sync")
	}
	return agent, agent.PublishNodeAgents(ctx, nil)
}

// keepHeartbeats renews the NodeAgents' heartbeats, which the controller
// counts stale after two minutes.
func keepHeartbeats(ctx context.Context, agent *fakeagent.Agent) {
	ticker := time.NewTicker(30 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := agent.PublishNodeAgents(ctx, nil); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "failed to renew the fake NodeAgents: %v\n", err)
			}
		}
	}
}

// createPods creates n pods spread over the nodes and waits until the fake
// kubelet reports each Running.
func createPods(ctx context.Context, c client.Client, nodes []string, n int) error {
	if err := parallel(n, 32, func(i int) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: fmt.Sprintf("app-%03d", i),
				Labels: map[string]string{"app": "scale"}},
			Spec: corev1.PodSpec{
				NodeName: nodes[i%len(nodes)],
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("10m"),
						corev1.ResourceMemory: resource.MustParse("16Mi"),
					}}}},
			},
		}
		return c.Create(ctx, pod)
	}); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(Namespace)); err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d pods Running after 5m", running, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createMigrations creates n PodMigrations at once, one per pod, without
// a target node, so the controller picks one.
func createMigrations(ctx context.Context, c client.Client, n int) error {
	return parallel(n, 64, func(i int) error {
		pm := &lpmv1.PodMigration{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: fmt.Sprintf("move-%03d", i)},
			Spec: lpmv1.PodMigrationSpec{PodName: fmt.Sprintf("app-%03d", i),
				Settle: &metav1.Duration{Duration: 0}},
		}
		return c.Create(ctx, pm)
	})
}

// waitDone waits until every migration has succeeded or failed.
func waitDone(ctx context.Context, c client.Client, opts Options) (int, int, error) {
	deadline := time.Now().Add(opts.Timeout)
	lastLog := time.Now()
	for {
		var list lpmv1.PodMigrationList
		if err := c.List(ctx, &list, client.InNamespace(Namespace)); err != nil {
			return 0, 0, err
		}
		succeeded, failed := 0, 0
		reasons := map[string]int{}
		for _, m := range list.Items {
			switch m.Status.Phase {
			case lpmv1.PhaseSucceeded:
				succeeded++
			case lpmv1.PhaseFailed:
				failed++
				if c := meta.FindStatusCondition(m.Status.Conditions, lpmv1.ConditionSucceeded); c != nil {
					reasons[c.Reason]++
				}
			}
		}
		if succeeded+failed == opts.Migrations {
			if failed > 0 {
				opts.logf("controller: failure reasons %v", reasons)
			}
			return succeeded, failed, nil
		}
		if time.Since(lastLog) > 15*time.Second {
			opts.logf("controller: %d succeeded, %d failed of %d", succeeded, failed, opts.Migrations)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return succeeded, failed, fmt.Errorf("%d succeeded and %d failed of %d after %s", succeeded, failed,
				opts.Migrations, opts.Timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// writeKubeconfig writes a cluster-admin kubeconfig of the test API server
// for the controller's process.
func writeKubeconfig(env *envtest.Environment, cfg *rest.Config) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "lpm-scale-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return "", err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "lpm-scale-kubeconfig-")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// BuildController builds lpm-controller from repoDir into dir and returns
// its path. The benchmark builds it before anything else runs, so the
// measured binary is the tree as it was when the run started.
func BuildController(ctx context.Context, repoDir, dir string) (string, error) {
	bin := filepath.Join(dir, "lpm-controller")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/lpm-controller")
	build.Dir = repoDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build lpm-controller: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// startController starts lpm-controller with its default caps, logging
// its errors to a file in the temporary directory.
func startController(ctx context.Context, opts Options, kubeconfig string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, opts.Controller, "--kubeconfig="+kubeconfig, "--metrics-bind-address=0",
		"--health-probe-bind-address=0", "--max-concurrent-reconciles="+strconv.Itoa(opts.Concurrency),
		"--zap-log-level=error")
	logFile, err := os.Create(filepath.Join(os.TempDir(), "lpm-scale-controller.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("failed to start lpm-controller: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = logFile.Close()
	}()
	return cmd, nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the first
// error.
func parallel(n, workers int, f func(int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil && !apierrors.IsAlreadyExists(err) {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
