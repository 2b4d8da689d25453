// Package restoredpod builds the pod that a migration creates on the target
// node, and derives its name.
package restoredpod

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Params are the inputs of Build.
type Params struct {
	// Source is the live source pod. Build does not modify it.
	Source *corev1.Pod
	// Migration is the PodMigration that owns the restored pod while it runs.
	Migration *lpmv1.PodMigration
	// Name is the restored pod's name, from ChooseName.
	Name string
	// TargetNode is the node the restored pod is bound to.
	TargetNode string
	// Images maps each checkpointed container's name to its checkpoint image.
	Images map[string]string
	// VolumeData is the image that carries the source's emptyDir volumes,
	// or nil when the migration carries none.
	VolumeData *VolumeData
}

// Build returns the restored pod: a deep copy of the source pod that differs
// only in what the move requires. The containers run their checkpoint
// images. The pod is bound to the target node and keeps the source's
// hostname. Fields that the API server sets are cleared. Regular init
// containers are dropped because they already ran; with p.VolumeData the
// one init container that restores the emptyDir volumes takes their place.
// The PodMigration owns the pod. Build fails when a container has no
// checkpoint image.
func Build(p Params) (*corev1.Pod, error) {
	src := p.Source
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       src.Namespace,
			Labels:          maps.Clone(src.Labels),
			Annotations:     annotations(src, p.Migration),
			OwnerReferences: ownerReferences(src, p.Migration),
		},
		Spec: *src.Spec.DeepCopy(),
	}
	spec := &pod.Spec

	// The pod skips the scheduler: preflight already checked that it fits.
	spec.NodeName = p.TargetNode
	spec.SchedulingGates = nil

	// Ephemeral containers are debugging aids that were never checkpointed.
	spec.EphemeralContainers = nil

	// Admission plugins compute these from the priority and runtime classes
	// and reject a pod whose copied values disagree with the classes now.
	spec.Priority = nil
	if spec.PriorityClassName != "" {
		spec.PreemptionPolicy = nil
	}
	if spec.RuntimeClassName != nil {
		spec.Overhead = nil
	}

	// The restored processes keep the hostname they saw, which the kubelet
	// derived from the source's name.
	if spec.Hostname == "" && spec.HostnameOverride == nil {
		if h := Hostname(src.Name); len(validation.IsDNS1123Label(h)) == 0 {
			spec.Hostname = h
		}
	}

	// Regular init containers already ran; native sidecars were checkpointed
	// with the app containers and are restored like them.
	spec.InitContainers = slices.DeleteFunc(spec.InitContainers, func(c corev1.Container) bool {
		return !IsSidecar(&c)
	})
	pullPolicy := corev1.PullNever
	if transferMode(p.Migration) == lpmv1.TransferModeRegistry {
		pullPolicy = corev1.PullIfNotPresent
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			image, ok := p.Images[list[i].Name]
			if !ok || image == "" {
				return nil, fmt.Errorf("no checkpoint image for container %q", list[i].Name)
			}
			list[i].Image = image
			list[i].ImagePullPolicy = pullPolicy
		}
	}

	// One init container copies the emptyDir volumes' contents before the
	// runtime restores the containers; it is the only regular one.
	if p.VolumeData != nil && p.VolumeData.Image != "" {
		c, err := volumeRestoreContainer(src, slices.Concat(spec.InitContainers, spec.Containers), p.VolumeData,
			pullPolicy)
		if err != nil {
			return nil, err
		}
		spec.InitContainers = append([]corev1.Container{c}, spec.InitContainers...)
	}

	// The target node's runtime pulls the images with the repository's secret.
	if secret := pullSecretName(p.Migration); secret != "" {
		ref := corev1.LocalObjectReference{Name: secret}
		if !slices.Contains(spec.ImagePullSecrets, ref) {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, ref)
		}
	}
	return pod, nil
}

// IsSidecar reports whether an init container is a native sidecar, which
// keeps running next to the app containers.
func IsSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// CheckpointedContainers returns the names of the containers a migration
// checkpoints and restores: native sidecars, then app containers.
func CheckpointedContainers(pod *corev1.Pod) []string {
	var names []string
	for i := range pod.Spec.InitContainers {
		if IsSidecar(&pod.Spec.InitContainers[i]) {
			names = append(names, pod.Spec.InitContainers[i].Name)
		}
	}
	for i := range pod.Spec.Containers {
		names = append(names, pod.Spec.Containers[i].Name)
	}
	return names
}

// OwnerReference returns the controller reference from a restored pod to
// its PodMigration.
func OwnerReference(m *lpmv1.PodMigration) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         lpmv1.GroupVersion.String(),
		Kind:               "PodMigration",
		Name:               m.Name,
		UID:                m.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// WithoutOwner returns refs less the reference to the owner with uid.
func WithoutOwner(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	return slices.DeleteFunc(slices.Clone(refs), func(r metav1.OwnerReference) bool {
		return r.UID == uid
	})
}

// annotations returns the source's annotations plus those that record the
// migration.
func annotations(src *corev1.Pod, m *lpmv1.PodMigration) map[string]string {
	a := maps.Clone(src.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	a[lpmv1.AnnotationMigration] = m.Namespace + "/" + m.Name
	a[lpmv1.AnnotationMigrationUID] = string(m.UID)
	a[lpmv1.AnnotationSourcePod] = src.Name
	a[lpmv1.AnnotationSourceNode] = src.Spec.NodeName
	return a
}

// ownerReferences keeps the source's references that are not a controller,
// which preflight rejects anyway, and adds the PodMigration as controller.
func ownerReferences(src *corev1.Pod, m *lpmv1.PodMigration) []metav1.OwnerReference {
	var refs []metav1.OwnerReference
	for _, r := range src.OwnerReferences {
		if r.Controller == nil || !*r.Controller {
			refs = append(refs, r)
		}
	}
	return append(refs, OwnerReference(m))
}

func transferMode(m *lpmv1.PodMigration) lpmv1.TransferMode {
	if m.Spec.Transfer == nil || m.Spec.Transfer.Mode == "" {
		return lpmv1.TransferModeDirect
	}
	return m.Spec.Transfer.Mode
}

func pullSecretName(m *lpmv1.PodMigration) string {
	if transferMode(m) != lpmv1.TransferModeRegistry || m.Spec.Transfer.Registry == nil {
		return ""
	}
	return m.Spec.Transfer.Registry.PullSecretName
}
