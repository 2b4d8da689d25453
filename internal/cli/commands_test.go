package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// createMigration creates a PodMigration of pod in ns and writes status
// with the fake controller's mutate, when not nil.
func createMigration(ctx context.Context, t *testing.T, ns, name, pod string,
	mutate func(*lpmv1.PodMigrationStatus)) *lpmv1.PodMigration {
	t.Helper()
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       lpmv1.PodMigrationSpec{PodName: pod},
	}
	if err := testClient.Create(ctx, pm); err != nil {
		t.Fatalf("failed to create PodMigration %s: %v", name, err)
	}
	if mutate != nil {
		newFakeController(t).write(ctx, pm, mutate)
	}
	if err := testClient.Get(ctx, client.ObjectKeyFromObject(pm), pm); err != nil {
		t.Fatalf("failed to get PodMigration %s: %v", name, err)
	}
	return pm
}

// succeededStatus writes the status of a migration from node-a to node-b
// that succeeded with a downtime of 2.5s.
func succeededStatus(s *lpmv1.PodMigrationStatus) {
	enterPhase(s, lpmv1.PhasePending)
	enterPhase(s, lpmv1.PhaseSucceeded)
	s.SourceNode, s.TargetNode = "node-a", "node-b"
	s.Downtime = &metav1.Duration{Duration: 2500 * time.Millisecond}
	setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionTrue, lpmv1.ReasonMigrationComplete, "")
}

// tableRows splits a table into rows of whitespace-separated cells.
func tableRows(s string) [][]string {
	var rows [][]string
	for _, line := range outputLines(s) {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

// withoutAge drops the last cell, the AGE column, of every row.
func withoutAge(rows [][]string) [][]string {
	for i, row := range rows {
		rows[i] = row[:len(row)-1]
	}
	return rows
}

func TestListCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	otherNS := newNamespace(ctx, t)
	createMigration(ctx, t, ns, "web-1", "web", succeededStatus)
	createMigration(ctx, t, ns, "db-1", "db", func(s *lpmv1.PodMigrationStatus) {
		enterPhase(s, lpmv1.PhasePending)
		enterPhase(s, lpmv1.PhaseFailed)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonPodNotReady, "")
	})
	createMigration(ctx, t, otherNS, "cache-1", "cache", nil)

	t.Run("namespace", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "list")
		if res.code != ExitOK {
			t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
		}
		want := [][]string{
			{"NAME", "POD", "SOURCE", "TARGET", "PHASE", "DOWNTIME"},
			{"db-1", "db", "<none>", "<none>", "Failed:PodNotReady", "<none>"},
			{"web-1", "web", "node-a", "node-b", "Succeeded", "2.5s"},
		}
		got := withoutAge(tableRows(res.stdout))
		// Both were created within the same second, so sort by name.
		if len(got) == 3 && got[1][0] > got[2][0] {
			got[1], got[2] = got[2], got[1]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("table mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("pod filter", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "list", "--pod", "web")
		rows := tableRows(res.stdout)
		if len(rows) != 2 || rows[1][0] != "web-1" {
			t.Errorf("rows = %v, want the header and web-1 only", rows)
		}
	})

	t.Run("all namespaces", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "list", "-A")
		if res.code != ExitOK {
			t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
		}
		found := map[string]bool{}
		for _, row := range tableRows(res.stdout)[1:] {
			found[row[0]+"/"+row[1]] = true
		}
		for _, want := range []string{ns + "/web-1", ns + "/db-1", otherNS + "/cache-1"} {
			if !found[want] {
				t.Errorf("list -A does not show %s:\n%s", want, res.stdout)
			}
		}
		if header := tableRows(res.stdout)[0][0]; header != "NAMESPACE" {
			t.Errorf("first column = %q, want NAMESPACE", header)
		}
	})

	t.Run("json", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", otherNS, "list", "-o", "json")
		list := &lpmv1.PodMigrationList{}
		if err := json.Unmarshal([]byte(res.stdout), list); err != nil {
			t.Fatalf("stdout is not a PodMigrationList: %v", err)
		}
		if len(list.Items) != 1 || list.Items[0].Name != "cache-1" {
			t.Errorf("items = %v, want cache-1", list.Items)
		}
	})

	t.Run("empty namespace", func(t *testing.T) {
		empty := newNamespace(ctx, t)
		res := runCLI(ctx, t, testDeps(), "-n", empty, "list")
		if res.code != ExitOK || res.stdout != "" {
			t.Errorf("exit code, stdout = %d, %q, want 0 and nothing", res.code, res.stdout)
		}
		if want := "No PodMigrations found in namespace " + empty + ".\n"; res.stderr != want {
			t.Errorf("stderr = %q, want %q", res.stderr, want)
		}
	})

	t.Run("arguments rejected", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "list", "web")
		if res.code != ExitUsage {
			t.Errorf("exit code = %d, want %d", res.code, ExitUsage)
		}
	})
}

func TestStatusCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	fake := newFakeController(t)
	pm := createMigration(ctx, t, ns, "web-1", "web", nil)
	fake.failTransfer(ctx, pm, "connection refused")
	if err := testClient.Get(ctx, client.ObjectKeyFromObject(pm), pm); err != nil {
		t.Fatalf("failed to get PodMigration: %v", err)
	}

	// One event about this PodMigration, and one about another object of
	// the same name, which status must not show.
	events := []*eventsv1.Event{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1.transfer"},
			EventTime:  metav1.NowMicro(), Type: corev1.EventTypeWarning, Reason: "TransferFailed",
			Action: "Rollback", Note: "connection refused", ReportingController: "lpm.dev/controller",
			ReportingInstance: "lpm-controller-0",
			Regarding: corev1.ObjectReference{APIVersion: "lpm.dev/v1", Kind: "PodMigration", Namespace: ns,
				Name: pm.Name, UID: pm.UID},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1.pod"},
			EventTime:  metav1.NowMicro(), Type: corev1.EventTypeNormal, Reason: "Pulled",
			Action: "Pull", Note: "pulled an image", ReportingController: "kubelet", ReportingInstance: "node-a",
			Regarding: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pm.Name,
				UID: "11111111-2222-3333-4444-555555555555"},
		},
	}
	for _, e := range events {
		if err := testClient.Create(ctx, e); err != nil {
			t.Fatalf("failed to create event %s: %v", e.Name, err)
		}
	}

	res := runCLI(ctx, t, testDeps(), "-n", ns, "status", "web-1")
	if res.code != ExitOK {
		t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
	}
	for _, want := range []string{
		"Name:            web-1\n",
		"Phase:           Failed:TransferFailed\n",
		"What to do:      " + adviceByReason[lpmv1.ReasonTransferFailed] + "\n",
		"\n  Pending              ",
		"\n  PreparingImages      ",
		"\n  app       32.0 MiB   <none>       <none>     <none>   8192            false      <none>\n",
		"\n  ImagesReady           False    TransferFailed   ",
		"\n  source/Checkpointed   True     Checkpointed     ",
		"\n  Warning   TransferFailed   ",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status does not contain %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "Pulled") {
		t.Errorf("status shows an event of another object:\n%s", res.stdout)
	}

	t.Run("yaml", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "status", "web-1", "-o", "yaml")
		if !strings.Contains(res.stdout, "kind: PodMigration\n") || !strings.Contains(res.stdout, "phase: Failed\n") {
			t.Errorf("stdout is not the PodMigration in YAML:\n%s", res.stdout)
		}
	})

	t.Run("not found", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "status", "nope")
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
		if want := "error: PodMigration \"nope\" not found in namespace \"" + ns + "\"\n"; res.stderr != want {
			t.Errorf("stderr = %q, want %q", res.stderr, want)
		}
	})

	t.Run("missing name", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "status")
		if res.code != ExitUsage {
			t.Errorf("exit code = %d, want %d", res.code, ExitUsage)
		}
		if !strings.Contains(res.stderr, "missing PodMigration name") {
			t.Errorf("stderr = %q, want it to name the missing argument", res.stderr)
		}
	})
}

// runningMigration creates a PodMigration in PreparingImages that carries
// the controller's rollback finalizer.
func runningMigration(ctx context.Context, t *testing.T, ns, name string) *lpmv1.PodMigration {
	t.Helper()
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: []string{lpmv1.FinalizerRollback}},
		Spec:       lpmv1.PodMigrationSpec{PodName: "web"},
	}
	if err := testClient.Create(ctx, pm); err != nil {
		t.Fatalf("failed to create PodMigration: %v", err)
	}
	fake := newFakeController(t)
	fake.preflight(ctx, pm, "node-a", "node-b")
	fake.checkpoint(ctx, pm)
	return pm
}

