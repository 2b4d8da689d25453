package controller

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

// t0 is when the fixtures' migration started.
var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

const (
	sourceUID = "source-uid"
	migUID    = "mig-uid-0001"
)

func fixturePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", UID: sourceUID, Labels: map[string]string{"app": "web"},
		},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1"}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

func fixtureNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
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

func fixtureAgent(name string) *lpmv1.NodeAgent {
	return &lpmv1.NodeAgent{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: lpmv1.NodeAgentStatus{
			HeartbeatTime: &metav1.Time{Time: t0},
			Conditions: []metav1.Condition{
				{Type: lpmv1.NodeAgentReady, Status: metav1.ConditionTrue},
				{Type: lpmv1.NodeAgentCheckpointSupported, Status: metav1.ConditionTrue},
				{Type: lpmv1.NodeAgentRestoreSupported, Status: metav1.ConditionTrue},
			},
		},
	}
}

// fixtureMigration returns a migration of pod web from node-a to node-b.
func fixtureMigration() *lpmv1.PodMigration {
	return &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{
			Name: "move-web", Namespace: "shop", UID: migUID, Generation: 1,
			CreationTimestamp: metav1.NewTime(t0), Finalizers: []string{lpmv1.FinalizerRollback},
		},
		Spec: lpmv1.PodMigrationSpec{PodName: "web", TargetNode: "node-b", SourcePolicy: lpmv1.SourcePolicyDelete},
	}
}

// fixtureLease returns node's Lease as its kubelet last renewed it.
func fixtureLease(node string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}},
	}
}

// fixtureWorld returns what a reconcile observes for the fixtures at now.
// The target node's kubelet renewed its Lease at now.
func fixtureWorld(now time.Time) *world {
	a, b := fixtureAgent("node-a"), fixtureAgent("node-b")
	a.Status.HeartbeatTime = &metav1.Time{Time: now}
	b.Status.HeartbeatTime = &metav1.Time{Time: now}
	return &world{
		now:         now,
		pod:         fixturePod(),
		takenNames:  map[string]bool{},
		sourceAgent: a,
		targetAgent: b,
		targetNode:  fixtureNode("node-b"),
		targetLease: fixtureLease("node-b", now),
		cluster: &preflight.Cluster{
			Nodes:      []corev1.Node{*fixtureNode("node-a"), *fixtureNode("node-b")},
			PodsByNode: map[string][]corev1.Pod{"node-a": {*fixturePod()}},
			Agents:     map[string]*lpmv1.NodeAgent{"node-a": a, "node-b": b},
		},
	}
}

// inPhase returns the fixture migration as the controller left it on
// entering phase at t0, with both agents prepared.
func inPhase(phase lpmv1.MigrationPhase) *lpmv1.PodMigration {
	m := fixtureMigration()
	s := &m.Status
	s.StartTime = &metav1.Time{Time: t0}
	s.SourcePodUID, s.SourceNode, s.TargetNode = sourceUID, "node-a", "node-b"
	s.Phase = phase
	for _, p := range []lpmv1.MigrationPhase{lpmv1.PhasePending, lpmv1.PhaseCheckpointing,
		lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring} {
		s.PhaseTransitions = append(s.PhaseTransitions, lpmv1.PhaseTransition{Phase: p, Time: metav1.NewMicroTime(t0)})
		if p == phase {
			break
		}
	}
	cond := func(t string, status metav1.ConditionStatus, reason lpmv1.Reason) metav1.Condition {
		return metav1.Condition{Type: t, Status: status, Reason: string(reason), ObservedGeneration: 1,
			LastTransitionTime: metav1.NewTime(t0)}
	}
	s.Conditions = []metav1.Condition{cond(lpmv1.ConditionPreflightPassed, metav1.ConditionTrue, lpmv1.ReasonChecksPassed)}
	s.Source = &lpmv1.SourceAgentStatus{Conditions: []metav1.Condition{
		cond(lpmv1.AgentConditionPrepared, metav1.ConditionTrue, "Prepared"),
	}}
	s.Target = &lpmv1.TargetAgentStatus{Conditions: []metav1.Condition{
		cond(lpmv1.AgentConditionPrepared, metav1.ConditionTrue, "Prepared"),
	}}
	return m
}

func setAgentCondition(conditions *[]metav1.Condition, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(t0),
	})
}

// assertCondition checks one condition of the outcome's status.
func assertCondition(t *testing.T, o *outcome, condType string, status metav1.ConditionStatus, reason lpmv1.Reason) {
	t.Helper()
	c := o.condition(condType)
	if c == nil {
		t.Errorf("condition %s missing, want %s/%s", condType, status, reason)
		return
	}
	if c.Status != status || c.Reason != string(reason) {
		t.Errorf("condition %s = %s/%s (%s), want %s/%s", condType, c.Status, c.Reason, c.Message, status, reason)
	}
	if c.ObservedGeneration != o.m.Generation {
		t.Errorf("condition %s observedGeneration = %d, want %d", condType, c.ObservedGeneration, o.m.Generation)
	}
}

func assertPhase(t *testing.T, o *outcome, want lpmv1.MigrationPhase) {
	t.Helper()
	if o.status.Phase != want {
		c := o.condition(lpmv1.ConditionSucceeded)
		t.Fatalf("phase = %s (summary %+v), want %s", o.status.Phase, c, want)
	}
}

func eventReasons(o *outcome) []lpmv1.Reason {
	var reasons []lpmv1.Reason
	for _, e := range o.events {
		reasons = append(reasons, e.reason)
	}
	return reasons
}

// readyRestoredPod returns the restored pod as the kubelet reports it,
// Ready since readyAt.
func readyRestoredPod(readyAt time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-restored", Namespace: "shop", UID: "restored-uid",
			Annotations:     map[string]string{lpmv1.AnnotationMigrationUID: migUID},
			OwnerReferences: []metav1.OwnerReference{{Kind: "PodMigration", Name: "move-web", UID: migUID}},
		},
		Spec: corev1.PodSpec{NodeName: "node-b"},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(readyAt)},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true}},
		},
	}
}
