//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lpm-dev/lpm/lab/workload"
)

// TestLabKubeletCheckpointWithToken checkpoints a container the way lpm's
// agent does: directly at the kubelet, with a service-account token that
// RBAC allows nodes/checkpoint. The same token without that permission is
// rejected by the kubelet.
func TestLabKubeletCheckpointWithToken(t *testing.T) {
	ns := newNamespace(t)
	ctx := withContext(t)
	pod := createPod(t, workload.CounterPod(ns, "ckpt", nodeA))
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "checkpointer"}}
	if err := clients.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	tr, err := clients.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://%s:10250/checkpoint/%s/%s/counter", theLab.Instance().NodeIP(0), ns, pod.Name)
	checkpoint := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		resp, err := kubeletClient(t, "").Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if status, body := checkpoint(); status != http.StatusForbidden {
		t.Errorf("checkpoint without RBAC: status %d (%s), want 403", status, body)
	}

	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-checkpoint"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/checkpoint"},
			Verbs: []string{"create"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-checkpoint"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa.Name}},
	}
	if err := clients.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = clients.Client.Delete(withContext(t), role) })
	if err := clients.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = clients.Client.Delete(withContext(t), binding) })

	// The kubelet caches authorization decisions for a few seconds.
	var status int
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if status, body = checkpoint(); status == http.StatusOK {
			break
		}
	}
	if status != http.StatusOK {
		t.Fatalf("checkpoint with nodes/checkpoint: status %d (%s), want 200", status, body)
	}
	var result struct {
		Items []string `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &result); err != nil || len(result.Items) != 1 {
		t.Fatalf("invalid checkpoint answer %q: %v", body, err)
	}
	archive := filepath.Join(theLab.Instance().NodeDir(0), "kubelet",
		strings.TrimPrefix(result.Items[0], "/var/lib/kubelet/"))
	info, err := os.Stat(archive)
	if err != nil {
		t.Fatalf("archive %s not on the node: %v", result.Items[0], err)
	}
	if info.Size() == 0 {
		t.Errorf("archive %s is empty", archive)
	}
	_ = os.Remove(archive)

	// The checkpoint leaves the container running.
	requireCounting(t, pod.Status.PodIP)
}
