package preflight

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
)

// mirrorPodAnnotation marks the API server's copy of a static pod, which the
// kubelet runs from a file on its node.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// CheckPod returns the first reason that the pod cannot be moved now, or
// nil. It covers the pod's state (running, ready, not terminating) and the
// kinds of pod that lpm rejects because a copy on another node would break
// them.
func CheckPod(pod *corev1.Pod) *Failure {
	if f := checkPodState(pod); f != nil {
		return f
	}
	if f := checkOwners(pod); f != nil {
		return f
	}
	if f := checkNamespaces(pod); f != nil {
		return f
	}
	if f := checkVolumes(pod); f != nil {
		return f
	}
	if f := checkResources(pod); f != nil {
		return f
	}
	return checkHostname(pod)
}

func checkPodState(pod *corev1.Pod) *Failure {
	switch {
	case pod.DeletionTimestamp != nil:
		return fail(lpmv1.ReasonPodTerminating, "metadata.deletionTimestamp",
			"pod %s is terminating", pod.Name)
	case pod.Annotations[mirrorPodAnnotation] != "":
		return fail(lpmv1.ReasonStaticPod, "metadata.annotations["+mirrorPodAnnotation+"]",
			"pod %s is the mirror of a static pod, which its node's kubelet runs from a file", pod.Name)
	case pod.Spec.NodeName == "":
		return fail(lpmv1.ReasonPodNotScheduled, "spec.nodeName",
			"pod %s is not bound to a node yet", pod.Name)
	case pod.Status.Phase != corev1.PodRunning:
		return fail(lpmv1.ReasonPodNotRunning, "status.phase",
			"pod %s is %s. Only a Running pod can be moved", pod.Name, pod.Status.Phase)
	case !IsPodReady(pod):
		return fail(lpmv1.ReasonPodNotReady, "status.conditions[Ready]",
			"pod %s is not Ready. Wait until it is Ready and create the PodMigration again", pod.Name)
	}
	return nil
}

// checkOwners rejects pods that a controller manages: the controller would
// adopt the restored copy, or replace the deleted source with a new pod.
func checkOwners(pod *corev1.Pod) *Failure {
	for i, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		field := fmt.Sprintf("metadata.ownerReferences[%d]", i)
		if ref.Kind == "PodMigration" && ref.APIVersion == lpmv1.GroupVersion.String() {
			return fail(lpmv1.ReasonMigrationInProgress, field,
				"pod %s is the restored pod of PodMigration %s, which has not finished", pod.Name, ref.Name)
		}
		return fail(lpmv1.ReasonControllerOwnedPod, field,
			"pod %s is managed by %s %s, which would adopt or replace a moved copy. "+
				"Moving controller-managed pods is not supported yet", pod.Name, ref.Kind, ref.Name)
	}
	return nil
}

func checkNamespaces(pod *corev1.Pod) *Failure {
	spec := &pod.Spec
	switch {
	case spec.HostNetwork:
		return fail(lpmv1.ReasonHostNamespace, "spec.hostNetwork",
			"pod %s uses the node's network namespace, which does not move", pod.Name)
	case spec.HostPID:
		return fail(lpmv1.ReasonHostNamespace, "spec.hostPID",
			"pod %s uses the node's PID namespace, which does not move", pod.Name)
	case spec.HostIPC:
		return fail(lpmv1.ReasonHostNamespace, "spec.hostIPC",
			"pod %s uses the node's IPC namespace, which does not move", pod.Name)
	case spec.HostUsers != nil && !*spec.HostUsers:
		return fail(lpmv1.ReasonUserNamespace, "spec.hostUsers",
			"pod %s runs in a user namespace, which CRIU cannot restore on another node", pod.Name)
	}
	return nil
}

// checkVolumes accepts the volume types the kubelet creates afresh for the
// restored pod (its host paths contain the new pod's UID) and rejects
// storage that is bound to the source node or attached to it.
func checkVolumes(pod *corev1.Pod) *Failure {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		field := fmt.Sprintf("spec.volumes[%d]", i)
		switch {
		// The agents carry an emptyDir's contents in the volume data image;
		// the source agent checks their size and kinds before the cut.
		case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil,
			v.Projected != nil, v.Image != nil:
			continue
		case v.HostPath != nil:
			return fail(lpmv1.ReasonUnsupportedVolume, field+".hostPath",
				"volume %q is a hostPath, whose contents stay on node %s", v.Name, pod.Spec.NodeName)
		case v.PersistentVolumeClaim != nil:
			return fail(lpmv1.ReasonUnsupportedVolume, field+".persistentVolumeClaim",
				"volume %q is a PersistentVolumeClaim. Moving attached storage is not supported yet", v.Name)
		case v.Ephemeral != nil:
			return fail(lpmv1.ReasonUnsupportedVolume, field+".ephemeral",
				"volume %q is a generic ephemeral volume backed by a PersistentVolumeClaim. "+
					"Moving attached storage is not supported yet", v.Name)
		default:
			return fail(lpmv1.ReasonUnsupportedVolume, field,
				"volume %q is attached storage. Only emptyDir, configMap, secret, downwardAPI, projected "+
					"and image volumes can move", v.Name)
		}
	}
	return nil
}

