package fakeagent

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// ArchiveBytes is the archive size the fake source agent reports for every
// container.
const ArchiveBytes = 4 << 20

// actAsSource does the source agent's next step for m, as docs/design.md
// lists them, and records the result in src.
func (a *Agent) actAsSource(ctx context.Context, m *lpmv1.PodMigration, src *lpmv1.SourceAgentStatus) error {
	phase := m.Status.Phase
	switch {
	// After verification the migration only finishes, even when deleted.
	case phase == lpmv1.PhaseSucceeded || (restoredVerified(m) && m.Spec.SourcePolicy != lpmv1.SourcePolicyKeep):
		return a.finishSource(ctx, m, src)
	case phase == lpmv1.PhaseFailed || !m.DeletionTimestamp.IsZero():
		return a.rollBackSource(ctx, m, src)
	case phase == lpmv1.PhasePending:
		if !has(src.Conditions, lpmv1.AgentConditionPrepared) {
			if ok, f := a.run(StepPrepareSource); ok {
				a.setCondition(&src.Conditions, lpmv1.AgentConditionPrepared, f, "Prepared")
			}
		}
		return nil
	}
	if a.reportSourceFailures(src) {
		return nil
	}

	if phase == lpmv1.PhaseCheckpointing && !has(src.Conditions, lpmv1.AgentConditionCheckpointed) {
		if err := a.checkpoint(ctx, m, src); err != nil {
			return err
		}
	}
	if isTrue(src.Conditions, lpmv1.AgentConditionCheckpointed) &&
		!has(src.Conditions, lpmv1.AgentConditionImagesServed) {
		if ok, f := a.run(StepServeImages); ok {
			for i := range src.Containers {
				c := &src.Containers[i]
				c.Image = imageName(m, c.Name)
				c.ImageDigest = "sha256:" + strings.Repeat("0", 64)
				c.ImageBytes = ArchiveBytes + 1024
			}
			src.Endpoint = m.Status.SourceNode + ":8479"
			a.setCondition(&src.Conditions, lpmv1.AgentConditionImagesServed, f, "ImagesServed")
		}
	}
	return nil
}

// reportSourceFailures writes the failures set with FailSource and reports
// whether there were any.
func (a *Agent) reportSourceFailures(src *lpmv1.SourceAgentStatus) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for condType, f := range a.sourceReports {
		a.setCondition(&src.Conditions, condType, &f, "")
	}
	return len(a.sourceReports) > 0
}

func (a *Agent) checkpoint(ctx context.Context, m *lpmv1.PodMigration, src *lpmv1.SourceAgentStatus) error {
	ok, f := a.run(StepCheckpoint)
	if !ok {
		return nil
	}
	pod := &corev1.Pod{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.PodName}, pod); err != nil {
		return fmt.Errorf("failed to get pod %s: %w", m.Spec.PodName, err)
	}
	src.CutTime = &metav1.MicroTime{Time: a.clock.Now()}
	if f == nil {
		src.Frozen = m.Spec.SourcePolicy != lpmv1.SourcePolicyKeep
		src.Containers = nil
		for _, name := range checkpointedContainers(pod) {
			src.Containers = append(src.Containers, lpmv1.SourceContainerStatus{
				Name: name, ArchiveBytes: ArchiveBytes, PagesWritten: 1024, BaseImage: "registry.example/base:1",
				FreezingTime: &metav1.Duration{Duration: 2_000_000},
				FrozenTime:   &metav1.Duration{Duration: 80_000_000},
			})
		}
	}
	a.setCondition(&src.Conditions, lpmv1.AgentConditionCheckpointed, f, "Checkpointed")
	return nil
}

// rollBackSource thaws the source once the restored pod is gone, so two
// copies never run at once.
func (a *Agent) rollBackSource(ctx context.Context, m *lpmv1.PodMigration, src *lpmv1.SourceAgentStatus) error {
	if isTrue(src.Conditions, lpmv1.AgentConditionCleanedUp) {
		return nil
	}
	if name := m.Status.RestoredPod; name != "" {
		pod := &corev1.Pod{}
		err := a.client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: name}, pod)
		if err == nil && pod.Annotations[lpmv1.AnnotationMigrationUID] == string(m.UID) {
			return nil
		}
	}
	a.cleanUpSource(src)
	return nil
}

// finishSource plays the end of a move: the agent kills the frozen source
// and reports Killed, and cleans up once the controller has deleted the
// source pod, as docs/design.md describes it.
func (a *Agent) finishSource(ctx context.Context, m *lpmv1.PodMigration, src *lpmv1.SourceAgentStatus) error {
	if m.Spec.SourcePolicy != lpmv1.SourcePolicyKeep && !isTrue(src.Conditions, lpmv1.AgentConditionKilled) {
		if ok, f := a.run(StepKillSource); !ok || f != nil {
			return nil
		}
		a.setCondition(&src.Conditions, lpmv1.AgentConditionKilled, nil, string(lpmv1.ReasonSourceKilled))
	}
	if m.Spec.SourcePolicy != lpmv1.SourcePolicyKeep {
		pod := &corev1.Pod{}
		err := a.client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Spec.PodName}, pod)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		if err == nil && string(pod.UID) == m.Status.SourcePodUID && pod.DeletionTimestamp == nil {
			return nil
		}
	}
	a.cleanUpSource(src)
	return nil
}

