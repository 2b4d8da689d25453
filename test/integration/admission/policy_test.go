// Package admission_test checks the ValidatingAdmissionPolicy that keeps
// each lpm agent to its own node, against a real kube-apiserver and with
// real service-account tokens bound to pods on nodes.
package admission_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const (
	agentNamespace = "lpm-system"
	nodeNameExtra  = "authentication.kubernetes.io/node-name"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
	admin  client.Client
)

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run these tests with hack/test.sh")
		os.Exit(1)
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, lpmv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to start etcd and kube-apiserver: %v\n", err)
		os.Exit(1)
	}
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "failed to stop the test API server: %v\n", err)
	}
	os.Exit(code)
}

func TestAgentOwnNodePolicy(t *testing.T) {
	ctx := t.Context()
	applyManifests(t, filepath.Join("..", "..", "..", "config", "rbac", "admission"))
	setUpAgentIdentity(t)
	for _, n := range []string{"node-a", "node-b", "node-z"} {
		must(t, admin.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}))
	}
	agentA := agentClient(t, "lpm-agent", "node-a")
	agentB := agentClient(t, "lpm-agent", "node-b")

	// The claim the policy keys on is present in a bound token of v1.37.
	review := &authenticationv1.SelfSubjectReview{}
	must(t, agentA.Create(ctx, review))
	if got := review.Status.UserInfo.Extra[nodeNameExtra]; len(got) != 1 || got[0] != "node-a" {
		t.Fatalf("user extra %s = %v, want [node-a]", nodeNameExtra, got)
	}

	// Policies are enforced once the API server has loaded them.
	waitDenied(t, func() error { return createNodeAgent(ctx, agentA, "node-b") }, func() {
		must(t, admin.Delete(ctx, &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}))
	})

	t.Run("own NodeAgent", func(t *testing.T) {
		must(t, createNodeAgent(ctx, agentA, "node-a"))
		na := &lpmv1.NodeAgent{}
		must(t, agentA.Get(ctx, client.ObjectKey{Name: "node-a"}, na))
		na.Status.AgentVersion = "v0.1.0"
		must(t, agentA.Status().Update(ctx, na))
	})
	t.Run("other node's NodeAgent", func(t *testing.T) {
		assertDenied(t, createNodeAgent(ctx, agentA, "node-b"), "may write only NodeAgent node-a, not node-b")
		must(t, createNodeAgent(ctx, admin, "node-b"))
		na := &lpmv1.NodeAgent{}
		must(t, admin.Get(ctx, client.ObjectKey{Name: "node-b"}, na))
		na.Status.AgentVersion = "forged"
		assertDenied(t, agentA.Status().Update(ctx, na), "may write only NodeAgent node-a, not node-b")
	})

	m := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "move", Namespace: "default"},
		Spec:       lpmv1.PodMigrationSpec{PodName: "web"},
	}
	must(t, admin.Create(ctx, m))
	must(t, patchStatus(ctx, admin, m, `{"status":{"phase":"Pending","sourceNode":"node-a","targetNode":"node-b"}}`))

	t.Run("source agent writes status.source", func(t *testing.T) {
		must(t, patchStatus(ctx, agentA, m, `{"status":{"source":{"frozen":true}}}`))
	})
	t.Run("target agent writes status.target", func(t *testing.T) {
		must(t, patchStatus(ctx, agentB, m, `{"status":{"target":{"bytesDone":10}}}`))
	})
	t.Run("source agent cannot write status.target", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentA, m, `{"status":{"target":{"bytesDone":99}}}`),
			"may not write status.target of a PodMigration whose target node is node-b")
	})
	t.Run("target agent cannot write status.source", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentB, m, `{"status":{"source":{"frozen":false}}}`),
			"may not write status.source of a PodMigration whose source node is node-a")
	})
	t.Run("agent cannot move the migration to its node", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentB, m, `{"status":{"sourceNode":"node-b"}}`),
			"may not change status.sourceNode or status.targetNode")
	})
	// A frozen source is killed on the controller's verdict, so no agent may
	// forge it. With phase Succeeded the source agent killed a source that
	// was never restored.
	agentZ := agentClient(t, "lpm-agent", "node-z")
	t.Run("uninvolved agent cannot fail the migration", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentZ, m, `{"status":{"phase":"Failed"}}`),
			"may write only status.source or status.target")
	})
	t.Run("source agent cannot set the phase", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentA, m, `{"status":{"phase":"Succeeded"}}`),
			"may write only status.source or status.target")
	})
	t.Run("target agent cannot set the phase", func(t *testing.T) {
		assertDenied(t, patchStatus(ctx, agentB, m, `{"status":{"phase":"Succeeded"}}`),
			"may write only status.source or status.target")
	})
	t.Run("target agent cannot set the controller's conditions", func(t *testing.T) {
		restored := `{"type":"Restored","status":"True","reason":"Verified","message":"forged",` +
			`"lastTransitionTime":"2026-12-04T19:30:00Z"}`
		assertDenied(t, patchStatus(ctx, agentB, m, `{"status":{"conditions":[`+restored+`]}}`),
			"may write only status.source or status.target")
	})
	t.Run("agent cannot write other controller fields", func(t *testing.T) {
		for _, body := range []string{
			`{"status":{"restoredPod":"forged"}}`,
			`{"status":{"checkpointImages":{"app":"registry.example/forged:1"}}}`,
			`{"status":{"completionTime":"2026-12-04T19:30:00Z"}}`,
			`{"status":{"phaseTransitions":[{"phase":"Succeeded","time":"2026-12-04T19:30:00.000000Z"}]}}`,
			`{"status":{"downtime":"1s"}}`,
		} {
			assertDenied(t, patchStatus(ctx, agentA, m, body), "may write only status.source or status.target")
		}
	})
	t.Run("agents write their parts with conditions", func(t *testing.T) {
		killed := `{"type":"Killed","status":"True","reason":"SourceKilled","message":"",` +
			`"lastTransitionTime":"2026-12-04T19:30:00Z"}`
		must(t, patchStatus(ctx, agentA, m, `{"status":{"source":{"frozen":true,"conditions":[`+killed+`]}}}`))
		restored := `{"type":"Restored","status":"True","reason":"Restored","message":"",` +
			`"lastTransitionTime":"2026-12-04T19:30:00Z"}`
		must(t, patchStatus(ctx, agentB, m,
			`{"status":{"target":{"bytesDone":10,"readyTime":"2026-12-04T19:30:00.123456Z","conditions":[`+
				restored+`]}}}`))
	})
	t.Run("token without node", func(t *testing.T) {
		unbound := unboundAgentClient(t)
		assertDenied(t, createNodeAgent(ctx, unbound, "node-c"), "bound to its pod")
	})
	t.Run("other service accounts are not matched", func(t *testing.T) {
		controller := agentClient(t, "lpm-controller", "node-a")
		must(t, patchStatus(ctx, controller, m, `{"status":{"restoredPod":"web-restored"}}`))
	})

	got := &lpmv1.PodMigration{}
	must(t, admin.Get(ctx, client.ObjectKeyFromObject(m), got))
	if !got.Status.Source.Frozen || got.Status.Target.BytesDone != 10 || got.Status.SourceNode != "node-a" {
		t.Errorf("status after the denied writes = %+v, want only the allowed ones applied", got.Status)
	}
	if got.Status.Phase != lpmv1.PhasePending || len(got.Status.Conditions) != 0 {
		t.Errorf("phase = %s, conditions = %v after the agents' writes, want Pending and none",
			got.Status.Phase, got.Status.Conditions)
	}
}

