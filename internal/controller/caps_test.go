package controller

import (
	"fmt"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func migrationOn(uid, node string, phase lpmv1.MigrationPhase) lpmv1.PodMigration {
	return lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)},
		Status:     lpmv1.PodMigrationStatus{Phase: phase, SourceNode: node},
	}
}

func TestSlotsAdmit(t *testing.T) {
	testCases := []struct {
		name    string
		running []lpmv1.PodMigration
		node    string
		want    bool
	}{
		{name: "empty cluster", node: "node-a", want: true},
		{
			name: "cluster full",
			running: []lpmv1.PodMigration{
				migrationOn("a", "n1", lpmv1.PhaseCheckpointing), migrationOn("b", "n2", lpmv1.PhaseCheckpointComplete),
				migrationOn("c", "n3", lpmv1.PhasePreparingImages),
			},
			node: "node-a",
		},
		{
			name: "node full",
			running: []lpmv1.PodMigration{
				migrationOn("a", "node-a", lpmv1.PhaseRestoring), migrationOn("b", "node-a", lpmv1.PhaseCheckpointing),
			},
			node: "node-a",
		},
		{
			name: "finished and pending migrations hold no slot",
			running: []lpmv1.PodMigration{
				migrationOn("a", "node-a", lpmv1.PhaseSucceeded), migrationOn("b", "node-a", lpmv1.PhaseFailed),
				migrationOn("c", "node-a", lpmv1.PhasePending), migrationOn("d", "node-a", ""),
			},
			node: "node-a", want: true,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSlots(3, 2)
			m := migrationOn("self", tc.node, lpmv1.PhasePending)
			got, reason := s.Admit(&m, append(tc.running, m))
			if got != tc.want {
				t.Errorf("Admit() = %v (%s), want %v", got, reason, tc.want)
			}
			if !got && reason == "" {
				t.Errorf("Admit() rejected without a reason")
			}
		})
	}
}

// Admissions that the cache does not show yet still count, so concurrent
// reconciles never exceed the caps.
func TestSlotsConcurrentAdmit(t *testing.T) {
	s := NewSlots(5, 2)
	var all []lpmv1.PodMigration
	for i := range 40 {
		all = append(all, migrationOn(fmt.Sprintf("m%02d", i), fmt.Sprintf("node-%d", i%4), lpmv1.PhasePending))
	}
	var mu sync.Mutex
	admitted := map[string]int{}
	var wg sync.WaitGroup
	for i := range all {
		wg.Add(1)
		go func(m lpmv1.PodMigration) {
			defer wg.Done()
			if ok, _ := s.Admit(&m, all); ok {
				mu.Lock()
				admitted[m.Status.SourceNode]++
				mu.Unlock()
			}
		}(all[i])
	}
	wg.Wait()
	total := 0
	for node, n := range admitted {
		total += n
		if n > 2 {
			t.Errorf("%d migrations admitted from %s, want at most 2", n, node)
		}
	}
	if total != 5 {
		t.Errorf("%d migrations admitted, want 5", total)
	}
}

func TestSlotsAdmitIsIdempotent(t *testing.T) {
	s := NewSlots(1, 1)
	a, b := migrationOn("a", "node-a", lpmv1.PhasePending), migrationOn("b", "node-b", lpmv1.PhasePending)
	all := []lpmv1.PodMigration{a, b}
	if ok, _ := s.Admit(&a, all); !ok {
		t.Fatalf("first Admit(a) = false, want true")
	}
	if ok, _ := s.Admit(&a, all); !ok {
		t.Errorf("second Admit(a) = false, want true: a reconcile that failed to write its status retries")
	}
	if ok, _ := s.Admit(&b, all); ok {
		t.Errorf("Admit(b) = true while a holds the only slot")
	}

	// Once a finished, its slot is free again.
	all[0].Status.Phase = lpmv1.PhaseSucceeded
	if ok, reason := s.Admit(&b, all); !ok {
		t.Errorf("Admit(b) = false (%s) after a finished", reason)
	}
}

// A deleted migration's admission lapses.
func TestSlotsAdmissionLapsesOnDelete(t *testing.T) {
	a, b := migrationOn("a", "node-a", lpmv1.PhasePending), migrationOn("b", "node-b", lpmv1.PhasePending)
	s2 := NewSlots(1, 1)
	s2.Admit(&a, []lpmv1.PodMigration{a, b})
	if ok, reason := s2.Admit(&b, []lpmv1.PodMigration{b}); !ok {
		t.Errorf("Admit(b) = false (%s) after a was deleted", reason)
	}
}

// A reconcile may pass a list older than the one an earlier call saw.
// A migration that the newer list showed running must still count when an
// older list shows it Pending.
func TestSlotsAdmitWithOlderList(t *testing.T) {
	s := NewSlots(1, 1)
	a := migrationOn("a", "node-a", lpmv1.PhasePending)
	a.ResourceVersion = "10"
	b := migrationOn("b", "node-b", lpmv1.PhasePending)
	b.ResourceVersion = "11"
	c := migrationOn("c", "node-c", lpmv1.PhasePending)
	c.ResourceVersion = "12"
	older := []lpmv1.PodMigration{a, b, c}
	if ok, reason := s.Admit(&a, older); !ok {
		t.Fatalf("Admit(a) = false (%s), want true", reason)
	}

	runningA := a
	runningA.ResourceVersion = "13"
	runningA.Status.Phase = lpmv1.PhaseCheckpointing
	newer := []lpmv1.PodMigration{runningA, b, c}
	if ok, _ := s.Admit(&b, newer); ok {
		t.Errorf("Admit(b) with the newer list = true while a runs")
	}
	if ok, _ := s.Admit(&c, older); ok {
		t.Errorf("Admit(c) with the older list = true while a runs")
	}
}

// An admission lapses only on a list that is newer than the admission: an
// older list that does not contain the migration yet keeps it.
func TestSlotsAdmissionKeptOnOlderList(t *testing.T) {
	s := NewSlots(1, 1)
	a := migrationOn("a", "node-a", lpmv1.PhasePending)
	a.ResourceVersion = "20"
	b := migrationOn("b", "node-b", lpmv1.PhasePending)
	b.ResourceVersion = "19"
	if ok, reason := s.Admit(&a, []lpmv1.PodMigration{a, b}); !ok {
		t.Fatalf("Admit(a) = false (%s), want true", reason)
	}
	if ok, _ := s.Admit(&b, []lpmv1.PodMigration{b}); ok {
		t.Errorf("Admit(b) with a list older than a's admission = true, want false")
	}

	newerB := b
	newerB.ResourceVersion = "21"
	if ok, reason := s.Admit(&newerB, []lpmv1.PodMigration{newerB}); !ok {
		t.Errorf("Admit(b) = false (%s) with a list that shows a deleted", reason)
	}
}
