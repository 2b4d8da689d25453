package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// The controller's metrics. No label names a pod, a migration or a node, so
// the number of series does not grow with the workload: phase, result and
// reason take their values from api/v1 (see reasonLabel). docs/observability.md lists them with alerting queries.
var (
	migrationsStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lpm_migrations_started_total",
		Help: "PodMigrations that entered the phase Pending.",
	})

	migrationsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lpm_migrations_finished_total",
		Help: "PodMigrations that reached Succeeded or Failed, by result and by the reason of their " +
			"Succeeded condition.",
	}, []string{"result", "reason"})

	migrationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lpm_migration_duration_seconds",
		Help:    "Time from a PodMigration's start to its completion, by result.",
		Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"result"})

	phaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "lpm_migration_phase_duration_seconds",
		Help: "Time a PodMigration spent in a phase, observed when it left the phase, by the phase it left " +
			"(also when it left for Failed).",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
	}, []string{"phase"})

	migrationDowntime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lpm_migration_downtime_seconds",
		Help:    "Time from the source pod's cut to the restored pod being Ready, for moved pods.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128},
	})

	checkpointBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lpm_migration_checkpoint_bytes",
		Help:    "Size of a migration's checkpoint archives, all containers together.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 4, 9), // 1 MiB to 64 GiB
	})

	transferBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lpm_migration_transfer_bytes",
		Help:    "Size of a migration's checkpoint images that the target node received.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 4, 9), // 1 MiB to 64 GiB
	})

	transferThroughput = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "lpm_migration_transfer_throughput_bytes_per_second",
		Help: "Checkpoint image bytes divided by the time from CheckpointComplete to Restoring, which " +
			"includes building, carrying and importing the images.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 2, 12), // 1 MiB/s to 2 GiB/s
	})
)

// runningPhases are the phases lpm_migrations_active reports, each with a
// series even when no migration is in it, so that alerts see zeros.
var runningPhases = []lpmv1.MigrationPhase{
	lpmv1.PhasePending, lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete,
	lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring,
}

func init() {
	metrics.Registry.MustRegister(migrationsStarted, migrationsFinished, migrationDuration, phaseDuration,
		migrationDowntime, checkpointBytes, transferBytes, transferThroughput, activeMigrations)
}

// recordTransitions records the metrics of the phases that the last status
// write entered. m is the migration as the reconcile read it, status what
// it wrote.
func recordTransitions(m *lpmv1.PodMigration, status *lpmv1.PodMigrationStatus) {
	if !recorded.advance(client.ObjectKeyFromObject(m), m.UID, status.Phase) {
		return
	}
	list := status.PhaseTransitions
	for i := len(m.Status.PhaseTransitions); i < len(list); i++ {
		if i > 0 {
			left := list[i-1]
			phaseDuration.WithLabelValues(string(left.Phase)).Observe(list[i].Time.Sub(left.Time.Time).Seconds())
		}
		recordEntered(list[i].Phase, status)
	}
}

// recordEntered records the figures of a migration that enters phase.
func recordEntered(phase lpmv1.MigrationPhase, status *lpmv1.PodMigrationStatus) {
	switch phase {
	case lpmv1.PhasePending:
		migrationsStarted.Inc()
	case lpmv1.PhaseCheckpointComplete:
		var total int64
		for _, c := range status.Containers {
			total += c.ArchiveBytes
		}
		if total > 0 {
			checkpointBytes.Observe(float64(total))
		}
	case lpmv1.PhaseRestoring:
		recordTransfer(status)
	case lpmv1.PhaseSucceeded, lpmv1.PhaseFailed:
		recordFinished(phase, status)
	}
}

// recordTransfer observes the image bytes that reached the target and the
// rate at which they did, from CheckpointComplete to Restoring.
func recordTransfer(status *lpmv1.PodMigrationStatus) {
	var total int64
	if p := status.TransferProgress; p != nil {
		total = p.BytesTotal
	}
	if total == 0 && status.Source != nil {
		for _, c := range status.Source.Containers {
			total += c.ImageBytes
		}
	}
	if total == 0 {
		return
	}
	transferBytes.Observe(float64(total))
	elapsed := enteredAt(status, lpmv1.PhaseRestoring).Sub(enteredAt(status, lpmv1.PhaseCheckpointComplete))
	if elapsed > 0 {
		transferThroughput.Observe(float64(total) / elapsed.Seconds())
	}
}

func recordFinished(phase lpmv1.MigrationPhase, status *lpmv1.PodMigrationStatus) {
	reason := ""
	if c := meta.FindStatusCondition(status.Conditions, lpmv1.ConditionSucceeded); c != nil {
		reason = c.Reason
	}
	migrationsFinished.WithLabelValues(string(phase), reasonLabel(reason)).Inc()
	if status.StartTime != nil && status.CompletionTime != nil {
		migrationDuration.WithLabelValues(string(phase)).Observe(
			status.CompletionTime.Sub(status.StartTime.Time).Seconds())
	}
	if phase == lpmv1.PhaseSucceeded && status.Downtime != nil {
		migrationDowntime.Observe(status.Downtime.Seconds())
	}
}

