package preflight

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func readyNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("2"),
				corev1.ResourceMemory: resource.MustParse("4Gi"),
				corev1.ResourcePods:   resource.MustParse("10"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func podRequesting(cpu, memory string) corev1.Pod {
	return corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(cpu),
				corev1.ResourceMemory: resource.MustParse(memory),
			}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func TestCheckTargetNode(t *testing.T) {
	testCases := []struct {
		name       string
		node       func(*corev1.Node)
		pod        func(*corev1.Pod)
		podsOnNode []corev1.Pod
		wantReason lpmv1.Reason
		wantField  string
	}{
		{name: "fits"},
		{
			name:       "not ready",
			node:       func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown },
			wantReason: lpmv1.ReasonTargetNotReady, wantField: "spec.targetNode",
		},
		{
			name:       "no ready condition",
			node:       func(n *corev1.Node) { n.Status.Conditions = nil },
			wantReason: lpmv1.ReasonTargetNotReady, wantField: "spec.targetNode",
		},
		{
			name:       "cordoned",
			node:       func(n *corev1.Node) { n.Spec.Unschedulable = true },
			wantReason: lpmv1.ReasonTargetUnschedulable, wantField: "spec.targetNode",
		},
		{
			name: "untolerated NoSchedule taint",
			node: func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			},
			wantReason: lpmv1.ReasonTargetTaint, wantField: "spec.tolerations",
		},
		{
			name: "untolerated NoExecute taint",
			node: func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}}
			},
			wantReason: lpmv1.ReasonTargetTaint, wantField: "spec.tolerations",
		},
		{
			name: "PreferNoSchedule taint ignored",
			node: func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}}
			},
		},
		{
			name: "tolerated taint",
			node: func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			},
			pod: func(p *corev1.Pod) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db"}}
			},
		},
		{
			name:       "node selector mismatch",
			pod:        func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
			wantReason: lpmv1.ReasonTargetSelectorMismatch, wantField: "spec.nodeSelector",
		},
		{
			name: "node selector match",
			node: func(n *corev1.Node) { n.Labels["disk"] = "ssd" },
			pod:  func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
		},
		{
			name: "required affinity mismatch",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
						NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
							{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}},
						}}},
					},
				}}
			},
			wantReason: lpmv1.ReasonTargetSelectorMismatch,
			wantField:  "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
		},
		{
			name:       "not enough cpu",
			podsOnNode: []corev1.Pod{podRequesting("1600m", "1Gi")},
			wantReason: lpmv1.ReasonTargetInsufficient, wantField: "spec.containers[*].resources.requests[cpu]",
		},
		{
			name:       "not enough memory",
			podsOnNode: []corev1.Pod{podRequesting("100m", "3900Mi")},
			wantReason: lpmv1.ReasonTargetInsufficient, wantField: "spec.containers[*].resources.requests[memory]",
		},
		{
			name: "finished pods hold nothing",
			podsOnNode: func() []corev1.Pod {
				p := podRequesting("2", "4Gi")
				p.Status.Phase = corev1.PodSucceeded
				return []corev1.Pod{p}
			}(),
		},
		{
			name:       "pod count at limit",
			node:       func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("1") },
			podsOnNode: []corev1.Pod{podRequesting("0", "0")},
			wantReason: lpmv1.ReasonTargetInsufficient, wantField: "spec.targetNode",
		},
		{
			name: "regular init container not counted",
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")},
				}}}
			},
		},
		{
			name: "sidecar counted",
			pod: func(p *corev1.Pod) {
				always := corev1.ContainerRestartPolicyAlways
				p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always,
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1600m")},
					}}}
			},
			wantReason: lpmv1.ReasonTargetInsufficient, wantField: "spec.containers[*].resources.requests[cpu]",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			node := readyNode("node-b")
			if tc.node != nil {
				tc.node(node)
			}
			pod := runningPod()
			if tc.pod != nil {
				tc.pod(pod)
			}
			got := CheckTargetNode(pod, node, tc.podsOnNode)
			assertFailure(t, got, tc.wantReason, tc.wantField)
		})
	}
}