// rollBack plays the agents and the controller after pm was deleted: each
// agent reports CleanedUp, and the controller removes its finalizer.
func rollBack(ctx context.Context, t *testing.T, pm *lpmv1.PodMigration) {
	t.Helper()
	key := client.ObjectKeyFromObject(pm)
	deadline := time.Now().Add(20 * time.Second)
	for {
		current := &lpmv1.PodMigration{}
		if err := testClient.Get(ctx, key, current); err != nil {
			t.Errorf("failed to get PodMigration: %v", err)
			return
		}
		if current.DeletionTimestamp != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("PodMigration %s was not deleted", key)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}

	fake := newFakeController(t)
	fake.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Target.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
			lpmv1.ReasonCleanedUp, "")
	})
	fake.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Source.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
			lpmv1.ReasonCleanedUp, "")
	})
	current := &lpmv1.PodMigration{}
	if err := testClient.Get(ctx, key, current); err != nil {
		t.Errorf("failed to get PodMigration: %v", err)
		return
	}
	controllerutil.RemoveFinalizer(current, lpmv1.FinalizerRollback)
	if err := testClient.Update(ctx, current); err != nil {
		t.Errorf("failed to remove the finalizer: %v", err)
	}
}

func TestCancelCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)

	t.Run("wait for the rollback", func(t *testing.T) {
		pm := runningMigration(ctx, t, ns, "web-wait")
		done := startCLI(ctx, t, testDeps(), "-n", ns, "cancel", pm.Name, "--wait")
		rollBack(ctx, t, pm)
		res := awaitResult(t, done)

		if res.code != ExitOK {
			t.Errorf("exit code = %d, want %d", res.code, ExitOK)
		}
		want := []string{
			"podmigration.lpm.dev/web-wait cancelled",
			"Waiting for the rollback of web-wait to finish...",
			"The target agent on node-b cleaned up.",
			"The source agent on node-a cleaned up.",
			"Rollback finished: pod " + ns + "/web runs on node-a.",
		}
		if diff := cmp.Diff(want, outputLines(res.stdout)); diff != "" {
			t.Errorf("output mismatch (-want +got):\n%s", diff)
		}
		err := testClient.Get(ctx, client.ObjectKeyFromObject(pm), &lpmv1.PodMigration{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("PodMigration still exists after the rollback: %v", err)
		}
	})

	t.Run("without waiting", func(t *testing.T) {
		pm := runningMigration(ctx, t, ns, "web-nowait")
		res := runCLI(ctx, t, testDeps(), "-n", ns, "cancel", pm.Name)
		if res.code != ExitOK {
			t.Errorf("exit code = %d, want %d", res.code, ExitOK)
		}
		want := "podmigration.lpm.dev/web-nowait cancelled\n" +
			"lpm rolls the migration back. To wait for it: kubectl migrate cancel web-nowait -n " + ns + " --wait\n"
		if res.stdout != want {
			t.Errorf("stdout = %q, want %q", res.stdout, want)
		}
		current := &lpmv1.PodMigration{}
		if err := testClient.Get(ctx, client.ObjectKeyFromObject(pm), current); err != nil {
			t.Fatalf("failed to get PodMigration: %v", err)
		}
		if current.DeletionTimestamp == nil {
			t.Errorf("PodMigration is not being deleted")
		}

		// A second cancel finds it being deleted and waits for the end.
		done := startCLI(ctx, t, testDeps(), "-n", ns, "cancel", pm.Name, "--wait")
		rollBack(ctx, t, pm)
		res = awaitResult(t, done)
		if res.code != ExitOK {
			t.Errorf("second cancel: exit code = %d, want %d", res.code, ExitOK)
		}
		if !strings.HasPrefix(res.stdout, "PodMigration web-nowait is already being cancelled.\n") {
			t.Errorf("second cancel: stdout = %q", res.stdout)
		}
	})

	t.Run("wait times out", func(t *testing.T) {
		pm := runningMigration(ctx, t, ns, "web-stuck")
		res := runCLI(ctx, t, testDeps(), "-n", ns, "cancel", pm.Name, "--wait", "--timeout", "1s")
		if res.code != ExitWaitTimedOut {
			t.Errorf("exit code = %d, want %d", res.code, ExitWaitTimedOut)
		}
		if !strings.Contains(res.stdout, "Stopped waiting after 1.0s. The rollback of web-stuck goes on") {
			t.Errorf("stdout = %q", res.stdout)
		}
		rollBack(ctx, t, pm)
	})

	t.Run("succeeded migration rejected", func(t *testing.T) {
		pm := createMigration(ctx, t, ns, "web-done", "web", succeededStatus)
		res := runCLI(ctx, t, testDeps(), "-n", ns, "cancel", pm.Name)
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
		want := "error: PodMigration web-done already succeeded and cannot be rolled back: pod " + ns +
			"/web runs on node-b. To delete the record only, run: kubectl delete podmigration web-done -n " + ns + "\n"
		if res.stderr != want {
			t.Errorf("stderr = %q, want %q", res.stderr, want)
		}
		current := &lpmv1.PodMigration{}
		if err := testClient.Get(ctx, client.ObjectKeyFromObject(pm), current); err != nil ||
			current.DeletionTimestamp != nil {
			t.Errorf("a succeeded PodMigration was deleted: %v", err)
		}
	})

	t.Run("not found", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "cancel", "nope")
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
	})
}

