package cli

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// durationPattern matches the durations the progress output prints, which
// vary from run to run.
var durationPattern = regexp.MustCompile(`\b\d+(\.\d+)?(ms|s)\b|\b\d+m\d\ds\b`)

// normalizeDurations replaces every duration in s with D.
func normalizeDurations(s string) string {
	return durationPattern.ReplaceAllString(s, "D")
}

// outputLines splits output into lines without the final empty one.
func outputLines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// listMigrations returns the PodMigrations of ns.
func listMigrations(ctx context.Context, t *testing.T, ns string) []lpmv1.PodMigration {
	t.Helper()
	list := &lpmv1.PodMigrationList{}
	if err := testClient.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatalf("failed to list PodMigrations: %v", err)
	}
	return list.Items
}

func TestPodFollowsToSuccess(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app", "sidecar"})

	done := startCLI(ctx, t, testDeps(), "-n", ns, "pod", "web", "--to", "node-b", "--settle", "1s",
		"--timeout", "5m")
	fake := newFakeController(t)
	pm := fake.awaitMigration(ctx, ns, "web")
	fake.runToSuccess(ctx, pm)
	res := awaitResult(t, done)

	if res.code != ExitOK {
		t.Errorf("exit code = %d, want %d", res.code, ExitOK)
	}
	want := []string{
		"podmigration.lpm.dev/" + pm.Name + " created",
		"-> Pending",
		"Pending -> Checkpointing after D (target node-b)",
		"Checkpointing -> CheckpointComplete after D (2 containers, 48.0 MiB)",
		"CheckpointComplete -> PreparingImages after D (2 containers, 48.0 MiB)",
		"PreparingImages -> Restoring after D (48.0 MiB transferred)",
		"Restoring -> Succeeded after D (pod web-restored)",
		"Succeeded in D. Downtime D.",
		"Pod " + ns + "/web runs on node-b now, as pod web-restored.",
	}
	if diff := cmp.Diff(want, outputLines(normalizeDurations(res.stdout))); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(res.stdout, "Downtime 1.5s.") {
		t.Errorf("output does not report the downtime of 1.5s:\n%s", res.stdout)
	}

	created := &lpmv1.PodMigration{}
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pm.Name}, created); err != nil {
		t.Fatalf("failed to get PodMigration: %v", err)
	}
	if !strings.HasPrefix(created.Name, "web-") {
		t.Errorf("name = %q, want one generated from the pod name", created.Name)
	}
	wantSpec := lpmv1.PodMigrationSpec{
		PodName: "web", TargetNode: "node-b", SourcePolicy: lpmv1.SourcePolicyDelete,
		Settle:   &metav1.Duration{Duration: time.Second},
		Timeouts: &lpmv1.Timeouts{Overall: &metav1.Duration{Duration: 5 * time.Minute}},
	}
	if diff := cmp.Diff(wantSpec, created.Spec); diff != "" {
		t.Errorf("spec mismatch (-want +got):\n%s", diff)
	}
}

func TestPodLiveProgressOnTerminal(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app", "sidecar"})

	deps := testDeps()
	deps.IsTerminal = func(io.Writer) bool { return true }
	deps.TerminalWidth = func(io.Writer) int { return 120 }
	done := startCLI(ctx, t, deps, "-n", ns, "pod", "web")
	fake := newFakeController(t)
	fake.runToSuccess(ctx, fake.awaitMigration(ctx, ns, "web"))
	res := awaitResult(t, done)

	if res.code != ExitOK {
		t.Errorf("exit code = %d, want %d", res.code, ExitOK)
	}
	for _, want := range []string{
		"\x1b[",               // the live lines are redrawn in place
		"✓ Pending",           // one line per finished phase
		"✓ Checkpointing",     //
		"✓ PreparingImages",   //
		"containers",          // the checkpoint bar
		"24.0 MiB / 48.0 MiB", // the transfer bar
		"Succeeded in",
		"Downtime 1.5s.",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output does not contain %q:\n%q", want, res.stdout)
		}
	}
	if strings.Count(res.stdout, "✓ Checkpointing") != 1 {
		t.Errorf("finished phase written more than once:\n%q", res.stdout)
	}
}

