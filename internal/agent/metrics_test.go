package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/state"
)

func histogramOf(t *testing.T, h prometheus.Observer) (uint64, float64) {
	t.Helper()
	m := &dto.Metric{}
	if err := h.(prometheus.Metric).Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestRecordError(t *testing.T) {
	counter := agentErrors.WithLabelValues("source", lpmv1.AgentConditionCheckpointed, "CheckpointTimedOut")
	other := agentErrors.WithLabelValues("target", lpmv1.AgentConditionImagesReady, "Other")
	before, beforeOther := testutil.ToFloat64(counter), testutil.ToFloat64(other)

	recordError(state.RoleSource, lpmv1.AgentConditionCheckpointed, lpmv1.ReasonCheckpointTimedOut)
	recordError(state.RoleTarget, lpmv1.AgentConditionImagesReady, "failed to pull image x")

	if got := testutil.ToFloat64(counter) - before; got != 1 {
		t.Errorf("source CheckpointTimedOut errors grew by %v, want 1", got)
	}
	if got := testutil.ToFloat64(other) - beforeOther; got != 1 {
		t.Errorf("target errors with reason Other grew by %v, want 1", got)
	}
}

func TestRecordCheckpoint(t *testing.T) {
	beforeBytes := testutil.ToFloat64(agentCheckpointBytes)
	beforeCount, beforeSum := histogramOf(t, agentCheckpointDuration)

	recordCheckpoint([]lpmv1.SourceContainerStatus{{Name: "a", ArchiveBytes: 100}, {Name: "b", ArchiveBytes: 28}},
		1500*time.Millisecond)

	if got := testutil.ToFloat64(agentCheckpointBytes) - beforeBytes; got != 128 {
		t.Errorf("checkpoint bytes grew by %v, want 128", got)
	}
	count, sum := histogramOf(t, agentCheckpointDuration)
	if count-beforeCount != 1 || sum-beforeSum != 1.5 {
		t.Errorf("checkpoint duration got %d observations summing %vs, want 1 of 1.5s", count-beforeCount,
			sum-beforeSum)
	}
}

func TestRecordImport(t *testing.T) {
	pm := &lpmv1.PodMigration{}
	pm.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry}
	pm.Status.Source = &lpmv1.SourceAgentStatus{Containers: []lpmv1.SourceContainerStatus{
		{Name: "a", ImageBytes: 6 << 20}, {Name: "b", ImageBytes: 2 << 20}}}
	bytes := agentTransferBytes.WithLabelValues("Registry")
	throughput := agentTransferThroughput.WithLabelValues("Registry")
	beforeBytes := testutil.ToFloat64(bytes)
	beforeCount, beforeSum := histogramOf(t, throughput)

	recordImport(pm, 2*time.Second)

	if got := testutil.ToFloat64(bytes) - beforeBytes; got != 8<<20 {
		t.Errorf("transfer bytes grew by %v, want %v", got, 8<<20)
	}
	count, sum := histogramOf(t, throughput)
	if count-beforeCount != 1 || sum-beforeSum != 4<<20 {
		t.Errorf("throughput got %d observations summing %v, want 1 of %v", count-beforeCount, sum-beforeSum, 4<<20)
	}
}

func TestAgentReasonLabel(t *testing.T) {
	testCases := []struct {
		reason lpmv1.Reason
		want   string
	}{
		{lpmv1.ReasonDigestMismatch, "DigestMismatch"},
		{"", "Other"},
		{"digestMismatch", "Other"},
		{"Digest mismatch", "Other"},
		{lpmv1.Reason(strings.Repeat("A", 65)), "Other"},
	}
	for _, tc := range testCases {
		if got := reasonLabel(tc.reason); got != tc.want {
			t.Errorf("reasonLabel(%q) = %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func TestAgentMetricNames(t *testing.T) {
	for _, c := range []prometheus.Collector{agentErrors, agentCheckpointBytes, agentCheckpointDuration,
		agentTransferBytes, agentTransferDuration, agentTransferThroughput} {
		descs := make(chan *prometheus.Desc, 4)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			if !strings.Contains(d.String(), `fqName: "lpm_agent_`) {
				t.Errorf("metric %s lacks the lpm_agent_ prefix", d)
			}
		}
	}
}