// answerDryRuns plays the controller and the agents for every dry run in ns
// until ctx ends: pods named in failures fail with the given check, the
// others pass. It moves each pod from node to target.
func answerDryRuns(ctx context.Context, t *testing.T, ns, node, target string,
	failures map[string]lpmv1.Reason) {
	fake := newFakeController(t)
	answered := map[types.UID]bool{}
	for ctx.Err() == nil {
		list := &lpmv1.PodMigrationList{}
		if err := testClient.List(ctx, list, client.InNamespace(ns)); err != nil {
			return
		}
		for i := range list.Items {
			pm := &list.Items[i]
			if answered[pm.UID] || !pm.Spec.DryRun {
				continue
			}
			answered[pm.UID] = true
			switch reason, fail := failures[pm.Spec.PodName]; {
			case !fail:
				fake.dryRun(ctx, pm, node, target, "", "", "")
			case reason == lpmv1.ReasonHostNamespace:
				fake.failPreflight(ctx, pm, reason, "spec.hostNetwork: pod uses the node's network namespace")
			default:
				fake.dryRun(ctx, pm, node, target, "target", reason, "image registry.example.com/app not found")
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckPodCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})
	createRunningPod(ctx, t, ns, "batch", "node-a", []string{"app"})

	answerCtx, stop := context.WithCancel(ctx)
	defer stop()
	go answerDryRuns(answerCtx, t, ns, "node-a", "node-b",
		map[string]lpmv1.Reason{"batch": lpmv1.ReasonBaseImageUnavailable})

	t.Run("passes", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "check", "web")
		if res.code != ExitOK {
			t.Errorf("exit code = %d, want %d", res.code, ExitOK)
		}
		want := [][]string{
			{"Running", "the", "preflight", "checks", "for", "pod", ns + "/web..."},
			{"CHECK", "NODE", "RESULT", "REASON", "MESSAGE"},
			{"pod", "and", "nodes", "(controller)", "-", "passed", "<none>"},
			{"source", "agent", "node-a", "passed", "Prepared"},
			{"target", "agent", "node-b", "passed", "Prepared"},
			{"Pod", ns + "/web", "can", "move", "from", "node-a", "to", "node-b."},
		}
		if diff := cmp.Diff(want, tableRows(res.stdout)); diff != "" {
			t.Errorf("report mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("fails", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "check", "pod/batch")
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
		for _, want := range []string{
			"failed   BaseImageUnavailable   image registry.example.com/app not found\n",
			"Pod " + ns + "/batch cannot move: BaseImageUnavailable\n",
			"What to do: " + adviceByReason[lpmv1.ReasonBaseImageUnavailable] + "\n",
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("report does not contain %q:\n%s", want, res.stdout)
			}
		}
	})

	t.Run("dry runs are deleted", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for len(listMigrations(ctx, t, ns)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if items := listMigrations(ctx, t, ns); len(items) != 0 {
			t.Errorf("%d dry-run PodMigrations left behind", len(items))
		}
	})

	t.Run("bad input", func(t *testing.T) {
		tests := []struct {
			args       []string
			wantStderr string
		}{
			{[]string{"check"}, "error: missing pod or node: run 'kubectl migrate check POD'"},
			{[]string{"check", "deploy/web"}, "error: invalid argument \"deploy/web\": expected POD, pod/POD or node/NODE"},
			{[]string{"check", "web", "--timeout", "-1s"}, "error: invalid --timeout -1s: must be positive"},
			{[]string{"check", "node/node-a", "-o", "yaml"}, "error: --output works only for a pod check"},
		}
		for _, tc := range tests {
			res := runCLI(ctx, t, testDeps(), append([]string{"-n", ns}, tc.args...)...)
			if res.code != ExitUsage {
				t.Errorf("%v: exit code = %d, want %d", tc.args, res.code, ExitUsage)
			}
			if !strings.HasPrefix(res.stderr, tc.wantStderr) {
				t.Errorf("%v: stderr = %q, want it to start with %q", tc.args, res.stderr, tc.wantStderr)
			}
		}
	})
}

func TestCheckNodeCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	node := uniqueNodeName("worker")
	createNode(ctx, t, node, true)
	createRunningPod(ctx, t, ns, "web", node, []string{"app"})
	createRunningPod(ctx, t, ns, "proxy", node, []string{"app"}, hostNetwork)

	answerCtx, stop := context.WithCancel(ctx)
	defer stop()
	go answerDryRuns(answerCtx, t, ns, node, "node-b", map[string]lpmv1.Reason{"proxy": lpmv1.ReasonHostNamespace})

	res := runCLI(ctx, t, testDeps(), "check", "node/"+node)
	if res.code != ExitFailed {
		t.Errorf("exit code = %d, want %d: one pod cannot move", res.code, ExitFailed)
	}
	want := [][]string{
		{"Node", node + ":", "no", "lpm", "agent", "reports", "for", "this", "node", "(no", "NodeAgent),", "so", "its",
			"pods", "cannot", "move"},
		{"Running", "the", "preflight", "checks", "for", "2", "pods..."},
		{"NAMESPACE", "POD", "MOVABLE", "TARGET", "REASON", "MESSAGE"},
		{ns, "proxy", "no", "<none>", "HostNamespace", "spec.hostNetwork:", "pod", "uses", "the", "node's", "network",
			"namespace"},
		{ns, "web", "yes", "node-b", "<none>"},
		{"1", "of", "2", "pods", "on", "node", node, "can", "move."},
	}
	if diff := cmp.Diff(want, tableRows(res.stdout)); diff != "" {
		t.Errorf("report mismatch (-want +got):\n%s", diff)
	}

	t.Run("node not found", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "check", "node/nope-"+node)
		if res.code != ExitFailed || !strings.Contains(res.stderr, "node \"nope-"+node+"\" not found") {
			t.Errorf("exit code, stderr = %d, %q", res.code, res.stderr)
		}
	})
}

// createNodeAgent creates a NodeAgent for node that reports Ready, a fresh
// heartbeat and both capabilities, as a healthy agent does.
func createNodeAgent(ctx context.Context, t *testing.T, node string) {
	t.Helper()
	agent := &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := testClient.Create(ctx, agent); err != nil {
		t.Fatalf("failed to create NodeAgent %s: %v", node, err)
	}
	t.Cleanup(func() { _ = testClient.Delete(context.Background(), agent) })

	now := metav1.Now()
	agent.Status.HeartbeatTime = &now
	agent.Status.Capabilities = &lpmv1.NodeCapabilities{RuntimeName: "containerd", RuntimeVersion: "v2.3.7",
		CRIUVersion: "4.1", CgroupVersion: 1}
	for _, c := range []string{lpmv1.NodeAgentReady, lpmv1.NodeAgentCheckpointSupported,
		lpmv1.NodeAgentRestoreSupported} {
		setCondition(&agent.Status.Conditions, c, metav1.ConditionTrue, "Supported", "")
	}
	if err := testClient.Status().Update(ctx, agent); err != nil {
		t.Fatalf("failed to set the status of NodeAgent %s: %v", node, err)
	}
}