func TestPodFollowsToFailure(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app", "sidecar"})

	done := startCLI(ctx, t, testDeps(), "-n", ns, "pod", "web")
	fake := newFakeController(t)
	pm := fake.awaitMigration(ctx, ns, "web")
	fake.failTransfer(ctx, pm, "dial tcp 10.0.0.2:7443: connection refused")
	res := awaitResult(t, done)

	if res.code != ExitFailed {
		t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
	}
	want := []string{
		"Failed after D: TransferFailed",
		"  dial tcp 10.0.0.2:7443: connection refused",
		"What to do: " + adviceByReason[lpmv1.ReasonTransferFailed],
		"lpm rolls the migration back: pod " + ns + "/web on node-a stays frozen until the restored pod is gone, " +
			"then runs on.",
		"Details: kubectl migrate status " + pm.Name + " -n " + ns,
	}
	lines := outputLines(normalizeDurations(res.stdout))
	if len(lines) < len(want) {
		t.Fatalf("output has %d lines, want at least %d:\n%s", len(lines), len(want), res.stdout)
	}
	if diff := cmp.Diff(want, lines[len(lines)-len(want):]); diff != "" {
		t.Errorf("failure report mismatch (-want +got):\n%s", diff)
	}
	if res.stderr != "" {
		t.Errorf("stderr = %q, want nothing: the report explains the failure", res.stderr)
	}
}

func TestPodNoWait(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})

	res := runCLI(ctx, t, testDeps(), "-n", ns, "pod", "web", "--no-wait", "--keep",
		"--transfer", "registry", "--registry", "registry.example.com/ops", "--pull-secret", "creds")

	if res.code != ExitOK {
		t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
	}
	items := listMigrations(ctx, t, ns)
	if len(items) != 1 {
		t.Fatalf("found %d PodMigrations, want 1", len(items))
	}
	pm := items[0]
	want := "podmigration.lpm.dev/" + pm.Name + " created\n" +
		"Follow it with: kubectl migrate status " + pm.Name + " -n " + ns + "\n"
	if res.stdout != want {
		t.Errorf("stdout = %q, want %q", res.stdout, want)
	}
	wantSpec := lpmv1.PodMigrationSpec{
		PodName: "web", SourcePolicy: lpmv1.SourcePolicyKeep,
		Transfer: &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry, Registry: &lpmv1.RegistryTransfer{
			Repository: "registry.example.com/ops", PullSecretName: "creds"}},
	}
	if diff := cmp.Diff(wantSpec, pm.Spec); diff != "" {
		t.Errorf("spec mismatch (-want +got):\n%s", diff)
	}
}

func TestPodOutputYAML(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app", "sidecar"})

	done := startCLI(ctx, t, testDeps(), "-n", ns, "pod", "web", "-o", "yaml")
	fake := newFakeController(t)
	fake.runToSuccess(ctx, fake.awaitMigration(ctx, ns, "web"))
	res := awaitResult(t, done)

	if res.code != ExitOK {
		t.Fatalf("exit code = %d, want %d", res.code, ExitOK)
	}
	printed := &lpmv1.PodMigration{}
	if err := yaml.UnmarshalStrict([]byte(res.stdout), printed); err != nil {
		t.Fatalf("stdout is not a PodMigration in YAML: %v\n%s", err, res.stdout)
	}
	if printed.APIVersion != "lpm.dev/v1" || printed.Kind != "PodMigration" {
		t.Errorf("apiVersion, kind = %q, %q, want lpm.dev/v1, PodMigration", printed.APIVersion, printed.Kind)
	}
	if printed.Status.Phase != lpmv1.PhaseSucceeded {
		t.Errorf("printed phase = %q, want the final phase Succeeded", printed.Status.Phase)
	}
	if !strings.Contains(res.stderr, "-> Pending") || !strings.Contains(res.stderr, "Succeeded in") {
		t.Errorf("stderr = %q, want the progress there", res.stderr)
	}
}

func TestPodInterruptStopsWatchingOnly(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})

	cliCtx, interrupt := context.WithCancelCause(ctx)
	done := startCLI(cliCtx, t, testDeps(), "-n", ns, "pod", "web")
	fake := newFakeController(t)
	pm := fake.awaitMigration(ctx, ns, "web")
	fake.preflight(ctx, pm, "node-a", "node-b")
	interrupt(ErrInterrupted)
	res := awaitResult(t, done)

	if res.code != ExitInterrupted {
		t.Errorf("exit code = %d, want %d", res.code, ExitInterrupted)
	}
	wantTail := []string{
		"Stopped watching. PodMigration " + pm.Name + " is in phase Pending and goes on.",
		"To follow it: kubectl migrate status " + pm.Name + " -n " + ns,
		"To cancel it: kubectl migrate cancel " + pm.Name + " -n " + ns,
	}
	lines := outputLines(res.stdout)
	if diff := cmp.Diff(wantTail, lines[max(len(lines)-3, 0):]); diff != "" {
		t.Errorf("output tail mismatch (-want +got):\n%s", diff)
	}

	current := &lpmv1.PodMigration{}
	if err := testClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pm.Name}, current); err != nil {
		t.Fatalf("PodMigration is gone after the interrupt: %v", err)
	}
	if current.DeletionTimestamp != nil {
		t.Errorf("PodMigration is being deleted after the interrupt; it must go on")
	}
}

