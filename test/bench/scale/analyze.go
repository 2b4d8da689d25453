package scale

import (
	"sort"
	"time"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// Controller steps. Each is measured from the observation that let the
// controller act (an agent's report, a pod's change, a free slot) to the
// observation of the controller's write, both as the watch delivered
// them, so the watch's own delay cancels out.
const (
	StepAccept     = "create → Pending"
	StepAdmit      = "Prepared and slot free → Checkpointing"
	StepCheckpoint = "Checkpointed → CheckpointComplete"
	StepImages     = "CheckpointComplete → PreparingImages"
	StepRestore    = "ImagesReady → Restoring"
	StepVerify     = "Restored, Ready and Lease renewed → verified"
	StepDelete     = "Killed → source pod deleted"
	StepFinish     = "source pod gone → Succeeded"
)

// Steps lists the controller's steps in migration order.
var Steps = []string{StepAccept, StepAdmit, StepCheckpoint, StepImages, StepRestore, StepVerify, StepDelete,
	StepFinish}

// PhaseOrder lists the phases a successful migration passes.
var PhaseOrder = []lpmv1.MigrationPhase{lpmv1.PhasePending, lpmv1.PhaseCheckpointing,
	lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring, lpmv1.PhaseSucceeded}

// running reports whether a migration in phase holds one of the caps'
// slots, as the controller counts them.
func running(phase lpmv1.MigrationPhase) bool {
	switch phase {
	case lpmv1.PhaseCheckpointing, lpmv1.PhaseCheckpointComplete, lpmv1.PhasePreparingImages, lpmv1.PhaseRestoring:
		return true
	}
	return false
}

// history is one migration's observations.
type history struct {
	name string
	obs  []observation
}

func (h *history) first(f func(observation) bool) time.Time {
	for _, o := range h.obs {
		if f(o) {
			return o.at
		}
	}
	return time.Time{}
}

func (h *history) phase(p lpmv1.MigrationPhase) time.Time {
	return h.first(func(o observation) bool { return o.phase == p })
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.IsZero() {
			return time.Time{}
		}
		if t.After(out) {
			out = t
		}
	}
	return out
}

