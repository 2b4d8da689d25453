package manifests

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func toTyped[T any](t *testing.T, obj *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s: %v", Key(obj), err)
	}
	return out
}

func TestChartDefaultValues(t *testing.T) {
	objects := renderChart(t, tools(t), "lpm-system")

	for _, o := range objects {
		if o.GetKind() == "Namespace" {
			t.Errorf("the chart renders Namespace %s without namespace.create", o.GetName())
		}
	}
	deploy := toTyped[appsv1.Deployment](t, find(t, objects, "Deployment", "lpm-controller"))
	if got := deploy.Spec.Template.Spec.Containers[0].Image; got != "localhost/lpm/controller:dev" {
		t.Errorf("controller image = %s, want localhost/lpm/controller:dev", got)
	}
}

func TestChartValues(t *testing.T) {
	objects := renderChart(t, tools(t), "lpm-ops",
		"controller.image.repository=registry.example/lpm/controller",
		"controller.image.tag=v1.2.3",
		"controller.image.pullPolicy=Always",
		"agent.image.repository=registry.example/lpm/agent",
		"agent.image.tag=v1.2.3",
		"controller.maxMigrations=9",
		"controller.maxOutboundPerNode=3",
		"controller.maxConcurrentReconciles=8",
		"controller.replicas=2",
		"controller.logVerbosity=4",
		"agent.logVerbosity=2",
		"timeouts.checkpoint=5m",
		"timeouts.transfer=1h",
		"timeouts.restore=7m",
		"timeouts.overall=2h",
		"controller.nodeSelector.node-role\\.kubernetes\\.io/control-plane=",
		"controller.tolerations[0].key=node-role.kubernetes.io/control-plane",
		"controller.tolerations[0].effect=NoSchedule",
		"agent.nodeSelector.lpm\\.dev/agent=enabled",
		"agent.tolerations=null",
		"controller.resources.limits.memory=1Gi",
		"agent.resources.requests.cpu=200m",
		"agent.metrics.enabled=false",
		"imagePullSecrets[0].name=registry",
	)

	deploy := toTyped[appsv1.Deployment](t, find(t, objects, "Deployment", "lpm-controller"))
	if deploy.Namespace != "lpm-ops" {
		t.Errorf("Deployment namespace = %s, want the release namespace lpm-ops", deploy.Namespace)
	}
	pod := deploy.Spec.Template.Spec
	manager := pod.Containers[0]
	if manager.Image != "registry.example/lpm/controller:v1.2.3" || manager.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("controller image = %s (%s), want registry.example/lpm/controller:v1.2.3 (Always)",
			manager.Image, manager.ImagePullPolicy)
	}
	if *deploy.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", *deploy.Spec.Replicas)
	}
	for _, arg := range []string{"--leader-elect", "--max-migrations=9", "--max-outbound-per-node=3",
		"--max-concurrent-reconciles=8", "--default-checkpoint-timeout=5m", "--default-transfer-timeout=1h",
		"--default-restore-timeout=7m", "--default-overall-timeout=2h", "--zap-log-level=4"} {
		if !slices.Contains(manager.Args, arg) {
			t.Errorf("controller args %v lack %s", manager.Args, arg)
		}
	}
	if diff := cmp.Diff(map[string]string{"node-role.kubernetes.io/control-plane": ""}, pod.NodeSelector); diff != "" {
		t.Errorf("controller nodeSelector mismatch (-want +got):\n%s", diff)
	}
	wantTolerations := []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane",
		Effect: corev1.TaintEffectNoSchedule}}
	if diff := cmp.Diff(wantTolerations, pod.Tolerations); diff != "" {
		t.Errorf("controller tolerations mismatch (-want +got):\n%s", diff)
	}
	if got := manager.Resources.Limits[corev1.ResourceMemory]; !got.Equal(resource.MustParse("1Gi")) {
		t.Errorf("controller memory limit = %s, want 1Gi", got.String())
	}
	if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "registry"}}, pod.ImagePullSecrets); diff != "" {
		t.Errorf("controller imagePullSecrets mismatch (-want +got):\n%s", diff)
	}

	ds := toTyped[appsv1.DaemonSet](t, find(t, objects, "DaemonSet", "lpm-agent"))
	agentPod := ds.Spec.Template.Spec
	agent := agentPod.Containers[0]
	if agent.Image != "registry.example/lpm/agent:v1.2.3" {
		t.Errorf("agent image = %s, want registry.example/lpm/agent:v1.2.3", agent.Image)
	}
	for _, arg := range []string{"--default-checkpoint-timeout=5m", "--default-transfer-timeout=1h", "-v=2"} {
		if !slices.Contains(agent.Args, arg) {
			t.Errorf("agent args %v lack %s", agent.Args, arg)
		}
	}
	for _, arg := range agent.Args {
		if arg == "--metrics-bind-address=:10353" {
			t.Errorf("agent serves metrics with agent.metrics.enabled=false")
		}
	}
	if diff := cmp.Diff(map[string]string{"lpm.dev/agent": "enabled"}, agentPod.NodeSelector); diff != "" {
		t.Errorf("agent nodeSelector mismatch (-want +got):\n%s", diff)
	}
	if len(agentPod.Tolerations) != 0 {
		t.Errorf("agent tolerations = %v, want none", agentPod.Tolerations)
	}
	if got := agent.Resources.Requests[corev1.ResourceCPU]; !got.Equal(resource.MustParse("200m")) {
		t.Errorf("agent CPU request = %s, want 200m", got.String())
	}
	for _, o := range objects {
		if o.GetKind() == "Service" && o.GetName() == "lpm-agent-metrics" {
			t.Errorf("the chart renders Service lpm-agent-metrics with agent.metrics.enabled=false")
		}
	}

	for _, name := range []string{"lpm-controller", "lpm-agent", "lpm-controller-metrics-auth"} {
		binding := find(t, objects, "ClusterRoleBinding", name)
		subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
		ns, _, _ := unstructured.NestedString(subjects[0].(map[string]any), "namespace")
		if ns != "lpm-ops" {
			t.Errorf("ClusterRoleBinding %s binds a service account in %q, want lpm-ops", name, ns)
		}
	}
}

