package preflight

import (
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	schedulingcorev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// CheckTargetName rejects a target that is the source node when the source
// pod is deleted afterwards: the move would gain nothing and run two copies
// of the pod on one node.
func CheckTargetName(policy lpmv1.SourcePolicy, sourceNode, targetNode string) *Failure {
	if targetNode == sourceNode && policy != lpmv1.SourcePolicyKeep {
		return fail(lpmv1.ReasonTargetIsSource, "spec.targetNode",
			"target node %s is the node the pod runs on. Name another node, or set sourcePolicy Keep "+
				"to clone the pod on the same node", targetNode)
	}
	return nil
}

// CheckTargetNode applies the scheduler's rules to the target node: it is
// Ready and schedulable, the pod tolerates its NoSchedule and NoExecute
// taints, matches its node selector and required node affinity, and fits
// in its allocatable resources less what podsOnNode request.
func CheckTargetNode(pod *corev1.Pod, node *corev1.Node, podsOnNode []corev1.Pod) *Failure {
	if f := checkNodeState(node); f != nil {
		return f
	}
	if f := checkTaints(pod, node); f != nil {
		return f
	}
	if f := checkAffinity(pod, node); f != nil {
		return f
	}
	return checkRoom(pod, node, podsOnNode)
}

func checkNodeState(node *corev1.Node) *Failure {
	if !IsNodeReady(node) {
		return fail(lpmv1.ReasonTargetNotReady, "spec.targetNode", "node %s is not Ready", node.Name)
	}
	if node.Spec.Unschedulable {
		return fail(lpmv1.ReasonTargetUnschedulable, "spec.targetNode",
			"node %s is cordoned (spec.unschedulable)", node.Name)
	}
	return nil
}

func checkTaints(pod *corev1.Pod, node *corev1.Node) *Failure {
	filter := func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}
	taint, found := schedulingcorev1.FindMatchingUntoleratedTaint(
		logr.Discard(), node.Spec.Taints, pod.Spec.Tolerations, filter, true)
	if found {
		return fail(lpmv1.ReasonTargetTaint, "spec.tolerations",
			"pod %s does not tolerate the taint %s of node %s", pod.Name, taint.ToString(), node.Name)
	}
	return nil
}

func checkAffinity(pod *corev1.Pod, node *corev1.Node) *Failure {
	match, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)
	if err != nil || !match {
		field := "spec.nodeSelector"
		if len(pod.Spec.NodeSelector) == 0 {
			field = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
		}
		return fail(lpmv1.ReasonTargetSelectorMismatch, field,
			"node %s does not match the pod's node selector or required node affinity", node.Name)
	}
	return nil
}

func checkRoom(pod *corev1.Pod, node *corev1.Node, podsOnNode []corev1.Pod) *Failure {
	free := FreeResources(node, podsOnNode)
	if free.Pods().Value() < 1 {
		return fail(lpmv1.ReasonTargetInsufficient, "spec.targetNode",
			"node %s runs as many pods as it allows (%s)", node.Name, node.Status.Allocatable.Pods().String())
	}
	requests := RestoredPodRequests(pod)
	names := make([]corev1.ResourceName, 0, len(requests))
	for name := range requests {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		want := requests[name]
		have := free[name]
		if want.Cmp(have) > 0 {
			return fail(lpmv1.ReasonTargetInsufficient, "spec.containers[*].resources.requests["+string(name)+"]",
				"node %s has %s %s free, the pod requests %s", node.Name, have.String(), name, want.String())
		}
	}
	return nil
}

// RestoredPodRequests returns what the restored pod requests. Regular init
// containers do not run again, so only native sidecars count next to the
// app containers.
func RestoredPodRequests(pod *corev1.Pod) corev1.ResourceList {
	restored := pod.DeepCopy()
	restored.Spec.InitContainers = slices.DeleteFunc(restored.Spec.InitContainers, func(c corev1.Container) bool {
		return !restoredpod.IsSidecar(&c)
	})
	return resourcehelper.PodRequests(restored, resourcehelper.PodResourcesOptions{})
}

// FreeResources returns the node's allocatable resources less what
// podsOnNode request, with the pod count under corev1.ResourcePods.
// Finished pods hold no resources, as for the scheduler.
func FreeResources(node *corev1.Node, podsOnNode []corev1.Pod) corev1.ResourceList {
	free := node.Status.Allocatable.DeepCopy()
	if free == nil {
		free = corev1.ResourceList{}
	}
	running := int64(0)
	for i := range podsOnNode {
		p := &podsOnNode[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		running++
		for name, q := range resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{}) {
			left := free[name]
			left.Sub(q)
			free[name] = left
		}
	}
	pods := free[corev1.ResourcePods]
	pods.Sub(*resource.NewQuantity(running, resource.DecimalSI))
	free[corev1.ResourcePods] = pods
	return free
}

// IsNodeReady reports whether the node's Ready condition is True.
func IsNodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