// analyze fills the steps, phases and cap figures of out from the
// observations.
func analyze(all []observation, out *results.Scale, start time.Time) {
	sort.SliceStable(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	migrations := map[string]*history{}
	pods := map[string]*history{}
	leases := map[string]*history{}
	var order []string
	for _, o := range all {
		byName := pods
		switch o.kind {
		case "migration":
			byName = migrations
		case "lease":
			byName = leases
		}
		h := byName[o.name]
		if h == nil {
			h = &history{name: o.name}
			byName[o.name] = h
			if o.kind == "migration" {
				order = append(order, o.name)
			}
		}
		h.obs = append(h.obs, o)
	}
	changes := runningChanges(all)
	out.MaxRunning, out.MaxOutboundObs = maxRunning(changes)

	add := func(step string, from, to time.Time) {
		if from.IsZero() || to.IsZero() {
			return
		}
		out.Steps[step] = append(out.Steps[step], max(0, to.Sub(from).Seconds()))
	}
	for _, name := range order {
		h := migrations[name]
		last := h.obs[len(h.obs)-1]
		if last.phase != lpmv1.PhaseSucceeded {
			continue
		}
		source := pods[last.podName]
		if source == nil {
			source = &history{}
		}
		restored := pods[last.restoredPod]
		if restored == nil {
			restored = &history{}
		}
		admitted := h.phase(lpmv1.PhaseCheckpointing)
		prepared := latest(h.first(func(o observation) bool { return o.sourceTrue[lpmv1.AgentConditionPrepared] }),
			h.first(func(o observation) bool { return o.targetTrue[lpmv1.AgentConditionPrepared] }))
		add(StepAccept, h.obs[0].at, h.phase(lpmv1.PhasePending))
		add(StepAdmit, latest(prepared, slotFreeSince(changes, name, last.sourceNode, admitted)), admitted)
		add(StepCheckpoint, h.first(func(o observation) bool { return o.sourceTrue[lpmv1.AgentConditionCheckpointed] }),
			h.phase(lpmv1.PhaseCheckpointComplete))
		add(StepImages, h.phase(lpmv1.PhaseCheckpointComplete), h.phase(lpmv1.PhasePreparingImages))
		add(StepRestore, h.first(func(o observation) bool { return o.targetTrue[lpmv1.AgentConditionImagesReady] }),
			h.phase(lpmv1.PhaseRestoring))
		add(StepVerify, latest(h.first(func(o observation) bool { return o.targetTrue[lpmv1.AgentConditionRestored] }),
			restored.first(func(o observation) bool { return o.ready }), leaseRenewedAfter(leases, last)),
			h.first(func(o observation) bool { return o.restoredTrue }))
		add(StepDelete, h.first(func(o observation) bool { return o.sourceTrue[lpmv1.AgentConditionKilled] }),
			source.first(func(o observation) bool { return o.terminating }))
		add(StepFinish, source.first(func(o observation) bool { return o.deleted }), h.phase(lpmv1.PhaseSucceeded))

		for i := 0; i+1 < len(PhaseOrder); i++ {
			from, ok1 := last.phaseEntered[PhaseOrder[i]]
			to, ok2 := last.phaseEntered[PhaseOrder[i+1]]
			if ok1 && ok2 {
				out.Phases[string(PhaseOrder[i])] = append(out.Phases[string(PhaseOrder[i])], to.Sub(from).Seconds())
			}
		}
		if created := last.creationStamp; !created.IsZero() {
			if done, ok := last.phaseEntered[lpmv1.PhaseSucceeded]; ok {
				out.Phases["created → Succeeded"] = append(out.Phases["created → Succeeded"],
					done.Sub(h.obs[0].at).Seconds())
			}
		}
	}
	out.Extra = map[string]float64{"firstCreatedSeconds": 0}
	if len(all) > 0 {
		out.Extra["firstObservationSeconds"] = all[0].at.Sub(start).Seconds()
	}
}

// leaseRenewedAfter returns when the watch showed the first renewal of the
// target node's Lease at or after the end of the settle window. The
// controller verifies the restored pod only after that renewal, and the
// fake kubelet renews every 10 seconds, so measuring the verify step from
// Ready alone would count the kubelet's interval as the controller's time.
// The benchmark's migrations settle for 0 seconds: the window ends at the
// restored pod's Ready time.
func leaseRenewedAfter(leases map[string]*history, last observation) time.Time {
	lease := leases[last.targetNode]
	if lease == nil || last.readyTime.IsZero() {
		return time.Time{}
	}
	return lease.first(func(o observation) bool { return !o.renewTime.Before(last.readyTime) })
}

// runningChange is a migration entering or leaving the caps' slots.
type runningChange struct {
	at      time.Time
	name    string
	node    string
	running bool
}

func runningChanges(all []observation) []runningChange {
	state := map[string]bool{}
	var out []runningChange
	for _, o := range all {
		if o.kind != "migration" {
			continue
		}
		r := running(o.phase) && !o.deleted
		if r != state[o.name] {
			state[o.name] = r
			out = append(out, runningChange{at: o.at, name: o.name, node: o.sourceNode, running: r})
		}
	}
	return out
}

// maxRunning replays the changes and returns the largest number of running
// migrations and the largest number leaving one node, as the watch saw
// them.
func maxRunning(changes []runningChange) (int, int) {
	set := map[string]string{}
	maxAll, maxNode := 0, 0
	for _, c := range changes {
		if c.running {
			set[c.name] = c.node
		} else {
			delete(set, c.name)
		}
		perNode := map[string]int{}
		for _, n := range set {
			perNode[n]++
			maxNode = max(maxNode, perNode[n])
		}
		maxAll = max(maxAll, len(set))
	}
	return maxAll, maxNode
}

// slotFreeSince returns since when, up to admitted, a slot was free for
// migration name from node: the caps (controller defaults) left room for
// it continuously from that time to its admission.
func slotFreeSince(changes []runningChange, name, node string, admitted time.Time) time.Time {
	if admitted.IsZero() {
		return time.Time{}
	}
	set := map[string]string{}
	since := time.Unix(0, 0)
	free := true
	for _, c := range changes {
		if c.at.After(admitted) {
			break
		}
		if c.name == name {
			continue
		}
		if c.running {
			set[c.name] = c.node
		} else {
			delete(set, c.name)
		}
		outbound := 0
		for _, n := range set {
			if n == node {
				outbound++
			}
		}
		now := len(set) < controller.DefaultMaxMigrations && outbound < controller.DefaultMaxOutboundPerNode
		if now && !free {
			since = c.at
		}
		free = now
	}
	return since
}
