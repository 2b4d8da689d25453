package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

// stepPending runs the preflight checks again on every reconcile, records
// the source and target, waits for both agents' checks and then for a free
// slot. A failed check ends the migration before anything touched the pod.
func stepPending(o *outcome, w *world, slots *Slots) {
	if o.status.StartTime == nil {
		o.status.StartTime = &metav1.Time{Time: o.now}
	}
	if o.status.Phase == "" {
		o.setPhase(lpmv1.PhasePending)
		o.normal(lpmv1.ReasonPending, string(lpmv1.PhasePending),
			fmt.Sprintf("checking whether pod %s can move", o.m.Spec.PodName))
	}
	// A migration that waited past its overall deadline, for a controller
	// or for a slot, ends here: it must never freeze the pod.
	if d, ok := overallDeadline(o.m, o.status); ok && !o.now.Before(d.at) {
		o.fail(d.reason, d.message)
		return
	}

	target, f := checkController(o, w)
	if f != nil {
		failPreflight(o, f)
		return
	}
	if o.status.SourcePodUID == "" {
		o.status.SourcePodUID = string(w.pod.UID)
		o.status.SourceNode = w.pod.Spec.NodeName
		o.status.TargetNode = target
	}

	if f := checkAgentsPrepared(o); f != nil {
		failPreflight(o, f)
		return
	}
	source := sourceCondition(o.m, lpmv1.AgentConditionPrepared)
	dest := targetCondition(o.m, lpmv1.AgentConditionPrepared)
	if !isTrue(source) || !isTrue(dest) {
		msg := fmt.Sprintf("waiting for the agents of nodes %s and %s to report Prepared",
			o.status.SourceNode, o.status.TargetNode)
		o.setCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionUnknown, lpmv1.ReasonWaitingForAgents, msg)
		o.progress(lpmv1.ReasonWaitingForAgents, msg)
		return
	}
	if !meta.IsStatusConditionTrue(o.status.Conditions, lpmv1.ConditionPreflightPassed) {
		o.setCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionTrue, lpmv1.ReasonChecksPassed,
			fmt.Sprintf("pod %s can move from node %s to node %s", w.pod.Name, o.status.SourceNode,
				o.status.TargetNode))
		o.normal(lpmv1.ReasonChecksPassed, "Preflight", o.condition(lpmv1.ConditionPreflightPassed).Message)
	}

	if o.m.Spec.DryRun {
		o.succeed(lpmv1.ReasonDryRun, fmt.Sprintf("dry run: every check passed. Pod %s can move to node %s",
			w.pod.Name, o.status.TargetNode))
		return
	}
	admitMigration(o, w, slots)
}

// checkController runs the checks the controller makes from the API: the
// pod, other migrations of it, the target node and both agents. It returns
// the target node.
func checkController(o *outcome, w *world) (string, *preflight.Failure) {
	m := o.m
	if w.pod == nil {
		return "", &preflight.Failure{Reason: lpmv1.ReasonPodNotFound, Field: "spec.podName",
			Message: fmt.Sprintf("pod %s not found in namespace %s", m.Spec.PodName, m.Namespace)}
	}
	if o.status.SourcePodUID != "" && o.status.SourcePodUID != string(w.pod.UID) {
		return "", &preflight.Failure{Reason: lpmv1.ReasonSourceChanged, Field: "spec.podName",
			Message: fmt.Sprintf("pod %s was replaced by another pod of the same name", m.Spec.PodName)}
	}
	if f := preflight.CheckPod(w.pod); f != nil {
		return "", f
	}
	if f := preflight.CheckOtherMigrations(m, w.migrations); f != nil {
		return "", f
	}

	target := o.status.TargetNode
	if target == "" {
		target = m.Spec.TargetNode
	}
	if target == "" {
		return preflight.SelectTarget(w.pod, w.cluster, w.now)
	}
	if f := preflight.CheckTargetName(m.Spec.SourcePolicy, w.pod.Spec.NodeName, target); f != nil {
		return "", f
	}
	if w.targetNode == nil {
		return "", &preflight.Failure{Reason: lpmv1.ReasonTargetNotFound, Field: "spec.targetNode",
			Message: fmt.Sprintf("node %s not found", target)}
	}
	if f := preflight.CheckTarget(w.pod, w.targetNode, w.cluster, w.now); f != nil {
		return "", f
	}
	if f := preflight.CheckAgent(w.sourceAgent, w.pod.Spec.NodeName, preflight.RoleSource, w.now); f != nil {
		return "", f
	}
	return target, preflight.CheckNonRoot(w.pod, w.sourceAgent)
}

// checkAgentsPrepared returns the failure an agent reported in its
// Prepared condition.
func checkAgentsPrepared(o *outcome) *preflight.Failure {
	if c := sourceCondition(o.m, lpmv1.AgentConditionPrepared); isFalse(c) {
		return &preflight.Failure{Reason: agentReason(c, lpmv1.ReasonUnsupportedProcessState),
			Field: "status.source", Message: agentMessage("source", o.status.SourceNode, c)}
	}
	if c := targetCondition(o.m, lpmv1.AgentConditionPrepared); isFalse(c) {
		return &preflight.Failure{Reason: agentReason(c, lpmv1.ReasonBaseImageUnavailable),
			Field: "status.target", Message: agentMessage("target", o.status.TargetNode, c)}
	}
	return nil
}

// failPreflight ends the migration on a failed check. The same input can
// never succeed, so the reconcile returns a terminal error.
func failPreflight(o *outcome, f *preflight.Failure) {
	o.setCondition(lpmv1.ConditionPreflightPassed, metav1.ConditionFalse, f.Reason, f.Error())
	o.fail(f.Reason, f.Error())
	o.terminal = f
}

// admitMigration starts the checkpoint when the caps leave a slot free.
func admitMigration(o *outcome, w *world, slots *Slots) {
	probe := o.m.DeepCopy()
	probe.Status = *o.status
	ok, reason := slots.Admit(probe, w.migrations)
	if !ok {
		o.progress(lpmv1.ReasonWaitingForSlot, "waiting for a free slot: "+reason)
		o.requeue(slotPollInterval)
		return
	}
	o.setPhase(lpmv1.PhaseCheckpointing)
	o.setCondition(lpmv1.ConditionCheckpointed, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
		fmt.Sprintf("the agent of node %s checkpoints pod %s", o.status.SourceNode, w.pod.Name))
	o.progress(lpmv1.ReasonInProgress, "checkpointing")
	o.normal(lpmv1.ReasonInProgress, string(lpmv1.PhaseCheckpointing),
		fmt.Sprintf("checkpointing pod %s on node %s", w.pod.Name, o.status.SourceNode))
}