// The policy must compare every field of the status that the controller
// writes, so a field added to the API is not left open to the agents.
func TestPolicyCoversControllerStatus(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "rbac", "admission",
		"agent_own_node_policy.yaml"))
	must(t, err)
	doc, err := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data))).Read()
	must(t, err)
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	must(t, utilyaml.Unmarshal(doc, policy))
	expression := ""
	for _, v := range policy.Spec.Variables {
		if v.Name == "controllerStatusUnchanged" {
			expression = v.Expression
		}
	}
	if expression == "" {
		t.Fatalf("policy %s has no variable controllerStatusUnchanged", policy.Name)
	}

	status := reflect.TypeFor[lpmv1.PodMigrationStatus]()
	for i := range status.NumField() {
		name, _, _ := strings.Cut(status.Field(i).Tag.Get("json"), ",")
		if name == "source" || name == "target" {
			continue
		}
		want := fmt.Sprintf("object.?status.?%s == oldObject.?status.?%s", name, name)
		if !strings.Contains(expression, want) {
			t.Errorf("controllerStatusUnchanged lacks %q", want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// applyManifests creates every object in the YAML files of dir except the
// kustomization.
func applyManifests(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	must(t, err)
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		must(t, err)
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			must(t, err)
			obj := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil || len(obj.Object) == 0 {
				continue
			}
			must(t, admin.Create(t.Context(), obj))
		}
	}
}

// setUpAgentIdentity grants the service accounts lpm-agent and
// lpm-controller what the agent needs, so that only the policy can deny.
func setUpAgentIdentity(t *testing.T) {
	ctx := t.Context()
	must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}))
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-test-agent"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"lpm.dev"}, Resources: []string{"nodeagents", "nodeagents/status"},
				Verbs: []string{"create", "get", "update", "patch"}},
			{APIGroups: []string{"lpm.dev"}, Resources: []string{"podmigrations"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"lpm.dev"}, Resources: []string{"podmigrations/status"},
				Verbs: []string{"get", "update", "patch"}},
		},
	}
	must(t, admin.Create(ctx, role))
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-test-agent"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
	}
	for _, sa := range []string{"lpm-agent", "lpm-controller"} {
		must(t, admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: agentNamespace}}))
		binding.Subjects = append(binding.Subjects,
			rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: agentNamespace})
	}
	must(t, admin.Create(ctx, binding))
}

