package cli

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

func TestWriteMigrationTable(t *testing.T) {
	succeeded := newMigration(withNodes("node-a", "node-b"),
		withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseSucceeded, 9*time.Second),
		func(pm *lpmv1.PodMigration) { pm.Status.Downtime = &metav1.Duration{Duration: 2300 * time.Millisecond} })
	failed := newMigration(withNodes("node-a", "node-c"),
		withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second),
		withCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonTargetTaint, "taint"),
		func(pm *lpmv1.PodMigration) {
			pm.Name, pm.Namespace, pm.Spec.PodName = "db-9k2x1", "data", "db"
			pm.CreationTimestamp = metav1.NewTime(t0.Add(-2 * time.Hour))
		})
	dryRun := newMigration(withNodes("node-a", "node-b"),
		withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseSucceeded, time.Second),
		func(pm *lpmv1.PodMigration) { pm.Name, pm.Spec.DryRun = "web-check-1", true })
	fresh := newMigration(func(pm *lpmv1.PodMigration) { pm.Name, pm.Spec.TargetNode = "web-new", "node-d" })
	cancelling := newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseCheckpointing, time.Second),
		func(pm *lpmv1.PodMigration) {
			pm.Name = "web-cancel"
			pm.DeletionTimestamp = &metav1.Time{Time: t0}
		})

	tests := []struct {
		name          string
		items         []lpmv1.PodMigration
		withNamespace bool
		want          string
	}{
		{
			name:  "one namespace",
			items: []lpmv1.PodMigration{*succeeded, *dryRun, *fresh, *cancelling},
			want: "NAME          POD   SOURCE   TARGET   PHASE              DOWNTIME   AGE\n" +
				"web-x7k2p     web   node-a   node-b   Succeeded          2.3s       5m\n" +
				"web-check-1   web   node-a   node-b   Succeeded:DryRun   <none>     5m\n" +
				"web-new       web   <none>   node-d   Pending            <none>     5m\n" +
				"web-cancel    web   <none>   <none>   Cancelling         <none>     5m\n",
		},
		{
			name:          "all namespaces",
			items:         []lpmv1.PodMigration{*failed, *succeeded},
			withNamespace: true,
			want: "NAMESPACE   NAME        POD   SOURCE   TARGET   PHASE                            DOWNTIME   AGE\n" +
				"data        db-9k2x1    db    node-a   node-c   Failed:TargetTaintNotTolerated   <none>     125m\n" +
				"shop        web-x7k2p   web   node-a   node-b   Succeeded                        2.3s       5m\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeMigrationTable(&out, tc.items, tc.withNamespace, at(5*time.Minute)); err != nil {
				t.Fatalf("writeMigrationTable() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("table mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSortMigrations(t *testing.T) {
	old := newMigration(func(pm *lpmv1.PodMigration) { pm.Name = "old" })
	recent := newMigration(func(pm *lpmv1.PodMigration) {
		pm.Name = "recent"
		pm.CreationTimestamp = metav1.NewTime(at(time.Minute))
	})
	other := newMigration(func(pm *lpmv1.PodMigration) { pm.Name, pm.Namespace = "other", "apps" })
	items := []lpmv1.PodMigration{*old, *recent, *other}
	sortMigrations(items)

	var got []string
	for _, pm := range items {
		got = append(got, pm.Namespace+"/"+pm.Name)
	}
	want := []string{"apps/other", "shop/recent", "shop/old"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order mismatch (-want +got):\n%s", diff)
	}
}

// fullMigration returns a migration that failed in PreparingImages, with
// every part of the status filled in.
func fullMigration() *lpmv1.PodMigration {
	second := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	pm := newMigration(withNodes("node-a", "node-b"),
		withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseCheckpointing, 2300*time.Millisecond,
			lpmv1.PhaseCheckpointComplete, 3100*time.Millisecond, lpmv1.PhasePreparingImages, 3100*time.Millisecond,
			lpmv1.PhaseFailed, 20*time.Second),
		withCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionTrue, lpmv1.ReasonChecksPassed,
			"pod web can move from node node-a to node node-b"),
		withCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonTransferFailed,
			"connection refused"),
		withTargetBytes(10*mib, 48*mib))
	pm.UID = "0b0d6c1e-3f0a-4d5e-9a34-5b1a3b6c7d8e"
	pm.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry, Registry: &lpmv1.RegistryTransfer{
		Repository: "registry.example.com/ops", PullSecretName: "creds"}}
	pm.Status.StartTime = &metav1.Time{Time: t0}
	pm.Status.CutTime = &metav1.MicroTime{Time: at(2300 * time.Millisecond)}
	pm.Status.CompletionTime = &metav1.Time{Time: at(20 * time.Second)}
	pm.Status.Containers = []lpmv1.ContainerMigrationStatus{{
		Name: "app", ArchiveBytes: 40 * mib, FreezingTime: second(3 * time.Millisecond),
		FrozenTime: second(900 * time.Millisecond), PagesWritten: 10240,
	}}
	pm.Status.Source = &lpmv1.SourceAgentStatus{
		LogPath: "/var/lib/lpm/web-x7k2p/logs",
		Containers: []lpmv1.SourceContainerStatus{
			{Name: "app", ImageBytes: 41 * mib, Image: "registry.example.com/ops:web-app-0b0d"},
			{Name: "sidecar", ArchiveBytes: 8 * mib, PagesWritten: 2048},
		},
		Conditions: []metav1.Condition{{Type: lpmv1.AgentConditionPrepared, Status: metav1.ConditionTrue,
			Reason: "Prepared", LastTransitionTime: metav1.NewTime(t0)}},
	}
	pm.Status.Target.Conditions = []metav1.Condition{{Type: lpmv1.AgentConditionCleanedUp,
		Status: metav1.ConditionTrue, Reason: string(lpmv1.ReasonCleanedUp), LastTransitionTime: metav1.NewTime(t0)}}
	return pm
}

