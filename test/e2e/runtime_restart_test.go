//go:build e2e

package e2e

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// TestMigrateAfterRuntimeRestart restarts node-b's containerd under a
// running agent, then moves a counter to node-b and back. The agent must
// reach the new containerd through its mount of the socket's directory
// without being restarted itself.
func TestMigrateAfterRuntimeRestart(t *testing.T) {
	requireLPM(t)
	agentsBefore := lpmPods(t, agentImage, nodeB)
	n := labNode(t, nodeB)
	if err := n.StopContainerd(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, running := n.Daemon("containerd"); !running {
			_ = n.StartContainerd(withContext(t), nodeContainerdConfig(false))
		}
	})
	// While containerd is down, the agent reports that its node cannot
	// restore.
	waitNodeAgent(t, nodeB, lpmv1.NodeAgentRestoreSupported, metav1.ConditionFalse)
	if err := n.StartContainerd(withContext(t), nodeContainerdConfig(false)); err != nil {
		t.Fatal(err)
	}
	waitNodeAgent(t, nodeB, lpmv1.NodeAgentRestoreSupported, metav1.ConditionTrue)
	waitNodeAgent(t, nodeB, lpmv1.NodeAgentCheckpointSupported, metav1.ConditionTrue)

	ns := newNamespace(t)
	_, before := counterAfterWarmup(t, ns, "rt", nodeA)
	pm := migrate(t, ns, "to-b", lpmv1.PodMigrationSpec{PodName: "rt", TargetNode: nodeB})
	restored := requireMoved(t, ns, "rt", pm, nodeB, before)
	before = count(t, restored.Status.PodIP)
	back := migrate(t, ns, "to-a", lpmv1.PodMigrationSpec{PodName: restored.Name, TargetNode: nodeA})
	requireMoved(t, ns, restored.Name, back, nodeA, before)

	agentsAfter := lpmPods(t, agentImage, nodeB)
	if len(agentsBefore) != 1 || len(agentsAfter) != 1 || agentsBefore[0].UID != agentsAfter[0].UID {
		t.Errorf("the agent pod on %s changed across the runtime restart", nodeB)
	} else if restarts := agentsAfter[0].Status.ContainerStatuses[0].RestartCount -
		agentsBefore[0].Status.ContainerStatuses[0].RestartCount; restarts != 0 {
		t.Errorf("the agent on %s restarted %d times across the runtime restart", nodeB, restarts)
	}
}