func TestCheckTargetName(t *testing.T) {
	testCases := []struct {
		name       string
		policy     lpmv1.SourcePolicy
		target     string
		wantReason lpmv1.Reason
	}{
		{name: "other node", policy: lpmv1.SourcePolicyDelete, target: "node-b"},
		{name: "same node with delete", policy: lpmv1.SourcePolicyDelete, target: "node-a",
			wantReason: lpmv1.ReasonTargetIsSource},
		{name: "same node with default policy", target: "node-a", wantReason: lpmv1.ReasonTargetIsSource},
		{name: "same node with keep", policy: lpmv1.SourcePolicyKeep, target: "node-a"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckTargetName(tc.policy, "node-a", tc.target)
			wantField := ""
			if tc.wantReason != "" {
				wantField = "spec.targetNode"
			}
			assertFailure(t, got, tc.wantReason, wantField)
		})
	}
}

func TestFreeResources(t *testing.T) {
	node := readyNode("node-b")
	got := FreeResources(node, []corev1.Pod{podRequesting("500m", "1Gi"), podRequesting("250m", "512Mi")})
	want := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1250m"),
		corev1.ResourceMemory: resource.MustParse("2560Mi"),
		corev1.ResourcePods:   resource.MustParse("8"),
	}
	for name, w := range want {
		g := got[name]
		if g.Cmp(w) != 0 {
			t.Errorf("free %s = %s, want %s", name, g.String(), w.String())
		}
	}
	if node.Status.Allocatable.Cpu().String() != "2" {
		t.Errorf("FreeResources modified the node's allocatable: %v", node.Status.Allocatable)
	}
}

func agentFor(node string, mutate ...func(*lpmv1.NodeAgent)) *lpmv1.NodeAgent {
	a := &lpmv1.NodeAgent{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: lpmv1.NodeAgentStatus{
			HeartbeatTime: &metav1.Time{Time: now.Add(-10 * time.Second)},
			Conditions: []metav1.Condition{
				{Type: lpmv1.NodeAgentReady, Status: metav1.ConditionTrue},
				{Type: lpmv1.NodeAgentCheckpointSupported, Status: metav1.ConditionTrue},
				{Type: lpmv1.NodeAgentRestoreSupported, Status: metav1.ConditionTrue},
			},
			Capabilities: &lpmv1.NodeCapabilities{CgroupVersion: 1, CPUFeatures: []string{"sse4_2", "avx2"}},
		},
	}
	for _, m := range mutate {
		m(a)
	}
	return a
}

func setCondition(t string, status metav1.ConditionStatus, message string) func(*lpmv1.NodeAgent) {
	return func(a *lpmv1.NodeAgent) {
		for i := range a.Status.Conditions {
			if a.Status.Conditions[i].Type == t {
				a.Status.Conditions[i].Status = status
				a.Status.Conditions[i].Message = message
			}
		}
	}
}

