package manifests

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyCatchesDrift breaks a copy of config/ or of the chart in one
// place each and runs hack/verify-manifests, the check of make verify, on
// it: each break must fail the check and name the object that differs.
func TestVerifyCatchesDrift(t *testing.T) {
	tl := tools(t)
	verify := filepath.Join(t.TempDir(), "verify-manifests")
	build := exec.Command("go", "build", "-o", verify, "./hack/verify-manifests")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("failed to build hack/verify-manifests: %v\n%s", err, out)
	}

	testCases := []struct {
		name string
		// file is relative to the copy's root; old is replaced by new.
		file, old, new string
		// wantObject is named in the output; empty means the check passes.
		wantObject string
	}{
		{name: "unchanged"},
		{
			name: "chart default", file: "charts/lpm/values.yaml",
			old: "maxMigrations: 5", new: "maxMigrations: 6",
			wantObject: "apps/v1/Deployment lpm-system/lpm-controller differs",
		},
		{
			name: "config argument", file: "config/agent/daemonset.yaml",
			old: "--default-transfer-timeout=10m", new: "--default-transfer-timeout=20m",
			wantObject: "apps/v1/DaemonSet lpm-system/lpm-agent differs",
		},
		{
			name: "chart template missing", file: "charts/lpm/templates/admission-policy.yaml",
			wantObject: "ValidatingAdmissionPolicy lpm-agent-own-node: in config/ but not in the chart",
		},
		{
			name: "config label", file: "config/agent/service_account.yaml",
			old: "  labels:\n", new: "  labels:\n    team: nodes\n",
			wantObject: "v1/ServiceAccount lpm-system/lpm-agent differs",
		},
		{
			name: "generated role not copied", file: "config/rbac/controller/role.yaml",
			old: "  - nodes\n", new: "  - nodes\n  - nodes/proxy\n",
			wantObject: "rbac.authorization.k8s.io/v1/ClusterRole lpm-controller differs",
		},
		{
			name: "CRD not copied", file: "config/crd/bases/lpm.dev_nodeagents.yaml",
			old: "  scope: Cluster\n", new: "  scope: Namespaced\n",
			wantObject: "CustomResourceDefinition nodeagents.lpm.dev differs",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, dir := range []string{"config", "charts"} {
				copyTree(t, filepath.Join(repoRoot, dir), filepath.Join(root, dir))
			}
			if tc.file != "" {
				breakFile(t, filepath.Join(root, tc.file), tc.old, tc.new)
			}

			cmd := exec.Command(verify, "-kustomize", tl.KustomizePath, "-helm", tl.HelmPath,
				"-config", filepath.Join(root, "config", "default"), "-chart", filepath.Join(root, "charts", "lpm"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()

			if tc.wantObject == "" {
				if err != nil {
					t.Fatalf("verify-manifests failed on an unchanged copy: %v\n%s", err, stderr.String())
				}
				return
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("verify-manifests = %v, want exit status 1\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantObject) {
				t.Errorf("output does not contain %q:\n%s", tc.wantObject, stderr.String())
			}
		})
	}
}

// breakFile replaces old with new in path, or removes path when old is
// empty.
func breakFile(t *testing.T, path, old, new string) {
	t.Helper()
	if old == "" {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not contain %q: update the test", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
