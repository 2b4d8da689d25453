package observability_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// TestInstalledController moves one pod and fails the move of another
// with the controller installed as config/default installs it, then checks
// what an operator sees of both.
func TestInstalledController(t *testing.T) {
	c := install(t)
	kubectl := component(t, "kubectl")

	// The leader election works with the installed Role, which allows get
	// and update of this one Lease.
	waitFor(t, "the controller to lead", func() bool { return leaseHolder(t) != "" })

	source := c.runningPod("web", "node-a")
	c.agent.Hold(fakeagent.StepImportImages)
	c.migrate("move-web", "web", "node-b")
	runKubectl(t, kubectl, "wait", "--for=condition=PreflightPassed", "podmigration/move-web")
	wait := startKubectl(t, kubectl, "wait", "--for=condition=Succeeded", "podmigration/move-web")
	c.agent.Proceed(fakeagent.StepImportImages)
	if out, err := wait(); err != nil {
		t.Fatalf("kubectl wait --for=condition=Succeeded failed: %v\n%s", err, out)
	}
	moved := c.waitPhase("move-web", lpmv1.PhaseSucceeded)

	c.runningPod("db", "node-a")
	c.agent.Fail(fakeagent.StepCheckpoint, lpmv1.ReasonCheckpointAPIDisabled, "the kubelet returned 404")
	c.migrate("move-db", "db", "node-b")
	runKubectl(t, kubectl, "wait", "--for=condition=Succeeded=False", "podmigration/move-db")
	runKubectl(t, kubectl, "wait", "--for=jsonpath={.status.phase}=Failed", "podmigration/move-db")
	runKubectl(t, kubectl, "wait", "--for=condition=Checkpointed=False", "podmigration/move-db")
	c.waitPhase("move-db", lpmv1.PhaseFailed)

	t.Run("metrics", func(t *testing.T) { checkMetrics(t, c) })
	t.Run("metrics authorization", func(t *testing.T) { checkMetricsAuthorization(t, c) })
	t.Run("events", func(t *testing.T) { checkEvents(t, c, moved, source) })
	t.Run("logs", func(t *testing.T) { checkLogs(t, c) })
}

func checkMetrics(t *testing.T, c *cluster) {
	token := serviceAccountToken(t, "monitoring", "prometheus", "lpm-metrics-reader")
	var families map[string]*dtoFamily
	// The active gauge counts from the cache, which receives the last
	// status write a moment after the API server stores it.
	waitFor(t, "no active migrations in the metrics", func() bool {
		status, body := scrape(t, c.metricsAddr, token)
		if status != http.StatusOK {
			t.Fatalf("scrape with the token of a reader = %d, want 200:\n%s", status, body)
		}
		families = parseMetrics(t, body)
		return value(families, "lpm_migrations_active", "phase=Pending") == 0
	})

	checks := []struct {
		family, labels string
		want           float64
	}{
		{"lpm_migrations_started_total", "", 2},
		{"lpm_migrations_finished_total", "reason=MigrationComplete,result=Succeeded", 1},
		{"lpm_migrations_finished_total", "reason=CheckpointAPIDisabled,result=Failed", 1},
		{"lpm_migration_duration_seconds", "result=Succeeded", 1},
		{"lpm_migration_duration_seconds", "result=Failed", 1},
		{"lpm_migration_phase_duration_seconds", "phase=Pending", 2},
		{"lpm_migration_phase_duration_seconds", "phase=Checkpointing", 2},
		{"lpm_migration_phase_duration_seconds", "phase=Restoring", 1},
		{"lpm_migration_downtime_seconds", "", 1},
		{"lpm_migration_checkpoint_bytes", "", 1},
		{"lpm_migration_transfer_bytes", "", 1},
		{"lpm_migrations_active", "phase=Checkpointing", 0},
		{"lpm_migrations_active", "phase=Restoring", 0},
		{"lpm_migrations_waiting_for_slot", "", 0},
	}
	for _, ch := range checks {
		if got := value(families, ch.family, ch.labels); got != ch.want {
			t.Errorf("%s{%s} = %v, want %v", ch.family, ch.labels, got, ch.want)
		}
	}
	if got := sum(families, "lpm_migration_checkpoint_bytes"); got != fakeagent.ArchiveBytes {
		t.Errorf("lpm_migration_checkpoint_bytes_sum = %v, want the fake agent's %d", got, fakeagent.ArchiveBytes)
	}

	// No label carries a pod, node or migration name.
	allowed := map[string]bool{"phase": true, "result": true, "reason": true}
	for name, f := range families {
		if !strings.HasPrefix(name, "lpm_") {
			continue
		}
		for _, m := range f.metrics {
			for label := range m.labels {
				if !allowed[label] {
					t.Errorf("series of %s has label %s=%s", name, label, m.labels[label])
				}
			}
		}
	}
}

