package agent

import (
	"context"
	"encoding/json"
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/state"
)

// patchSource writes the agent's part of a PodMigration's status,
// status.source, as a JSON merge patch on the status subresource. The
// patch carries only that field, so it never overwrites what the
// controller or the other agent wrote. mutate changes a copy of the
// current part.
func (a *Agent) patchSource(ctx context.Context, pm *lpmv1.PodMigration,
	mutate func(*lpmv1.SourceAgentStatus)) error {
	a.refresh(ctx, pm)
	current := &lpmv1.SourceAgentStatus{}
	if pm.Status.Source != nil {
		current = pm.Status.Source.DeepCopy()
	}
	mutate(current)
	if err := a.patchStatus(ctx, pm, map[string]any{"source": current}); err != nil {
		return err
	}
	pm.Status.Source = current
	return nil
}

// patchTarget writes status.target the same way.
func (a *Agent) patchTarget(ctx context.Context, pm *lpmv1.PodMigration,
	mutate func(*lpmv1.TargetAgentStatus)) error {
	a.refresh(ctx, pm)
	current := &lpmv1.TargetAgentStatus{}
	if pm.Status.Target != nil {
		current = pm.Status.Target.DeepCopy()
	}
	mutate(current)
	if err := a.patchStatus(ctx, pm, map[string]any{"target": current}); err != nil {
		return err
	}
	pm.Status.Target = current
	return nil
}

// refresh replaces the agents' parts of pm's status with the API server's
// current ones. The patches replace a part as a whole, so building one on
// a stale copy from the cache, or on the copy a background task started
// with, could drop a condition written since. A failed read keeps pm.
func (a *Agent) refresh(ctx context.Context, pm *lpmv1.PodMigration) {
	fresh := &lpmv1.PodMigration{}
	if err := a.reader.Get(ctx, client.ObjectKeyFromObject(pm), fresh); err != nil || fresh.UID != pm.UID {
		return
	}
	pm.Status.Source, pm.Status.Target = fresh.Status.Source, fresh.Status.Target
}

func (a *Agent) patchStatus(ctx context.Context, pm *lpmv1.PodMigration, status map[string]any) error {
	data, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("failed to encode status patch: %w", err)
	}
	patch := client.RawPatch(types.MergePatchType, data)
	if err := a.client.Status().Patch(ctx, pm.DeepCopy(), patch); err != nil {
		return fmt.Errorf("failed to patch status of PodMigration %s/%s: %w", pm.Namespace, pm.Name, err)
	}
	return nil
}

// condition returns a condition for the agent's part of the status.
func (a *Agent) condition(pm *lpmv1.PodMigration, condType string, status metav1.ConditionStatus,
	reason lpmv1.Reason, message string) metav1.Condition {
	return metav1.Condition{Type: condType, Status: status, Reason: string(reason), Message: truncate(message, 32768),
		ObservedGeneration: pm.Generation, LastTransitionTime: metav1.NewTime(a.clock.Now())}
}

func setCondition(conditions *[]metav1.Condition, c metav1.Condition) {
	apimeta.SetStatusCondition(conditions, c)
}

func sourceCondition(pm *lpmv1.PodMigration, condType string) *metav1.Condition {
	if pm.Status.Source == nil {
		return nil
	}
	return apimeta.FindStatusCondition(pm.Status.Source.Conditions, condType)
}

func targetCondition(pm *lpmv1.PodMigration, condType string) *metav1.Condition {
	if pm.Status.Target == nil {
		return nil
	}
	return apimeta.FindStatusCondition(pm.Status.Target.Conditions, condType)
}

func isTrue(c *metav1.Condition) bool  { return c != nil && c.Status == metav1.ConditionTrue }
func isFalse(c *metav1.Condition) bool { return c != nil && c.Status == metav1.ConditionFalse }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// failSource writes a False condition with a typed reason.
func (a *Agent) failSource(ctx context.Context, pm *lpmv1.PodMigration, condType string, reason lpmv1.Reason,
	err error) error {
	recordError(state.RoleSource, condType, reason)
	return a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, condType, metav1.ConditionFalse, reason, err.Error()))
	})
}

// failTarget writes a False condition with a typed reason.
func (a *Agent) failTarget(ctx context.Context, pm *lpmv1.PodMigration, condType string, reason lpmv1.Reason,
	err error) error {
	recordError(state.RoleTarget, condType, reason)
	return a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, condType, metav1.ConditionFalse, reason, err.Error()))
	})
}