func TestCheckAgent(t *testing.T) {
	testCases := []struct {
		name        string
		agent       *lpmv1.NodeAgent
		role        Role
		wantReason  lpmv1.Reason
		wantField   string
		wantMessage string
	}{
		{name: "source can checkpoint", agent: agentFor("node-a"), role: RoleSource},
		{name: "target can restore", agent: agentFor("node-a"), role: RoleTarget},
		{
			name: "missing source agent", role: RoleSource,
			wantReason: lpmv1.ReasonAgentMissing, wantField: "status.sourceNode",
		},
		{
			name: "missing target agent", role: RoleTarget,
			wantReason: lpmv1.ReasonAgentMissing, wantField: "spec.targetNode",
		},
		{
			name: "not ready", role: RoleTarget,
			agent:      agentFor("node-a", setCondition(lpmv1.NodeAgentReady, metav1.ConditionFalse, "")),
			wantReason: lpmv1.ReasonAgentUnavailable, wantField: "spec.targetNode",
		},
		{
			name: "stale heartbeat", role: RoleTarget,
			agent: agentFor("node-a", func(a *lpmv1.NodeAgent) {
				a.Status.HeartbeatTime = &metav1.Time{Time: now.Add(-3 * time.Minute)}
			}),
			wantReason: lpmv1.ReasonAgentUnavailable, wantField: "spec.targetNode",
		},
		{
			name: "no heartbeat", role: RoleSource,
			agent:      agentFor("node-a", func(a *lpmv1.NodeAgent) { a.Status.HeartbeatTime = nil }),
			wantReason: lpmv1.ReasonAgentUnavailable, wantField: "status.sourceNode",
		},
		{
			name: "cannot checkpoint", role: RoleSource,
			agent: agentFor("node-a", setCondition(lpmv1.NodeAgentCheckpointSupported, metav1.ConditionFalse,
				"CRIU binary not found")),
			wantReason: lpmv1.ReasonAgentCannotCheckpoint, wantField: "status.sourceNode",
			wantMessage: "node node-a cannot checkpoint: CRIU binary not found",
		},
		{
			name: "cannot restore", role: RoleTarget,
			agent:      agentFor("node-a", setCondition(lpmv1.NodeAgentRestoreSupported, metav1.ConditionFalse, "")),
			wantReason: lpmv1.ReasonAgentCannotRestore, wantField: "spec.targetNode",
			wantMessage: "node node-a cannot restore: it does not report RestoreSupported",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckAgent(tc.agent, "node-a", tc.role, now)
			assertFailure(t, got, tc.wantReason, tc.wantField)
			if tc.wantMessage != "" && got.Message != tc.wantMessage {
				t.Errorf("message = %q, want %q", got.Message, tc.wantMessage)
			}
		})
	}
}

func TestCheckNonRoot(t *testing.T) {
	rootOnly := agentFor("node-a")
	nonRoot := agentFor("node-a", func(a *lpmv1.NodeAgent) { a.Status.Capabilities.CheckpointNonRoot = true })
	user := func(uid int64) *int64 { return &uid }
	testCases := []struct {
		name       string
		pod        func(*corev1.Pod)
		agent      *lpmv1.NodeAgent
		wantReason lpmv1.Reason
		wantField  string
	}{
		{name: "no user set", agent: rootOnly},
		{
			name:  "root set",
			pod:   func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: user(0)} },
			agent: rootOnly,
		},
		{
			name:       "pod user",
			pod:        func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: user(1000)} },
			agent:      rootOnly,
			wantReason: lpmv1.ReasonNonRootUnsupported, wantField: "spec.securityContext.runAsUser",
		},
		{
			name: "container user",
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: user(1000)}
			},
			agent:      rootOnly,
			wantReason: lpmv1.ReasonNonRootUnsupported, wantField: "spec.containers[0].securityContext.runAsUser",
		},
		{
			name: "container root overrides pod user",
			pod: func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: user(1000)}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: user(0)}
			},
			agent: rootOnly,
		},
		{
			name:  "node can dump non-root",
			pod:   func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: user(1000)} },
			agent: nonRoot,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			pod := runningPod()
			if tc.pod != nil {
				tc.pod(pod)
			}
			assertFailure(t, CheckNonRoot(pod, tc.agent), tc.wantReason, tc.wantField)
		})
	}
}

func TestCheckCompatible(t *testing.T) {
	testCases := []struct {
		name        string
		target      *lpmv1.NodeAgent
		wantReason  lpmv1.Reason
		wantMessage string
	}{
		{name: "same features", target: agentFor("node-b")},
		{
			name: "superset of features",
			target: agentFor("node-b", func(a *lpmv1.NodeAgent) {
				a.Status.Capabilities.CPUFeatures = append(a.Status.Capabilities.CPUFeatures, "avx512f")
			}),
		},
		{
			name:        "missing feature",
			target:      agentFor("node-b", func(a *lpmv1.NodeAgent) { a.Status.Capabilities.CPUFeatures = []string{"sse4_2"} }),
			wantReason:  lpmv1.ReasonIncompatibleNodes,
			wantMessage: "node node-b lacks CPU features of node node-a: avx2",
		},
		{
			name:        "other cgroup version",
			target:      agentFor("node-b", func(a *lpmv1.NodeAgent) { a.Status.Capabilities.CgroupVersion = 2 }),
			wantReason:  lpmv1.ReasonIncompatibleNodes,
			wantMessage: "node node-a uses cgroup v1 and node node-b cgroup v2",
		},
		{
			name:   "unknown capabilities",
			target: agentFor("node-b", func(a *lpmv1.NodeAgent) { a.Status.Capabilities = nil }),
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckCompatible(agentFor("node-a"), tc.target)
			wantField := ""
			if tc.wantReason != "" {
				wantField = "spec.targetNode"
			}
			assertFailure(t, got, tc.wantReason, wantField)
			if tc.wantMessage != "" && got.Message != tc.wantMessage {
				t.Errorf("message = %q, want %q", got.Message, tc.wantMessage)
			}
		})
	}
}

