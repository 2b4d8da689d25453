package controller

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Default concurrency caps, the values KubeVirt uses for live migration.
const (
	DefaultMaxMigrations      = 5
	DefaultMaxOutboundPerNode = 2
)

// Slots enforces the concurrency caps: at most MaxRunning migrations past
// Pending in the cluster, and at most MaxOutboundPerNode from one source
// node. The cache lags behind the status writes of concurrent reconciles,
// so Slots also counts the migrations it admitted that the cache does not
// show as running yet. Only the leader reconciles, so memory is enough; a
// new leader starts from what the cache shows.
type Slots struct {
	MaxRunning         int
	MaxOutboundPerNode int

	mu sync.Mutex
	// admitted maps each migration admitted but not yet seen running in
	// the cache to its source node.
	admitted map[types.UID]string
}

// NewSlots returns Slots with the given caps.
func NewSlots(maxRunning, maxOutboundPerNode int) *Slots {
	return &Slots{MaxRunning: maxRunning, MaxOutboundPerNode: maxOutboundPerNode, admitted: map[types.UID]string{}}
}

// Admit reports whether m may leave Pending now, given all migrations as
// the cache shows them, and otherwise why not. An admitted migration holds
// its slot until the cache shows it running, finished or gone.
//
// NOTE: waiting migrations are not queued in creation order. Whichever
// reconciles first after a slot frees takes it.
func (s *Slots) Admit(m *lpmv1.PodMigration, all []lpmv1.PodMigration) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()

	running := map[types.UID]string{}
	seen := map[types.UID]bool{}
	for i := range all {
		o := &all[i]
		seen[o.UID] = true
		if holdsSlot(o) {
			running[o.UID] = o.Status.SourceNode
		}
		if o.Status.Phase != "" && o.Status.Phase != lpmv1.PhasePending {
			delete(s.admitted, o.UID)
		}
	}
	for uid, node := range s.admitted {
		if !seen[uid] && uid != m.UID {
			delete(s.admitted, uid)
			continue
		}
		running[uid] = node
	}
	if _, ok := running[m.UID]; ok {
		return true, ""
	}

	if len(running) >= s.MaxRunning {
		return false, fmt.Sprintf("%d migrations are running, the maximum in the cluster (--max-migrations)",
			len(running))
	}
	outbound := 0
	for _, node := range running {
		if node == m.Status.SourceNode {
			outbound++
		}
	}
	if outbound >= s.MaxOutboundPerNode {
		return false, fmt.Sprintf("%d migrations are leaving node %s, the maximum per node "+
			"(--max-outbound-per-node)", outbound, m.Status.SourceNode)
	}
	s.admitted[m.UID] = m.Status.SourceNode
	return true, ""
}

// holdsSlot reports whether a migration holds a slot: from admission until
// it finishes, the wait for the target node's Lease included. Until then
// its restored pod and its frozen source both take room on their nodes.
func holdsSlot(m *lpmv1.PodMigration) bool {
	return isRunning(m.Status.Phase)
}

// isRunning reports whether a migration in phase is past Pending and not
// finished.
func isRunning(phase lpmv1.MigrationPhase) bool {
	switch phase {
	case lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring:
		return true
	}
	return false
}
