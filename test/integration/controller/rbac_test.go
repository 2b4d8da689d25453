package controller_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

var installRBAC sync.Once

// controllerUser installs the controller's generated ClusterRole and its
// binding once, and returns the service account's user name.
func controllerUser(t *testing.T) string {
	t.Helper()
	installRBAC.Do(func() {
		ctx := t.Context()
		err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lpm-system"}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		dir := filepath.Join("..", "..", "..", "config", "rbac", "controller")
		role := &rbacv1.ClusterRole{}
		binding := &rbacv1.ClusterRoleBinding{}
		for file, obj := range map[string]any{"role.yaml": role, "role_binding.yaml": binding} {
			data, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(data, obj); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
		if err := admin.Create(ctx, role); err != nil {
			t.Fatal(err)
		}
		if err := admin.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
	})
	return "system:serviceaccount:lpm-system:lpm-controller"
}

// The controller needs no permission beyond its generated ClusterRole:
// no nodes/proxy, no secrets.
func TestMoveWithControllerRBAC(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *options) { o.asServiceAccount = true })
	source := h.createRunningPod("web", h.nodes[0])
	h.migrate("move", "web", h.nodes[1])

	m := h.waitPhase("move", lpmv1.PhaseSucceeded)

	assertMovedOnce(h, m, source)
	h.waitFor("events", func() bool { return eventReasons(h, m)[string(lpmv1.ReasonMigrationComplete)] })
}
