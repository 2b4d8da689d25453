package controller

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"

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
// so Slots also counts the migrations it admitted until a list shows them
// finished or gone. Only the leader reconciles, so memory is enough; a new
// leader starts from what the cache shows.
type Slots struct {
	MaxRunning         int
	MaxOutboundPerNode int

	mu sync.Mutex
	// admitted maps each migration admitted and not yet seen finished or
	// gone to its source node and the resourceVersion it had when admitted.
	admitted map[types.UID]admission
}

// admission is a migration that Slots admitted.
type admission struct {
	node            string
	resourceVersion string
}

// NewSlots returns Slots with the given caps.
func NewSlots(maxRunning, maxOutboundPerNode int) *Slots {
	return &Slots{MaxRunning: maxRunning, MaxOutboundPerNode: maxOutboundPerNode,
		admitted: map[types.UID]admission{}}
}

// Admit reports whether m may leave Pending now, given all migrations as
// the cache shows them, and otherwise why not. An admitted migration holds
// its slot until a list shows it finished or gone.
//
// Concurrent reconciles pass lists read at different times, and a list may
// be older than the one an earlier call saw. So an admission lapses only
// when a list shows the migration finished, or when the migration is
// missing from a list that contains a write newer than its admission. No
// older list can show either.
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
		if isFinished(o.Status.Phase) {
			delete(s.admitted, o.UID)
		}
	}
	for uid, a := range s.admitted {
		if !seen[uid] && uid != m.UID && listIsNewer(all, a.resourceVersion) {
			delete(s.admitted, uid)
			continue
		}
		running[uid] = a.node
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
	s.admitted[m.UID] = admission{node: m.Status.SourceNode, resourceVersion: m.ResourceVersion}
	return true, ""
}

// listIsNewer reports whether the list contains a write made after
// resourceVersion. A cache list reflects its watch up to some point, so
// such a list also reflects every write before it, a deletion included.
// The comparison relies on resourceVersions of one resource being
// comparable integers (k8s.io/apimachinery/pkg/util/resourceversion). When
// one is not, as in a list built by hand, the list counts as newer.
func listIsNewer(all []lpmv1.PodMigration, resourceVersion string) bool {
	for i := range all {
		c, err := resourceversion.CompareResourceVersion(all[i].ResourceVersion, resourceVersion)
		if err != nil || c > 0 {
			return true
		}
	}
	return false
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
