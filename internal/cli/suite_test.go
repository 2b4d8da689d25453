package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The command tests run kubectl-migrate against a real kube-apiserver and
// etcd started by envtest, with the CRDs of config/crd/bases. No lpm
// controller runs there: each test plays its part with a fakeController.
var (
	// testKubeconfig is the path of a kubeconfig for the test API server.
	testKubeconfig string
	// testClient is a client of the test API server, for the tests' own
	// reads and writes.
	testClient client.Client
	// skipReason explains why the command tests cannot run, when they
	// cannot.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(runTestMain(m))
}

func runTestMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		skipReason = "KUBEBUILDER_ASSETS is not set: run hack/test.sh, which builds etcd and kube-apiserver"
		return m.Run()
	}

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to start the test API server: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "failed to stop the test API server: %v\n", err)
		}
	}()

	user, err := env.AddUser(envtest.User{Name: "lpm-cli-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to add the test user: %v\n", err)
		return 1
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to write the test kubeconfig: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "lpm-cli-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create a temporary directory: %v\n", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	testKubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(testKubeconfig, kubeconfig, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "failed to write the test kubeconfig: %v\n", err)
		return 1
	}

	testClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create the test client: %v\n", err)
		return 1
	}
	return m.Run()
}

// requireAPIServer skips the test when no test API server runs, and fails it
// instead in CI, where one must run.
func requireAPIServer(t *testing.T) {
	t.Helper()
	if testClient != nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(skipReason)
	}
	t.Skip(skipReason)
}

// testContext returns a context that ends with the test or after a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testDeps returns the dependencies of a command under test: plain output
// and a short grace after a migration's timeout.
func testDeps() Deps {
	deps := DefaultDeps()
	deps.IsTerminal = func(io.Writer) bool { return false }
	deps.WaitGrace = time.Second
	deps.RefreshInterval = 50 * time.Millisecond
	return deps
}

// cliResult is what one run of kubectl-migrate returned and wrote.
type cliResult struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs kubectl-migrate with args against the test API server.
func runCLI(ctx context.Context, t *testing.T, deps Deps, args ...string) cliResult {
	t.Helper()
	streams, _, stdout, stderr := genericiooptions.NewTestIOStreams()
	full := append([]string{"--kubeconfig", testKubeconfig, "--cache-dir", t.TempDir()}, args...)
	code := Run(ctx, streams, deps, full)
	t.Logf("kubectl migrate %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// startCLI runs kubectl-migrate in the background and returns the channel
// that receives its result.
func startCLI(ctx context.Context, t *testing.T, deps Deps, args ...string) <-chan cliResult {
	t.Helper()
	done := make(chan cliResult, 1)
	go func() { done <- runCLI(ctx, t, deps, args...) }()
	return done
}

// awaitResult waits for a command started with startCLI.
func awaitResult(t *testing.T, done <-chan cliResult) cliResult {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-time.After(45 * time.Second):
		t.Fatal("kubectl migrate did not exit within 45s")
		return cliResult{}
	}
}

// newNamespace creates a namespace of its own for a test.
func newNamespace(ctx context.Context, t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lpm-cli-" + rand.String(6)}}
	if err := testClient.Create(ctx, ns); err != nil {
		t.Fatalf("failed to create namespace: %v", err)
	}
	return ns.Name
}

// uniqueNodeName returns a node name that no other test uses.
func uniqueNodeName(prefix string) string {
	return prefix + "-" + rand.String(6)
}

// podOption changes a test pod before it is created.
type podOption func(*corev1.Pod)

func hostNetwork(pod *corev1.Pod) { pod.Spec.HostNetwork = true }

// createRunningPod creates a pod bound to node with one container per name,
// and marks it Running and Ready, as a kubelet would.
func createRunningPod(ctx context.Context, t *testing.T, ns, name, node string, containers []string,
	opts ...podOption) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: node},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "registry.example.com/" + c})
	}
	for _, opt := range opts {
		opt(pod)
	}
	if err := testClient.Create(ctx, pod); err != nil {
		t.Fatalf("failed to create pod %s: %v", name, err)
	}

	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
		LastTransitionTime: metav1.Now()}}
	if err := testClient.Status().Update(ctx, pod); err != nil {
		t.Fatalf("failed to set the status of pod %s: %v", name, err)
	}
	return pod
}

// createNode creates a Node. With ready set, the node also reports Ready
// and allocatable resources, as a kubelet would.
func createNode(ctx context.Context, t *testing.T, name string, ready bool) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := testClient.Create(ctx, node); err != nil {
		t.Fatalf("failed to create node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = testClient.Delete(context.Background(), node) })
	if !ready {
		return
	}

	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	node.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU:    mustParseQuantity(t, "4"),
		corev1.ResourceMemory: mustParseQuantity(t, "8Gi"),
		corev1.ResourcePods:   mustParseQuantity(t, "110"),
	}
	node.Status.Capacity = node.Status.Allocatable
	if err := testClient.Status().Update(ctx, node); err != nil {
		t.Fatalf("failed to set the status of node %s: %v", name, err)
	}

	// The API server's TaintNodesByCondition admission taints a new node
	// not-ready. The node lifecycle controller, which envtest lacks,
	// removes the taint once the node reports Ready.
	node.Spec.Taints = nil
	if err := testClient.Update(ctx, node); err != nil {
		t.Fatalf("failed to remove the taints of node %s: %v", name, err)
	}
}

func mustParseQuantity(t *testing.T, s string) resource.Quantity {
	t.Helper()
	q, err := resource.ParseQuantity(s)
	if err != nil {
		t.Fatalf("failed to parse quantity %q: %v", s, err)
	}
	return q
}
