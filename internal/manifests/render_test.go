package manifests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = "../.."

// tools returns the kustomize and helm that hack/components.sh built.
// hack/test.sh builds them before the tests run.
func tools(t *testing.T) Tools {
	t.Helper()
	return Tools{KustomizePath: component(t, "kustomize"), HelmPath: component(t, "helm")}
}

func component(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "components.sh"), "path", name).Output()
	if err != nil {
		t.Fatalf("hack/components.sh path %s failed: %v", name, err)
	}
	bin := filepath.Join(strings.TrimSpace(string(out)), name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not built: run hack/components.sh %s (hack/test.sh does): %v", name, name, err)
	}
	return bin
}

func renderConfig(t *testing.T, tl Tools) []*unstructured.Unstructured {
	t.Helper()
	objects, err := tl.Build(t.Context(), filepath.Join(repoRoot, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

func renderChart(t *testing.T, tl Tools, namespace string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	objects, err := tl.Template(t.Context(), filepath.Join(repoRoot, "charts", "lpm"), namespace, set...)
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

// find returns the object of kind and name, or fails the test.
func find(t *testing.T, objects []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s among the rendered objects", kind, name)
	return nil
}

func TestChartMatchesConfig(t *testing.T) {
	tl := tools(t)

	diffs := Compare(renderConfig(t, tl), renderChart(t, tl, ReferenceNamespace, ReferenceValues...))

	for _, d := range diffs {
		t.Error(d)
	}
}

func TestChartRendersEveryKind(t *testing.T) {
	tl := tools(t)
	objects := renderChart(t, tl, ReferenceNamespace, ReferenceValues...)

	for _, want := range []struct{ kind, name string }{
		{"Namespace", "lpm-system"},
		{"CustomResourceDefinition", "podmigrations.lpm.dev"},
		{"CustomResourceDefinition", "nodeagents.lpm.dev"},
		{"Deployment", "lpm-controller"},
		{"DaemonSet", "lpm-agent"},
		{"Service", "lpm-controller-metrics"},
		{"Service", "lpm-agent-metrics"},
		{"ValidatingAdmissionPolicy", "lpm-agent-own-node"},
		{"ValidatingAdmissionPolicyBinding", "lpm-agent-own-node"},
	} {
		find(t, objects, want.kind, want.name)
	}
}

func TestHelmLint(t *testing.T) {
	tl := tools(t)
	chart := filepath.Join(repoRoot, "charts", "lpm")

	if err := tl.Lint(t.Context(), chart); err != nil {
		t.Errorf("helm lint with the default values: %v", err)
	}
	if err := tl.Lint(t.Context(), chart, ReferenceValues...); err != nil {
		t.Errorf("helm lint with %v: %v", ReferenceValues, err)
	}
}

func TestChartRejectsInvalidValues(t *testing.T) {
	tl := tools(t)
	chart := filepath.Join(repoRoot, "charts", "lpm")
	testCases := []struct {
		name string
		set  string
	}{
		{"timeout not a duration", "timeouts.checkpoint=soon"},
		{"cap below one", "controller.maxMigrations=0"},
		{"unknown value", "controller.maxMigration=3"},
		{"pull policy", "agent.image.pullPolicy=Sometimes"},
		{"relative state directory", "agent.stateDir=var/lib/lpm"},
		{"port out of range", "agent.metrics.port=70000"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tl.Lint(context.WithoutCancel(t.Context()), chart, tc.set); err == nil {
				t.Errorf("helm lint accepted --set %s", tc.set)
			}
		})
	}
}

// TestGeneratedChartFiles checks the copies that make generate writes into
// the chart, so that a stale copy fails here with a direct message.
func TestGeneratedChartFiles(t *testing.T) {
	for _, role := range []string{"controller", "agent"} {
		want, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", role, "role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, "charts", "lpm", "files", role+"-role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(got), string(want)) {
			t.Errorf("charts/lpm/files/%s-role.yaml is not a copy of config/rbac/%s/role.yaml: run make generate",
				role, role)
		}
	}

	tl := tools(t)
	want, err := tl.Build(t.Context(), filepath.Join(repoRoot, "config", "crd"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "charts", "lpm", "crds", "lpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Compare(want, got) {
		t.Errorf("charts/lpm/crds/lpm.yaml is stale, run make generate: %s", d)
	}
}
