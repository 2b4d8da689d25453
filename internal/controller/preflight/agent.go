package preflight

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// AgentHeartbeatTimeout is the maximum age of a NodeAgent's heartbeat
// before the controller treats the agent as gone. Agents renew it at least
// every 30 seconds.
const AgentHeartbeatTimeout = 2 * time.Minute

// Role is the part a node's agent plays in a migration.
type Role string

// The roles of an agent.
const (
	RoleSource Role = "source"
	RoleTarget Role = "target"
)

// CheckAgent returns why the agent of a node cannot play role, or nil. The
// agent must exist, report Ready with a fresh heartbeat, and report that
// its node can checkpoint (source) or restore (target).
func CheckAgent(agent *lpmv1.NodeAgent, node string, role Role, now time.Time) *Failure {
	field := "status.sourceNode"
	if role == RoleTarget {
		field = "spec.targetNode"
	}
	if agent == nil {
		return fail(lpmv1.ReasonAgentMissing, field,
			"node %s has no NodeAgent. The lpm agent does not run there", node)
	}
	if !conditionTrue(agent.Status.Conditions, lpmv1.NodeAgentReady) {
		return fail(lpmv1.ReasonAgentUnavailable, field, "the lpm agent of node %s is not Ready", node)
	}
	if hb := agent.Status.HeartbeatTime; hb == nil || now.Sub(hb.Time) > AgentHeartbeatTimeout {
		return fail(lpmv1.ReasonAgentUnavailable, field,
			"the lpm agent of node %s has sent no heartbeat for more than %s", node, AgentHeartbeatTimeout)
	}
	capability, reason := lpmv1.NodeAgentCheckpointSupported, lpmv1.ReasonAgentCannotCheckpoint
	if role == RoleTarget {
		capability, reason = lpmv1.NodeAgentRestoreSupported, lpmv1.ReasonAgentCannotRestore
	}
	if c := meta.FindStatusCondition(agent.Status.Conditions, capability); c == nil || c.Status != metav1.ConditionTrue {
		detail := "it does not report " + capability
		if c != nil && c.Message != "" {
			detail = c.Message
		}
		return fail(reason, field, "node %s cannot %s: %s", node, verb(role), detail)
	}
	return nil
}

func verb(role Role) string {
	if role == RoleTarget {
		return "restore"
	}
	return "checkpoint"
}

// CheckNonRoot rejects a pod that runs a container as a non-root user when
// the source node's CRIU cannot dump such processes: that needs
// CAP_SYS_RESOURCE. Only users set in the pod spec are visible here, so the
// source agent checks the running processes.
func CheckNonRoot(pod *corev1.Pod, source *lpmv1.NodeAgent) *Failure {
	if source == nil || (source.Status.Capabilities != nil && source.Status.Capabilities.CheckpointNonRoot) {
		return nil
	}
	podUser := int64(-1)
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		podUser = *sc.RunAsUser
	}
	lists := []struct {
		field      string
		containers []corev1.Container
	}{
		{"spec.initContainers", pod.Spec.InitContainers},
		{"spec.containers", pod.Spec.Containers},
	}
	for _, l := range lists {
		for i := range l.containers {
			c := &l.containers[i]
			user, field := podUser, "spec.securityContext.runAsUser"
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
				user = *c.SecurityContext.RunAsUser
				field = fmt.Sprintf("%s[%d].securityContext.runAsUser", l.field, i)
			}
			if user > 0 {
				return fail(lpmv1.ReasonNonRootUnsupported, field,
					"container %q runs as user %d, and CRIU on node %s cannot dump non-root processes "+
						"(it lacks CAP_SYS_RESOURCE)", c.Name, user, source.Name)
			}
		}
	}
	return nil
}

// CheckCompatible rejects a target whose node lacks what the source's
// processes may use: a CPU feature of the source (a restored process that
// uses it dies with SIGILL) or the same cgroup version.
func CheckCompatible(source, target *lpmv1.NodeAgent) *Failure {
	if source == nil || target == nil || source.Status.Capabilities == nil || target.Status.Capabilities == nil {
		return nil
	}
	src, dst := source.Status.Capabilities, target.Status.Capabilities
	if src.CgroupVersion != 0 && dst.CgroupVersion != 0 && src.CgroupVersion != dst.CgroupVersion {
		return fail(lpmv1.ReasonIncompatibleNodes, "spec.targetNode",
			"node %s uses cgroup v%d and node %s cgroup v%d", source.Name, src.CgroupVersion,
			target.Name, dst.CgroupVersion)
	}
	var missing []string
	for _, f := range src.CPUFeatures {
		if !slices.Contains(dst.CPUFeatures, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 && len(dst.CPUFeatures) > 0 {
		const shown = 8
		list := strings.Join(missing[:min(len(missing), shown)], ", ")
		if len(missing) > shown {
			list += fmt.Sprintf(" and %d more", len(missing)-shown)
		}
		return fail(lpmv1.ReasonIncompatibleNodes, "spec.targetNode",
			"node %s lacks CPU features of node %s: %s", target.Name, source.Name, list)
	}
	return nil
}

func conditionTrue(conditions []metav1.Condition, t string) bool {
	return meta.IsStatusConditionTrue(conditions, t)
}
