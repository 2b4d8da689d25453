package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/workload"
)

const (
	demoNamespace = "lpm-demo"
	demoPod       = "counter"
	demoMigration = "counter-to-node-b"
	// demoWarmup is how long the counter runs on node-a before it moves,
	// so a count that restarted from zero would be plain to see.
	demoWarmup = 8 * time.Second
)

// Demo runs a counting pod on node-a, migrates it to node-b with a
// PodMigration, prints each phase as it happens, and checks that the
// count on node-b continues from where it stopped on node-a.
func Demo(ctx context.Context, opts Options, l *cluster.Lab) (int, error) {
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return 1, err
	}
	c, err := workload.NewClients(cfg)
	if err != nil {
		return 1, err
	}
	source, target := l.Instance().NodeName(0), l.Instance().NodeName(1)
	if err := requireAgents(ctx, c, source, target); err != nil {
		return 1, err
	}

	// Start from a clean namespace, so the demo can run again and again.
	if err := c.EnsureNamespace(ctx, demoNamespace); err != nil {
		return 1, err
	}
	if err := cleanDemo(ctx, c); err != nil {
		return 1, err
	}
	say("starting pod %s/%s on %s", demoNamespace, demoPod, source)
	if err := c.Client.Create(ctx, workload.CounterPod(demoNamespace, demoPod, source)); err != nil {
		return 1, fmt.Errorf("failed to create the demo pod: %w", err)
	}
	pod, err := c.WaitPodReady(ctx, demoNamespace, demoPod, 2*time.Minute)
	if err != nil {
		return 1, err
	}
	say("pod %s is Ready on %s with IP %s", demoPod, pod.Spec.NodeName, pod.Status.PodIP)
	for end := time.Now().Add(demoWarmup); time.Now().Before(end); {
		time.Sleep(2 * time.Second)
		logs, _ := c.Logs(ctx, demoNamespace, demoPod, "counter")
		say("%s on %s: count=%d", demoPod, source, workload.LastCount(logs))
	}

	say("creating PodMigration %s/%s: move %s to %s", demoNamespace, demoMigration, demoPod, target)
	m := workload.Migration{
		Namespace: demoNamespace,
		Name:      demoMigration,
		Spec:      lpmv1.PodMigrationSpec{PodName: demoPod, TargetNode: target},
		OnChange: func(pm *lpmv1.PodMigration, change string) {
			if strings.HasPrefix(change, "phase ") {
				say("  %s", change)
			} else {
				say("    %s", change)
			}
		},
	}
	// Kubernetes timestamps have a resolution of one second, so this client
	// also measures the cut-to-Ready interval itself, to a poll interval.
	var cutSeen, readySeen time.Time
	m.OnPoll = func(pm *lpmv1.PodMigration) {
		if cutSeen.IsZero() && pm.Status.Phase != lpmv1.PhasePending && pm.Status.Phase != "" {
			cutSeen = time.Now()
		}
		if readySeen.IsZero() && pm.Status.RestoredPod != "" {
			p := &corev1.Pod{}
			key := client.ObjectKey{Namespace: demoNamespace, Name: pm.Status.RestoredPod}
			if c.Client.Get(ctx, key, p) == nil && podIsReady(p) {
				readySeen = time.Now()
			}
		}
	}
	pm, err := m.Run(ctx, c, 5*time.Minute)
	if err != nil {
		return 1, err
	}
	if !cutSeen.IsZero() && !readySeen.IsZero() {
		say("measured by this client: %s from the start of the checkpoint to the restored pod Ready",
			readySeen.Sub(cutSeen).Round(10*time.Millisecond))
	}
	if pm.Status.Phase != lpmv1.PhaseSucceeded {
		cond := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSucceeded)
		if cond != nil {
			return 1, fmt.Errorf("migration failed: %s: %s", cond.Reason, cond.Message)
		}
		return 1, fmt.Errorf("migration ended in phase %s", pm.Status.Phase)
	}
	return reportDemo(ctx, c, pm, say)
}