func TestPodWaitTimesOut(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})

	// No controller runs, so the wait lasts the 1s timeout plus the 1s
	// grace of testDeps.
	start := time.Now()
	res := runCLI(ctx, t, testDeps(), "-n", ns, "pod", "web", "--timeout", "1s")
	elapsed := time.Since(start)

	if res.code != ExitWaitTimedOut {
		t.Errorf("exit code = %d, want %d", res.code, ExitWaitTimedOut)
	}
	if elapsed < 2*time.Second || elapsed > 15*time.Second {
		t.Errorf("the wait took %s, want about 2s", elapsed)
	}
	items := listMigrations(ctx, t, ns)
	if len(items) != 1 {
		t.Fatalf("found %d PodMigrations, want 1", len(items))
	}
	want := "Stopped waiting after 2.0s. PodMigration " + items[0].Name + " is still in phase Pending and goes on."
	if !strings.Contains(res.stdout, want) {
		t.Errorf("stdout = %q, want it to contain %q", res.stdout, want)
	}
}

func TestPodDeletedWhileFollowed(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})

	done := startCLI(ctx, t, testDeps(), "-n", ns, "pod", "web")
	fake := newFakeController(t)
	pm := fake.awaitMigration(ctx, ns, "web")
	fake.preflight(ctx, pm, "node-a", "node-b")
	if err := testClient.Delete(ctx, pm); err != nil {
		t.Fatalf("failed to delete PodMigration: %v", err)
	}
	res := awaitResult(t, done)

	if res.code != ExitFailed {
		t.Errorf("exit code = %d, want %d", res.code, ExitFailed)
	}
	if want := "PodMigration " + pm.Name + " was deleted before it ended"; !strings.Contains(res.stdout, want) {
		t.Errorf("stdout = %q, want it to contain %q", res.stdout, want)
	}
}

func TestPodRejectsBadInput(t *testing.T) {
	requireAPIServer(t)
	t.Parallel()
	ctx := testContext(t)
	ns := newNamespace(ctx, t)
	createRunningPod(ctx, t, ns, "web", "node-a", []string{"app"})

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "missing pod name", args: []string{"pod"}, wantCode: ExitUsage,
			wantStderr: "error: missing pod name: run 'kubectl migrate pod NAME'\n"},
		{name: "two pod names", args: []string{"pod", "web", "db"}, wantCode: ExitUsage,
			wantStderr: "error: expected one pod name, got 2 arguments: web db\n"},
		{name: "unknown transfer mode", args: []string{"pod", "web", "--transfer", "ftp"}, wantCode: ExitUsage,
			wantStderr: "error: invalid --transfer \"ftp\": must be direct or registry\n"},
		{name: "registry without repository", args: []string{"pod", "web", "--transfer", "registry"},
			wantCode: ExitUsage,
			wantStderr: "error: --transfer registry needs --registry REPOSITORY, " +
				"for example --registry registry.example.com/team/checkpoints\n"},
		{name: "negative timeout", args: []string{"pod", "web", "--timeout", "-5s"}, wantCode: ExitUsage,
			wantStderr: "error: invalid --timeout -5s: must be between 1s and 12h\n"},
		{name: "timeout without unit", args: []string{"pod", "web", "--timeout", "5"}, wantCode: ExitUsage,
			wantStderr: "error: invalid argument \"5\" for \"--timeout\" flag: time: missing unit in duration \"5\"\n" +
				"See 'kubectl migrate pod --help' for usage\n"},
		{name: "invalid output", args: []string{"pod", "web", "-o", "wide"}, wantCode: ExitUsage,
			wantStderr: "error: invalid --output \"wide\": must be json or yaml\n"},
		{name: "invalid target node", args: []string{"pod", "web", "--to", "Node_B"}, wantCode: ExitUsage,
			wantStderr: "error: invalid --to \"Node_B\": "},
		{name: "pod not found", args: []string{"pod", "db"}, wantCode: ExitFailed,
			wantStderr: "error: pod \"db\" not found in namespace \"" + ns + "\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(ctx, t, testDeps(), append([]string{"-n", ns}, tc.args...)...)
			if res.code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", res.code, tc.wantCode)
			}
			if !strings.HasPrefix(res.stderr, tc.wantStderr) {
				t.Errorf("stderr = %q, want it to start with %q", res.stderr, tc.wantStderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
			if items := listMigrations(ctx, t, ns); len(items) != 0 {
				t.Errorf("bad input created %d PodMigrations", len(items))
			}
		})
	}
}
