package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

var (
	migrationsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lpm_migrations_finished_total",
		Help: "Migrations that reached Succeeded or Failed, by phase and reason.",
	}, []string{"phase", "reason"})

	migrationDowntime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lpm_migration_downtime_seconds",
		Help:    "Time from the source pod's cut to the restored pod being Ready, for moved pods.",
		Buckets: []float64{0.5, 1, 2, 4, 8, 16, 32, 64, 128},
	})
)

func init() {
	metrics.Registry.MustRegister(migrationsFinished, migrationDowntime)
}

// recordFinished counts a migration that the last status write finished.
// Reasons are the typed reasons of the API and the agents, so the label
// stays bounded.
func recordFinished(m *lpmv1.PodMigration, status *lpmv1.PodMigrationStatus) {
	if !isFinished(status.Phase) || isFinished(m.Status.Phase) {
		return
	}
	reason := ""
	for _, c := range status.Conditions {
		if c.Type == lpmv1.ConditionSucceeded {
			reason = c.Reason
		}
	}
	migrationsFinished.WithLabelValues(string(status.Phase), reason).Inc()
	if status.Phase == lpmv1.PhaseSucceeded && status.Downtime != nil {
		migrationDowntime.Observe(status.Downtime.Seconds())
	}
}