func (a *Agent) cleanUpSource(src *lpmv1.SourceAgentStatus) {
	if isTrue(src.Conditions, lpmv1.AgentConditionCleanedUp) {
		return
	}
	if ok, f := a.run(StepCleanUpSource); ok && f == nil {
		src.Frozen = false
		a.setCondition(&src.Conditions, lpmv1.AgentConditionCleanedUp, nil, "CleanedUp")
	}
}

// actAsTarget does the target agent's next step for m.
func (a *Agent) actAsTarget(ctx context.Context, m *lpmv1.PodMigration, dst *lpmv1.TargetAgentStatus) error {
	phase := m.Status.Phase
	switch {
	case phase == lpmv1.PhaseFailed || (!m.DeletionTimestamp.IsZero() && !restoredVerified(m)):
		if !isTrue(dst.Conditions, lpmv1.AgentConditionCleanedUp) {
			if ok, f := a.run(StepCleanUpTarget); ok && f == nil {
				a.setCondition(&dst.Conditions, lpmv1.AgentConditionCleanedUp, nil, "CleanedUp")
			}
		}
		return nil
	case phase == lpmv1.PhaseSucceeded:
		return nil
	case phase == lpmv1.PhasePending:
		if !has(dst.Conditions, lpmv1.AgentConditionPrepared) {
			if ok, f := a.run(StepPrepareTarget); ok {
				a.setCondition(&dst.Conditions, lpmv1.AgentConditionPrepared, f, "Prepared")
			}
		}
		return nil
	}

	src := m.Status.Source
	if src != nil && isTrue(src.Conditions, lpmv1.AgentConditionImagesServed) &&
		!has(dst.Conditions, lpmv1.AgentConditionImagesReady) {
		if ok, f := a.run(StepImportImages); ok {
			if f == nil {
				dst.Containers = nil
				for _, c := range src.Containers {
					dst.Containers = append(dst.Containers, lpmv1.TargetContainerStatus{Name: c.Name, Image: c.Image})
					dst.BytesTotal += c.ImageBytes
				}
				dst.BytesDone = dst.BytesTotal
			}
			a.setCondition(&dst.Conditions, lpmv1.AgentConditionImagesReady, f, "ImagesReady")
		}
	}
	if m.Status.RestoredPod == "" || !isTrue(dst.Conditions, lpmv1.AgentConditionImagesReady) {
		return nil
	}
	pod := &corev1.Pod{}
	err := a.client.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Status.RestoredPod}, pod)
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if !has(dst.Conditions, lpmv1.AgentConditionRestored) {
		a.reportRestored(pod, dst)
	}
	reportReady(pod, dst, a.clock.Now())
	return nil
}

// reportReady records when the agent saw the restored pod Ready, as the
// real agent does by its node's clock.
func reportReady(pod *corev1.Pod, dst *lpmv1.TargetAgentStatus, now time.Time) {
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodReady || c.Status != corev1.ConditionTrue {
			continue
		}
		if dst.ReadyTime == nil || dst.ReadyTime.Time.Before(c.LastTransitionTime.Time) {
			dst.ReadyTime = &metav1.MicroTime{Time: now}
		}
	}
}

// reportRestored reports each restored container once the restored pod's
// containers run, as the real agent reads containerd's restored marker.
func (a *Agent) reportRestored(pod *corev1.Pod, dst *lpmv1.TargetAgentStatus) {
	if pod.Status.Phase != corev1.PodRunning {
		return
	}
	ok, f := a.run(StepRestore)
	if !ok {
		return
	}
	for i := range dst.Containers {
		dst.Containers[i].Restored = f == nil
		dst.Containers[i].ContainerID = "containerd://" + strings.Repeat("f", 12) + dst.Containers[i].Name
	}
	a.setCondition(&dst.Conditions, lpmv1.AgentConditionRestored, f, "Restored")
}

func restoredVerified(m *lpmv1.PodMigration) bool {
	for _, c := range m.Status.Conditions {
		if c.Type == lpmv1.ConditionRestored {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// imageName is the checkpoint image reference for transfer Direct, as
// docs/design.md names it.
func imageName(m *lpmv1.PodMigration, container string) string {
	uid := string(m.UID)
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return fmt.Sprintf("localhost/lpm/%s/%s-%s:%s", m.Namespace, m.Spec.PodName, container, uid)
}

func checkpointedContainers(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			names = append(names, c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

func controllerOptions(skipNameValidation *bool) controller.Options {
	return controller.Options{SkipNameValidation: skipNameValidation}
}

func reconcileFunc(f func(context.Context, ctrl.Request) error) reconcile.Func {
	return func(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
		return ctrl.Result{}, f(ctx, req)
	}
}
