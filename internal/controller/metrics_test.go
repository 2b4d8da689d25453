package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// histogram returns the sample count and sum of h.
func histogram(t *testing.T, h prometheus.Observer) (uint64, float64) {
	t.Helper()
	m := &dto.Metric{}
	if err := h.(prometheus.Metric).Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// metricsSnapshot contains the values of the controller's metrics that one
// migration changes.
type metricsSnapshot struct {
	started, succeeded                          float64
	checkpointCount, transferCount              uint64
	checkpointSum, transferSum                  float64
	throughputCount, downtimeCount              uint64
	throughputSum, downtimeSum                  float64
	pendingCount, restoringCount, durationCount uint64
	pendingSum, restoringSum                    float64
}

func snapshot(t *testing.T) metricsSnapshot {
	t.Helper()
	var s metricsSnapshot
	s.started = testutil.ToFloat64(migrationsStarted)
	s.succeeded = testutil.ToFloat64(migrationsFinished.WithLabelValues("Succeeded", "MigrationComplete"))
	s.checkpointCount, s.checkpointSum = histogram(t, checkpointBytes)
	s.transferCount, s.transferSum = histogram(t, transferBytes)
	s.throughputCount, s.throughputSum = histogram(t, transferThroughput)
	s.downtimeCount, s.downtimeSum = histogram(t, migrationDowntime)
	s.pendingCount, s.pendingSum = histogram(t, phaseDuration.WithLabelValues("Pending"))
	s.restoringCount, s.restoringSum = histogram(t, phaseDuration.WithLabelValues("Restoring"))
	s.durationCount, _ = histogram(t, migrationDuration.WithLabelValues("Succeeded"))
	return s
}

// step returns m's status after entering phase at t0+offset.
func step(m *lpmv1.PodMigration, phase lpmv1.MigrationPhase, offset time.Duration) *lpmv1.PodMigrationStatus {
	status := m.Status.DeepCopy()
	status.Phase = phase
	status.PhaseTransitions = append(status.PhaseTransitions,
		lpmv1.PhaseTransition{Phase: phase, Time: metav1.NewMicroTime(t0.Add(offset))})
	return status
}

// advance records the transition to status, as Reconcile does after the
// write, and makes it m's status.
func advance(m *lpmv1.PodMigration, status *lpmv1.PodMigrationStatus) {
	recordTransitions(m, status)
	m.Status = *status
}

func TestRecordTransitionsOfMovedPod(t *testing.T) {
	m := fixtureMigration()
	m.Name, m.UID = "metrics-moved", "metrics-moved-uid"
	before := snapshot(t)

	s := step(m, lpmv1.PhasePending, 0)
	s.StartTime = &metav1.Time{Time: t0}
	advance(m, s)
	advance(m, step(m, lpmv1.PhaseCheckpointing, 2*time.Second))
	s = step(m, lpmv1.PhaseCheckpointComplete, 3*time.Second)
	s.Containers = []lpmv1.ContainerMigrationStatus{{Name: "app", ArchiveBytes: 3 << 20},
		{Name: "sidecar", ArchiveBytes: 1 << 20}}
	advance(m, s)
	advance(m, step(m, lpmv1.PhasePreparingImages, 3*time.Second))
	s = step(m, lpmv1.PhaseRestoring, 5*time.Second)
	s.TransferProgress = &lpmv1.TransferProgress{BytesDone: 8 << 20, BytesTotal: 8 << 20}
	advance(m, s)
	s = step(m, lpmv1.PhaseSucceeded, 11*time.Second)
	s.CompletionTime = &metav1.Time{Time: t0.Add(11 * time.Second)}
	s.Downtime = &metav1.Duration{Duration: 1500 * time.Millisecond}
	s.Conditions = []metav1.Condition{{Type: lpmv1.ConditionSucceeded, Status: metav1.ConditionTrue,
		Reason: string(lpmv1.ReasonMigrationComplete)}}
	advance(m, s)

	after := snapshot(t)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"started", after.started - before.started, 1},
		{"succeeded", after.succeeded - before.succeeded, 1},
		{"checkpoint observations", float64(after.checkpointCount - before.checkpointCount), 1},
		{"checkpoint bytes", after.checkpointSum - before.checkpointSum, 4 << 20},
		{"transfer observations", float64(after.transferCount - before.transferCount), 1},
		{"transfer bytes", after.transferSum - before.transferSum, 8 << 20},
		// 8 MiB from CheckpointComplete (3s) to Restoring (5s).
		{"throughput", after.throughputSum - before.throughputSum, 4 << 20},
		{"downtime observations", float64(after.downtimeCount - before.downtimeCount), 1},
		{"downtime", after.downtimeSum - before.downtimeSum, 1.5},
		{"Pending observations", float64(after.pendingCount - before.pendingCount), 1},
		{"Pending seconds", after.pendingSum - before.pendingSum, 2},
		{"Restoring seconds", after.restoringSum - before.restoringSum, 6},
		{"duration observations", float64(after.durationCount - before.durationCount), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRecordTransitionsOnce(t *testing.T) {
	m := fixtureMigration()
	m.Name, m.UID = "metrics-once", "metrics-once-uid"
	advance(m, step(m, lpmv1.PhasePending, 0))
	stale := m.DeepCopy()
	advance(m, step(m, lpmv1.PhaseCheckpointing, time.Second))
	before := snapshot(t)

	// A reconcile on the stale copy writes the same transition again.
	recordTransitions(stale, step(stale, lpmv1.PhaseCheckpointing, 2*time.Second))

	if after := snapshot(t); after != before {
		t.Errorf("a repeated transition changed the metrics: before %+v, after %+v", before, after)
	}
}

func TestRecordTransitionsAfterRecreate(t *testing.T) {
	m := fixtureMigration()
	m.Name, m.UID = "metrics-recreated", "first-uid"
	advance(m, step(m, lpmv1.PhasePending, 0))
	before := testutil.ToFloat64(migrationsStarted)

	// A new PodMigration of the same name, after the first was deleted
	// and forgotten, and one whose deletion the controller never saw.
	forgetMetrics(client.ObjectKeyFromObject(m))
	again := fixtureMigration()
	again.Name, again.UID = "metrics-recreated", "second-uid"
	recordTransitions(again, step(again, lpmv1.PhasePending, 0))
	third := fixtureMigration()
	third.Name, third.UID = "metrics-recreated", "third-uid"
	recordTransitions(third, step(third, lpmv1.PhasePending, 0))

	if got := testutil.ToFloat64(migrationsStarted) - before; got != 2 {
		t.Errorf("started grew by %v, want 2", got)
	}
}

func TestRecordFinishedFailure(t *testing.T) {
	m := inPhase(lpmv1.PhaseCheckpointing)
	m.Name, m.UID = "metrics-failed", "metrics-failed-uid"
	counter := migrationsFinished.WithLabelValues("Failed", "CheckpointTimedOut")
	before := testutil.ToFloat64(counter)

	s := step(m, lpmv1.PhaseFailed, time.Minute)
	s.Conditions = append(s.Conditions, metav1.Condition{Type: lpmv1.ConditionSucceeded,
		Status: metav1.ConditionFalse, Reason: string(lpmv1.ReasonCheckpointTimedOut)})
	recordTransitions(m, s)

	if got := testutil.ToFloat64(counter) - before; got != 1 {
		t.Errorf("lpm_migrations_finished_total{result=Failed,reason=CheckpointTimedOut} grew by %v, want 1", got)
	}
}

func TestReasonLabel(t *testing.T) {
	testCases := []struct {
		reason string
		want   string
	}{
		{"CheckpointTimedOut", "CheckpointTimedOut"},
		{"", "Other"},
		{"not pascal case", "Other"},
		{"pod web failed", "Other"},
		{strings.Repeat("A", 129), "Other"},
	}
	for _, tc := range testCases {
		if got := reasonLabel(tc.reason); got != tc.want {
			t.Errorf("reasonLabel(%q) = %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func TestActiveMigrations(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := lpmv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	migration := func(name string, phase lpmv1.MigrationPhase, reason lpmv1.Reason) client.Object {
		m := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}}
		m.Status.Phase = phase
		if reason != "" {
			m.Status.Conditions = []metav1.Condition{{Type: lpmv1.ConditionSucceeded,
				Status: metav1.ConditionUnknown, Reason: string(reason)}}
		}
		return m
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		migration("new", "", ""),
		migration("waiting", lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot),
		migration("checking", lpmv1.PhasePending, lpmv1.ReasonWaitingForAgents),
		migration("moving", lpmv1.PhasePreparingImages, lpmv1.ReasonInProgress),
		migration("done", lpmv1.PhaseSucceeded, ""),
		migration("failed", lpmv1.PhaseFailed, ""),
	).Build()
	c := &activeCollector{active: activeMigrations.active, waiting: activeMigrations.waiting}
	c.use(reader)

	want := `
# HELP lpm_migrations_active PodMigrations that have not finished, by phase.
# TYPE lpm_migrations_active gauge
lpm_migrations_active{phase="CheckpointComplete"} 0
lpm_migrations_active{phase="Checkpointing"} 0
lpm_migrations_active{phase="Pending"} 3
lpm_migrations_active{phase="PreparingImages"} 1
lpm_migrations_active{phase="Restoring"} 0
# HELP lpm_migrations_waiting_for_slot Pending PodMigrations whose checks passed and that wait for a free slot ` +
		`under the concurrency caps.
# TYPE lpm_migrations_waiting_for_slot gauge
lpm_migrations_waiting_for_slot 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestActiveMigrationsBeforeSetup(t *testing.T) {
	c := &activeCollector{active: activeMigrations.active, waiting: activeMigrations.waiting}

	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("collector without a reader reported %d series, want none", n)
	}
}

func TestMetricNamesHavePrefix(t *testing.T) {
	collectors := []prometheus.Collector{migrationsStarted, migrationsFinished, migrationDuration, phaseDuration,
		migrationDowntime, checkpointBytes, transferBytes, transferThroughput, activeMigrations}
	for _, c := range collectors {
		descs := make(chan *prometheus.Desc, 10)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			if !strings.Contains(d.String(), `fqName: "lpm_`) {
				t.Errorf("metric %s lacks the lpm_ prefix", d)
			}
		}
	}
}

func TestTransitionLogForgetsDeleted(t *testing.T) {
	key := types.NamespacedName{Namespace: "shop", Name: "metrics-forget"}
	recorded.advance(key, "uid", lpmv1.PhaseRestoring)

	forgetMetrics(key)

	recorded.mu.Lock()
	_, ok := recorded.last[key]
	recorded.mu.Unlock()
	if ok {
		t.Errorf("the transition log still contains %s after forgetMetrics", key)
	}
}

// The labels of every series stay within api/v1's values: no pod, node or
// migration name.
func TestMetricLabelsBounded(t *testing.T) {
	allowed := map[string]bool{"phase": true, "result": true, "reason": true}
	for _, vec := range []interface {
		Describe(chan<- *prometheus.Desc)
	}{migrationsFinished, migrationDuration, phaseDuration} {
		descs := make(chan *prometheus.Desc, 1)
		vec.Describe(descs)
		d := <-descs
		for _, label := range strings.Split(between(d.String(), "variableLabels: {", "}"), ",") {
			if label != "" && !allowed[label] {
				t.Errorf("metric %s has label %q", d, label)
			}
		}
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}