func TestWriteStatus(t *testing.T) {
	events := []eventsv1.Event{
		{Type: corev1.EventTypeNormal, Reason: "ChecksPassed", Note: "pod web can move",
			ReportingController: "lpm.dev/controller", EventTime: metav1.NewMicroTime(at(time.Second))},
		{Type: corev1.EventTypeWarning, Reason: "TransferFailed", Note: "connection refused",
			ReportingController: "lpm.dev/controller", EventTime: metav1.NewMicroTime(at(20 * time.Second)),
			Series: &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(at(30 * time.Second))}},
	}

	var out bytes.Buffer
	if err := writeStatus(&out, fullMigration(), events, nil, at(time.Hour)); err != nil {
		t.Fatalf("writeStatus() error = %v", err)
	}
	want := `Name:            web-x7k2p
Namespace:       shop
Pod:             web
Source node:     node-a
Target node:     node-b
Restored pod:    <none>
Source policy:   Delete
Transfer:        Registry to registry.example.com/ops (pull secret creds)
Dry run:         false
Phase:           Failed:TransferFailed
Result:          TransferFailed: connection refused
What to do:      ` + adviceByReason[lpmv1.ReasonTransferFailed] + `
Created:         Sun, 01 Mar 2026 10:00:00 +0000
Started:         Sun, 01 Mar 2026 10:00:00 +0000
Completed:       Sun, 01 Mar 2026 10:00:20 +0000
Cut time:        Sun, 01 Mar 2026 10:00:02.300 +0000
Ready time:      <none>
Downtime:        <none>
Transferred:     10.0 MiB of 48.0 MiB
CRIU logs:       node-a:/var/lib/lpm/web-x7k2p/logs
Phases:
  PHASE                ENTERED                               DURATION
  Pending              Sun, 01 Mar 2026 10:00:00.000 +0000   2.3s
  Checkpointing        Sun, 01 Mar 2026 10:00:02.300 +0000   800ms
  CheckpointComplete   Sun, 01 Mar 2026 10:00:03.100 +0000   0ms
  PreparingImages      Sun, 01 Mar 2026 10:00:03.100 +0000   17s
  Failed               Sun, 01 Mar 2026 10:00:20.000 +0000   
Containers:
  NAME      ARCHIVE    IMAGE SIZE   FREEZING   FROZEN   PAGES WRITTEN   RESTORED   CHECKPOINT IMAGE
  app       40.0 MiB   41.0 MiB     3ms        900ms    10240           false      registry.example.com/ops:web-app-0b0d
  sidecar   8.0 MiB    <none>       <none>     <none>   2048            false      <none>
Conditions:
  TYPE               STATUS   REASON           AGE   MESSAGE
  PreflightPassed    True     ChecksPassed     60m   pod web can move from node node-a to node node-b
  Succeeded          False    TransferFailed   60m   connection refused
  source/Prepared    True     Prepared         60m   
  target/CleanedUp   True     CleanedUp        60m   
Events:
  TYPE      REASON           AGE        FROM                 MESSAGE
  Normal    ChecksPassed     59m        lpm.dev/controller   pod web can move
  Warning   TransferFailed   59m (x3)   lpm.dev/controller   connection refused
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("status mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteStatusWithoutEvents(t *testing.T) {
	pm := newMigration()
	tests := []struct {
		name      string
		eventsErr error
		want      string
	}{
		{name: "none", want: "Events:  <none>\n"},
		{name: "forbidden", eventsErr: errors.New("forbidden"), want: "Events:  <unavailable: forbidden>\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeStatus(&out, pm, nil, tc.eventsErr, at(time.Minute)); err != nil {
				t.Fatalf("writeStatus() error = %v", err)
			}
			if got := out.String(); !bytes.HasSuffix([]byte(got), []byte(tc.want)) {
				t.Errorf("status = %q, want it to end with %q", got, tc.want)
			}
		})
	}
}

func TestCheckRows(t *testing.T) {
	prepared := func(role string, status metav1.ConditionStatus, reason lpmv1.Reason,
		message string) func(*lpmv1.PodMigration) {
		return func(pm *lpmv1.PodMigration) {
			c := []metav1.Condition{{Type: lpmv1.AgentConditionPrepared, Status: status, Reason: string(reason),
				Message: message, LastTransitionTime: metav1.NewTime(t0)}}
			if role == "source" {
				pm.Status.Source = &lpmv1.SourceAgentStatus{Conditions: c}
			} else {
				pm.Status.Target = &lpmv1.TargetAgentStatus{Conditions: c}
			}
		}
	}
	tests := []struct {
		name string
		pm   *lpmv1.PodMigration
		want []checkRow
	}{
		{
			name: "every check passed",
			pm: newMigration(withNodes("node-a", "node-b"),
				withCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionTrue, lpmv1.ReasonChecksPassed, ""),
				prepared("source", metav1.ConditionTrue, "Prepared", ""),
				prepared("target", metav1.ConditionTrue, "Prepared", "")),
			want: []checkRow{
				{check: "pod and nodes (controller)", node: "-", result: "passed"},
				{check: "source agent", node: "node-a", result: "passed", reason: "Prepared"},
				{check: "target agent", node: "node-b", result: "passed", reason: "Prepared"},
			},
		},
		{
			name: "controller check failed",
			pm: newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second),
				withCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionFalse, lpmv1.ReasonPodNotReady,
					"not ready")),
			want: []checkRow{
				{check: "pod and nodes (controller)", node: "-", result: "failed",
					reason: string(lpmv1.ReasonPodNotReady), message: "not ready"},
				{check: "source agent", node: "<none>", result: "not run"},
				{check: "target agent", node: "<none>", result: "not run"},
			},
		},
		{
			name: "target agent failed",
			pm: newMigration(withNodes("node-a", "node-b"),
				withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second),
				withCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionFalse,
					lpmv1.ReasonBaseImageUnavailable, "target: image missing"),
				prepared("source", metav1.ConditionTrue, "Prepared", ""),
				prepared("target", metav1.ConditionFalse, lpmv1.ReasonBaseImageUnavailable, "image missing")),
			want: []checkRow{
				{check: "pod and nodes (controller)", node: "-", result: "passed"},
				{check: "source agent", node: "node-a", result: "passed", reason: "Prepared"},
				{check: "target agent", node: "node-b", result: "failed",
					reason: string(lpmv1.ReasonBaseImageUnavailable), message: "image missing"},
			},
		},
		{
			name: "failed without a preflight condition",
			pm: newMigration(withPhases(lpmv1.PhasePending, 0*time.Second, lpmv1.PhaseFailed, time.Second),
				withCondition(lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonInternalError, "boom")),
			want: []checkRow{
				{check: "pod and nodes (controller)", node: "-", result: "failed",
					reason: string(lpmv1.ReasonInternalError), message: "boom"},
				{check: "source agent", node: "<none>", result: "not run"},
				{check: "target agent", node: "<none>", result: "not run"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkRows(tc.pm)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(checkRow{})); diff != "" {
				t.Errorf("checkRows() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteNodeReport(t *testing.T) {
	verdicts := []podVerdict{
		{namespace: "shop", pod: "web", movable: "yes", target: "node-b"},
		{namespace: "shop", pod: "db", movable: "no", reason: "HostNamespace", message: "uses the node's network"},
		{namespace: "tools", pod: "slow", movable: "unknown", reason: "NotFinished", message: "timed out"},
	}
	var out bytes.Buffer
	err := writeNodeReport(&out, "node-a", verdicts)
	want := "NAMESPACE   POD    MOVABLE   TARGET   REASON          MESSAGE\n" +
		"shop        web    yes       node-b   <none>          \n" +
		"shop        db     no        <none>   HostNamespace   uses the node's network\n" +
		"tools       slow   unknown   <none>   NotFinished     timed out\n" +
		"1 of 3 pods on node node-a can move.\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("report mismatch (-want +got):\n%s", diff)
	}
	if code := exitCode(err); code != ExitFailed {
		t.Errorf("exit code = %d, want %d", code, ExitFailed)
	}

	out.Reset()
	if err := writeNodeReport(&out, "node-a", verdicts[:1]); err != nil {
		t.Errorf("writeNodeReport() with every pod movable = %v, want nil", err)
	}
}

func TestWriteLocalReport(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{NodeName: "node-a"}}
	tests := []struct {
		name   string
		checks []localCheck
		want   string
	}{
		{
			name: "passed",
			checks: []localCheck{
				{name: "pod"},
				{name: targetCheckName, target: "node-b"},
			},
			want: "CHECK         NODE     RESULT   REASON   MESSAGE\n" +
				"pod           -        passed   <none>   \n" +
				"target node   node-b   passed   <none>   \n" +
				"Pod shop/web passes the API-level checks for a move from node-a to node-b. " +
				"The agents' checks did not run: run check without --local for them.\n",
		},
		{
			name: "failed",
			checks: []localCheck{
				{name: "pod", failure: &preflight.Failure{Reason: lpmv1.ReasonHostNamespace, Field: "spec.hostNetwork",
					Message: "uses the node's network"}},
				{name: targetCheckName, target: "node-b"},
			},
			want: "CHECK         NODE     RESULT   REASON          MESSAGE\n" +
				"pod           -        failed   HostNamespace   spec.hostNetwork: uses the node's network\n" +
				"target node   node-b   passed   <none>          \n" +
				"Pod shop/web cannot move: HostNamespace\n" +
				"What to do: " + adviceByReason[lpmv1.ReasonHostNamespace] + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			writeLocalReport(&out, pod, tc.checks)
			if diff := cmp.Diff(tc.want, out.String()); diff != "" {
				t.Errorf("report mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