// reportDemo shows the counts on both sides of the cut and the downtime,
// and fails when the restored count does not continue the source's.
func reportDemo(ctx context.Context, c *workload.Clients, pm *lpmv1.PodMigration,
	say func(string, ...any)) (int, error) {
	restored, err := c.WaitPodReady(ctx, demoNamespace, pm.Status.RestoredPod, time.Minute)
	if err != nil {
		return 1, err
	}
	// The restored container's log starts with the source's log up to the
	// checkpoint (the runtime carries it over); the process then prints
	// on from there.
	time.Sleep(3 * time.Second)
	logs, err := c.Logs(ctx, demoNamespace, restored.Name, "counter")
	if err != nil {
		return 1, err
	}
	counts := workload.Counts(logs)
	started := restored.Status.ContainerStatuses[0].State.Running
	say("restored pod %s is Ready on %s with IP %s", restored.Name, restored.Spec.NodeName, restored.Status.PodIP)
	say("last counts on %s: %s", restored.Spec.NodeName, tail(counts, 5))
	if pm.Status.Downtime != nil {
		say("downtime (checkpoint start to restored pod Ready): %s", pm.Status.Downtime.Duration)
	}

	// A counter that started again from zero could not have counted past
	// the seconds its container has run.
	last := workload.LastCount(logs)
	if started != nil {
		ran := int(time.Since(started.StartedAt.Time).Seconds()) + 1
		if last <= ran+int(demoWarmup.Seconds())/2 {
			return 1, fmt.Errorf("count %d on %s is not more than the %ds its container ran: the process "+
				"started from zero", last, restored.Spec.NodeName, ran)
		}
	}
	if !nonDecreasing(counts) {
		return 1, fmt.Errorf("the counts on %s go back: %v", restored.Spec.NodeName, counts)
	}
	say("the count continued on %s from where it stopped on %s", restored.Spec.NodeName, pm.Status.SourceNode)
	return 0, nil
}

func podIsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func tail(counts []int, n int) string {
	if len(counts) > n {
		counts = counts[len(counts)-n:]
	}
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprint(c)
	}
	return strings.Join(parts, " ")
}

func nonDecreasing(counts []int) bool {
	for i := 1; i < len(counts); i++ {
		if counts[i] < counts[i-1] {
			return false
		}
	}
	return true
}

// requireAgents fails with a clear message unless lpm's agents publish
// both nodes.
func requireAgents(ctx context.Context, c *workload.Clients, nodes ...string) error {
	for _, n := range nodes {
		na := &lpmv1.NodeAgent{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: n}, na); err != nil {
			return fmt.Errorf("lpm's agent on %s is not running (NodeAgent %s: %w); run lpm-lab install", n, n, err)
		}
	}
	return nil
}

// waitAgentsReady waits until every node's NodeAgent reports Ready.
func waitAgentsReady(ctx context.Context, l *cluster.Lab, timeout time.Duration) error {
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	c, err := workload.NewClients(cfg)
	if err != nil {
		return err
	}
	nodes := &corev1.NodeList{}
	if err := c.Client.List(ctx, nodes); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for _, n := range nodes.Items {
		for {
			na := &lpmv1.NodeAgent{}
			err := c.Client.Get(ctx, client.ObjectKey{Name: n.Name}, na)
			if err == nil && meta.IsStatusConditionTrue(na.Status.Conditions, lpmv1.NodeAgentReady) {
				logf("agent on %s is Ready", n.Name)
				break
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = errors.New("condition Ready is not True")
				}
				return fmt.Errorf("agent on %s not Ready after %s: %w", n.Name, timeout, err)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

func cleanDemo(ctx context.Context, c *workload.Clients) error {
	pms := &lpmv1.PodMigrationList{}
	if err := c.Client.List(ctx, pms, client.InNamespace(demoNamespace)); err != nil {
		return fmt.Errorf("failed to list PodMigrations: %w", err)
	}
	for i := range pms.Items {
		if err := c.Client.Delete(ctx, &pms.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	pods := &corev1.PodList{}
	if err := c.Client.List(ctx, pods, client.InNamespace(demoNamespace)); err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if err := c.Client.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := c.WaitPodGone(ctx, demoNamespace, p.Name, time.Minute); err != nil {
			return err
		}
	}
	return nil
}
