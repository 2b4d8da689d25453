package controller

import (
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// sourceDeletionPoll is how often the controller looks at a source pod that
// is terminating, in case a pod event is missed.
const sourceDeletionPoll = 10 * time.Second

// nodeLeaseRecheck is how often the controller looks at the target node's
// Lease while it waits for a renewal. It matches the kubelet's default
// renew interval, and the Lease watch usually wakes the migration sooner.
const nodeLeaseRecheck = 10 * time.Second

// failingWaitingReasons are container waiting reasons after which the
// restored pod can never start: the kubelet does not retry them on its own.
var failingWaitingReasons = map[string]bool{
	"ErrImageNeverPull": true,
	"InvalidImageName":  true,
}

// ensureRestoredPod creates the restored pod when the cache does not show
// it. Its name is recorded with the phase, so a create after a restart
// finds the same pod and AlreadyExists.
func ensureRestoredPod(o *outcome, w *world) {
	if w.restored != nil && o.status.RestoredPod == w.restored.Name {
		return
	}
	if o.status.RestoredPod == "" {
		name, ok := restoredpod.ChooseName(w.pod, o.m.UID, func(n string) bool { return w.takenNames[n] })
		if !ok {
			o.fail(lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("pods %s and %s exist already. Delete one so the "+
				"restored pod can take its name", restoredpod.Name(w.pod), restoredpod.FallbackName(w.pod, o.m.UID)))
			return
		}
		o.status.RestoredPod = name
	}
	pod, err := restoredpod.Build(restoredpod.Params{
		Source:     w.pod,
		Migration:  o.m,
		Name:       o.status.RestoredPod,
		TargetNode: o.status.TargetNode,
		Images:     o.status.CheckpointImages,
		VolumeData: volumeData(o.m),
	})
	if err != nil {
		o.fail(lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("failed to build the restored pod: %v", err))
		return
	}
	o.createRestored = pod
}

// stepRestoring verifies the restored pod and then removes the source.
// Verification is the point of no return: from then on the source agent
// kills the frozen source, so the migration can only finish.
func stepRestoring(o *outcome, w *world) {
	if !restoredVerified(o) {
		if !checkSourcePod(o, w) {
			return
		}
		copyCheckpointFigures(o)
		verifyRestoredPod(o, w)
		if !restoredVerified(o) {
			return
		}
	}
	copyCheckpointFigures(o)
	if o.m.Spec.SourcePolicy == lpmv1.SourcePolicyKeep {
		o.setCondition(lpmv1.ConditionSourceRemoved, metav1.ConditionFalse, lpmv1.ReasonSourceKept,
			fmt.Sprintf("sourcePolicy is Keep: pod %s keeps running on node %s", o.m.Spec.PodName, o.status.SourceNode))
		finishSucceeded(o, w)
		return
	}
	removeSource(o, w)
}

func restoredVerified(o *outcome) bool {
	return meta.IsStatusConditionTrue(o.status.Conditions, lpmv1.ConditionRestored)
}

// verifyRestoredPod sets Restored to True once the restored pod is Ready,
// the target agent reports every container restored by the runtime, no
// container restarted for the settle window, and the target node's kubelet
// renewed its Lease after the window ended.
func verifyRestoredPod(o *outcome, w *world) {
	pod := w.restored
	if pod == nil || pod.Name != o.status.RestoredPod {
		ensureRestoredPod(o, w)
		return
	}
	if !ownedByMigration(pod, o.m) {
		o.fail(lpmv1.ReasonRestoredPodFailed,
			fmt.Sprintf("pod %s exists and was not created by this migration", pod.Name))
		return
	}
	if reason, msg := restoredPodFailure(pod); reason != "" {
		o.fail(reason, msg)
		return
	}
	agent := targetCondition(o.m, lpmv1.AgentConditionRestored)
	ready := preflight.PodReadyCondition(pod)
	if ready == nil || ready.Status != corev1.ConditionTrue || !isTrue(agent) {
		o.setCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
			fmt.Sprintf("waiting for pod %s to be Ready and the agent of node %s to report it restored",
				pod.Name, o.status.TargetNode))
		return
	}
	if name := notRestoredContainer(o.m, restoredpod.CheckpointedContainers(w.pod)); name != "" {
		o.fail(lpmv1.ReasonNotRestored, fmt.Sprintf("the runtime on node %s started container %q of pod %s "+
			"afresh instead of restoring it from its checkpoint", o.status.TargetNode, name, pod.Name))
		return
	}
	readyAt, ok := restoredReadyTime(o.m, ready)
	if !ok {
		o.setCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
			fmt.Sprintf("pod %s is Ready. Waiting for the agent of node %s to report when it became Ready",
				pod.Name, o.status.TargetNode))
		return
	}
	o.status.RestoredReadyTime = &metav1.MicroTime{Time: readyAt}
	settled := readyAt.Add(settle(o.m))
	if o.now.Before(settled) {
		o.setCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonSettling,
			fmt.Sprintf("pod %s is Ready. Watching it for restarts until %s", pod.Name, settled.UTC().Format(time.RFC3339)))
		o.requeueAt(settled)
		return
	}
	// The API server shows a dead node's pods Ready until the node
	// controller notices, after kube-controller-manager's
	// --node-monitor-grace-period (50 seconds by default in v1.37), which is
	// far longer than the settle window. Only a Lease that the target's kubelet renewed
	// after the window ended shows that the node still ran then.
	if !leaseRenewedSince(w.targetLease, settled) {
		o.setCondition(lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonWaitingForNodeLease,
			fmt.Sprintf("pod %s was Ready through its settle window, which ended at %s. Waiting for the kubelet "+
				"of node %s to renew its Lease in %s after that time, which shows the node still runs",
				pod.Name, settled.UTC().Format(time.RFC3339Nano), o.status.TargetNode, corev1.NamespaceNodeLease))
		o.requeue(nodeLeaseRecheck)
		return
	}

	if o.m.Spec.SourcePolicy != lpmv1.SourcePolicyKeep && o.status.CutTime != nil {
		o.status.Downtime = &metav1.Duration{Duration: readyAt.Sub(o.status.CutTime.Time)}
	}
	o.setCondition(lpmv1.ConditionRestored, metav1.ConditionTrue, lpmv1.ReasonVerified,
		fmt.Sprintf("pod %s on node %s is Ready, restored from its checkpoint and stayed up for %s",
			pod.Name, o.status.TargetNode, settle(o.m)))
	o.normal(lpmv1.ReasonVerified, "Verify", o.condition(lpmv1.ConditionRestored).Message)
}

