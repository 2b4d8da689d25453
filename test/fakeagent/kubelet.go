package fakeagent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Lease timing of the kubelet's defaults (v1.37): a Lease lasts 40 seconds
// and the kubelet renews it every quarter of that.
const (
	leaseDurationSeconds = 40
	leaseRenewInterval   = 10 * time.Second
)

// ManualStatusAnnotation on a pod keeps the fake kubelet from reporting its
// status, so a test can set the status itself.
const ManualStatusAnnotation = "fakeagent.lpm.dev/manual-status"

// reconcilePod plays the kubelet for a pod on one of the agent's nodes: it
// reports a new pod Running and Ready, and removes a terminating pod.
func (a *Agent) reconcilePod(ctx context.Context, req ctrl.Request) error {
	pod := &corev1.Pod{}
	if err := a.client.Get(ctx, req.NamespacedName, pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !a.nodes[pod.Spec.NodeName] || pod.Annotations[ManualStatusAnnotation] != "" {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		if len(pod.Finalizers) > 0 {
			return nil
		}
		err := a.client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
		return client.IgnoreNotFound(err)
	}
	// The API server creates a pod Pending; the kubelet reports it once.
	if pod.Status.StartTime != nil || (pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending) {
		return nil
	}

	restarts := int32(0)
	if isRestoredPod(pod) {
		ok, f := a.run(StepStartRestored)
		if !ok {
			return nil
		}
		if f != nil {
			restarts = 1
		}
	}
	now := metav1.NewTime(a.clock.Now())
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		StartTime: &now,
		PodIP:     "10.244.0.10",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptr.To(true),
			RestartCount: restarts, ContainerID: "containerd://" + c.Name,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if err := a.client.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("failed to report the status of pod %s: %w", pod.Name, err)
	}
	return nil
}

// isRestoredPod reports whether a running migration owns the pod.
func isRestoredPod(pod *corev1.Pod) bool {
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "PodMigration" && ref.APIVersion == lpmv1.GroupVersion.String() {
			return true
		}
	}
	return false
}

// PublishNodeAgents creates or updates the NodeAgent of each of the agent's
// nodes: Ready, able to checkpoint and restore, with a heartbeat at the
// fake clock's time. mutate, when given, changes each status before the
// write.
func (a *Agent) PublishNodeAgents(ctx context.Context, mutate func(*lpmv1.NodeAgentStatus)) error {
	for node := range a.nodes {
		if err := a.PublishNodeAgent(ctx, node, mutate); err != nil {
			return err
		}
	}
	return nil
}

// PublishNodeAgent creates or updates the NodeAgent of one node.
func (a *Agent) PublishNodeAgent(ctx context.Context, node string, mutate func(*lpmv1.NodeAgentStatus)) error {
	na := &lpmv1.NodeAgent{}
	if err := a.reader.Get(ctx, client.ObjectKey{Name: node}, na); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to get NodeAgent %s: %w", node, err)
		}
		na = &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: node}}
		if err := a.client.Create(ctx, na); err != nil {
			return fmt.Errorf("failed to create NodeAgent %s: %w", node, err)
		}
	}
	now := metav1.NewTime(a.clock.Now())
	na.Status = lpmv1.NodeAgentStatus{
		HeartbeatTime: &now,
		AgentVersion:  "fake",
		Endpoint:      node + ":8479",
		Conditions: []metav1.Condition{
			{Type: lpmv1.NodeAgentReady, Status: metav1.ConditionTrue, Reason: "Running", LastTransitionTime: now},
			{Type: lpmv1.NodeAgentCheckpointSupported, Status: metav1.ConditionTrue, Reason: "Supported",
				LastTransitionTime: now},
			{Type: lpmv1.NodeAgentRestoreSupported, Status: metav1.ConditionTrue, Reason: "Supported",
				LastTransitionTime: now},
		},
		Capabilities: &lpmv1.NodeCapabilities{
			RuntimeName: "containerd", RuntimeVersion: "v2.3.7", CRIUVersion: "4.1", CgroupVersion: 1,
			CPUFeatures: []string{"sse4_2", "avx2"}, CheckpointAuthorized: true,
		},
	}
	if mutate != nil {
		mutate(&na.Status)
	}
	if err := a.client.Status().Update(ctx, na); err != nil {
		return fmt.Errorf("failed to update NodeAgent %s: %w", node, err)
	}
	return nil
}

// renewLeasesPeriodically renews the Leases of the agent's nodes at start
// and then each one every leaseRenewInterval of real time, as each kubelet
// does, until ctx ends. The renew time comes from the agent's clock. The
// nodes take turns spread over the interval, because kubelets that started
// at different times renew at different moments, and renewing all at once
// would make every migration wait for the same tick.
func (a *Agent) renewLeasesPeriodically(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx)
	if err := a.RenewLeases(ctx); err != nil && ctx.Err() == nil {
		log.Error(err, "Failed to renew the fake node Leases")
	}
	nodes := slices.Sorted(maps.Keys(a.nodes))
	if len(nodes) == 0 {
		return nil
	}
	ticker := time.NewTicker(leaseRenewInterval / time.Duration(len(nodes)))
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		now := metav1.NewMicroTime(a.clock.Now())
		if ok, _ := a.run(StepRenewLease); !ok {
			continue
		}
		node := nodes[i%len(nodes)]
		if err := a.renewLease(ctx, node, now); err != nil && ctx.Err() == nil {
			log.Error(err, "Failed to renew the fake node Lease", "node", node)
		}
	}
}

// RenewLeases creates or renews the Lease of each of the agent's nodes in
// kube-node-lease with the clock's time, unless StepRenewLease is held.
func (a *Agent) RenewLeases(ctx context.Context) error {
	// The time is read before the hold is checked, so a renewal that races
	// with Hold and a clock step never writes the time after the step.
	now := metav1.NewMicroTime(a.clock.Now())
	if ok, _ := a.run(StepRenewLease); !ok {
		return nil
	}
	for node := range a.nodes {
		if err := a.renewLease(ctx, node, now); err != nil {
			return err
		}
	}
	return nil
}

// renewLease writes the node's Lease, again after a conflict with a renewal
// that ran at the same time.
func (a *Agent) renewLease(ctx context.Context, node string, now metav1.MicroTime) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return a.writeLease(ctx, node, now) })
}

func (a *Agent) writeLease(ctx context.Context, node string, now metav1.MicroTime) error {
	lease := &coordinationv1.Lease{}
	err := a.reader.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: node}, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(node),
				LeaseDurationSeconds: ptr.To[int32](leaseDurationSeconds),
				RenewTime:            &now,
			},
		}
		if err := a.client.Create(ctx, lease); err != nil {
			return fmt.Errorf("failed to create the Lease of node %s: %w", node, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to get the Lease of node %s: %w", node, err)
	}
	// A renewal that read the clock before a concurrent one must not undo it.
	if lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(now.Time) {
		return nil
	}
	lease.Spec.RenewTime = &now
	if err := a.client.Update(ctx, lease); err != nil {
		return fmt.Errorf("failed to renew the Lease of node %s: %w", node, err)
	}
	return nil
}