func TestChartWithoutLeaderElection(t *testing.T) {
	objects := renderChart(t, tools(t), "lpm-system", "controller.leaderElection=false")

	deploy := toTyped[appsv1.Deployment](t, find(t, objects, "Deployment", "lpm-controller"))
	if slices.Contains(deploy.Spec.Template.Spec.Containers[0].Args, "--leader-elect") {
		t.Errorf("controller args contain --leader-elect with controller.leaderElection=false")
	}
}

func TestChartMetricsCertificates(t *testing.T) {
	objects := renderChart(t, tools(t), "lpm-system",
		"controller.metrics.tlsSecretName=controller-metrics-tls", "agent.metrics.tlsSecretName=agent-metrics-tls")

	deploy := toTyped[appsv1.Deployment](t, find(t, objects, "Deployment", "lpm-controller"))
	ds := toTyped[appsv1.DaemonSet](t, find(t, objects, "DaemonSet", "lpm-agent"))
	for _, tc := range []struct {
		name   string
		pod    corev1.PodSpec
		secret string
	}{
		{"controller", deploy.Spec.Template.Spec, "controller-metrics-tls"},
		{"agent", ds.Spec.Template.Spec, "agent-metrics-tls"},
	} {
		container := tc.pod.Containers[0]
		if !slices.Contains(container.Args, "--metrics-cert-dir=/etc/lpm/metrics-tls") {
			t.Errorf("%s args %v lack --metrics-cert-dir=/etc/lpm/metrics-tls", tc.name, container.Args)
		}
		mounted := slices.ContainsFunc(container.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "metrics-tls" && m.MountPath == "/etc/lpm/metrics-tls" && m.ReadOnly
		})
		if !mounted {
			t.Errorf("%s mounts %v, want metrics-tls read-only at /etc/lpm/metrics-tls", tc.name, container.VolumeMounts)
		}
		hasSecret := slices.ContainsFunc(tc.pod.Volumes, func(v corev1.Volume) bool {
			return v.Name == "metrics-tls" && v.Secret != nil && v.Secret.SecretName == tc.secret
		})
		if !hasSecret {
			t.Errorf("%s volumes %v lack Secret %s", tc.name, tc.pod.Volumes, tc.secret)
		}
	}
}
