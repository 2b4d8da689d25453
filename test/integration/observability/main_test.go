// Package observability_test runs the controller as an install runs it:
// as its service account with the RBAC of config/default, with leader
// election and the authenticated metrics endpoint. It runs against a real
// etcd and kube-apiserver started by envtest, with the fake agent in place
// of the node agents and kubelets. It checks what an operator gets:
// metrics, events on the PodMigration and on the pods, conditions that
// `kubectl wait` can use, and structured logs.
package observability_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/manifests"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = "../../.."

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	// admin reads and writes the API server directly, without a cache.
	admin client.Client
	// kubeconfig is a kubeconfig file of the test's administrator, for
	// kubectl.
	kubeconfig string
	// logs collects every log line of the test's controllers as JSON.
	logs = &logBuffer{}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run these tests with hack/test.sh, "+
			"which points it at the etcd and kube-apiserver that hack/components.sh builds")
		return 1
	}
	// The production encoder (JSON), at V(1), as --zap-log-level=1 sets it.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.Level(zapcore.Level(-1))))

	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to start etcd and kube-apiserver: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "failed to stop the test API server: %v\n", err)
		}
	}()
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}

	dir, err := os.MkdirTemp("", "lpm-observability-")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		panic(err)
	}
	return m.Run()
}

// component returns the path of a binary that hack/components.sh built.
func component(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "components.sh"), "path", name).Output()
	if err != nil {
		t.Fatalf("hack/components.sh path %s failed: %v", name, err)
	}
	bin := filepath.Join(strings.TrimSpace(string(out)), name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not built: run hack/components.sh %s: %v", name, name, err)
	}
	return bin
}

// tools returns the kustomize and helm that hack/test.sh builds.
func tools(t *testing.T) manifests.Tools {
	return manifests.Tools{KustomizePath: component(t, "kustomize"), HelmPath: component(t, "helm")}
}

// logBuffer is an io.Writer that keeps what the controllers log, for
// several goroutines at once.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines written so far.
func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}
