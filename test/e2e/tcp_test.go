//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab/workload"
)

// The lab's nodes set tcp-close and skip-in-flight in /etc/criu/runc.conf,
// as lpm's documentation requires of every node. These scenarios check what
// that buys, and what lpm does on a node without it.

// holdConnection runs a peer counter and a counter named name on node A
// that holds a TCP connection to the peer, and returns the latter.
func holdConnection(t *testing.T, ns, name string) (*corev1.Pod, int) {
	t.Helper()
	peer := createPod(t, workload.CounterPod(ns, name+"-peer", nodeA))
	pod := createPod(t, workload.CounterPod(ns, name, nodeA))
	if err := httpPut(t, pod.Status.PodIP, "/connection?addr="+peer.Status.PodIP+":8080", ""); err != nil {
		t.Fatal(err)
	}
	if got, err := httpGet(t, pod.Status.PodIP, "/connection"); err != nil || got != "open" {
		t.Fatalf("held connection = %q, %v; want open", got, err)
	}
	return pod, requireCounting(t, pod.Status.PodIP)
}

// TestMigrateClosesTCPConnections moves a pod that holds an established
// TCP connection. The restored process runs on, and its connection is
// closed: the pod has a new address, so the connection could not continue.
func TestMigrateClosesTCPConnections(t *testing.T) {
	agents := requireLPM(t)
	for _, n := range []string{nodeA, nodeB} {
		if caps := agents[n].Status.Capabilities; caps == nil || !caps.TCPClose {
			t.Fatalf("NodeAgent %s does not report tcpClose, though the lab's nodes set tcp-close", n)
		}
	}
	ns := newNamespace(t)
	pod, before := holdConnection(t, ns, "conn")

	pm := migrate(t, ns, "conn", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})
	restored := requireMoved(t, ns, pod.Name, pm, nodeB, before)
	var got string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if got, err = httpGet(t, restored.Status.PodIP, "/connection"); err == nil && got == "closed" {
			return
		}
	}
	t.Errorf("held connection after the restore = %q, %v; want closed", got, err)
}

// TestMigrateRejectsTCPConnectionWithoutTCPClose takes tcp-close out of
// the source node's CRIU configuration: a pod that holds a connection is
// rejected before the cut, and runs on with its connection open.
func TestMigrateRejectsTCPConnectionWithoutTCPClose(t *testing.T) {
	requireLPM(t)
	setCRIUConfig(t, nodeA, "skip-in-flight\n")
	ns := newNamespace(t)
	pod, before := holdConnection(t, ns, "conn")

	pm := migrate(t, ns, "conn", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})

	requireFailed(t, pm, lpmv1.ReasonTCPConnectionOpen)
	msg := outcome(pm)
	t.Logf("rejected: %s", msg)
	if !strings.Contains(msg, "(counter)") || !strings.Contains(msg, "tcp-close") {
		t.Errorf("failure message %q does not name the process and tcp-close", msg)
	}
	if pm.Status.CutTime != nil {
		t.Errorf("rejected migration has a cut time %s", pm.Status.CutTime)
	}
	if n := requireCounting(t, pod.Status.PodIP); n <= before {
		t.Errorf("source stopped counting at %d", n)
	}
	if got, err := httpGet(t, pod.Status.PodIP, "/connection"); err != nil || got != "open" {
		t.Errorf("held connection of the source = %q, %v; want open", got, err)
	}
}

// TestMigrateRejectsTargetWithoutTCPClose takes tcp-close out of the
// target node's CRIU configuration: CRIU would refuse to restore the
// source's checkpoint, so the preflight checks reject the migration.
func TestMigrateRejectsTargetWithoutTCPClose(t *testing.T) {
	requireLPM(t)
	setCRIUConfig(t, nodeB, "skip-in-flight\n")
	ns := newNamespace(t)
	source, before := counterAfterWarmup(t, ns, "notarget", nodeA)

	pm := migrate(t, ns, "notarget", lpmv1.PodMigrationSpec{PodName: "notarget", TargetNode: nodeB})

	requireFailed(t, pm, lpmv1.ReasonIncompatibleCRIU)
	msg := outcome(pm)
	t.Logf("rejected: %s", msg)
	if !strings.Contains(msg, "tcp-close") {
		t.Errorf("failure message %q does not name tcp-close", msg)
	}
	if pm.Status.CutTime != nil {
		t.Errorf("rejected migration has a cut time %s", pm.Status.CutTime)
	}
	if n := requireCounting(t, source.Status.PodIP); n <= before {
		t.Errorf("source stopped counting at %d", n)
	}
}

// TestMigrateRejectsMultipathTCP moves a counter that listens with
// Multipath TCP, as Go programs do by default: it is rejected before the
// cut with the process and the fix named, and counts on.
func TestMigrateRejectsMultipathTCP(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	source, before := counterAfterWarmup(t, ns, "mptcp", nodeA, "-multipath-tcp")

	pm := migrate(t, ns, "mptcp", lpmv1.PodMigrationSpec{PodName: "mptcp", TargetNode: nodeB})

	requireFailed(t, pm, lpmv1.ReasonMultipathTCPInUse)
	msg := outcome(pm)
	t.Logf("rejected: %s", msg)
	for _, want := range []string{"process", "(counter)", "GODEBUG=multipathtcp=0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message %q lacks %q", msg, want)
		}
	}
	if pm.Status.CutTime != nil {
		t.Errorf("rejected migration has a cut time %s", pm.Status.CutTime)
	}
	if n := requireCounting(t, source.Status.PodIP); n <= before {
		t.Errorf("source stopped counting at %d", n)
	}
}

// setCRIUConfig replaces a node's /etc/criu/runc.conf until the test ends
// and waits until the node's agent reports the change.
func setCRIUConfig(t *testing.T, nodeName, content string) {
	t.Helper()
	n := labNode(t, nodeName)
	original, err := n.Output(testContext(t, time.Minute), "cat", "/etc/criu/runc.conf")
	if err != nil {
		t.Fatalf("failed to read the CRIU configuration of %s: %v", nodeName, err)
	}
	write := func(data string) error {
		cmd := n.Command(testContext(t, time.Minute), "sh", "-c", "cat >/etc/criu/runc.conf")
		cmd.Stdin = strings.NewReader(data)
		return cmd.Run()
	}
	if err := write(content); err != nil {
		t.Fatalf("failed to write the CRIU configuration of %s: %v", nodeName, err)
	}
	t.Cleanup(func() {
		if err := write(string(original)); err != nil {
			t.Errorf("failed to restore the CRIU configuration of %s: %v", nodeName, err)
		}
		waitTCPClose(t, nodeName, strings.Contains(string(original), "tcp-close"))
	})
	waitTCPClose(t, nodeName, strings.Contains(content, "tcp-close"))
}

// waitTCPClose waits until a node's agent reports tcpClose as want.
func waitTCPClose(t *testing.T, nodeName string, want bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		na := &lpmv1.NodeAgent{}
		err := clients.Client.Get(testContext(t, time.Minute), client.ObjectKey{Name: nodeName}, na)
		if err == nil && na.Status.Capabilities != nil && na.Status.Capabilities.TCPClose == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NodeAgent %s does not report tcpClose=%v a minute after its CRIU configuration changed",
				nodeName, want)
		}
		time.Sleep(time.Second)
	}
}