func checkMetricsAuthorization(t *testing.T, c *cluster) {
	testCases := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{"no token", "", http.StatusUnauthorized},
		// controller-runtime v0.25 returns 500 "Authentication failed"
		// when the TokenReview reports an error, as it does for a token
		// that is no JWT.
		{"invalid token", "not-a-token", http.StatusInternalServerError},
		{"token without the reader role", serviceAccountToken(t, "monitoring", "intruder", ""), http.StatusForbidden},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := scrape(t, c.metricsAddr, tc.token)
			if status != tc.wantStatus {
				t.Errorf("scrape = %d, want %d:\n%s", status, tc.wantStatus, body)
			}
			if strings.Contains(body, "lpm_") {
				t.Errorf("a refused scrape returned metrics")
			}
		})
	}
}

func checkEvents(t *testing.T, c *cluster, m *lpmv1.PodMigration, source *corev1.Pod) {
	restored := &corev1.Pod{}
	must(t, admin.Get(t.Context(), types.NamespacedName{Namespace: c.ns, Name: m.Status.RestoredPod}, restored))
	wantByObject := map[string][]lpmv1.Reason{
		"PodMigration " + m.Name: {lpmv1.ReasonPending, lpmv1.ReasonChecksPassed, lpmv1.ReasonInProgress,
			lpmv1.ReasonCheckpointed, lpmv1.ReasonImagesReady, lpmv1.ReasonVerified, lpmv1.ReasonSourceDeleting,
			lpmv1.ReasonMigrationComplete},
		"Pod " + source.Name: {lpmv1.ReasonPending, lpmv1.ReasonChecksPassed, lpmv1.ReasonInProgress,
			lpmv1.ReasonCheckpointed, lpmv1.ReasonImagesReady, lpmv1.ReasonVerified, lpmv1.ReasonSourceDeleting},
		"Pod " + restored.Name: {lpmv1.ReasonImagesReady, lpmv1.ReasonVerified, lpmv1.ReasonMigrationComplete},
	}
	uids := map[string]types.UID{"PodMigration " + m.Name: m.UID, "Pod " + source.Name: source.UID,
		"Pod " + restored.Name: restored.UID}

	for object, want := range wantByObject {
		var got []string
		waitFor(t, "the events of "+object, func() bool {
			got = eventReasons(t, c.ns, uids[object])
			for _, r := range want {
				if !slices.Contains(got, string(r)) {
					return false
				}
			}
			return true
		})
		t.Logf("events of %s: %v", object, got)
	}

	failed := &lpmv1.PodMigration{}
	must(t, admin.Get(t.Context(), types.NamespacedName{Namespace: c.ns, Name: "move-db"}, failed))
	db := &corev1.Pod{}
	must(t, admin.Get(t.Context(), types.NamespacedName{Namespace: c.ns, Name: "db"}, db))
	for _, uid := range []types.UID{failed.UID, db.UID} {
		waitFor(t, "the failure event", func() bool {
			return slices.Contains(eventReasons(t, c.ns, uid), string(lpmv1.ReasonCheckpointAPIDisabled))
		})
	}
}

