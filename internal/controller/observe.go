package controller

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/preflight"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// Field index names on the manager's cache.
const (
	indexPodName     = "spec.podName"
	indexRestoredPod = "status.restoredPod"
	indexNodeName    = "spec.nodeName"
	indexTargetNode  = "status.targetNode"
)

// world is the state of the cluster that one reconcile observed. A nil
// pointer means the object does not exist.
type world struct {
	now time.Time

	// pod is the pod named spec.podName.
	pod *corev1.Pod
	// restored is the pod named status.restoredPod.
	restored *corev1.Pod
	// takenNames reports the candidate names for the restored pod that a
	// pod other than this migration's restored pod has.
	takenNames map[string]bool

	sourceAgent *lpmv1.NodeAgent
	targetAgent *lpmv1.NodeAgent
	// targetNode is the node named status.targetNode, or spec.targetNode
	// before the controller recorded it.
	targetNode *corev1.Node
	// targetLease is the target node's Lease in kube-node-lease, which its
	// kubelet renews. It is read only while the migration is Restoring.
	targetLease *coordinationv1.Lease
	// cluster is filled in while the migration is Pending.
	cluster *preflight.Cluster
	// migrations are the PodMigrations in the cluster, for the caps and
	// the check for another migration of the same pod.
	migrations []lpmv1.PodMigration
}

// observe reads what the migration's next step depends on from the cache.
func (r *PodMigrationReconciler) observe(ctx context.Context, m *lpmv1.PodMigration) (*world, error) {
	w := &world{now: r.Clock.Now(), takenNames: map[string]bool{}}
	var err error
	if w.pod, err = r.getPod(ctx, m.Namespace, m.Spec.PodName); err != nil {
		return nil, err
	}
	if name := m.Status.RestoredPod; name != "" {
		if w.restored, err = r.getPod(ctx, m.Namespace, name); err != nil {
			return nil, err
		}
	}
	if err := r.observeNames(ctx, m, w); err != nil {
		return nil, err
	}

	sourceNode := m.Status.SourceNode
	if sourceNode == "" && w.pod != nil {
		sourceNode = w.pod.Spec.NodeName
	}
	targetNode := m.Status.TargetNode
	if targetNode == "" {
		targetNode = m.Spec.TargetNode
	}
	if w.sourceAgent, err = r.getAgent(ctx, sourceNode); err != nil {
		return nil, err
	}
	if w.targetAgent, err = r.getAgent(ctx, targetNode); err != nil {
		return nil, err
	}

	if m.Status.Phase == "" || m.Status.Phase == lpmv1.PhasePending {
		if err := r.observeCluster(ctx, m, w, targetNode); err != nil {
			return nil, err
		}
	}
	if m.Status.Phase == lpmv1.PhaseRestoring && targetNode != "" {
		if w.targetLease, err = r.getNodeLease(ctx, targetNode); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// observeNames looks up the candidate names of the restored pod while the
// controller has yet to create it.
func (r *PodMigrationReconciler) observeNames(ctx context.Context, m *lpmv1.PodMigration, w *world) error {
	phase := m.Status.Phase
	if w.pod == nil || m.Status.RestoredPod != "" ||
		(phase != lpmv1.PhasePreparingImages && phase != lpmv1.PhaseRestoring) {
		return nil
	}
	for _, name := range []string{restoredpod.Name(w.pod), restoredpod.FallbackName(w.pod, m.UID)} {
		pod, err := r.getPod(ctx, m.Namespace, name)
		if err != nil {
			return err
		}
		w.takenNames[name] = pod != nil && !ownedByMigration(pod, m)
	}
	return nil
}

// observeCluster reads what preflight needs: the target node and the pods
// on it, or every node when the controller picks the target, and the
// other migrations. The lists share their objects with the cache
// (client.UnsafeDisableDeepCopy), because a migration without a target
// lists every pod on every reconcile, and copying them took most of the
// controller's CPU time with hundreds of migrations. Nothing may change
// the objects in w.migrations and w.cluster.
func (r *PodMigrationReconciler) observeCluster(ctx context.Context, m *lpmv1.PodMigration, w *world,
	targetNode string) error {
	var migrations lpmv1.PodMigrationList
	if err := r.List(ctx, &migrations, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("failed to list PodMigrations: %w", err)
	}
	w.migrations = migrations.Items
	w.cluster = &preflight.Cluster{PodsByNode: map[string][]corev1.Pod{}, Agents: map[string]*lpmv1.NodeAgent{}}
	if w.sourceAgent != nil {
		w.cluster.Agents[w.sourceAgent.Name] = w.sourceAgent
	}

	if targetNode != "" {
		node := &corev1.Node{}
		if err := r.Get(ctx, types.NamespacedName{Name: targetNode}, node); err != nil {
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("failed to get Node %q: %w", targetNode, err)
			}
			return nil
		}
		w.targetNode = node
		w.cluster.Nodes = []corev1.Node{*node}
		if w.targetAgent != nil {
			w.cluster.Agents[targetNode] = w.targetAgent
		}
		var pods corev1.PodList
		err := r.List(ctx, &pods, client.MatchingFields{indexNodeName: targetNode}, client.UnsafeDisableDeepCopy)
		if err != nil {
			return fmt.Errorf("failed to list pods on node %q: %w", targetNode, err)
		}
		w.cluster.PodsByNode[targetNode] = pods.Items
		return nil
	}
	if w.pod == nil {
		return nil
	}

	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("failed to list Nodes: %w", err)
	}
	w.cluster.Nodes = nodes.Items
	var agents lpmv1.NodeAgentList
	if err := r.List(ctx, &agents, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("failed to list NodeAgents: %w", err)
	}
	for i := range agents.Items {
		w.cluster.Agents[agents.Items[i].Name] = &agents.Items[i]
	}
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("failed to list pods: %w", err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			w.cluster.PodsByNode[p.Spec.NodeName] = append(w.cluster.PodsByNode[p.Spec.NodeName], p)
		}
	}
	return nil
}

func (r *PodMigrationReconciler) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to get pod %s/%s: %w", namespace, name, err)
	}
	return pod, nil
}

func (r *PodMigrationReconciler) getAgent(ctx context.Context, node string) (*lpmv1.NodeAgent, error) {
	if node == "" {
		return nil, nil
	}
	agent := &lpmv1.NodeAgent{}
	if err := r.Get(ctx, types.NamespacedName{Name: node}, agent); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to get NodeAgent %q: %w", node, err)
	}
	return agent, nil
}

func (r *PodMigrationReconciler) getNodeLease(ctx context.Context, node string) (*coordinationv1.Lease, error) {
	lease := &coordinationv1.Lease{}
	key := types.NamespacedName{Namespace: corev1.NamespaceNodeLease, Name: node}
	if err := r.Get(ctx, key, lease); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to get the Lease of node %q: %w", node, err)
	}
	return lease, nil
}

// ownedByMigration reports whether the pod is m's restored pod. The
// annotation outlives the owner reference, which success removes.
func ownedByMigration(pod *corev1.Pod, m *lpmv1.PodMigration) bool {
	return pod.Annotations[lpmv1.AnnotationMigrationUID] == string(m.UID)
}

// hasOwnerReference reports whether the pod still names m as its owner.
func hasOwnerReference(pod *corev1.Pod, m *lpmv1.PodMigration) bool {
	for _, ref := range pod.OwnerReferences {
		if ref.UID == m.UID {
			return true
		}
	}
	return false
}