// leaseRenewedSince reports whether the kubelet renewed its node's Lease at
// t or later. The target agent's Ready time, from which t is computed, and
// the renewal both come from the target node's clock.
func leaseRenewedSince(lease *coordinationv1.Lease, t time.Time) bool {
	return lease != nil && lease.Spec.RenewTime != nil && !lease.Spec.RenewTime.Time.Before(t)
}

// restoredReadyTime returns when the restored pod became Ready, as the
// target agent observed it with microseconds. ok is false until the agent
// has reported the Ready transition that the kubelet's condition shows.
// The kubelet records it in whole seconds by the target node's clock, which
// the agent reads too, so a report earlier than it belongs to an earlier
// Ready period.
func restoredReadyTime(m *lpmv1.PodMigration, ready *corev1.PodCondition) (time.Time, bool) {
	reported := targetStatus(m).ReadyTime
	if reported == nil || reported.Before(&metav1.MicroTime{Time: ready.LastTransitionTime.Time}) {
		return time.Time{}, false
	}
	return reported.Time, true
}

// restoredPodFailure returns why the restored pod can never pass
// verification, or an empty reason.
func restoredPodFailure(pod *corev1.Pod) (lpmv1.Reason, string) {
	if pod.DeletionTimestamp != nil {
		return lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("the restored pod %s is being deleted", pod.Name)
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("the restored pod %s is %s: %s",
			pod.Name, pod.Status.Phase, podEndDetail(pod))
	}
	if reason, msg := volumeRestoreFailure(pod); reason != "" {
		return reason, msg
	}
	for _, s := range containerStatuses(pod) {
		if s.RestartCount > 0 {
			return lpmv1.ReasonContainerRestarted, fmt.Sprintf("container %q of the restored pod %s restarted",
				s.Name, pod.Name)
		}
		if w := s.State.Waiting; w != nil && failingWaitingReasons[w.Reason] {
			return lpmv1.ReasonRestoredPodFailed, fmt.Sprintf("container %q of the restored pod %s cannot start: "+
				"%s: %s", s.Name, pod.Name, w.Reason, w.Message)
		}
	}
	return "", ""
}

// notRestoredContainer returns a checkpointed container the target agent
// did not report as restored.
func notRestoredContainer(m *lpmv1.PodMigration, containers []string) string {
	restored := map[string]bool{}
	for _, c := range targetStatus(m).Containers {
		restored[c.Name] = c.Restored
	}
	for _, name := range containers {
		if !restored[name] {
			return name
		}
	}
	return ""
}