// movableResources are the resources every node offers. Extended resources,
// hugepages and DRA claims name devices or memory of the source node.
var movableResources = map[corev1.ResourceName]bool{
	corev1.ResourceCPU:              true,
	corev1.ResourceMemory:           true,
	corev1.ResourceEphemeralStorage: true,
}

func checkResources(pod *corev1.Pod) *Failure {
	if len(pod.Spec.ResourceClaims) > 0 {
		return fail(lpmv1.ReasonUnsupportedResource, "spec.resourceClaims",
			"pod %s uses dynamically allocated devices, which do not move", pod.Name)
	}
	if r := pod.Spec.Resources; r != nil {
		if f := checkResourceLists("spec.resources", r); f != nil {
			return f
		}
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
			field := fmt.Sprintf("%s[%d]", l.field, i)
			if f := checkResourceLists(field+".resources", &c.Resources); f != nil {
				return f
			}
			if len(c.VolumeDevices) > 0 {
				return fail(lpmv1.ReasonUnsupportedResource, field+".volumeDevices",
					"container %q uses a block device, which does not move", c.Name)
			}
		}
	}
	return nil
}

func checkResourceLists(field string, r *corev1.ResourceRequirements) *Failure {
	for _, l := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		for name := range l.list {
			if !movableResources[name] {
				return fail(lpmv1.ReasonUnsupportedResource, fmt.Sprintf("%s.%s[%s]", field, l.name, name),
					"resource %s is a device or node-bound resource, which does not move", name)
			}
		}
	}
	if len(r.Claims) > 0 {
		return fail(lpmv1.ReasonUnsupportedResource, field+".claims",
			"claim %q names dynamically allocated devices, which do not move", r.Claims[0].Name)
	}
	return nil
}

// checkHostname rejects a pod whose hostname the restored pod cannot keep:
// the kubelet uses a dotted pod name as the hostname, but spec.hostname
// must be a DNS label.
func checkHostname(pod *corev1.Pod) *Failure {
	if pod.Spec.Hostname != "" || pod.Spec.HostnameOverride != nil {
		return nil
	}
	if errs := validation.IsDNS1123Label(restoredpod.Hostname(pod.Name)); len(errs) > 0 {
		return fail(lpmv1.ReasonUnsupportedHostname, "metadata.name",
			"pod %s has the hostname %q, which the restored pod cannot keep because spec.hostname "+
				"must be a DNS label", pod.Name, restoredpod.Hostname(pod.Name))
	}
	return nil
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(pod *corev1.Pod) bool {
	return PodReadyCondition(pod) != nil && PodReadyCondition(pod).Status == corev1.ConditionTrue
}

// PodReadyCondition returns the pod's Ready condition, or nil.
func PodReadyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// CheckOtherMigrations rejects m when another unfinished migration of the
// same pod was created before it or has already started. Ties on the
// creation time go to the name that sorts first, so concurrent reconciles
// agree on one winner. A dry run changes nothing, so it blocks no other
// migration.
func CheckOtherMigrations(m *lpmv1.PodMigration, others []lpmv1.PodMigration) *Failure {
	for i := range others {
		o := &others[i]
		if o.UID == m.UID || o.Spec.PodName != m.Spec.PodName || o.Namespace != m.Namespace || o.Spec.DryRun {
			continue
		}
		switch o.Status.Phase {
		case lpmv1.PhaseSucceeded, lpmv1.PhaseFailed:
			continue
		case "", lpmv1.PhasePending:
			if !earlier(o, m) {
				continue
			}
		}
		return fail(lpmv1.ReasonMigrationInProgress, "spec.podName",
			"pod %s is already being moved by PodMigration %s", m.Spec.PodName, o.Name)
	}
	return nil
}

func earlier(a, b *lpmv1.PodMigration) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}