func TestSelectTarget(t *testing.T) {
	agents := func(names ...string) map[string]*lpmv1.NodeAgent {
		m := map[string]*lpmv1.NodeAgent{}
		for _, n := range names {
			m[n] = agentFor(n)
		}
		return m
	}
	nodes := func(mutate func(*corev1.Node), names ...string) []corev1.Node {
		var list []corev1.Node
		for _, n := range names {
			node := readyNode(n)
			if mutate != nil {
				mutate(node)
			}
			list = append(list, *node)
		}
		return list
	}
	testCases := []struct {
		name        string
		cluster     Cluster
		want        string
		wantMessage string
	}{
		{
			name: "most free memory wins",
			cluster: Cluster{
				Nodes:      nodes(nil, "node-a", "node-b", "node-c"),
				PodsByNode: map[string][]corev1.Pod{"node-b": {podRequesting("100m", "2Gi")}},
				Agents:     agents("node-a", "node-b", "node-c"),
			},
			want: "node-c",
		},
		{
			name: "name breaks ties",
			cluster: Cluster{
				Nodes: nodes(nil, "node-a", "node-c", "node-b"), Agents: agents("node-a", "node-b", "node-c"),
			},
			want: "node-b",
		},
		{
			name: "source node never picked",
			cluster: Cluster{
				Nodes: nodes(nil, "node-a", "node-b"), Agents: agents("node-a", "node-b"),
				PodsByNode: map[string][]corev1.Pod{"node-b": {podRequesting("100m", "3Gi")}},
			},
			want: "node-b",
		},
		{
			name: "node without agent skipped",
			cluster: Cluster{
				Nodes: nodes(nil, "node-a", "node-b", "node-c"), Agents: agents("node-a", "node-c"),
			},
			want: "node-c",
		},
		{
			name: "no node fits",
			cluster: Cluster{
				Nodes:  nodes(func(n *corev1.Node) { n.Spec.Unschedulable = true }, "node-a", "node-c", "node-b"),
				Agents: agents("node-a", "node-b", "node-c"),
			},
			wantMessage: "no node can take pod web (node-b: TargetUnschedulable, node-c: TargetUnschedulable). " +
				"Name a node in spec.targetNode to see the full reason",
		},
		{
			name:    "single node cluster",
			cluster: Cluster{Nodes: nodes(nil, "node-a"), Agents: agents("node-a")},
			wantMessage: "no node can take pod web (no other node exists). " +
				"Name a node in spec.targetNode to see the full reason",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, f := SelectTarget(runningPod(), &tc.cluster, now)
			if tc.wantMessage != "" {
				assertFailure(t, f, lpmv1.ReasonNoTargetNode, "spec.targetNode")
				if diff := cmp.Diff(tc.wantMessage, f.Message); diff != "" {
					t.Errorf("message mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if f != nil {
				t.Fatalf("SelectTarget() failed: %v", f)
			}
			if got != tc.want {
				t.Errorf("SelectTarget() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectTargetManyRejections(t *testing.T) {
	c := Cluster{Agents: map[string]*lpmv1.NodeAgent{}}
	for i := range 12 {
		node := readyNode("node-" + string(rune('b'+i)))
		node.Spec.Unschedulable = true
		c.Nodes = append(c.Nodes, *node)
	}
	_, f := SelectTarget(runningPod(), &c, now)
	if f == nil || !strings.Contains(f.Message, " and 2 more)") {
		t.Errorf("SelectTarget() failure = %v, want the list cut after 10 nodes", f)
	}
}
