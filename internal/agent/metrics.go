package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/state"
)

// The agent's metrics, served by the manager's metrics endpoint
// (--metrics-bind-address). Every label takes its values from api/v1 or
// from a fixed list here. No label names a pod or a migration, and none
// names the node because Prometheus adds the scraped agent's address.
var (
	agentErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lpm_agent_errors_total",
		Help: "Failures the agent reported in a PodMigration's status, by role (source or target), " +
			"condition and reason.",
	}, []string{"role", "condition", "reason"})

	agentCheckpointBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lpm_agent_checkpoint_bytes_total",
		Help: "Bytes of checkpoint archives the kubelet wrote for this agent's migrations.",
	})

	agentCheckpointDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "lpm_agent_checkpoint_duration_seconds",
		Help: "Time from the cut to the last container's checkpoint image built, " +
			"for each migration this node was the source of.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})

	agentTransferBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lpm_agent_transfer_bytes_total",
		Help: "Bytes of checkpoint images this agent fetched or pulled and imported, by transfer mode.",
	}, []string{"mode"})

	agentTransferDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lpm_agent_transfer_duration_seconds",
		Help:    "Time to fetch or pull and import a migration's checkpoint images, by transfer mode.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
	}, []string{"mode"})

	agentTransferThroughput = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "lpm_agent_transfer_throughput_bytes_per_second",
		Help: "A migration's checkpoint image bytes divided by the time to fetch or pull and import them, " +
			"by transfer mode.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 2, 12), // 1 MiB/s to 2 GiB/s
	}, []string{"mode"})
)

func init() {
	metrics.Registry.MustRegister(agentErrors, agentCheckpointBytes, agentCheckpointDuration, agentTransferBytes,
		agentTransferDuration, agentTransferThroughput)
}

// recordError counts a False condition the agent wrote.
func recordError(role state.Role, condType string, reason lpmv1.Reason) {
	agentErrors.WithLabelValues(string(role), condType, reasonLabel(reason)).Inc()
}

// recordCheckpoint records a source checkpoint that finished: the
// archives' sizes and the time since the cut.
func recordCheckpoint(containers []lpmv1.SourceContainerStatus, elapsed time.Duration) {
	var total int64
	for _, c := range containers {
		total += c.ArchiveBytes
	}
	agentCheckpointBytes.Add(float64(total))
	agentCheckpointDuration.Observe(elapsed.Seconds())
}

// recordImport records the checkpoint images of pm that the target
// imported in elapsed.
func recordImport(pm *lpmv1.PodMigration, elapsed time.Duration) {
	var total int64
	if pm.Status.Source != nil {
		for _, c := range pm.Status.Source.Containers {
			total += c.ImageBytes
		}
	}
	mode := string(transferMode(pm))
	agentTransferBytes.WithLabelValues(mode).Add(float64(total))
	agentTransferDuration.WithLabelValues(mode).Observe(elapsed.Seconds())
	if elapsed > 0 && total > 0 {
		agentTransferThroughput.WithLabelValues(mode).Observe(float64(total) / elapsed.Seconds())
	}
}

// reasonLabel returns the reason as a label value: the agent writes only
// reasons of api/v1, and anything that is not a PascalCase word becomes
// "Other".
func reasonLabel(reason lpmv1.Reason) string {
	s := string(reason)
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return "Other"
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return "Other"
		}
	}
	return s
}
