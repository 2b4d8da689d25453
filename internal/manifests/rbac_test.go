package manifests

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/lpm-dev/lpm/internal/controller"
)

const (
	controllerUser = "lpm-system:lpm-controller"
	agentUser      = "lpm-system:lpm-agent"
)

// wantPermissions is every permission the installed service accounts get,
// as "verb group/resource" (with "[name]" for a rule limited to names) or
// "verb URL". A new permission fails this test until it is added here, so
// that each one is reviewed as a least-privilege decision.
var wantPermissions = map[string][]string{
	controllerUser: {
		// Preflight reads nodes; the controller creates and deletes pods.
		"get /nodes", "list /nodes", "watch /nodes",
		"create /pods", "delete /pods", "get /pods", "list /pods", "patch /pods", "watch /pods",
		"create events.k8s.io/events", "patch events.k8s.io/events",
		"get lpm.dev/nodeagents", "list lpm.dev/nodeagents", "watch lpm.dev/nodeagents",
		"get lpm.dev/podmigrations", "list lpm.dev/podmigrations", "patch lpm.dev/podmigrations",
		"watch lpm.dev/podmigrations",
		"update lpm.dev/podmigrations/finalizers",
		"get lpm.dev/podmigrations/status", "patch lpm.dev/podmigrations/status",
		// Node Leases, read to see that a target's kubelet still runs. The
		// cache watches kube-node-lease only.
		"get coordination.k8s.io/leases", "list coordination.k8s.io/leases", "watch coordination.k8s.io/leases",
		// Leader election, in the controller's namespace only.
		"create coordination.k8s.io/leases (ns lpm-system)",
		"get coordination.k8s.io/leases[" + controller.LeaderElectionID + "] (ns lpm-system)",
		"update coordination.k8s.io/leases[" + controller.LeaderElectionID + "] (ns lpm-system)",
		"create /events (ns lpm-system)", "patch /events (ns lpm-system)",
		// The metrics endpoint's authentication and authorization.
		"create authentication.k8s.io/tokenreviews", "create authorization.k8s.io/subjectaccessreviews",
	},
	agentUser: {
		// The kubelet's checkpoint API, through its own subresource: never
		// nodes/proxy.
		"create /nodes/checkpoint", "get /nodes",
		"get /pods", "list /pods", "watch /pods",
		// Transfer tokens and metrics scrapers are reviewed with the API.
		"create authentication.k8s.io/tokenreviews", "create authorization.k8s.io/subjectaccessreviews",
		"create lpm.dev/nodeagents", "get lpm.dev/nodeagents", "list lpm.dev/nodeagents",
		"patch lpm.dev/nodeagents", "update lpm.dev/nodeagents", "watch lpm.dev/nodeagents",
		"get lpm.dev/nodeagents/status", "patch lpm.dev/nodeagents/status", "update lpm.dev/nodeagents/status",
		"get lpm.dev/podmigrations", "list lpm.dev/podmigrations", "watch lpm.dev/podmigrations",
		"get lpm.dev/podmigrations/status", "patch lpm.dev/podmigrations/status",
	},
}

// forbidden are resources no installed role may grant, with the reason.
var forbidden = map[string]string{
	"nodes/proxy": "reaches every kubelet API of every node",
	"secrets":     "no Secret is needed except registry credentials, which a namespace grants itself",
	"*":           "wildcards grant whatever a later API version adds",
}

func TestRBACLeastPrivilege(t *testing.T) {
	objects := renderConfig(t, tools(t))

	got := map[string][]string{}
	for user, rules := range boundRules(t, objects) {
		got[user] = permissions(rules)
	}
	want := map[string][]string{}
	for user, list := range wantPermissions {
		want[user] = slices.Sorted(slices.Values(list))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("permissions of the service accounts mismatch (-want +got):\n%s", diff)
	}
}

func TestRBACForbiddenRules(t *testing.T) {
	objects := renderConfig(t, tools(t))

	for _, o := range objects {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		role := toTyped[rbacv1.ClusterRole](t, o)
		for _, rule := range role.Rules {
			for _, field := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs, rule.NonResourceURLs} {
				if slices.Contains(field, "*") {
					t.Errorf("%s has a wildcard rule %+v: %s", Key(o), rule, forbidden["*"])
				}
			}
			for _, r := range rule.Resources {
				reason, bad := forbidden[r]
				// The registry credentials role may name secrets because
				// the install binds it nowhere (TestRBACBindings).
				unbound := r == "secrets" && role.Name == "lpm-agent-registry-credentials"
				if bad && !unbound {
					t.Errorf("%s grants %s: %s", Key(o), r, reason)
				}
			}
		}
	}
}

