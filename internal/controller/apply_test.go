package controller

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// The status patch carries the controller's fields only, so it never
// overwrites what the agents write at the same time.
func TestStatusPatchLeavesAgentFieldsOut(t *testing.T) {
	m := restoring()
	body, err := statusPatch(&m.Status, "42")
	if err != nil {
		t.Fatalf("statusPatch() error = %v", err)
	}
	var patch struct {
		Metadata map[string]string          `json:"metadata"`
		Status   map[string]json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(body, &patch); err != nil {
		t.Fatalf("patch %s is not JSON: %v", body, err)
	}
	if got := patch.Metadata["resourceVersion"]; got != "42" {
		t.Errorf("patch resourceVersion = %q, want the one read, 42: %s", got, body)
	}
	for _, field := range []string{"source", "target"} {
		if _, ok := patch.Status[field]; ok {
			t.Errorf("patch contains status.%s: %s", field, body)
		}
	}
	for _, field := range []string{"phase", "conditions", "sourceNode", "targetNode", "restoredPod", "checkpointImages"} {
		if _, ok := patch.Status[field]; !ok {
			t.Errorf("patch lacks status.%s: %s", field, body)
		}
	}
}

func TestOutcomeSetPhaseRecordsTransitions(t *testing.T) {
	m := fixtureMigration()
	o := newOutcome(m, t0)
	o.setPhase(lpmv1.PhasePending)
	o.setPhase(lpmv1.PhasePending)
	o.setPhase(lpmv1.PhaseCheckpointing)
	want := []lpmv1.PhaseTransition{
		{Phase: lpmv1.PhasePending, Time: metav1.NewMicroTime(t0)},
		{Phase: lpmv1.PhaseCheckpointing, Time: metav1.NewMicroTime(t0)},
	}
	if diff := cmp.Diff(want, o.status.PhaseTransitions); diff != "" {
		t.Errorf("transitions mismatch (-want +got):\n%s", diff)
	}
	if m.Status.Phase != "" {
		t.Errorf("the outcome changed the observed migration")
	}
}