// removeSource deletes the source pod once its agent has sent SIGKILL to
// the frozen containers, and finishes the migration when the pod is gone.
// The agent thaws the containers when it sees the pod terminating, so they
// die without running, and the kubelet does not restart a container of a
// terminating pod.
func removeSource(o *outcome, w *world) {
	if w.pod == nil || string(w.pod.UID) != o.status.SourcePodUID {
		o.setCondition(lpmv1.ConditionSourceRemoved, metav1.ConditionTrue, lpmv1.ReasonSourceDeleted,
			fmt.Sprintf("pod %s was deleted from node %s", o.m.Spec.PodName, o.status.SourceNode))
		finishSucceeded(o, w)
		return
	}
	if w.pod.DeletionTimestamp != nil {
		msg := fmt.Sprintf("waiting for the kubelet of node %s to remove pod %s", o.status.SourceNode, w.pod.Name)
		if !o.now.Before(w.pod.DeletionTimestamp.Add(restoredPodGoneGrace)) {
			msg += fmt.Sprintf(". If node %s is down, `kubectl delete pod %s -n %s --force --grace-period=0` "+
				"removes the pod and the migration succeeds. The source containers stay frozen, and the lpm "+
				"agent ends them when the node returns", o.status.SourceNode, w.pod.Name, o.m.Namespace)
		}
		o.setCondition(lpmv1.ConditionSourceRemoved, metav1.ConditionUnknown, lpmv1.ReasonSourceDeleting, msg)
		o.requeue(sourceDeletionPoll)
		return
	}

	verified := o.condition(lpmv1.ConditionRestored).LastTransitionTime.Time
	killed := isTrue(sourceCondition(o.m, lpmv1.AgentConditionKilled))
	if !killed && o.now.Before(verified.Add(cleanupTimeout)) {
		o.setCondition(lpmv1.ConditionSourceRemoved, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
			fmt.Sprintf("waiting for the agent of node %s to kill the frozen source containers", o.status.SourceNode))
		o.requeueAt(verified.Add(cleanupTimeout))
		return
	}
	if !killed {
		o.warning(lpmv1.ReasonCleanupTimedOut, "DeleteSource", fmt.Sprintf("the agent of node %s did not "+
			"report Killed within %s. Deleting pod %s anyway", o.status.SourceNode, cleanupTimeout, w.pod.Name))
	}
	o.deleteSource = true
	o.setCondition(lpmv1.ConditionSourceRemoved, metav1.ConditionUnknown, lpmv1.ReasonSourceDeleting,
		fmt.Sprintf("deleting pod %s from node %s", w.pod.Name, o.status.SourceNode))
	o.normal(lpmv1.ReasonSourceDeleting, "DeleteSource", o.condition(lpmv1.ConditionSourceRemoved).Message)
	o.requeue(sourceDeletionPoll)
}

// finishSucceeded ends the migration in Succeeded and hands the restored
// pod over to the user: it drops the owner reference, so that deleting the
// PodMigration never deletes the workload.
func finishSucceeded(o *outcome, w *world) {
	if w.restored != nil && hasOwnerReference(w.restored, o.m) {
		o.releaseRestored = true
	}
	msg := fmt.Sprintf("pod %s runs on node %s as pod %s", o.m.Spec.PodName, o.status.TargetNode, o.status.RestoredPod)
	if o.status.Downtime != nil {
		msg += fmt.Sprintf(". Downtime %s", o.status.Downtime.Duration)
	}
	o.succeed(lpmv1.ReasonMigrationComplete, msg)
}

// podEndDetail describes why a pod ended: the pod's reason and message and
// each container's last state, because the kubelet often leaves the pod's
// own message empty.
func podEndDetail(pod *corev1.Pod) string {
	var parts []string
	if pod.Status.Reason != "" || pod.Status.Message != "" {
		parts = append(parts, strings.TrimSpace(pod.Status.Reason+" "+pod.Status.Message))
	}
	for _, s := range containerStatuses(pod) {
		switch {
		case s.State.Terminated != nil:
			t := s.State.Terminated
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("container %q terminated with exit code %d: %s %s",
				s.Name, t.ExitCode, t.Reason, t.Message)))
		case s.State.Waiting != nil && s.State.Waiting.Reason != "":
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("container %q waits: %s %s", s.Name,
				s.State.Waiting.Reason, s.State.Waiting.Message)))
		}
	}
	if len(parts) == 0 {
		return "the kubelet reported no reason; the pod's events hold the runtime's error"
	}
	return strings.Join(parts, "; ")
}

// containerStatuses returns the statuses of the pod's init containers and
// containers.
func containerStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	return append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...),
		pod.Status.ContainerStatuses...)
}
