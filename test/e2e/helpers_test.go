//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/restorecheck"
	"github.com/lpm-dev/lpm/lab/images"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/workload"
)

// requireLPM fails the test unless lpm runs in the lab: a NodeAgent that
// is Ready for each node.
func requireLPM(t *testing.T) map[string]*lpmv1.NodeAgent {
	t.Helper()
	ctx := testContext(t, time.Minute)
	out := map[string]*lpmv1.NodeAgent{}
	for _, n := range []string{nodeA, nodeB} {
		na := &lpmv1.NodeAgent{}
		if err := clients.Client.Get(ctx, client.ObjectKey{Name: n}, na); err != nil {
			t.Fatalf("lpm is not installed in the lab (NodeAgent %s: %v): run lpm-lab install", n, err)
		}
		if !meta.IsStatusConditionTrue(na.Status.Conditions, lpmv1.NodeAgentReady) {
			t.Fatalf("the agent on %s is not Ready: %+v", n, na.Status.Conditions)
		}
		out[n] = na
	}
	return out
}

func settle(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// migration returns a Migration that logs each change of the
// PodMigration to the test's log.
func migration(t *testing.T, ns, name string, spec lpmv1.PodMigrationSpec) workload.Migration {
	t.Helper()
	start := time.Now()
	return workload.Migration{
		Namespace: ns,
		Name:      name,
		Spec:      spec,
		OnChange: func(_ *lpmv1.PodMigration, change string) {
			t.Logf("%6.2fs %s/%s %s", time.Since(start).Seconds(), ns, name, change)
		},
	}
}

// migrate runs a PodMigration to its end and returns it.
func migrate(t *testing.T, ns, name string, spec lpmv1.PodMigrationSpec) *lpmv1.PodMigration {
	t.Helper()
	if spec.Settle == nil {
		spec.Settle = settle(2 * time.Second)
	}
	pm, err := migration(t, ns, name, spec).Run(testContext(t, 5*time.Minute), clients, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// requireSucceeded fails the test unless the migration succeeded.
func requireSucceeded(t *testing.T, pm *lpmv1.PodMigration) {
	t.Helper()
	if pm.Status.Phase != lpmv1.PhaseSucceeded {
		t.Fatalf("migration %s ended in %s: %s", pm.Name, pm.Status.Phase, outcome(pm))
	}
}

// requireFailed fails the test unless the migration failed with reason.
func requireFailed(t *testing.T, pm *lpmv1.PodMigration, reason lpmv1.Reason) {
	t.Helper()
	if pm.Status.Phase != lpmv1.PhaseFailed {
		t.Fatalf("migration %s ended in %s, want Failed with %s", pm.Name, pm.Status.Phase, reason)
	}
	cond := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSucceeded)
	if cond == nil || cond.Reason != string(reason) {
		t.Errorf("migration %s failed with %s, want reason %s", pm.Name, outcome(pm), reason)
	}
}

func outcome(pm *lpmv1.PodMigration) string {
	if cond := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSucceeded); cond != nil {
		return fmt.Sprintf("%s: %s", cond.Reason, cond.Message)
	}
	return "no Succeeded condition"
}

// waitPhase waits until the migration reaches one of the phases.
func waitPhase(t *testing.T, m workload.Migration, timeout time.Duration,
	phases ...lpmv1.MigrationPhase) *lpmv1.PodMigration {
	t.Helper()
	pm, err := m.Wait(testContext(t, timeout+time.Minute), clients, timeout, func(pm *lpmv1.PodMigration) bool {
		for _, p := range phases {
			if pm.Status.Phase == p {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

func labNode(t *testing.T, name string) *node.Node {
	t.Helper()
	n, err := theLab.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nodeIndex(name string) int {
	for i := 0; i < instance.MaxNodes; i++ {
		if theLab.Instance().NodeName(i) == name {
			return i
		}
	}
	return -1
}

// checkpointImages lists the checkpoint images of a namespace's pods in a
// node's containerd: lpm names them localhost/lpm/<namespace>/...
func checkpointImages(t *testing.T, nodeName, namespace string) []string {
	t.Helper()
	out, err := labNode(t, nodeName).Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	var imgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "localhost/lpm/"+namespace+"/") {
			imgs = append(imgs, line)
		}
	}
	return imgs
}

// archives lists the checkpoint archives of a namespace's pods on a node:
// the kubelet's (named checkpoint-<pod>_<namespace>-<container>-<time>.tar)
// and those in the agent's state directory.
func archives(t *testing.T, nodeName, namespace string) []string {
	t.Helper()
	dir := theLab.Instance().NodeDir(nodeIndex(nodeName))
	dirs := []string{filepath.Join(dir, "kubelet", "checkpoints"), filepath.Join(dir, "upper", "var", "lib", "lpm")}
	var out []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(p, ".tar") && strings.Contains(p, namespace) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// diskUsage adds up the bytes a node keeps for images, checkpoints and
// lpm's state.
func diskUsage(t *testing.T, nodeName string) int64 {
	t.Helper()
	dir := theLab.Instance().NodeDir(nodeIndex(nodeName))
	var total int64
	for _, d := range []string{
		filepath.Join(dir, "containerd", "io.containerd.content.v1.content"),
		filepath.Join(dir, "kubelet", "checkpoints"),
		filepath.Join(dir, "upper", "var", "lib", "lpm"),
	} {
		_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if info, err := e.Info(); err == nil {
					total += info.Size()
				}
			}
			return nil
		})
	}
	return total
}

// lpmPods returns lpm's pods that run an image, optionally on one node.
func lpmPods(t *testing.T, image, nodeName string) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := clients.Client.List(testContext(t, time.Minute), pods); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if nodeName != "" && p.Spec.NodeName != nodeName {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c.Image == image {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// restartLPMPods deletes lpm's pods of an image (on a node, when given);
// their Deployment or DaemonSet starts new ones.
func restartLPMPods(t *testing.T, image, nodeName string) {
	t.Helper()
	pods := lpmPods(t, image, nodeName)
	if len(pods) == 0 {
		t.Fatalf("no pod runs %s on %q", image, nodeName)
	}
	for i := range pods {
		t.Logf("deleting %s/%s", pods[i].Namespace, pods[i].Name)
		if err := clients.Client.Delete(testContext(t, time.Minute), &pods[i], client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	agentImage      = images.AgentRef
	controllerImage = images.ControllerRef
)

// waitNodeAgent waits until a node's agent reports a condition.
func waitNodeAgent(t *testing.T, nodeName, condition string, status metav1.ConditionStatus) {
	t.Helper()
	ctx := testContext(t, 3*time.Minute)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		na := &lpmv1.NodeAgent{}
		err := clients.Client.Get(ctx, client.ObjectKey{Name: nodeName}, na)
		if err == nil {
			if c := meta.FindStatusCondition(na.Status.Conditions, condition); c != nil && c.Status == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("NodeAgent %s never reported %s=%s (%v, %+v)", nodeName, condition, status, err, na.Status.Conditions)
		}
		time.Sleep(time.Second)
	}
}

func withContext(t *testing.T) context.Context { return testContext(t, 2*time.Minute) }

// criuNetworkLocks returns the netfilter chains and tables that CRIU adds
// to lock a network namespace, found in the
// namespace of a running pod's first container. It lists them with the
// node's own iptables and nft, entered into the namespace of the
// container's task.
func criuNetworkLocks(t *testing.T, pod *corev1.Pod) []string {
	t.Helper()
	if len(pod.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s has no container status", pod.Name)
	}
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	n := labNode(t, pod.Spec.NodeName)
	out, err := n.Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	pid := ""
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid = f[1]
		}
	}
	if pid == "" {
		t.Fatalf("no task of container %s on node %s:\n%s", id, pod.Spec.NodeName, out)
	}

	listers := []struct {
		args  []string
		parse func(string) []string
	}{
		{[]string{"iptables-legacy-save", "-t", "filter"}, restorecheck.IPTablesChains},
		{[]string{"iptables-nft-save"}, restorecheck.IPTablesChains},
		{[]string{"nft", "list", "tables"}, restorecheck.NftablesTables},
	}
	var locks []string
	for _, l := range listers {
		args := append([]string{"-t", pid, "-n", "--"}, l.args...)
		out, err := n.Output(testContext(t, time.Minute), "nsenter", args...)
		if err != nil {
			t.Fatalf("failed to list netfilter state of pod %s: %v", pod.Name, err)
		}
		locks = append(locks, l.parse(string(out))...)
	}
	return locks
}
