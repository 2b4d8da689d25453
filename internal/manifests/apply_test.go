package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestManifestsApply applies what config/default and the chart render to a
// real kube-apiserver, which validates every object against its schema and
// compiles the admission policy's CEL expressions.
func TestManifestsApply(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with hack/test.sh, which points it at the " +
			"etcd and kube-apiserver that hack/components.sh builds")
	}
	tl := tools(t)
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("failed to start etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("failed to stop the test API server: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	apply(t, c, renderConfig(t, tl))

	// The chart in another namespace with values that change most objects.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lpm-ops"}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	apply(t, c, renderChart(t, tl, "lpm-ops", "controller.replicas=2", "controller.logVerbosity=3",
		"agent.metrics.enabled=false", "controller.tolerations[0].operator=Exists",
		"agent.extraVolumes[0].name=kubelet-pki", "agent.extraVolumes[0].hostPath.path=/var/lib/kubelet/pki",
		"agent.extraVolumeMounts[0].name=kubelet-pki", "agent.extraVolumeMounts[0].mountPath=/var/lib/kubelet/pki",
		"agent.extraVolumeMounts[0].readOnly=true", "agent.kubeletCAFile=/var/lib/kubelet/pki/kubelet.crt"))
}

// apply creates or updates objects with server-side apply, in order.
func apply(t *testing.T, c client.Client, objects []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objects {
		err := c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(obj),
			client.FieldOwner("lpm-manifests-test"), client.ForceOwnership)
		if err != nil {
			t.Errorf("failed to apply %s: %v", Key(obj), err)
		}
	}
}

// TestHelmInstall installs, upgrades and uninstalls the chart with helm on
// a real kube-apiserver, the way the README installs it.
func TestHelmInstall(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with hack/test.sh")
	}
	tl := tools(t)
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("failed to start etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("failed to stop the test API server: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	helm := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), tl.HelmPath, append(args, "--kubeconfig", kubeconfig)...)
		// Helm keeps its configuration and cache under HOME.
		cmd.Env = append(os.Environ(), "HOME="+home)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %v failed: %v\n%s", args, err, out)
		}
	}
	chart := filepath.Join(repoRoot, "charts", "lpm")

	helm("install", "lpm", chart, "--namespace", "lpm-system", "--create-namespace")
	deploy := &appsv1.Deployment{}
	key := client.ObjectKey{Namespace: "lpm-system", Name: "lpm-controller"}
	if err := c.Get(t.Context(), key, deploy); err != nil {
		t.Fatalf("helm install created no Deployment lpm-controller: %v", err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := c.Get(t.Context(), client.ObjectKey{Name: "podmigrations.lpm.dev"}, crd); err != nil {
		t.Fatalf("helm install created no CRD podmigrations.lpm.dev: %v", err)
	}

	helm("upgrade", "lpm", chart, "--namespace", "lpm-system", "--set", "controller.maxMigrations=9")
	if err := c.Get(t.Context(), key, deploy); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deploy.Spec.Template.Spec.Containers[0].Args, "--max-migrations=9") {
		t.Errorf("after helm upgrade the controller's args are %v, want --max-migrations=9",
			deploy.Spec.Template.Spec.Containers[0].Args)
	}

	helm("uninstall", "lpm", "--namespace", "lpm-system")
	err = c.Get(t.Context(), key, deploy)
	if !apierrors.IsNotFound(err) {
		t.Errorf("after helm uninstall, getting Deployment lpm-controller = %v, want NotFound", err)
	}
}