// enteredAt returns when the migration last entered phase, or the zero time.
func enteredAt(status *lpmv1.PodMigrationStatus, phase lpmv1.MigrationPhase) time.Time {
	for i := len(status.PhaseTransitions) - 1; i >= 0; i-- {
		if status.PhaseTransitions[i].Phase == phase {
			return status.PhaseTransitions[i].Time.Time
		}
	}
	return time.Time{}
}

// reasonLabel returns the reason as a label value. The controller writes
// the reasons of api/v1 and the agents' reasons only when they are
// PascalCase words (agentReason), so the values come from the reason
// constants of lpm's code. Any other value becomes "Other".
func reasonLabel(reason string) string {
	if reason == "" || !reasonPattern.MatchString(reason) {
		return "Other"
	}
	return reason
}

// recorded keeps the metrics of a transition from being recorded twice.
var recorded = &transitionLog{last: map[types.NamespacedName]recordedPhase{}}

// transitionLog remembers, for each PodMigration, the furthest phase whose
// metrics were recorded. A reconcile that works on a stale cached copy can
// write a transition a second time, and advance keeps its metrics from
// being recorded again.
type transitionLog struct {
	mu   sync.Mutex
	last map[types.NamespacedName]recordedPhase
}

type recordedPhase struct {
	uid  types.UID
	rank int
}

// phaseRank orders the phases as a migration passes them.
var phaseRank = map[lpmv1.MigrationPhase]int{
	lpmv1.PhasePending: 1, lpmv1.PhaseCheckpointing: 2, lpmv1.PhaseCheckpointComplete: 3,
	lpmv1.PhasePreparingImages: 4, lpmv1.PhaseRestoring: 5, lpmv1.PhaseSucceeded: 6, lpmv1.PhaseFailed: 6,
}

// advance reports whether phase lies beyond the furthest phase recorded
// for the migration, and records it.
func (l *transitionLog) advance(key types.NamespacedName, uid types.UID, phase lpmv1.MigrationPhase) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok := l.last[key]
	if ok && last.uid == uid && phaseRank[phase] <= last.rank {
		return false
	}
	l.last[key] = recordedPhase{uid: uid, rank: phaseRank[phase]}
	return true
}

// forget drops the entry of a PodMigration that no longer exists.
func (l *transitionLog) forget(key types.NamespacedName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, key)
}

// forgetMetrics drops what the metrics keep of a deleted PodMigration.
func forgetMetrics(key types.NamespacedName) {
	recorded.forget(key)
}

// activeMigrations reports the unfinished PodMigrations by phase, counted
// from the manager's cache at each scrape, so that the value is right
// after a restart or a change of leader.
var activeMigrations = &activeCollector{
	active: prometheus.NewDesc("lpm_migrations_active",
		"PodMigrations that have not finished, by phase.", []string{"phase"}, nil),
	waiting: prometheus.NewDesc("lpm_migrations_waiting_for_slot",
		"Pending PodMigrations whose checks passed and that wait for a free slot under the concurrency caps.",
		nil, nil),
}

// collectTimeout bounds the cache read of one scrape. The read waits only
// while the cache has not synced yet.
const collectTimeout = 5 * time.Second

type activeCollector struct {
	active  *prometheus.Desc
	waiting *prometheus.Desc
	reader  atomic.Pointer[client.Reader]
}

// use makes the collector count from reader, the manager's cache. Tests
// that start several managers in one process call it for each.
func (c *activeCollector) use(reader client.Reader) {
	c.reader.Store(&reader)
}

// Describe implements prometheus.Collector.
func (c *activeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.waiting
}

// Collect implements prometheus.Collector. It reports nothing before the
// controller is set up or when the cache read fails.
func (c *activeCollector) Collect(ch chan<- prometheus.Metric) {
	reader := c.reader.Load()
	if reader == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	var list lpmv1.PodMigrationList
	if err := (*reader).List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(c.active, err)
		return
	}
	counts := map[lpmv1.MigrationPhase]int{}
	waiting := 0
	for i := range list.Items {
		status := &list.Items[i].Status
		phase := status.Phase
		if phase == "" {
			phase = lpmv1.PhasePending
		}
		counts[phase]++
		c := meta.FindStatusCondition(status.Conditions, lpmv1.ConditionSucceeded)
		if phase == lpmv1.PhasePending && c != nil && c.Reason == string(lpmv1.ReasonWaitingForSlot) {
			waiting++
		}
	}
	for _, phase := range runningPhases {
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(counts[phase]), string(phase))
	}
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(waiting))
}
