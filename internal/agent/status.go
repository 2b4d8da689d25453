package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"

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
	part, err := replacingMergePatch(pm.Status.Source, current)
	if err != nil {
		return err
	}
	if err := a.patchStatus(ctx, pm, map[string]any{"source": part}); err != nil {
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
	part, err := replacingMergePatch(pm.Status.Target, current)
	if err != nil {
		return err
	}
	if err := a.patchStatus(ctx, pm, map[string]any{"target": part}); err != nil {
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

// replacingMergePatch returns the JSON merge patch value that turns old into
// updated. A merge patch keeps every field it does not name, and the API
// types omit false, zero and nil fields, so a field that became empty (such
// as frozen turning false) is sent as null to delete it.
func replacingMergePatch(old, updated any) (any, error) {
	oldValue, err := toJSONValue(old)
	if err != nil {
		return nil, err
	}
	newValue, err := toJSONValue(updated)
	if err != nil {
		return nil, err
	}
	return nullRemoved(oldValue, newValue), nil
}

func toJSONValue(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("failed to encode status: %w", err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("failed to decode status: %w", err)
	}
	return out, nil
}

// nullRemoved adds a null to updated for each object key that old has and
// updated lacks, at every depth where both are objects. Lists are replaced
// whole by a merge patch and need no nulls.
func nullRemoved(old, updated any) any {
	oldObject, ok := old.(map[string]any)
	newObject, ok2 := updated.(map[string]any)
	if !ok || !ok2 {
		return updated
	}
	for key, oldField := range oldObject {
		newField, present := newObject[key]
		if !present {
			newObject[key] = nil
			continue
		}
		newObject[key] = nullRemoved(oldField, newField)
	}
	return newObject
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
	reason = diskFullReason(reason, err)
	recordError(state.RoleSource, condType, reason)
	return a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, condType, metav1.ConditionFalse, reason, err.Error()))
	})
}

// failSourceThawed writes a False condition like failSource, after the agent
// thawed the source, and reports the source no longer frozen.
func (a *Agent) failSourceThawed(ctx context.Context, pm *lpmv1.PodMigration, condType string,
	reason lpmv1.Reason, err error) error {
	reason = diskFullReason(reason, err)
	recordError(state.RoleSource, condType, reason)
	return a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		s.Frozen = false
		setCondition(&s.Conditions, a.condition(pm, condType, metav1.ConditionFalse, reason, err.Error()))
	})
}

// failTarget writes a False condition with a typed reason.
func (a *Agent) failTarget(ctx context.Context, pm *lpmv1.PodMigration, condType string, reason lpmv1.Reason,
	err error) error {
	reason = diskFullReason(reason, err)
	recordError(state.RoleTarget, condType, reason)
	return a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, condType, metav1.ConditionFalse, reason, err.Error()))
	})
}

// diskFullCandidates are the reasons of steps that write to a node's disk,
// whose failure may come from a full disk rather than from the step itself.
var diskFullCandidates = map[lpmv1.Reason]bool{
	lpmv1.ReasonCheckpointFailed:   true,
	lpmv1.ReasonArchiveInvalid:     true,
	lpmv1.ReasonImageBuildFailed:   true,
	lpmv1.ReasonTransferFailed:     true,
	lpmv1.ReasonImportFailed:       true,
	lpmv1.ReasonRestoreCheckFailed: true,
	lpmv1.ReasonInternalError:      true,
}

// diskFullReason returns NodeDiskFull when err of a step that writes to disk
// comes from a full disk or an exhausted quota, and reason otherwise. The
// kubelet and containerd return such errors as text only, so the message is
// matched too.
func diskFullReason(reason lpmv1.Reason, err error) lpmv1.Reason {
	if !diskFullCandidates[reason] || err == nil {
		return reason
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return lpmv1.ReasonNodeDiskFull
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "no space left on device") || strings.Contains(msg, "disk quota exceeded") {
		return lpmv1.ReasonNodeDiskFull
	}
	return reason
}