// TestCheckLocal runs without t.Parallel: target selection considers every
// node of the cluster, so no other test may create Ready nodes with agents
// meanwhile.
func TestCheckLocal(t *testing.T) {
	requireAPIServer(t)
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	source, target := uniqueNodeName("source"), uniqueNodeName("target")
	for _, node := range []string{source, target} {
		createNode(ctx, t, node, true)
		createNodeAgent(ctx, t, node)
	}
	createRunningPod(ctx, t, ns, "web", source, []string{"app"})
	createRunningPod(ctx, t, ns, "proxy", source, []string{"app"}, hostNetwork)

	t.Run("pod passes", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "check", "web", "--local")
		if res.code != ExitOK {
			t.Errorf("exit code = %d, want %d", res.code, ExitOK)
		}
		want := [][]string{
			{"CHECK", "NODE", "RESULT", "REASON", "MESSAGE"},
			{"pod", "-", "passed", "<none>"},
			{"other", "migrations", "-", "passed", "<none>"},
			{"target", "node", target, "passed", "<none>"},
			{"source", "agent", source, "passed", "<none>"},
			{"non-root", "processes", source, "passed", "<none>"},
			strings.Fields("Pod " + ns + "/web passes the API-level checks for a move from " + source + " to " +
				target + ". The agents' checks did not run: run check without --local for them."),
		}
		if diff := cmp.Diff(want, tableRows(res.stdout)); diff != "" {
			t.Errorf("report mismatch (-want +got):\n%s", diff)
		}
		if items := listMigrations(ctx, t, ns); len(items) != 0 {
			t.Errorf("check --local created %d PodMigrations", len(items))
		}
	})

	t.Run("pod fails", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "-n", ns, "check", "proxy", "--local", "--to", source)
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
		for _, want := range []string{
			"pod                  -",
			"failed   HostNamespace",
			"failed   TargetIsSource",
			"Pod " + ns + "/proxy cannot move: HostNamespace\n",
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("report does not contain %q:\n%s", want, res.stdout)
			}
		}
	})

	t.Run("node", func(t *testing.T) {
		res := runCLI(ctx, t, testDeps(), "check", "node/"+source, "--local")
		if res.code != ExitFailed {
			t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
		}
		want := [][]string{
			strings.Fields("Node " + source + ": lpm agent ready, checkpoint supported, restore supported " +
				"(containerd v2.3.7, CRIU 4.1)"),
			{"NAMESPACE", "POD", "MOVABLE", "TARGET", "REASON", "MESSAGE"},
			append([]string{ns, "proxy", "no", target, "HostNamespace"},
				strings.Fields("spec.hostNetwork: pod proxy uses the node's network namespace, which does not move")...),
			{ns, "web", "yes", target, "<none>"},
			strings.Fields("1 of 2 pods on node " + source + " can move."),
		}
		if diff := cmp.Diff(want, tableRows(res.stdout)); diff != "" {
			t.Errorf("report mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestCompletion(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	node := uniqueNodeName("complete")
	createNode(ctx, t, node, false)
	createRunningPod(ctx, t, ns, "web", node, []string{"app"})
	createRunningPod(ctx, t, ns, "worker", node, []string{"app"})
	createMigration(ctx, t, ns, "web-1", "web", nil)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "pod names", args: []string{"pod", "w"}, want: []string{"web", "worker"}},
		{name: "pod names with prefix", args: []string{"pod", "wo"}, want: []string{"worker"}},
		{name: "migration names", args: []string{"status", ""}, want: []string{"web-1"}},
		{name: "check nodes", args: []string{"check", "node/" + node}, want: []string{"node/" + node}},
		{name: "target node flag", args: []string{"pod", "web", "--to", node}, want: []string{node}},
		{name: "transfer modes", args: []string{"pod", "web", "--transfer", ""}, want: []string{"direct", "registry"}},
		{name: "namespace flag", args: []string{"list", "--namespace", ns}, want: []string{ns}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"__complete", "-n", ns}, tc.args...)
			res := runCLI(ctx, t, testDeps(), args...)
			lines := outputLines(res.stdout)
			// The last line is cobra's completion directive.
			got := lines[:len(lines)-1]
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("completions mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)

	res := runCLI(ctx, t, testDeps(), "version")
	if res.code != ExitOK {
		t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
	}
	lines := outputLines(res.stdout)
	if len(lines) != 3 {
		t.Fatalf("output = %q, want three lines", res.stdout)
	}
	if !strings.HasPrefix(lines[0], "Client Version: ") {
		t.Errorf("line 1 = %q, want the client version", lines[0])
	}
	if !strings.HasPrefix(lines[1], "Server Version: v1.") {
		t.Errorf("line 2 = %q, want the server version", lines[1])
	}
	if lines[2] != "lpm API: lpm.dev/v1 served" {
		t.Errorf("line 3 = %q, want the lpm API served", lines[2])
	}

	res = runCLI(ctx, t, testDeps(), "version", "--client", "--kubeconfig", "/nonexistent")
	if res.code != ExitOK || len(outputLines(res.stdout)) != 1 {
		t.Errorf("version --client: exit code, stdout = %d, %q, want the client line only", res.code, res.stdout)
	}
}
