package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Scheme holds the Kubernetes and lpm types.
func Scheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// StartAPIServer starts a real etcd and kube-apiserver (envtest) with the
// lpm CRDs, and stops them when the test ends. The binaries come from
// KUBEBUILDER_ASSETS or, when it is unset, from hack/components.sh; the
// test is skipped when neither has them.
func StartAPIServer(t testing.TB) *rest.Config {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = componentAssets(t)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(t), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("failed to start etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("failed to stop the API server: %v", err)
		}
	})
	return cfg
}

func componentAssets(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	for _, c := range []string{"etcd", "kube-apiserver"} {
		out, err := exec.Command(filepath.Join(root, "hack", "components.sh"), "path", c).Output()
		if err != nil {
			t.Skipf("skipping: hack/components.sh path %s failed: %v", c, err)
		}
		bin := filepath.Join(strings.TrimSpace(string(out)), c)
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipping: %s is missing and KUBEBUILDER_ASSETS is unset; run hack/components.sh test-assets",
				bin)
		}
		if err := os.Symlink(bin, filepath.Join(dir, c)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}