// eventReasons returns the reasons of the events.k8s.io events about the
// object with uid.
func eventReasons(t *testing.T, namespace string, uid types.UID) []string {
	t.Helper()
	var list eventsv1.EventList
	must(t, admin.List(t.Context(), &list, client.InNamespace(namespace)))
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.UID == uid {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func checkLogs(t *testing.T, c *cluster) {
	var found bool
	for _, line := range logs.lines() {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if entry["msg"] != "Phase changed" || entry["to"] != string(lpmv1.PhaseSucceeded) {
			continue
		}
		found = true
		pod, _ := entry["pod"].(map[string]any)
		if pod["name"] != "web" || pod["namespace"] != c.ns {
			t.Errorf("log line %s has pod %v, want %s/web", line, entry["pod"], c.ns)
		}
		migration, _ := entry["PodMigration"].(map[string]any)
		if migration["name"] != "move-web" || migration["namespace"] != c.ns {
			t.Errorf("log line %s has PodMigration %v, want %s/move-web", line, entry["PodMigration"], c.ns)
		}
	}
	if !found {
		t.Errorf("no log line \"Phase changed\" to Succeeded among %d lines", len(logs.lines()))
	}
}

// serviceAccountToken creates the service account namespace/name, binds
// it to clusterRole unless that is empty, and returns a token of it.
func serviceAccountToken(t *testing.T, namespace, name, clusterRole string) string {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	must(t, client.IgnoreAlreadyExists(admin.Create(ctx, ns)))
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	must(t, client.IgnoreAlreadyExists(admin.Create(ctx, sa)))
	if clusterRole != "" {
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: namespace + "-" + name + "-" + clusterRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}},
		}
		must(t, client.IgnoreAlreadyExists(admin.Create(ctx, binding)))
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To[int64](600)}}
	must(t, admin.SubResource("token").Create(ctx, sa, req))
	return req.Status.Token
}

// scrape gets /metrics from the controller's HTTPS endpoint, whose
// certificate controller-runtime generated itself.
func scrape(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed test certificate
	}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+"/metrics", nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	var status int
	var body []byte
	waitFor(t, "the metrics endpoint", func() bool {
		resp, err := httpClient.Do(req)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		status = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		must(t, err)
		return true
	})
	return status, string(body)
}

// dtoFamily is a metric family as a test reads it: each series' labels and
// value (a histogram's sample count) and, for histograms, the sample sum.
type dtoFamily struct {
	metrics []dtoMetric
}

type dtoMetric struct {
	labels map[string]string
	value  float64
	sum    float64
}

func parseMetrics(t *testing.T, body string) map[string]*dtoFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the metrics are not in the Prometheus text format: %v", err)
	}
	out := map[string]*dtoFamily{}
	for name, f := range parsed {
		family := &dtoFamily{}
		for _, m := range f.GetMetric() {
			series := dtoMetric{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				series.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				series.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				series.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				series.value = float64(m.GetHistogram().GetSampleCount())
				series.sum = m.GetHistogram().GetSampleSum()
			}
			family.metrics = append(family.metrics, series)
		}
		out[name] = family
	}
	return out
}

// value returns the value of the series of family whose labels are
// exactly labels ("a=x,b=y", sorted by name), or -1 when there is none.
func value(families map[string]*dtoFamily, family, labels string) float64 {
	m := series(families, family, labels)
	if m == nil {
		return -1
	}
	return m.value
}

func sum(families map[string]*dtoFamily, family string) float64 {
	m := series(families, family, "")
	if m == nil {
		return -1
	}
	return m.sum
}

func series(families map[string]*dtoFamily, family, labels string) *dtoMetric {
	f, ok := families[family]
	if !ok {
		return nil
	}
	for i, m := range f.metrics {
		var pairs []string
		for k, v := range m.labels {
			pairs = append(pairs, k+"="+v)
		}
		slices.Sort(pairs)
		if strings.Join(pairs, ",") == labels {
			return &f.metrics[i]
		}
	}
	return nil
}

// runKubectl runs kubectl in the story's namespace with a timeout and
// fails the test when it fails.
func runKubectl(t *testing.T, kubectl string, args ...string) {
	t.Helper()
	if out, err := startKubectl(t, kubectl, args...)(); err != nil {
		t.Fatalf("kubectl %s failed: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startKubectl starts kubectl and returns a function that waits for it.
func startKubectl(t *testing.T, kubectl string, args ...string) func() (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), waitTimeout)
	args = append([]string{"--kubeconfig", kubeconfig, "--namespace", "story", "--request-timeout=10s"}, args...)
	if args[4] == "wait" {
		args = append(args, "--timeout="+waitTimeout.String())
	}
	cmd := exec.CommandContext(ctx, kubectl, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() (string, error) {
		defer cancel()
		err := cmd.Wait()
		return out.String(), err
	}
}