func TestRBACBindings(t *testing.T) {
	objects := renderConfig(t, tools(t))
	roles := map[string]bool{}
	for _, o := range objects {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "Role" {
			roles[o.GetKind()+"/"+o.GetName()] = true
		}
	}

	boundBy := map[string][]string{}
	for _, o := range objects {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		binding := toTyped[rbacv1.RoleBinding](t, o)
		ref := binding.RoleRef.Kind + "/" + binding.RoleRef.Name
		if !roles[ref] {
			t.Errorf("%s binds %s, which the install does not define (cluster-admin, admin, edit or view "+
				"would grant far more than lpm needs)", Key(o), ref)
		}
		for _, s := range binding.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind {
				t.Errorf("%s binds %s %s, but only lpm's service accounts may be bound", Key(o), s.Kind, s.Name)
				continue
			}
			boundBy[ref] = append(boundBy[ref], s.Namespace+":"+s.Name)
		}
	}

	if users := boundBy["ClusterRole/lpm-agent-registry-credentials"]; len(users) > 0 {
		t.Errorf("ClusterRole lpm-agent-registry-credentials is bound to %v, but only a namespace that needs it "+
			"binds it", users)
	}
	if users := boundBy["ClusterRole/lpm-metrics-reader"]; len(users) > 0 {
		t.Errorf("ClusterRole lpm-metrics-reader is bound to %v, but the scraper's install binds it", users)
	}
	for ref, users := range boundBy {
		if slices.Contains(users, controllerUser) && slices.Contains(users, agentUser) {
			t.Errorf("%s is bound to both the controller and the agent, which must have roles of their own", ref)
		}
	}
}

func TestWorkloadServiceAccounts(t *testing.T) {
	objects := renderConfig(t, tools(t))
	for _, want := range []struct{ kind, name, account string }{
		{"Deployment", "lpm-controller", "lpm-controller"},
		{"DaemonSet", "lpm-agent", "lpm-agent"},
	} {
		obj := find(t, objects, want.kind, want.name)
		got, _, _ := unstructured.NestedString(obj.Object, "spec", "template", "spec", "serviceAccountName")
		if got != want.account {
			t.Errorf("%s runs as service account %q, want %q", Key(obj), got, want.account)
		}
	}
}

// boundRules returns the rules each service account ("namespace:name")
// gets from the bindings among objects, each with the namespace of its
// RoleBinding, or none for a ClusterRoleBinding.
func boundRules(t *testing.T, objects []*unstructured.Unstructured) map[string][]namespacedRule {
	t.Helper()
	roles := map[string]*unstructured.Unstructured{}
	for _, o := range objects {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "Role" {
			roles[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
		}
	}
	out := map[string][]namespacedRule{}
	for _, o := range objects {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		binding := toTyped[rbacv1.RoleBinding](t, o)
		ns := ""
		if binding.RoleRef.Kind == "Role" {
			ns = o.GetNamespace()
		}
		role, ok := roles[binding.RoleRef.Kind+"/"+ns+"/"+binding.RoleRef.Name]
		if !ok {
			continue
		}
		for _, rule := range toTyped[rbacv1.ClusterRole](t, role).Rules {
			for _, s := range binding.Subjects {
				user := s.Namespace + ":" + s.Name
				out[user] = append(out[user], namespacedRule{PolicyRule: rule, namespace: o.GetNamespace()})
			}
		}
	}
	return out
}

// namespacedRule is a rule and the namespace it is limited to, empty for a
// ClusterRoleBinding.
type namespacedRule struct {
	rbacv1.PolicyRule
	namespace string
}

// permissions expands rules into sorted, unique permission strings.
func permissions(rules []namespacedRule) []string {
	set := map[string]bool{}
	for _, rule := range rules {
		suffix := ""
		if rule.namespace != "" {
			suffix = fmt.Sprintf(" (ns %s)", rule.namespace)
		}
		for _, verb := range rule.Verbs {
			for _, url := range rule.NonResourceURLs {
				set[verb+" "+url+suffix] = true
			}
			for _, group := range rule.APIGroups {
				for _, resource := range rule.Resources {
					base := verb + " " + group + "/" + resource
					if len(rule.ResourceNames) == 0 {
						set[base+suffix] = true
						continue
					}
					for _, name := range rule.ResourceNames {
						set[base+"["+name+"]"+suffix] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func TestPermissionsExpandsRules(t *testing.T) {
	rules := []namespacedRule{
		{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{"", "apps"}, Resources: []string{"pods"},
			Verbs: []string{"get"}}},
		{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			ResourceNames: []string{"a"}, Verbs: []string{"update"}}, namespace: "x"},
		{PolicyRule: rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
		{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}},
	}
	want := []string{"get /metrics", "get /pods", "get apps/pods", "update coordination.k8s.io/leases[a] (ns x)"}

	if diff := cmp.Diff(want, permissions(rules)); diff != "" {
		t.Errorf("permissions mismatch (-want +got):\n%s", diff)
	}
}