// agentClient returns a client that authenticates as service account sa
// with a token bound to a pod on node, as the kubelet mounts it.
func agentClient(t *testing.T, sa, node string) client.Client {
	t.Helper()
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + node, Namespace: agentNamespace},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "agent", Image: "registry.example/lpm-agent:test"}},
		},
	}
	must(t, admin.Create(ctx, pod))
	return tokenClient(t, sa, &authenticationv1.BoundObjectReference{
		Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
	})
}

// unboundAgentClient returns a client of lpm-agent whose token names no pod.
func unboundAgentClient(t *testing.T) client.Client {
	return tokenClient(t, "lpm-agent", nil)
}

func tokenClient(t *testing.T, sa string, bound *authenticationv1.BoundObjectReference) client.Client {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: bound}}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: agentNamespace}}
	must(t, admin.SubResource("token").Create(t.Context(), account, req))
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = req.Status.Token
	cl, err := client.New(c, client.Options{Scheme: scheme})
	must(t, err)
	return cl
}

func createNodeAgent(ctx context.Context, c client.Client, name string) error {
	return c.Create(ctx, &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

func patchStatus(ctx context.Context, c client.Client, m *lpmv1.PodMigration, body string) error {
	if !json.Valid([]byte(body)) {
		return fmt.Errorf("invalid patch %s", body)
	}
	obj := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace}}
	return c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(body)))
}

func assertDenied(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("request allowed, want denied with %q", want)
	}
	if !strings.Contains(err.Error(), "lpm-agent-own-node") || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want the policy's denial with %q", err, want)
	}
}

// waitDenied retries a request the policy denies until the API server
// enforces the new policy. undo reverts the request when it was allowed.
func waitDenied(t *testing.T, request func() error, undo func()) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := request()
		if err != nil && strings.Contains(err.Error(), "lpm-agent-own-node") {
			return
		}
		if err == nil {
			undo()
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy not enforced after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
