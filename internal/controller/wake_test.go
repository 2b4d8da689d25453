package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestWaitingForSlot(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// pm builds a migration created minute minutes after start.
	pm := func(name string, minute int, phase lpmv1.MigrationPhase, reason lpmv1.Reason, node string) lpmv1.PodMigration {
		m := lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			CreationTimestamp: metav1.NewTime(start.Add(time.Duration(minute) * time.Minute))}}
		m.Status.Phase = phase
		m.Status.SourceNode = node
		if reason != "" {
			m.Status.Conditions = []metav1.Condition{{Type: lpmv1.ConditionSucceeded,
				Status: metav1.ConditionUnknown, Reason: string(reason)}}
		}
		return m
	}
	deleted := pm("deleted", 0, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "a")
	deleted.DeletionTimestamp = &metav1.Time{Time: start}

	cases := []struct {
		name string
		all  []lpmv1.PodMigration
		node string
		n    int
		want []string
	}{
		{
			name: "none waiting",
			all: []lpmv1.PodMigration{
				pm("running", 1, lpmv1.PhaseCheckpointing, "", "a"),
				pm("agents", 2, lpmv1.PhasePending, lpmv1.ReasonWaitingForAgents, "a"),
				deleted,
			},
			node: "a", n: 2,
		},
		{
			name: "oldest first",
			all: []lpmv1.PodMigration{
				pm("third", 3, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
				pm("first", 1, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
				pm("second", 2, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
			},
			node: "a", n: 2,
			want: []string{"first", "second"},
		},
		{
			name: "then those leaving the freed node",
			all: []lpmv1.PodMigration{
				pm("b1", 1, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
				pm("b2", 2, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
				pm("b3", 3, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "b"),
				pm("a1", 4, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "a"),
				pm("a2", 5, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "a"),
				pm("a3", 6, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "a"),
			},
			node: "a", n: 2,
			want: []string{"b1", "b2", "a1", "a2"},
		},
		{
			name: "fewer than n",
			all:  []lpmv1.PodMigration{pm("only", 1, lpmv1.PhasePending, lpmv1.ReasonWaitingForSlot, "a")},
			node: "a", n: 5,
			want: []string{"only"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range waitingForSlot(tc.all, tc.node, tc.n) {
				got = append(got, m.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("waitingForSlot() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
