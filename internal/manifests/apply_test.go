package manifests

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
