package controller

import (
	"fmt"
	"regexp"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
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
