package controller

import (
	"fmt"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
)

// reasonPattern is the form of a condition reason: PascalCase, as the
// metav1.Condition validation requires and the API's typed reasons use.
var reasonPattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,127}$`)

// sourceCondition and targetCondition return the condition of type t from
// the source or the target agent's part of the status, or nil.
func sourceCondition(m *lpmv1.PodMigration, t string) *metav1.Condition {
	return meta.FindStatusCondition(sourceStatus(m).Conditions, t)
}

func targetCondition(m *lpmv1.PodMigration, t string) *metav1.Condition {
	return meta.FindStatusCondition(targetStatus(m).Conditions, t)
}

func isTrue(c *metav1.Condition) bool  { return c != nil && c.Status == metav1.ConditionTrue }
func isFalse(c *metav1.Condition) bool { return c != nil && c.Status == metav1.ConditionFalse }

// agentStep is an agent condition whose False status fails the migration,
// with the reason the controller uses when the agent's reason is not a
// typed reason.
type agentStep struct {
	source   bool
	condType string
	fallback lpmv1.Reason
}

// agentSteps are the agents' steps up to verification, in the order of a
// migration.
var agentSteps = []agentStep{
	{source: true, condType: lpmv1.AgentConditionPrepared, fallback: lpmv1.ReasonUnsupportedProcessState},
	{source: false, condType: lpmv1.AgentConditionPrepared, fallback: lpmv1.ReasonBaseImageUnavailable},
	{source: true, condType: lpmv1.AgentConditionCheckpointed, fallback: lpmv1.ReasonCheckpointFailed},
	{source: true, condType: lpmv1.AgentConditionImagesServed, fallback: lpmv1.ReasonImageBuildFailed},
	{source: false, condType: lpmv1.AgentConditionImagesReady, fallback: lpmv1.ReasonImportFailed},
	{source: false, condType: lpmv1.AgentConditionRestored, fallback: lpmv1.ReasonNotRestored},
}

// failOnAgentReport fails the migration when either agent reports one of
// its steps False, and reports whether it did. An agent may report a
// failure long after the step's own phase: the source agent fails
// ImagesServed with LivenessProbeDeadline while the restored pod is being
// verified, because the kubelet may soon kill the frozen source. So every
// phase before verification checks every step.
func failOnAgentReport(o *outcome) bool {
	for _, step := range agentSteps {
		role, node, c := "target", o.status.TargetNode, targetCondition(o.m, step.condType)
		if step.source {
			role, node, c = "source", o.status.SourceNode, sourceCondition(o.m, step.condType)
		}
		if isFalse(c) {
			o.fail(agentReason(c, step.fallback), agentMessage(role, node, c))
			return true
		}
	}
	return false
}

// agentReason returns the typed reason an agent reported, or fallback when
// the agent's reason is not a valid reason.
func agentReason(c *metav1.Condition, fallback lpmv1.Reason) lpmv1.Reason {
	if c != nil && reasonPattern.MatchString(c.Reason) {
		return lpmv1.Reason(c.Reason)
	}
	return fallback
}

// agentMessage prefixes an agent's message with the agent it came from.
func agentMessage(role, node string, c *metav1.Condition) string {
	msg := c.Message
	if msg == "" {
		msg = fmt.Sprintf("%s is %s with reason %s", c.Type, c.Status, c.Reason)
	}
	return fmt.Sprintf("%s agent on node %s: %s", role, node, msg)
}

// sourceStatus and targetStatus return the agents' parts of the status,
// empty when an agent has not written yet.
func sourceStatus(m *lpmv1.PodMigration) *lpmv1.SourceAgentStatus {
	if m.Status.Source == nil {
		return &lpmv1.SourceAgentStatus{}
	}
	return m.Status.Source
}

func targetStatus(m *lpmv1.PodMigration) *lpmv1.TargetAgentStatus {
	if m.Status.Target == nil {
		return &lpmv1.TargetAgentStatus{}
	}
	return m.Status.Target
}

// failOnAgentLoss fails the migration when the agent of its source or
// target node has sent no heartbeat for preflight.AgentHeartbeatTimeout:
// the node or the agent is down, and the step it owes would only end at
// the stage's timeout. The rollback keeps the source frozen until no
// restored pod is left. Otherwise it requests a reconcile for when the
// older heartbeat expires.
func failOnAgentLoss(o *outcome, w *world) {
	agents := []struct {
		role, node string
		agent      *lpmv1.NodeAgent
	}{
		{role: "source", node: o.status.SourceNode, agent: w.sourceAgent},
		{role: "target", node: o.status.TargetNode, agent: w.targetAgent},
	}
	for _, a := range agents {
		if a.node == "" {
			continue
		}
		var last time.Time
		if a.agent != nil && a.agent.Status.HeartbeatTime != nil {
			last = a.agent.Status.HeartbeatTime.Time
		}
		expires := last.Add(preflight.AgentHeartbeatTimeout)
		if o.now.Before(expires) {
			o.requeueAt(expires)
			continue
		}
		seen := "never sent a heartbeat"
		if !last.IsZero() {
			seen = fmt.Sprintf("sent its last heartbeat at %s, %s ago", last.UTC().Format(time.RFC3339),
				o.now.Sub(last).Round(time.Second))
		}
		o.fail(lpmv1.ReasonAgentUnavailable, fmt.Sprintf("the lpm agent of the %s node %s %s, more than %s: "+
			"the node or the agent is down, so the migration rolls back", a.role, a.node, seen,
			preflight.AgentHeartbeatTimeout))
		return
	}
}
